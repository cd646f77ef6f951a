"""Drift monitor on whole batches: baseline, batch layouts, rates, predictions, report, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError
from moto import mock_aws

from abalone_model import __main__ as entry
from abalone_model import drift, drift_report, metrics, monitor
from abalone_model import model as artefact
from abalone_model.features import encode_rows
from abalone_model.schema import DATA_FILE, Schema

SCHEMA = Schema.load()
NAMES = list(SCHEMA.raw_names)
WEIGHTS = [n for n in NAMES if n.endswith("weight")]
with DATA_FILE.open(newline="") as _fh:
    ROWS = list(csv.DictReader(_fh))
TRAIN = [r for i, r in enumerate(ROWS) if i % 3 != 2]
HELD_OUT = [r for i, r in enumerate(ROWS) if i % 3 == 2]


def etl_statistics(rows: list[dict[str, str]]) -> dict:
    """The ETL's statistics.json layout; numpy's inverted_cdf is percentile_approx's definition."""
    stats: dict = {"split": "train", "rows": len(rows), "numeric": {}, "categorical": {}}
    for col in SCHEMA.features:
        if col.is_category:
            counts = {c: sum(r[col.name] == c for r in rows) for c in col.categories}
            freq = {c: n / len(rows) for c, n in counts.items()}
            stats["categorical"][col.name] = {"counts": counts, "frequencies": freq}
            continue
        v = np.array([float(r[col.name]) for r in rows])
        qs = np.quantile(v, drift.LEVELS, method="inverted_cdf")
        quantiles = {
            f"p{round(q * 100):02d}": float(x) for q, x in zip(drift.LEVELS, qs, strict=True)
        }
        moments = {"count": len(v), "mean": v.mean(), "stddev": v.std(ddof=1)}
        stats["numeric"][col.name] = moments | {
            "min": v.min(),
            "max": v.max(),
            "quantiles": quantiles,
        }
    return stats


def write_batch(path: Path, rows: list[list[str]], header: list[str] | None = NAMES) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        if header:
            out.writerow(header)
        out.writerows(rows)
    return path


def cells(rows: list[dict[str, str]], **change) -> list[list[str]]:
    """Raw rows in schema order, with ``change[name](value)`` applied per column."""
    same = lambda v: v  # noqa: E731
    return [[change.get(n, same)(r[n]) for n in NAMES] for r in rows]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "statistics.json"
    path.write_text(json.dumps(etl_statistics(TRAIN)))
    return path


def run(batch: Path, baseline: Path, th=None, predictions=None) -> dict:
    return monitor.monitor(batch, baseline, SCHEMA, th or drift.Thresholds(), predictions)


# --- whole batches ------------------------------------------------------------------------------


def test_held_out_rows_of_the_same_distribution_do_not_drift(baseline, tmp_path):
    result = run(write_batch(tmp_path / "b.csv", cells(HELD_OUT)), baseline)
    assert result["verdict"] == "no_drift" and result["rows"] == len(HELD_OUT)
    assert result["max_score"] < 0.05 and result["max_feature"] in NAMES
    for name, f in result["features"].items():
        assert f["status"] == "ok", name
        assert f["missing_rate"] == 0 and f["out_of_range_rate"] == 0
        assert sum(f["bins"]["batch"]) == pytest.approx(1.0)


def test_shifted_weights_drift_and_are_named(baseline, tmp_path):
    heavier = {n: (lambda v: f"{float(v) * 1.5:.4f}") for n in WEIGHTS}
    result = run(write_batch(tmp_path / "b.csv", cells(HELD_OUT, **heavier)), baseline)
    assert result["verdict"] == "drift"
    assert result["max_feature"] in WEIGHTS
    feats = result["features"]
    assert all(feats[n]["status"] == "drift" for n in WEIGHTS)
    assert all(feats[n]["status"] == "ok" for n in NAMES if n not in WEIGHTS)
    assert result["max_score"] == max(f["psi"] for f in feats.values())


def test_all_infants_drift_on_sex_with_the_psi_by_hand(baseline, tmp_path):
    result = run(write_batch(tmp_path / "b.csv", cells(HELD_OUT, sex=lambda v: "I")), baseline)
    assert result["verdict"] == "drift" and result["max_feature"] == "sex"
    freq = etl_statistics(TRAIN)["categorical"]["sex"]["frequencies"]
    eps = 1e-4  # the documented stand-in for an empty bin
    by_hand = (1 - freq["I"]) * math.log(1 / freq["I"]) + sum(
        (eps - freq[c]) * math.log(eps / freq[c]) for c in ("M", "F")
    )
    assert result["features"]["sex"]["psi"] == pytest.approx(by_hand, rel=1e-9)
    assert all(result["features"][n]["status"] == "ok" for n in NAMES if n != "sex")


