"""Data capture as the live-drift monitor reads it: records, encodings, the window, the CLI."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.test_monitor import HELD_OUT, NAMES, WEIGHTS, baseline, cells, cli  # noqa: F401

from abalone_model import capture, monitor
from abalone_model.errors import ModelError
from abalone_model.schema import Schema

SCHEMA = Schema.load()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = capture.Window(NOW - timedelta(hours=24), NOW)


def record(body: str, output: str, when: datetime, kind: str = "text/csv", enc: str = "CSV"):
    def payload(mode: str, data: str, ctype: str) -> dict:
        if enc == "BASE64":
            data = base64.b64encode(data.encode()).decode()
        return {"observedContentType": ctype, "mode": mode, "data": data, "encoding": enc}

    return {
        "captureData": {
            "endpointInput": payload("INPUT", body, kind),
            "endpointOutput": payload("OUTPUT", output, kind),
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
    }


def csv_call(rows: list[list[str]], when: datetime, header: bool = False) -> dict:
    lines = ([",".join(NAMES)] if header else []) + [",".join(r) for r in rows]
    return record("\n".join(lines), "\n".join("10.5" for _ in rows), when)


def write(folder: Path, records: list, name: str = "a.jsonl") -> Path:
    path = folder / "prod" / "AllTraffic" / "2026" / "12" / "01" / "11" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return folder


def test_records_in_the_window_give_their_rows_and_predictions(tmp_path):
    rows = cells(HELD_OUT[:3])
    inside, late = NOW - timedelta(hours=1), NOW
    early = NOW - timedelta(hours=24, seconds=1)
    folder = write(tmp_path, [csv_call(rows[:2], inside, header=True), csv_call(rows[2:], late)])
    write(folder, [csv_call(rows, early)], "b.jsonl")
    write(folder, [csv_call(rows[:1], WINDOW.since)], "c.jsonl")  # the start is in, the end out
    found = capture.read_capture(folder, SCHEMA, WINDOW)
    assert found.rows == rows[:2] + rows[:1]
    assert found.predictions == [10.5, 10.5, 10.5]
    assert found.counts == {
        "files": 3,
        "records": 4,
        "in_window": 2,
        "used": 2,
        "unreadable": 0,
        "unusable": 0,
    }


def test_json_and_base64_bodies_are_read_like_csv(tmp_path):
    rows = cells(HELD_OUT[:2])
    records = [{n: r[n] for n in NAMES} for r in HELD_OUT[:1]]
    doc = json.dumps({"instances": [*records, rows[1]]})
    out = json.dumps({"predictions": [9.0, 11.0]})
    when = NOW - timedelta(minutes=5)
    json_call = record(doc, out, when, kind="application/json", enc="JSON")
    b64_call = record(",".join(rows[0]), "7.25\n", when, enc="BASE64")
    found = capture.read_capture(write(tmp_path, [json_call, b64_call]), SCHEMA, WINDOW)
    assert found.rows == [rows[0], rows[1], rows[0]]
    assert found.predictions == [9.0, 11.0, 7.25]


def test_bad_lines_and_refused_bodies_are_counted_not_fatal(tmp_path):
    when = NOW - timedelta(minutes=1)
    good = csv_call(cells(HELD_OUT[:1]), when)
    refused = record("1,2", '{"message": "expected 8 columns"}', when)
    mismatched = record(",".join(cells(HELD_OUT[:1])[0]), "1\n2\n", when)
    not_b64 = {**good, "captureData": {**good["captureData"]}}
    not_b64["captureData"]["endpointInput"] = {"data": "@@", "encoding": "BASE64"}
    folder = write(tmp_path, ['{"cut short', good, refused, mismatched, not_b64, {"x": 1}])
    found = capture.read_capture(folder, SCHEMA, WINDOW)
    assert found.counts["records"] == 6
    assert found.counts["unreadable"] == 2  # the cut line and the record without metadata
    assert found.counts["unusable"] == 3
    assert found.counts["used"] == 1 and len(found.rows) == 1


@pytest.mark.parametrize(
    ("since", "until", "hours", "expected"),
    [
        ("", "2026-12-01T12:00:00Z", 24, ("2026-11-30T12:00:00Z", "2026-12-01T12:00:00Z")),
        (
            "2026-12-01",
            "2026-12-01T06:00:00+02:00",
            24,
            ("2026-12-01T00:00:00Z", "2026-12-01T04:00:00Z"),
        ),
        ("", "2026-12-01T12:00:00Z", 1.5, ("2026-12-01T10:30:00Z", "2026-12-01T12:00:00Z")),
    ],
)
def test_the_window_defaults_and_time_zones(since, until, hours, expected):
    window = capture.Window.parse(since, until, hours)
    assert (window.to_dict()["since"], window.to_dict()["until"]) == expected


def test_the_window_ends_now_by_default():
    window = capture.Window.parse()
    assert abs((datetime.now(UTC) - window.until).total_seconds()) < 5
    assert window.until - window.since == timedelta(hours=24)


@pytest.mark.parametrize(
    ("since", "until", "hours", "message"),
    [
        ("yesterday", "", 24, "--since 'yesterday' is not an ISO 8601 time"),
        ("2026-12-02", "2026-12-01", 24, "the window is empty"),
        ("", "", 0, "--window-hours 0 must be positive"),
    ],
)
def test_a_bad_window_is_named(since, until, hours, message):
    with pytest.raises(ModelError, match=message):
        capture.Window.parse(since, until, hours)


def test_live_traffic_drifts_like_a_batch_and_says_where_it_came_from(baseline, tmp_path):  # noqa: F811
    heavier = cells(HELD_OUT, **{w: (lambda v: str(float(v) * 1.6)) for w in WEIGHTS})
    when = NOW - timedelta(hours=2)
    calls = [csv_call(heavier[i : i + 50], when) for i in range(0, len(heavier), 50)]
    result = monitor.monitor_capture(
        write(tmp_path, calls), baseline, SCHEMA, monitor.Thresholds(), WINDOW
    )
    assert result["verdict"] == "drift" and result["max_feature"] in WEIGHTS
    assert result["rows"] == len(HELD_OUT) and result["capture"]["used"] == len(calls)
    same = [csv_call(cells(HELD_OUT), when)]
    calm = monitor.monitor_capture(
        write(tmp_path / "calm", same), baseline, SCHEMA, monitor.Thresholds(), WINDOW
    )
    assert calm["verdict"] == "no_drift"


def test_a_quiet_window_is_no_data_with_a_report(baseline, tmp_path, capsys):  # noqa: F811
    old = csv_call(cells(HELD_OUT[:5]), NOW - timedelta(days=3))
    folder = write(tmp_path / "capture", [old])
    args = ["--capture", str(folder), "--until", "2026-12-01T12:00:00Z"]
    code, out, err = cli(
        capsys, *args, "--baseline", str(baseline), "--output", str(tmp_path / "o")
    )
    assert (code, err) == (0, "")
    report = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert report["verdict"] == "no_data" and report["rows"] == 0
    assert report["capture"]["records"] == 1 and report["capture"]["in_window"] == 0
    assert (
        "no usable captured requests between 2026-11-30T12:00:00Z" in report["prediction"]["reason"]
    )
    assert "Live traffic: 0 rows" in (tmp_path / "o" / "report.md").read_text()
    assert not (tmp_path / "o" / "drift.png").exists()
    assert "drift:verdict=no_data" in out and "capture: 0 of 0 requests" in out


def test_the_cli_judges_captured_predictions_against_the_reference(baseline, tmp_path, capsys):  # noqa: F811
    when = NOW - timedelta(hours=1)
    folder = write(tmp_path / "c", [csv_call(cells(HELD_OUT[:200]), when)])  # all predict 10.5
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(str(5 + i % 10) for i in range(300)))
    args = ["--capture", str(folder), "--until", "2026-12-01T12:00:00Z"]
    args += ["--reference-predictions", str(ref), "--baseline", str(baseline)]
    code, out, err = cli(capsys, *args, "--output", str(tmp_path / "o"))
    assert (code, err) == (0, "")
    report = json.loads((tmp_path / "o" / "drift.json").read_text())
    assert (
        report["prediction"]["status"] == "drift" and report["prediction"]["reference_rows"] == 300
    )
    assert "capture: 1 of 1 requests" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch", "b.csv"], "--capture replaces --batch and --predictions"),
        (["--predictions", "p.txt"], "--capture replaces --batch and --predictions"),
        (["--since", "junk"], "--since 'junk' is not an ISO 8601 time"),
    ],
)
def test_capture_usage_errors_are_one_line(baseline, tmp_path, capsys, extra, message):  # noqa: F811
    code, _, err = cli(capsys, "--capture", str(tmp_path), "--baseline", str(baseline), *extra)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_a_window_without_capture_is_refused(baseline, tmp_path, capsys):  # noqa: F811
    code, _, err = cli(capsys, "--batch", str(tmp_path), "--since", "2026-12-01")
    assert code != 0 and "--since and --until need --capture" in err
