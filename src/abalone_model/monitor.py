"""SageMaker Processing entrypoint: ``python -m abalone_model monitor``.

Compares a batch of RAW rows (as clients send them) with the training baseline the ETL wrote
(``baseline/statistics.json``) and writes ``drift.json``, ``report.md`` and ``drift.png``. The
metrics are in ``drift`` (PSI, missing and out-of-range rates), the report in ``drift_report``.
Predictions are optional: the batch's against a reference (the test set's, from a file or from
``--model`` on ``--test``).

Drift is a signal, not a failure: the exit code is 0 either way. Unusable input is an error.
With ``--metrics-namespace`` the signal also goes to CloudWatch (``metrics``) for alarms, after
the report is written: a CloudWatch error then fails the job, but loses no report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from abalone_model import metrics
from abalone_model.batch_csv import read_batch, read_numbers
from abalone_model.capture import Window, read_capture
from abalone_model.drift import (
    EPSILON,
    LEVELS,
    Thresholds,
    feature_drift,
    prediction_shift,
    verdict,
)
from abalone_model.drift_report import PLOT_FILE, markdown, plot
from abalone_model.errors import InputDataError, ModelError
from abalone_model.schema import Schema
from abalone_model.usage import OneLineParser, UsageError

PROCESSING = Path("/opt/ml/processing")


def load_baseline(path: Path, schema: Schema) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """(per raw feature: quantiles p01..p99, or category frequencies; the whole statistics)."""
    file = path / "statistics.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelError(
            f"baseline statistics {file} not found: pass --baseline the statistics.json "
            "the ETL wrote (<etl output>/baseline/statistics.json)"
        )
    try:
        stats = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read baseline {file}: {exc}; re-run the ETL") from exc
    reference: dict[str, list[float]] = {}
    for col in schema.features:
        try:
            if col.is_category:
                freq = stats["categorical"][col.name]["frequencies"]
                reference[col.name] = [float(freq[c]) for c in col.categories]
            else:
                qs = stats["numeric"][col.name]["quantiles"]
                reference[col.name] = [float(qs[f"p{round(q * 100):02d}"]) for q in LEVELS]
        except (KeyError, TypeError, ValueError):
            raise ModelError(
                f"baseline {file} has no usable statistics for {col.name!r}: it was computed "
                "for another schema or is incomplete; re-run the ETL with this schema"
            ) from None
    return reference, stats


def monitor(
    batch_path: Path,
    baseline_path: Path,
    schema: Schema,
    th: Thresholds,
    predictions: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """drift.json's content for a raw batch (and optionally (batch, reference) predictions)."""
    rows, ignored = read_batch(batch_path, schema)
    return judge(rows, baseline_path, schema, th, predictions) | {"ignored_columns": ignored}


def monitor_capture(
    capture_path: Path,
    baseline_path: Path,
    schema: Schema,
    th: Thresholds,
    window: Window,
    reference: np.ndarray | None = None,
) -> dict[str, Any]:
    """drift.json's content for an endpoint's captured traffic in ``window``: the requests judged
    as a batch, the captured predictions against ``reference``. No traffic is ``no_data``."""
    found = read_capture(capture_path, schema, window)
    capture = found.summary(window)
    if not found.rows:
        return _no_data(baseline_path, schema, th, capture)
    predictions = None if reference is None else (np.asarray(found.predictions), reference)
    return judge(found.rows, baseline_path, schema, th, predictions) | {"capture": capture}


def _no_data(path: Path, schema: Schema, th: Thresholds, capture: dict[str, Any]) -> dict[str, Any]:
    _, stats = load_baseline(path, schema)  # a bad baseline is an error even on a quiet day
    why = f"no usable captured requests between {capture['since']} and {capture['until']}"
    return {
        "verdict": "no_data",
        "max_score": None,
        "max_feature": None,
        "features": {},
        "prediction": {"status": "skipped", "reason": why},
        "rows": 0,
        "capture": capture,
        "baseline": {"path": str(path), "split": stats.get("split"), "rows": stats.get("rows")},
        "thresholds": {**asdict(th), "epsilon": EPSILON},
    }


