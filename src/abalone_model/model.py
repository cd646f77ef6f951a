"""The model artefact: what training writes, evaluation reads and the server loads.

A model directory (tarred by SageMaker into ``model.tar.gz``) holds three files:

- ``model.ubj``: the XGBoost booster (universal binary JSON), trimmed to the best iteration;
- ``schema.json``: a copy of the feature schema, so the raw -> encoded transformation travels with
  the model rather than with whichever code version happens to serve it;
- ``metadata.json``: encoded feature order, hyperparameters, metrics, xgboost version.

``TrainedModel.predict`` takes the ENCODED matrix (``feature_names`` order) and is built for speed:
up to ``FAST_MAX_ROWS`` rows go through the booster's trees compiled to numpy at load time
(``trees.py``: exact, ~25 µs for one row instead of ~130 µs of XGBoost's fixed per-call cost);
larger batches use ``inplace_predict`` on a C-contiguous float32 array, no DMatrix per call.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from abalone_model.errors import ModelError
from abalone_model.schema import Column, Schema
from abalone_model.trees import CompiledTrees, compile_booster

MODEL_FILE = "model.ubj"
SCHEMA_FILE = "schema.json"
METADATA_FILE = "metadata.json"
TARBALL = "model.tar.gz"
FORMAT_VERSION = 1
MAX_TAR_BYTES = 512 * 1024 * 1024  # a sane ceiling against tar bombs
# Batches up to this many rows use the compiled trees. Measured (best of 300, one thread): the
# default model (288 trees, depth 4) breaks even with XGBoost at ~32 rows, a 400-tree depth-9
# model at ~80, so 16 keeps a margin for both.
FAST_MAX_ROWS = 16


def available_cores() -> int:
    """CPUs this process may run on (affinity/cgroup aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def schema_to_dict(schema: Schema) -> dict[str, Any]:
    """Inverse of ``Schema.from_dict`` (only the keys that are set)."""

    def col(c: Column) -> dict[str, Any]:
        out: dict[str, Any] = {"name": c.name, "type": c.type}
        if c.categories:
            out["categories"] = list(c.categories)
        for key in ("gt", "ge", "lt", "le"):
            value = getattr(c, key)
            if value is not None:
                out[key] = value
        return out

    return {
        "name": schema.name,
        "description": schema.description,
        "target": col(schema.target),
        "features": [col(c) for c in schema.features],
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save(
    model_dir: str | Path, booster: xgb.Booster, schema: Schema, metadata: dict[str, Any]
) -> Path:
    """Write the three artefact files into ``model_dir`` (created if needed); return the dir."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(bytes(booster.save_raw(raw_format="ubj")))
    _write_json(out / SCHEMA_FILE, schema_to_dict(schema))
    meta = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "feature_names": list(schema.encoded_names),
        "target": schema.target.name,
        "xgboost_version": xgb.__version__,
    }
    _write_json(out / METADATA_FILE, meta)
    return out


@dataclass
class TrainedModel:
    """A loaded model: the booster, its schema and metadata, and a fast ``predict``."""

    booster: xgb.Booster
    schema: Schema
    metadata: dict[str, Any] = field(default_factory=dict)
    # the booster's trees as numpy arrays, or None to always use XGBoost (see ``load``)
    trees: CompiledTrees | None = field(default=None, repr=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Encoded column order that ``predict`` expects."""
        return self.schema.encoded_names

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Rings (float64) for an encoded matrix of shape (n, len(feature_names)) or one row."""
        data = np.ascontiguousarray(X, dtype=np.float32)
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.ndim != 2 or data.shape[1] != len(self.feature_names):
            raise ModelError(
                f"predict expects an (n, {len(self.feature_names)}) matrix in the order "
                f"{', '.join(self.feature_names)}; got shape {X.shape}"
            )
        if data.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if self.trees is not None and data.shape[0] <= FAST_MAX_ROWS:
            return self.trees.predict(data).astype(np.float64)
        pred = self.booster.inplace_predict(data, validate_features=False)
        return np.asarray(pred, dtype=np.float64)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {path}: {exc}; re-run training to rebuild the model"
        ) from exc


def load(model_dir: str | Path, nthread: int = 1) -> TrainedModel:
    """Load a model directory for prediction with ``nthread`` OpenMP threads.

    One thread by default: for request-sized batches (1 to ~1,000 rows) OpenMP's fork/join costs
    more than it saves, so servers scale by worker processes (one per core) instead. Pass
    ``available_cores()`` for large offline batches.
    """
    root = Path(model_dir)
    missing = [n for n in (MODEL_FILE, SCHEMA_FILE, METADATA_FILE) if not (root / n).is_file()]
    if missing:
        raise ModelError(
            f"model directory {root} lacks {', '.join(missing)}: "
            "point to the directory (or model.tar.gz) that training wrote"
        )
    schema = Schema.from_dict(_read_json(root / SCHEMA_FILE))
    metadata = _read_json(root / METADATA_FILE)
    if list(metadata.get("feature_names", [])) != list(schema.encoded_names):
        raise ModelError(
            f"{root / METADATA_FILE} feature_names disagree with {root / SCHEMA_FILE}: "
            "the artefact is inconsistent; re-run training"
        )
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray((root / MODEL_FILE).read_bytes()))
    except xgb.core.XGBoostError as exc:
        raise ModelError(f"{root / MODEL_FILE} is not a valid XGBoost model: {exc}") from exc
    booster.set_param({"nthread": max(1, nthread)})
    if booster.num_features() != len(schema.encoded_names):
        raise ModelError(
            f"{root / MODEL_FILE} expects {booster.num_features()} features but the schema "
            f"encodes {len(schema.encoded_names)}; re-run training"
        )
    # None (XGBoost for every batch) for what the compiler does not handle, e.g. categorical splits
    trees = compile_booster(booster)
    return TrainedModel(booster=booster, schema=schema, metadata=metadata, trees=trees)


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Refuse links, devices and any name that would land outside ``dest``."""
    if not (member.isfile() or member.isdir()):
        raise ModelError(f"model tarball member {member.name!r} is not a regular file; refusing it")
    target = (dest / member.name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ModelError(f"model tarball member {member.name!r} escapes the extraction directory")


def extract_tarball(path: str | Path, dest: str | Path) -> Path:
    """Safely extract ``model.tar.gz`` into ``dest`` and return the directory holding model.ubj."""
    src, out = Path(path), Path(dest)
    if not src.is_file():
        raise ModelError(f"model tarball {src} not found: pass the model.tar.gz training produced")
    try:
        with tarfile.open(src, "r:*") as tar:
            members = tar.getmembers()
            if sum(m.size for m in members) > MAX_TAR_BYTES:
                raise ModelError(f"model tarball {src} unpacks to over {MAX_TAR_BYTES} bytes")
            for member in members:
                _check_member(member, out)
            # filter= exists from Python 3.11.4; the member checks above already guard older ones
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(out, members=members, **safe)  # noqa: S202 (members checked above)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"cannot extract model tarball {src}: {exc}") from exc
    found = sorted(out.rglob(MODEL_FILE), key=lambda p: len(p.parts))
    if not found:
        raise ModelError(f"model tarball {src} contains no {MODEL_FILE}")
    return found[0].parent


def load_from_tarball(path: str | Path, nthread: int = 1) -> TrainedModel:
    """Extract ``model.tar.gz`` to a temporary directory, load it fully into memory, clean up."""
    with tempfile.TemporaryDirectory(prefix="abalone-model-") as tmp:
        return load(extract_tarball(path, tmp), nthread=nthread)


def make_tarball(model_dir: str | Path, tar_path: str | Path) -> Path:
    """Pack a model directory the way SageMaker does (files at the root), reproducibly."""
    src, out = Path(model_dir), Path(tar_path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for file in sorted(p for p in src.rglob("*") if p.is_file()):
            tar.add(file, arcname=file.relative_to(src).as_posix(), filter=clean)
    return out
