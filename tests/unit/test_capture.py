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


def _payload(data, kind="text/csv", enc="CSV"):
    return {"observedContentType": kind, "mode": "INPUT", "data": data, "encoding": enc}


def test_a_json_instance_may_leave_features_out_or_null():
    first = dict.fromkeys(NAMES[1:], "1")
    doc = json.dumps({"instances": [first, [None, *NAMES[1:]]]})
    rows = capture.request_rows(_payload(doc, "application/json"), SCHEMA)
    assert rows == [["", *["1"] * (len(NAMES) - 1)], ["", *NAMES[1:]]]
    doc = json.dumps({"instances": [{**first, NAMES[0]: None, NAMES[1]: 2}]})
    assert capture.request_rows(_payload(doc, "application/json"), SCHEMA)[0][:2] == ["", "2"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rows": []}, "not {"),
        ([[1, 2]], "not {"),
        ({"instances": {"a": 1}}, "not {"),
        ({"instances": [[1, 2]]}, "neither a record nor a full list"),
        ({"instances": ["M"]}, "neither a record nor a full list"),
    ],
)
def test_a_json_request_that_is_not_instances_of_full_rows_is_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        capture.request_rows(_payload(json.dumps(doc), "application/json"), SCHEMA)


def test_content_type_parameters_case_and_encoding_case_do_not_matter():
    body = base64.b64encode(json.dumps({"predictions": [1.5]}).encode()).decode()
    payload = _payload(body, "Application/JSON; charset=utf-8", "base64")
    assert capture.response_numbers(payload) == [1.5]


def test_a_payload_without_a_content_type_or_encoding_is_csv_text():
    assert capture.response_numbers({"data": "1.5\n2"}) == [1.5, 2.0]


def test_comma_separated_predictions_are_numbers_too():
    assert capture.response_numbers(_payload("1.5,2.5\n3")) == [1.5, 2.5, 3.0]


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (_payload("@@", enc="BASE64"), ValueError, "undecodable BASE64 body"),
        (_payload(base64.b64encode(b"\xff").decode(), enc="BASE64"), ValueError, "undecodable"),
        (_payload(12), TypeError, "captured data is not text"),
    ],
)
def test_a_payload_that_is_not_text_is_refused(payload, error, message):
    with pytest.raises(error, match=message):
        capture.response_numbers(payload)


def test_a_missing_capture_is_named(tmp_path):
    from abalone_model.errors import InputDataError

    with pytest.raises(InputDataError, match=rf"capture {tmp_path}/none not found: pass the"):
        capture.read_capture(tmp_path / "none", SCHEMA, WINDOW)


def test_one_capture_file_is_read_and_other_files_in_a_folder_are_not(tmp_path):
    rows = cells(HELD_OUT[:1])
    folder = write(tmp_path, [csv_call(rows, NOW - timedelta(hours=1))])
    (folder / "notes.txt").write_text(json.dumps(csv_call(rows, NOW - timedelta(hours=1))))
    assert capture.read_capture(folder, SCHEMA, WINDOW).counts["files"] == 1
    (file,) = folder.rglob("*.jsonl")
    found = capture.read_capture(file, SCHEMA, WINDOW)
    assert found.rows == rows and found.counts["files"] == 1


def test_an_unreadable_file_is_counted_and_blank_lines_are_no_records(tmp_path):
    rows = cells(HELD_OUT[:1])
    folder = write(tmp_path, ["", json.dumps(csv_call(rows, NOW - timedelta(hours=1))), "  "])
    (folder / "bad.jsonl").write_bytes(b"\xff\xfe{")
    found = capture.read_capture(folder, SCHEMA, WINDOW)
    assert found.counts == {"files": 2, "records": 1, "in_window": 1, "used": 1,
                            "unreadable": 1, "unusable": 0}  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        json.dumps({"eventMetadata": {"inferenceTime": "2026-12-01T11:00:00Z"}}),
        json.dumps({"captureData": {}, "eventMetadata": {}}),
        json.dumps({"captureData": {}, "eventMetadata": {"inferenceTime": "noon"}}),
        json.dumps({"captureData": {}, "eventMetadata": {"inferenceTime": 5}}),
        json.dumps([1]),
    ],
)
def test_a_record_without_data_or_a_readable_time_is_unreadable(tmp_path, line):
    found = capture.read_capture(write(tmp_path, [line]), SCHEMA, WINDOW)
    assert (found.counts["records"], found.counts["unreadable"], found.counts["in_window"]) == (
        1,
        1,
        0,
    )