def judge(
    rows: list[list[str]],
    baseline_path: Path,
    schema: Schema,
    th: Thresholds,
    predictions: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """Every feature's drift, the prediction shift and the verdict of raw rows."""
    reference, stats = load_baseline(baseline_path, schema)
    features = {
        col.name: feature_drift(col, [r[j] for r in rows], reference[col.name], th)
        for j, col in enumerate(schema.features)
    }
    if predictions is None:
        shift: dict[str, Any] = {"status": "skipped", "reason": "no predictions given"}
    elif len(predictions[0]) != len(rows):
        raise InputDataError(
            f"{len(predictions[0])} predictions for {len(rows)} batch rows: pass the "
            "predictions of this very batch, one per row"
        )
    else:
        shift = prediction_shift(*predictions, th)
    return {
        **verdict(features, shift),
        "features": features,
        "prediction": shift,
        "rows": len(rows),
        "baseline": {
            "path": str(baseline_path),
            "split": stats.get("split"),
            "rows": stats.get("rows"),
        },
        "thresholds": {**asdict(th), "epsilon": EPSILON},
    }


def write(result: dict[str, Any], output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2) + "\n"
        (output / "drift.json").write_text(text, encoding="utf-8")
        (output / "report.md").write_text(markdown(result), encoding="utf-8")
        if result["features"]:  # no_data has nothing to plot
            plot(result, output / PLOT_FILE)
    except OSError as exc:
        raise ModelError(f"cannot write the drift report to {output}: {exc}") from exc


# --- command line -------------------------------------------------------------------------------


def _args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="abalone_model monitor", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--baseline", type=Path, default=PROCESSING / "baseline" / "statistics.json")
    add("--batch", type=Path, help="raw CSV file or directory (default: /opt/ml/processing/batch)")
    add("--capture", type=Path, help="an endpoint's data capture (JSON Lines) instead of a batch")
    add(
        "--since",
        default="",
        help="with --capture: ISO 8601 start (default: --window-hours before --until)",
    )
    add("--until", default="", help="with --capture: ISO 8601 end, exclusive (default: now)")
    add("--window-hours", type=float, default=24.0, help="with --capture: the window's length")
    add("--schema", type=Path, help="schema.json (default: the model's, else the packaged one)")
    add("--predictions", type=Path, help="the batch's predictions, one per line")
    add("--reference-predictions", type=Path, help="the test set's predictions, one per line")
    add("--model", type=Path, help="model.tar.gz: predicts --test for the reference")
    add("--test", type=Path, help="the ETL's test split (with --model)")
    add("--output", type=Path, default=PROCESSING / "monitor")
    for name, default in asdict(Thresholds()).items():
        add(f"--{name.replace('_', '-')}", type=float, default=default)
    add("--metrics-namespace", help="publish the drift metrics to this CloudWatch namespace")
    add(
        "--metrics-dimension",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a dimension of every metric (repeatable), e.g. Pipeline=mlops-inference-prod",
    )
    return parser.parse_args(argv)


def _metrics_options(args: argparse.Namespace) -> list[dict[str, str]]:
    """The dimensions, checked before any work: a typo must not cost a whole batch's run."""
    if args.metrics_namespace is None:
        if args.metrics_dimension:
            raise UsageError("--metrics-dimension needs --metrics-namespace")
        return []
    metrics.check_namespace(args.metrics_namespace)
    return metrics.parse_dimensions(args.metrics_dimension)


def _check_source(args: argparse.Namespace) -> None:
    """A batch or a capture, not both; the window flags only with a capture."""
    if args.capture is None:
        if args.since or args.until:
            raise UsageError("--since and --until need --capture (a batch has no time window)")
        return
    if args.batch is not None or args.predictions is not None:
        raise UsageError(
            "--capture replaces --batch and --predictions (capture holds both): pass one source"
        )


def _reference(args: argparse.Namespace, model) -> np.ndarray | None:
    """The reference predictions of the prediction shift, or None."""
    if args.reference_predictions is not None:
        return read_numbers(args.reference_predictions, "reference predictions")
    if model is None:
        return None
    from abalone_model.train import read_split

    _, X = read_split(args.test, model.schema, channel="test")
    return model.predict(X)


def _predictions(args: argparse.Namespace, model) -> tuple[np.ndarray, np.ndarray] | None:
    """(batch, reference) predictions, or None when none are given; half a pair is an error."""
    reference = _reference(args, model)
    if args.predictions is None and reference is None:
        return None
    if args.predictions is None or reference is None:
        raise UsageError(
            "the prediction shift needs --predictions and a reference: "
            "--reference-predictions, or --model with --test"
        )
    return read_numbers(args.predictions, "predictions"), reference


def _schema(path: Path | None, model) -> Schema:
    """--schema, else the model's (it travels with the model), else the packaged one."""
    if path is None:
        return model.schema if model is not None else Schema.load()
    try:
        return Schema.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read schema {path}: {exc}; pass --schema a schema.json") from exc


def main(argv: list[str] | None = None) -> int:
    args = _args(list(sys.argv[1:] if argv is None else argv))
    th = Thresholds(args.psi_warn, args.psi_drift, args.missing_max, args.out_of_range_max)
    th.check()
    _check_source(args)
    if (args.model is None) != (args.test is None):
        raise UsageError("--model and --test go together (the reference is the model on --test)")
    window = Window.parse(args.since, args.until, args.window_hours) if args.capture else None
    dimensions = _metrics_options(args)
    model = None
    if args.model is not None:
        from abalone_model.evaluate import load_model

        model = load_model(args.model)
    start = time.perf_counter()
    schema = _schema(args.schema, model)
    if window is not None:
        reference = _reference(args, model)
        result = monitor_capture(args.capture, args.baseline, schema, th, window, reference)
    else:
        batch = args.batch or PROCESSING / "batch"
        result = monitor(batch, args.baseline, schema, th, _predictions(args, model))
    seconds = time.perf_counter() - start
    write(result, args.output)
    print(f"drift:verdict={result['verdict']}")
    print(f"drift:max_psi={result['max_score']} feature={result['max_feature']}")
    print(f"monitor_seconds={seconds:.3f} rows={result['rows']}")
    if "capture" in result:
        c = result["capture"]
        print(
            f"capture: {c['used']} of {c['in_window']} requests in [{c['since']}, {c['until']}) "
            f"used ({c['unusable']} unusable, {c['unreadable']} unreadable, {c['files']} files)"
        )
    print(f"drift report written to {args.output}")
    if args.metrics_namespace is not None:
        ns = args.metrics_namespace
        count = metrics.publish(metrics.cloudwatch_client(), ns, result, dimensions)
        print(
            f"drift metrics: {count} published to {ns} (dimensions {metrics.describe(dimensions)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