def test_both_shifts_name_the_larger_one(baseline, tmp_path):
    shift = {n: (lambda v: f"{float(v) * 1.5:.4f}") for n in WEIGHTS} | {"sex": lambda v: "I"}
    result = run(write_batch(tmp_path / "b.csv", cells(HELD_OUT, **shift)), baseline)
    assert result["verdict"] == "drift" and result["max_feature"] == "sex"
    order = sorted(result["features"], key=lambda n: -result["features"][n]["psi"])
    assert set(order[:5]) == {"sex", *WEIGHTS}


def test_missing_and_out_of_range_values_are_counted_exactly(baseline, tmp_path):
    good = cells(HELD_OUT[:1])[0]
    edit = [
        {"sex": " M ", "length": " 0.5 "},  # surrounding spaces are fine
        {"sex": "", "length": ""},  # missing, missing
        {"sex": "NA", "height": "nan", "shell_weight": "NULL"},  # missing x3
        {"sex": "X", "length": "abc", "diameter": "-0.1"},  # unknown, not a number, <= 0
        {"sex": "m", "height": "2.5", "whole_weight": "inf", "diameter": "0"},  # 4 bad
        {},
        {},
        {},
    ]
    rows = [[e.get(n, v) for n, v in zip(NAMES, good, strict=True)] for e in edit]
    th = drift.Thresholds(missing_max=0.2, out_of_range_max=0.2)
    feats = run(write_batch(tmp_path / "b.csv", rows), baseline, th)["features"]
    counts = {n: (f["missing"], f["out_of_range"]) for n, f in feats.items()}
    assert counts == {
        "sex": (2, 2),
        "length": (1, 1),
        "diameter": (0, 2),
        "height": (1, 1),
        "whole_weight": (0, 1),
        "shucked_weight": (0, 0),
        "viscera_weight": (0, 0),
        "shell_weight": (1, 0),
    }
    assert feats["sex"]["missing_rate"] == 2 / 8 and feats["sex"]["out_of_range_rate"] == 2 / 8
    assert (
        feats["sex"]["status"] == "drift" and "missing_rate 0.2500 > 0.2" in feats["sex"]["reasons"]
    )
    assert feats["length"]["missing_rate"] == 1 / 8 and "missing_rate" not in str(
        feats["length"]["reasons"]
    )
    # the PSI uses the finite values: diameter's -0.1 and 0 land in the lowest bin
    assert feats["diameter"]["bins"]["batch"][0] == pytest.approx(2 / 8)
    assert feats["whole_weight"]["bins"]["batch"][-1] == 0  # inf: out of range, not in the PSI


def test_header_is_optional_any_order_and_the_target_is_ignored(baseline, tmp_path):
    rows = cells(HELD_OUT[:200])
    plain = run(write_batch(tmp_path / "a.csv", rows, header=None), baseline)
    order = ["rings", *NAMES[::-1]]
    shuffled = [["7", *r[::-1]] for r in rows]
    other = run(write_batch(tmp_path / "b.csv", shuffled, header=order), baseline)
    assert other["features"] == plain["features"]
    assert other["ignored_columns"] == ["rings"] and plain["ignored_columns"] == []


def test_a_directory_of_part_files_is_one_batch(baseline, tmp_path):
    parts = tmp_path / "batch"
    parts.mkdir()
    write_batch(parts / "part-0.csv", cells(HELD_OUT[:300]))
    write_batch(parts / "part-1.csv", cells(HELD_OUT[300:]), header=None)
    (parts / "_SUCCESS").write_text("")
    whole = run(write_batch(tmp_path / "all.csv", cells(HELD_OUT)), baseline)
    assert run(parts, baseline)["features"] == whole["features"]


def test_prediction_shift(baseline, tmp_path):
    batch = write_batch(tmp_path / "b.csv", cells(HELD_OUT[:500]))
    reference = np.random.default_rng(3).normal(10, 2, 800)
    same = run(batch, baseline, predictions=(reference[:500], reference))["prediction"]
    assert same["status"] == "ok" and same["psi"] < 0.05
    shifted = run(batch, baseline, predictions=(reference[:500] + 3, reference))
    p = shifted["prediction"]
    assert p["status"] == "drift" and p["psi"] > 1
    assert p["mean_difference"] == pytest.approx(reference[:500].mean() + 3 - reference.mean())
    assert shifted["verdict"] == "drift"  # the features alone do not drift
    assert all(f["status"] == "ok" for f in shifted["features"].values())


