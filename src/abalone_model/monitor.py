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
    reference, stats = load_baseline(baseline_path, schema)
    rows, ignored = read_batch(batch_path, schema)
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
        "ignored_columns": ignored,
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
        plot(result, output / PLOT_FILE)
    except OSError as exc:
        raise ModelError(f"cannot write the drift report to {output}: {exc}") from exc


# --- command line -------------------------------------------------------------------------------


def _args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="abalone_model monitor", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--baseline", type=Path, default=PROCESSING / "baseline" / "statistics.json")
    add("--batch", type=Path, default=PROCESSING / "batch", help="raw CSV file or directory")
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


def _predictions(args: argparse.Namespace, model) -> tuple[np.ndarray, np.ndarray] | None:
    """(batch, reference) predictions, or None when none are given; half a pair is an error."""
    if (args.model is None) != (args.test is None):
        raise UsageError("--model and --test go together (the reference is the model on --test)")
    has_reference = args.reference_predictions is not None or model is not None
    if args.predictions is None and not has_reference:
        return None
    if args.predictions is None or not has_reference:
        raise UsageError(
            "the prediction shift needs --predictions and a reference: "
            "--reference-predictions, or --model with --test"
        )
    batch = read_numbers(args.predictions, "predictions")
    if args.reference_predictions is not None:
        return batch, read_numbers(args.reference_predictions, "reference predictions")
    from abalone_model.train import read_split

    _, X = read_split(args.test, model.schema, channel="test")
    return batch, model.predict(X)


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
    dimensions = _metrics_options(args)
    model = None
    if args.model is not None:
        from abalone_model.evaluate import load_model

        model = load_model(args.model)
    start = time.perf_counter()
    schema = _schema(args.schema, model)
    result = monitor(args.batch, args.baseline, schema, th, _predictions(args, model))
    seconds = time.perf_counter() - start
    write(result, args.output)
    print(f"drift:verdict={result['verdict']}")
    print(f"drift:max_psi={result['max_score']} feature={result['max_feature']}")
    print(f"monitor_seconds={seconds:.3f} rows={result['rows']}")
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
