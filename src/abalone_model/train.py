"""SageMaker training entrypoint: ``python -m abalone_model train``.

Follows the training contract so the same image runs on SageMaker and locally:
hyperparameters from ``$SM_INPUT_CONFIG_DIR/hyperparameters.json`` (all values are strings),
channels ``train`` and ``validation`` (directories of CSV part files written by the ETL), the
model to ``$SM_MODEL_DIR`` and, on any error, the reason to ``$SM_OUTPUT_DIR/failure`` plus a
non-zero exit.

Deterministic: rows are sorted canonically (so part-file order and Spark partitioning do not
matter), the seed and thread count are fixed, so the same data and hyperparameters give a
bit-identical ``model.ubj`` and identical metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from abalone_model import model as artefact
from abalone_model.errors import ModelError
from abalone_model.schema import Schema

OPT_ML = Path("/opt/ml")

# name -> (type, default, lower bound, upper bound, lower bound inclusive?)
# Defaults chosen on VALIDATION RMSE only (mean over five seeded 70/15/15 splits, eta 0.03, with
# the monotone constraint, grid max_depth 3-6 x min_child_weight 5/8/10 x lambda 1/5): the ten best
# lie within 0.002 of each other, so the default is the more regularised runner-up (0.0004 behind).
HYPERPARAMETERS: dict[str, tuple[type, float | int, float, float, bool]] = {
    "num_round": (int, 1000, 1, 100_000, True),
    "early_stopping_rounds": (int, 50, 1, 10_000, True),
    "eta": (float, 0.03, 0.0, 1.0, False),
    "max_depth": (int, 4, 1, 20, True),
    "min_child_weight": (float, 8.0, 0.0, 1e6, True),
    "subsample": (float, 0.8, 0.0, 1.0, False),
    "colsample_bytree": (float, 0.8, 0.0, 1.0, False),
    "lambda": (float, 5.0, 0.0, 1e6, True),
    "alpha": (float, 0.0, 0.0, 1e6, True),
    "gamma": (float, 0.0, 0.0, 1e6, True),
    "seed": (int, 42, 0, 2**31 - 1, True),
    "nthread": (int, 1, 1, 1024, True),
}
# Domain knowledge the model must respect: a heavier shell never means a younger abalone.
MONOTONE = {"shell_weight": 1}
# SageMaker itself may add these (tuning jobs add _tuning_objective_metric, the SDK sagemaker_*).
IGNORED_PREFIXES = ("_", "sagemaker_")


def part_files(split: Path, channel: str) -> list[Path]:
    """CSV part files of a split directory (Spark's _SUCCESS, .crc and hidden files ignored)."""
    if split.is_file():
        return [split]
    if not split.is_dir():
        raise ModelError(f"{channel} data {split} not found: pass a directory of CSV part files")
    files = sorted(
        p
        for p in split.iterdir()
        if p.is_file() and not p.name.startswith(("_", ".")) and p.suffix == ".csv"
    )
    if not files:
        raise ModelError(f"{channel} data {split} holds no .csv part files")
    return files


def _read_part(path: Path, columns: list[str], channel: str) -> list[list[str]]:
    """Rows of one part file, projected onto ``columns`` by header name."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []  # an empty partition
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ModelError(
                f"{channel} file {path} lacks column(s) {', '.join(missing)}; expected a header "
                f"with {', '.join(columns)}"
            )
        index = [header.index(c) for c in columns]
        try:
            return [[row[i] for i in index] for row in reader if row]
        except IndexError:
            raise ModelError(
                f"{channel} file {path} line {reader.line_num}: fewer fields than the header"
            ) from None


def read_split(
    split: str | Path, schema: Schema, channel: str = "data"
) -> tuple[np.ndarray, np.ndarray]:
    """(target float64, encoded features float32) of a split, rows sorted canonically.

    Sorting makes the result independent of part-file order and partitioning, which is what
    makes training bit-for-bit reproducible.
    """
    columns = [schema.target.name, *schema.encoded_names]
    rows = [r for f in part_files(Path(split), channel) for r in _read_part(f, columns, channel)]
    if not rows:
        raise ModelError(f"{channel} data {split} has no rows")
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        bad = next(
            (i, c)
            for i, r in enumerate(rows)
            for c, v in zip(columns, r, strict=True)
            if not _is_number(v)
        )
        raise ModelError(
            f"{channel} data {split}: row {bad[0] + 1} column {bad[1]} is not a number"
        ) from None
    bad_cols = [c for c, ok in zip(columns, np.isfinite(data).all(axis=0), strict=True) if not ok]
    if bad_cols:
        raise ModelError(f"{channel} data {split}: non-finite values in {', '.join(bad_cols)}")
    data = data[np.lexsort(data.T[::-1])]
    return data[:, 0], np.ascontiguousarray(data[:, 1:], dtype=np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_value(name: str, raw: object) -> float | int:
    kind, _, low, high, low_inclusive = HYPERPARAMETERS[name]
    text = str(raw).strip().strip('"').strip()
    try:
        value: float | int = kind(float(text)) if kind is float else int(text)
    except ValueError:
        raise ModelError(
            f"hyperparameter {name}={raw!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    above = value >= low if low_inclusive else value > low
    if not (above and value <= high and np.isfinite(value)):
        bound = f"{'>=' if low_inclusive else '>'} {low:g} and <= {high:g}"
        raise ModelError(f"hyperparameter {name}={raw!r} out of range: must be {bound}")
    return value


def parse_hyperparameters(raw: dict[str, Any]) -> dict[str, float | int]:
    """Typed, validated hyperparameters: defaults overridden by ``raw`` (SageMaker's strings)."""
    if not isinstance(raw, dict):
        raise ModelError("hyperparameters.json must hold a JSON object of name -> value")
    keys = [k for k in raw if not str(k).startswith(IGNORED_PREFIXES)]
    unknown = sorted(k for k in keys if k not in HYPERPARAMETERS)
    if unknown:
        raise ModelError(
            f"unknown hyperparameter(s): {', '.join(unknown)}; known: {', '.join(HYPERPARAMETERS)}"
        )
    params = {name: spec[1] for name, spec in HYPERPARAMETERS.items()}
    params.update({k: _parse_value(k, raw[k]) for k in keys})
    return params


def read_hyperparameters(config_dir: Path) -> dict[str, float | int]:
    """Read ``hyperparameters.json`` from the config dir; a missing file means all defaults."""
    path = config_dir / "hyperparameters.json"
    if not path.is_file():
        return parse_hyperparameters({})
    try:
        raw = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}; it must be a JSON object") from exc
    return parse_hyperparameters(raw)


def booster_params(hp: dict[str, float | int], schema: Schema) -> dict[str, Any]:
    """XGBoost's parameter dict for the typed hyperparameters and the domain constraints."""
    skip = {"num_round", "early_stopping_rounds"}
    monotone = ",".join(str(MONOTONE.get(name, 0)) for name in schema.encoded_names)
    return {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        "monotone_constraints": f"({monotone})",
        **{k: v for k, v in hp.items() if k not in skip},
    }


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - pred) ** 2)))