def test_reference_predictions_from_the_model_on_the_test_split(tmp_path):
    X = encode_rows(SCHEMA, cells(HELD_OUT))
    y = np.array([float(r["rings"]) for r in HELD_OUT])
    booster = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(X, label=y), 5)
    model = artefact.load(artefact.save(tmp_path / "model", booster, SCHEMA, {}))
    (tmp_path / "test").mkdir()
    header = ",".join([SCHEMA.target.name, *SCHEMA.encoded_names])
    part = tmp_path / "test" / "part-0.csv"
    np.savetxt(part, np.column_stack([y, X]), delimiter=",", header=header, comments="")
    preds = tmp_path / "preds.txt"
    preds.write_text("\n".join(map(str, model.predict(X))))
    argv = ["--model", tmp_path / "model", "--test", tmp_path / "test", "--predictions", preds]
    batch, reference = monitor._predictions(monitor._args(list(map(str, argv))), model)
    np.testing.assert_allclose(np.sort(reference), np.sort(model.predict(X)))
    shift = drift.prediction_shift(batch, reference, drift.Thresholds())
    assert shift["psi"] == pytest.approx(0.0, abs=1e-12) and shift["status"] == "ok"
    assert shift["mean_difference"] == pytest.approx(0.0, abs=1e-6)


