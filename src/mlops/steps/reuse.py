"""Reuse: skip ETL and training when a registered package was trained on the same inputs.

The training key is the data's sha256, the content hash of the training code ([model]
training_code in pipeline.toml) and the hyperparameters. When an Approved package carries the
same key, this run takes its ETL outputs and model data instead of an hour of Glue and training:
a serving-only change then reaches dev in minutes. The run still evaluates the reused model with
its own image (serving code may change predictions), gates, and registers a new package version
with this run's image digest and a lineage naming what was reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlops import github
from mlops.aws import log, sha256_file
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import register


def code_sha256(root: Path, paths: tuple[str, ...]) -> str:
    """One hash over the files (by path and content) that training depends on."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        path = root / rel
        if not path.is_file():
            raise ConfigError(f"[model] training_code: {rel} not found: fix pipeline.toml")
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def training_key(
    ctx: Context, data_sha256: str = "", hyperparameters: dict[str, str] | None = None
) -> dict[str, str]:
    """What decides the model: data (the configured file's, or ``data_sha256`` of the data a
    dispatch named), training code, hyperparameters (the configured ones, or those a tuned model
    was trained with); and one key over them."""
    cfg = ctx.config
    chosen = cfg.hyperparameters if hyperparameters is None else hyperparameters
    parts = {
        "data_sha256": data_sha256 or sha256_file(ctx.root / cfg.data),
        "code_sha256": code_sha256(ctx.root, cfg.training_code),
        "hyperparameters_sha256": hashlib.sha256(
            json.dumps(chosen, sort_keys=True).encode()
        ).hexdigest(),
    }
    parts["training_key"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return parts


def find(ctx: Context, key: str) -> dict[str, Any] | None:
    """The newest Approved package trained with ``key`` (described), if any."""
    for package in register.approved_newest_first(ctx):
        meta = package.get("CustomerMetadataProperties", {})
        if meta.get("training_key") == key and meta.get("etl_output"):
            return package
    return None


def plan(ctx: Context, retrain: bool = False, data_sha256: str = "") -> dict[str, Any] | None:
    """Decide, print why, and record the decision; the reused package when there is one."""
    key = training_key(ctx, data_sha256)
    ctx.manifest.update("reuse", {**key, "from": "", "reason": ""})
    if retrain:
        return _decided(ctx, None, "retraining was asked for (--retrain)")
    found = find(ctx, key["training_key"])
    if found is None:
        return _decided(
            ctx, None, "no Approved package was trained on this data, code and hyperparameters"
        )
    arn = found["ModelPackageArn"]
    return _decided(ctx, found, f"{arn} was trained on the same data, code and hyperparameters")


def _decided(ctx: Context, found: dict[str, Any] | None, reason: str) -> dict[str, Any] | None:
    arn = found["ModelPackageArn"] if found else ""
    ctx.manifest.update("reuse", {"from": arn, "reason": reason})
    verdict = f"reuse its ETL and model: {reason}" if found else f"run ETL and training: {reason}"
    log(f"reuse: {verdict}")
    github.summary(f"### Training\n{verdict[0].upper()}{verdict[1:]}")
    return found


def etl_outputs(found: dict[str, Any]) -> dict[str, Any]:
    """The reused package's ETL record, as the etl step would have written it."""
    meta = found["CustomerMetadataProperties"]
    output = meta["etl_output"]
    return {
        "reused_from": found["ModelPackageArn"],
        "data_uri": meta["data_uri"],
        "data_sha256": meta["data_sha256"],
        "output": output,
        "splits": {name: output + name + "/" for name in ("train", "validation", "test")},
        "test_raw": meta["test_data_uri"],
        "statistics": output + "baseline/statistics.json",
        "row_counts": {},
    }


def model_outputs(ctx: Context, image_uri: str, digest: str) -> dict[str, Any] | None:
    """This run's training record from the reused package (its model data, this run's image)."""
    arn = ctx.manifest.get("etl.reused_from")
    if not arn:
        return None
    found = register.describe(ctx, arn)
    container = found["InferenceSpecification"]["Containers"][0]
    meta = found["CustomerMetadataProperties"]
    log(f"train: reusing the model of {arn} ({meta.get('training_job', '?')})")
    return {
        "reused_from": arn,
        "job_name": meta.get("training_job", ""),
        "model_data": container["ModelDataUrl"],
        "image_uri": image_uri,
        "image_digest": digest,
    }