def fit(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    hp: dict[str, float | int],
    schema: Schema,
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Train with early stopping on validation; return the booster trimmed to its best round."""
    names = list(schema.encoded_names)
    dtrain = xgb.DMatrix(train[1], label=train[0], feature_names=names, nthread=int(hp["nthread"]))
    dval = xgb.DMatrix(validation[1], label=validation[0], feature_names=names)
    booster = xgb.train(
        booster_params(hp, schema),
        dtrain,
        num_boost_round=int(hp["num_round"]),
        evals=[(dtrain, "train"), (dval, "validation")],
        early_stopping_rounds=int(hp["early_stopping_rounds"]),
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster = booster[: best + 1]
    metrics = {
        "best_iteration": best,
        "train_rmse": rmse(train[0], booster.predict(dtrain)),
        "validation_rmse": rmse(validation[0], booster.predict(dval)),
        "n_train": len(train[0]),
        "n_validation": len(validation[0]),
    }
    return booster, metrics


def run(train_dir: Path, validation_dir: Path, model_dir: Path, config_dir: Path) -> dict[str, Any]:
    """Read channels and hyperparameters, train, save the artefact; return the metrics."""
    schema = Schema.load()
    hp = read_hyperparameters(config_dir)
    train = read_split(train_dir, schema, channel="train")
    validation = read_split(validation_dir, schema, channel="validation")
    booster, metrics = fit(train, validation, hp, schema)
    metadata = {
        "hyperparameters": hp,
        "metrics": metrics,
        "train_target_mean": float(np.mean(train[0])),
    }
    artefact.save(model_dir, booster, schema, metadata)
    return metrics


def _paths(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    data = OPT_ML / "input" / "data"
    parser = argparse.ArgumentParser(prog="abalone_model train", description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, default=env("SM_CHANNEL_TRAIN", data / "train"))
    parser.add_argument(
        "--validation", type=Path, default=env("SM_CHANNEL_VALIDATION", data / "validation")
    )
    parser.add_argument("--model-dir", type=Path, default=env("SM_MODEL_DIR", OPT_ML / "model"))
    parser.add_argument(
        "--config-dir", type=Path, default=env("SM_INPUT_CONFIG_DIR", OPT_ML / "input" / "config")
    )
    parser.add_argument("--output-dir", type=Path, default=env("SM_OUTPUT_DIR", OPT_ML / "output"))
    return parser.parse_args(argv)


def write_failure(output_dir: Path, reason: str) -> None:
    """SageMaker shows the content of ``failure`` as the job's FailureReason."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(reason + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"warning: cannot write failure file in {output_dir}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _paths(list(sys.argv[1:] if argv is None else argv))
    start = time.perf_counter()
    try:
        metrics = run(Path(args.train), Path(args.validation), args.model_dir, args.config_dir)
    except Exception as exc:  # every failure must reach the failure file, then one line
        code = exc.exit_code if isinstance(exc, ModelError) else 1
        reason = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())
        write_failure(Path(args.output_dir), reason)
        print(f"error: {reason}", file=sys.stderr)
        return code
    print(f"best_iteration={metrics['best_iteration']}")
    print(f"train:rmse={metrics['train_rmse']:.6f}")
    print(f"validation:rmse={metrics['validation_rmse']:.6f}")
    print(f"training_seconds={time.perf_counter() - start:.3f}")
    print(f"model written to {args.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