# --- the command line ---------------------------------------------------------------------------


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = entry.main(["monitor", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_json_report_and_plot(baseline, tmp_path, capsys):
    heavier = {n: (lambda v: f"{float(v) * 1.5:.4f}") for n in WEIGHTS}
    batch = write_batch(tmp_path / "b.csv", cells(HELD_OUT, **heavier))
    preds, ref = tmp_path / "preds.csv", tmp_path / "ref.csv"
    preds.write_text("\n".join(["11.5"] * len(HELD_OUT)) + "\n")
    ref.write_text("\n".join(str(9 + i % 5) for i in range(300)) + "\n")
    out = tmp_path / "out"
    args = ["--baseline", baseline, "--batch", batch, "--output", out, "--psi-drift", "0.6"]
    code, stdout, _ = cli(capsys, *args, "--predictions", preds, "--reference-predictions", ref)
    assert code == 0 and "drift:verdict=drift" in stdout
    result = json.loads((out / "drift.json").read_text())
    assert set(result) >= {"verdict", "max_score", "max_feature", "features", "prediction"}
    assert result["thresholds"]["psi_drift"] == 0.6 and result["thresholds"]["psi_warn"] == 0.1
    assert {result["features"][n]["status"] for n in WEIGHTS} == {"warn"}  # 0.51-0.57 < 0.6
    assert result["prediction"]["status"] == "drift"  # every prediction above the reference
    md = (out / "report.md").read_text()
    table = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    feats = result["features"]
    worst_first = sorted(
        feats, key=lambda n: (-drift.SEVERITY[feats[n]["status"]], -feats[n]["psi"])
    )
    assert table[1:] == worst_first
    assert "**Verdict: drift**" in md and f"]({drift_report.PLOT_FILE})" in md
    assert (out / drift_report.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("make", "extra", "code", "message"),
    [
        (lambda p: write_batch(p, []), [], 3, "has no data rows"),
        (lambda p: write_batch(p, [], header=["sex", "weight"]), [], 3, "unknown column 'weight'"),
        (lambda p: write_batch(p, [["M", "0.5"]], header=None), [], 3, "2 columns and no header"),
        (lambda p: p.write_text(",".join(NAMES) + "\nM,1,1,1,1,1,1,1\nM,1\n"), [], 3, "line 3"),
        (lambda p: write_batch(p, cells(HELD_OUT[:3])), ["--psi-warn", "0.5"], 64, "--psi-warn"),
        (lambda p: write_batch(p, cells(HELD_OUT[:3])), ["--nope"], 64, "unrecognized"),
        (lambda p: write_batch(p, cells(HELD_OUT[:3])), ["--predictions", "x"], 64, "reference"),
    ],
)
def test_unusable_input_is_one_line_error(baseline, tmp_path, capsys, make, extra, code, message):
    batch = tmp_path / "b.csv"
    make(batch)
    args = ["--baseline", baseline, "--batch", batch, "--output", tmp_path / "o", *extra]
    got, _, err = cli(capsys, *args)
    assert (got, err.count("\n")) == (code, 1) and err.startswith("error: ") and message in err
    assert not (tmp_path / "o").exists()


def test_missing_baseline_and_prediction_count_are_named(baseline, tmp_path, capsys):
    batch = write_batch(tmp_path / "b.csv", cells(HELD_OUT[:3]))
    code, _, err = cli(capsys, "--baseline", tmp_path / "nope.json", "--batch", batch)
    assert code == 2 and err.count("\n") == 1 and "baseline statistics" in err and "ETL" in err
    stats = etl_statistics(TRAIN)
    del stats["numeric"]["height"]
    (tmp_path / "partial.json").write_text(json.dumps(stats))
    code, _, err = cli(capsys, "--baseline", tmp_path / "partial.json", "--batch", batch)
    assert code == 2 and "no usable statistics for 'height'" in err
    (tmp_path / "p.txt").write_text("1\n2\n")
    args = ["--predictions", tmp_path / "p.txt", "--reference-predictions", tmp_path / "p.txt"]
    code, _, err = cli(capsys, "--baseline", baseline, "--batch", batch, *args)
    assert code == 3 and "2 predictions for 3 batch rows" in err


# --- drift as CloudWatch metrics ----------------------------------------------------------------

NS = "MLOps/Drift"
PIPELINE = {"Name": "Pipeline", "Value": "mlops-inference-prod"}


@pytest.fixture
def aws(monkeypatch):
    """moto's CloudWatch in us-east-1, whatever the shell's AWS variables say."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        yield boto3.client("cloudwatch")


class Denied:
    """A CloudWatch client the job's role does not allow to publish."""

    calls = 0

    def put_metric_data(self, **kwargs):
        self.calls += 1
        error = {"Code": "AccessDenied", "Message": "User: arn:aws:sts::1:assumed-role/job\nis not"}
        raise ClientError({"Error": error}, "PutMetricData")


class Untouchable:
    def put_metric_data(self, **kwargs):
        raise AssertionError("published without --metrics-namespace")


def drifted_batch(tmp_path: Path) -> Path:
    heavier = {n: (lambda v: f"{float(v) * 1.5:.4f}") for n in WEIGHTS}
    return write_batch(tmp_path / "b.csv", cells(HELD_OUT, **heavier))


def test_cli_publishes_drift_metrics_to_cloudwatch(baseline, tmp_path, capsys, aws):
    out = tmp_path / "out"
    args = ["--baseline", baseline, "--batch", drifted_batch(tmp_path), "--output", out]
    dims = ["--metrics-dimension", "Pipeline=mlops-inference-prod"]
    code, stdout, err = cli(capsys, *args, "--metrics-namespace", NS, *dims)
    assert code == 0, err
    result = json.loads((out / "drift.json").read_text())
    n = len(NAMES)
    assert f"drift metrics: {1 + 3 * n} published to {NS} (dimensions " in stdout
    assert "Pipeline=mlops-inference-prod" in stdout.splitlines()[-1]

    top = aws.list_metrics(Namespace=NS, MetricName="MaxDriftScore")["Metrics"]
    assert [m["Dimensions"] for m in top] == [[PIPELINE]]
    stats = aws.get_metric_statistics(
        Namespace=NS,
        MetricName="MaxDriftScore",
        Dimensions=[PIPELINE],
        StartTime="2000-01-01T00:00:00Z",
        EndTime="2100-01-01T00:00:00Z",
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in stats] == [pytest.approx(result["max_score"])]

    per_feature = aws.list_metrics(Namespace=NS, MetricName="DriftScore")["Metrics"]
    by_feature = {
        d["Value"]: m["Dimensions"]
        for m in per_feature
        for d in m["Dimensions"]
        if d["Name"] == "Feature"
    }
    assert len(per_feature) == n and set(by_feature) == set(NAMES)
    assert all(PIPELINE in dims for dims in by_feature.values())
    for name in ("OutOfRangeRate", "MissingRate"):
        assert len(aws.list_metrics(Namespace=NS, MetricName=name)["Metrics"]) == n


def test_metric_values_follow_drift_json_and_skip_what_cloudwatch_rejects():
    result = {
        "max_score": None,
        "features": {
            "a": {"psi": 0.3, "missing_rate": 0.5, "out_of_range_rate": 0.0},
            "b": {"psi": float("nan"), "missing_rate": float("inf"), "out_of_range_rate": 0.1},
            "c": {"psi": None},
        },
    }
    data = metrics.metric_data(result, [PIPELINE])
    got = {(d["MetricName"], d["Dimensions"][-1]["Value"]): d["Value"] for d in data}
    assert got == {
        ("DriftScore", "a"): 0.3,
        ("MissingRate", "a"): 0.5,
        ("OutOfRangeRate", "a"): 0.0,
        ("OutOfRangeRate", "b"): 0.1,
    }
    assert {d["Unit"] for d in data} == {"None"}
    assert all(d["Dimensions"][0] == PIPELINE for d in data)
    result["max_score"] = 0.3
    top = metrics.metric_data(result, [PIPELINE])[0]
    assert (top["MetricName"], top["Value"], top["Dimensions"]) == (
        "MaxDriftScore",
        0.3,
        [PIPELINE],
    )


def test_access_denied_is_one_line_and_the_report_is_kept(baseline, tmp_path, capsys, monkeypatch):
    denied = Denied()
    monkeypatch.setattr(metrics, "cloudwatch_client", lambda: denied)
    out = tmp_path / "out"
    args = ["--baseline", baseline, "--batch", drifted_batch(tmp_path), "--output", out]
    code, stdout, err = cli(capsys, *args, "--metrics-namespace", NS)
    assert (code, err.count("\n"), denied.calls) == (2, 1, 1)
    assert err.startswith(f"error: cannot publish drift metrics to CloudWatch namespace {NS}: ")
    assert "AccessDenied: User: arn:aws:sts::1:assumed-role/job is not;" in err
    assert f"grant cloudwatch:PutMetricData on namespace {NS} to the processing job's role" in err
    assert json.loads((out / "drift.json").read_text())["verdict"] == "drift"
    assert (out / "report.md").is_file() and "drift:verdict=drift" in stdout


def test_publish_turns_client_errors_into_model_errors():
    with pytest.raises(metrics.ModelError, match=r"namespace NS: AccessDenied: User") as exc:
        metrics.publish(Denied(), "NS", {"max_score": 0.2, "features": {}}, [])
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics-dimension", "Pipeline"], "'Pipeline': expected Name=Value"),
        (["--metrics-dimension", "=prod"], "'=prod': empty name or value"),
        (["--metrics-dimension", "Pipeline="], "'Pipeline=': empty name or value"),
        (["--metrics-dimension", "Feature=x"], "'Feature=x': Feature is the monitor's own"),
        ([f"--metrics-dimension=D{i}=v" for i in range(30)], "30 given, at most 29"),
        (["--metrics-dimension", "A=1", "--metrics-dimension", "A=2"], "repeated name"),
    ],
)
def test_bad_dimension_is_one_line_usage_error(
    baseline, tmp_path, capsys, monkeypatch, extra, message
):
    monkeypatch.setattr(metrics, "cloudwatch_client", lambda: Untouchable())
    batch = write_batch(tmp_path / "b.csv", cells(HELD_OUT[:3]))
    args = ["--baseline", baseline, "--batch", batch, "--output", tmp_path / "o"]
    code, _, err = cli(capsys, *args, "--metrics-namespace", NS, *extra)
    assert (code, err.count("\n")) == (64, 1) and err.startswith("error: --metrics-dimension")
    assert message in err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_without_namespace_nothing_is_published_and_boto3_not_imported(
    baseline, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` now raises ImportError
    monkeypatch.setattr(metrics, "cloudwatch_client", lambda: Untouchable())
    out = tmp_path / "out"
    args = ["--baseline", baseline, "--batch", drifted_batch(tmp_path), "--output", out]
    code, stdout, err = cli(capsys, *args)
    assert (code, err) == (0, "") and "drift metrics" not in stdout
    assert (out / "drift.json").is_file()
    code, _, err = cli(capsys, *args, "--metrics-dimension", "Pipeline=p")
    assert code == 64 and "--metrics-dimension needs --metrics-namespace" in err


def test_the_monitor_runs_in_a_process_without_boto3(baseline, tmp_path):
    block = "import sys; sys.modules['boto3'] = sys.modules['botocore'] = None"
    run_cli = "from abalone_model.__main__ import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "out"
    args = ["--baseline", baseline, "--batch", drifted_batch(tmp_path), "--output", out]
    done = subprocess.run(
        [sys.executable, "-c", f"{block}; {run_cli}", "monitor", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "") and "drift metrics" not in done.stdout
    assert (out / "drift.json").is_file()


def test_the_client_is_in_the_region_sagemaker_sets(aws, monkeypatch):
    assert metrics.cloudwatch_client().meta.region_name == "us-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # a processing container has both
    assert metrics.cloudwatch_client().meta.region_name == "eu-west-1"