def test_a_record_whose_payload_is_not_an_object_is_unusable_not_fatal(tmp_path):
    bad = csv_call(cells(HELD_OUT[:1]), NOW - timedelta(hours=1))
    bad["captureData"]["endpointInput"] = "M,0.4"
    found = capture.read_capture(write(tmp_path, [bad]), SCHEMA, WINDOW)
    assert (found.counts["in_window"], found.counts["unusable"]) == (1, 1)


def test_a_record_in_the_window_without_rows_or_output_is_unusable(tmp_path):
    when = NOW - timedelta(hours=1)
    no_rows = csv_call([], when, header=True)
    no_output = csv_call(cells(HELD_OUT[:1]), when)
    del no_output["captureData"]["endpointOutput"]
    found = capture.read_capture(write(tmp_path, [no_rows, no_output]), SCHEMA, WINDOW)
    assert (found.counts["in_window"], found.counts["unusable"], found.counts["used"]) == (2, 2, 0)
    assert found.rows == [] and found.predictions == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T06:00:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        (" 2026-12-01T06:00:00Z ", datetime(2026, 12, 1, 6, tzinfo=UTC)),
        ("2026-12-01T08:00:00+02:00", datetime(2026, 12, 1, 6, tzinfo=UTC)),
    ],
)
def test_times_are_utc_whatever_their_form(text, expected):
    moment = capture.parse_time(text, "--since")
    assert moment == expected and moment.tzinfo is UTC


def test_an_unreadable_time_names_the_flag_and_an_example():
    with pytest.raises(ModelError) as refused:
        capture.parse_time("noon", "--until")
    assert str(refused.value).startswith(
        "--until 'noon' is not an ISO 8601 time, e.g. 2026-12-01T06:00:00Z"
    )


def test_a_window_of_no_length_is_refused_with_both_ends():
    with pytest.raises(ModelError) as refused:
        capture.Window.parse("2026-12-01T06:00:00Z", "2026-12-01T06:00:00Z")
    assert str(refused.value).startswith(
        "the window is empty: --since 2026-12-01T06:00:00Z is not before 2026-12-01T06:00:00Z"
    )


def test_negative_hours_are_refused_and_the_until_flag_is_named():
    with pytest.raises(ModelError, match=r"^--window-hours -1\.5 must be positive"):
        capture.Window.parse(hours=-1.5)
    with pytest.raises(ModelError, match=r"^--until 'junk' is not"):
        capture.Window.parse(until="junk")


def test_the_summary_is_the_window_the_counts_and_the_rows():
    found = capture.Captured(rows=[["a"]], predictions=[1.0])
    counts = dict.fromkeys(("files", "records", "in_window", "used", "unreadable", "unusable"), 0)
    assert found.summary(WINDOW) == {
        "since": "2026-11-30T12:00:00Z",
        "until": "2026-12-01T12:00:00Z",
        **counts,
        "rows": 1,
    }


def test_every_unreadable_file_is_counted(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_bytes(b"\xff\xfe{")
    assert capture.read_capture(tmp_path, SCHEMA, WINDOW).counts["unreadable"] == 2


def test_a_window_under_an_hour_is_allowed():
    window = capture.Window.parse(until="2026-12-01T12:00:00Z", hours=0.5)
    assert window.to_dict()["since"] == "2026-12-01T11:30:00Z"
