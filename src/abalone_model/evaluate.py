"""SageMaker Processing entrypoint: ``python -m abalone_model evaluate``.

Reads ``model.tar.gz`` and the test split, writes ``evaluation.json`` in SageMaker's model-quality
format (``regression_metrics``: mse, rmse, mae, r2, each with value and standard_deviation), the
mean predictor's RMSE as a baseline, a predicted-vs-actual/residual plot, the global feature
importance chart (mean |TreeSHAP contribution| on the test split, ``explain.py``) and ``report.md``.
Standard deviations come from a seeded bootstrap, so re-running gives identical numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from abalone_model import explain, report
from abalone_model import model as artefact
from abalone_model.errors import ModelError
from abalone_model.train import read_split

PROCESSING = Path("/opt/ml/processing")
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20240601
PLOT_FILE = "prediction_plot.png"
IMPORTANCE_FILE = explain.PLOT_FILE
MAX_BOOTSTRAP_CELLS = 4_000_000  # rows x resamples per chunk: bounds memory on big test sets


def load_model(path: Path) -> artefact.TrainedModel:
    """A model from ``model.tar.gz``, a directory holding it, or an unpacked model directory."""
    if path.is_file():
        return artefact.load_from_tarball(path)
    if (path / artefact.TARBALL).is_file():
        return artefact.load_from_tarball(path / artefact.TARBALL)
    if (path / artefact.MODEL_FILE).is_file():
        return artefact.load(path)
    raise ModelError(
        f"no model at {path}: pass --model pointing to model.tar.gz (or its directory)"
    )


def _metric_rows(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """mse, rmse, mae, r2 for each row of ``y``/``pred`` (shape: resamples x rows)."""
    err = pred - y
    mse = np.mean(err**2, axis=1)
    sst = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - np.sum(err**2, axis=1) / sst, np.nan)
    return {"mse": mse, "rmse": np.sqrt(mse), "mae": np.mean(np.abs(err), axis=1), "r2": r2}


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined values (r2 of a constant target) become null."""
    return float(value) if np.isfinite(value) else None


def regression_metrics(
    y: np.ndarray,
    pred: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, float | None]]:
    """Point estimates on the whole set; standard deviations over bootstrap resamples."""
    point = _metric_rows(y[None, :], pred[None, :])
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_BOOTSTRAP_CELLS // len(y))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, resamples - start), len(y)))
        parts.append(_metric_rows(y[idx], pred[idx]))
    out = {}
    for name, value in point.items():
        boot = np.concatenate([p[name] for p in parts])
        std = np.nanstd(boot, ddof=1) if np.isfinite(boot).sum() > 1 else np.nan
        out[name] = {"value": _finite(value[0]), "standard_deviation": _finite(std)}
    return out


def evaluate(model_path: Path, test_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Score the model on the test split; write evaluation.json, the two plots and report.md."""
    model = load_model(model_path)
    y, X = read_split(test_dir, model.schema, channel="test")
    pred = model.predict(X)
    importance = explain.global_importance(explain.contributions(model, X)[0], model.schema)
    train_mean = model.metadata.get("train_target_mean")
    mean, source = (
        (float(train_mean), "train target mean from the model metadata")
        if train_mean is not None
        else (float(y.mean()), "test set mean: the model metadata has no train target mean")
    )
    evaluation = {
        "regression_metrics": regression_metrics(y, pred),
        "baseline": {
            "mean_predictor_rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
            "mean": mean,
            "mean_source": source,
        },
        "n_rows": len(y),
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED},
        "plot": PLOT_FILE,
        "model": model.metadata,
    }
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(evaluation, indent=2, sort_keys=True) + "\n"
        (output_dir / "evaluation.json").write_text(text, encoding="utf-8")
        report.plot(y, pred, output_dir / PLOT_FILE, target=model.schema.target.name)
        title = f"Global feature importance ({len(y)} test rows)"
        explain.plot_importance(importance, output_dir / IMPORTANCE_FILE, title)
        markdown = report.markdown(evaluation, PLOT_FILE, importance, IMPORTANCE_FILE)
        (output_dir / "report.md").write_text(markdown, encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot write the evaluation to {output_dir}: {exc}") from exc
    return evaluation


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="abalone_model evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", type=Path, default=PROCESSING / "model" / artefact.TARBALL)
    parser.add_argument("--test", type=Path, default=PROCESSING / "test")
    parser.add_argument("--output", type=Path, default=PROCESSING / "evaluation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(list(sys.argv[1:] if argv is None else argv))
    if not args.model.exists() and args.model.name == artefact.TARBALL:
        args.model = args.model.parent  # a directory holding an unpacked model is fine too
    start = time.perf_counter()
    evaluation = evaluate(args.model, args.test, args.output)
    for name, metric in evaluation["regression_metrics"].items():
        print(f"test:{name}={metric['value']}")
    print(f"baseline:rmse={evaluation['baseline']['mean_predictor_rmse']:.6f}")
    print(f"evaluation_seconds={time.perf_counter() - start:.3f}")
    print(f"evaluation written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
