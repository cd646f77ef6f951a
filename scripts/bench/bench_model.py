"""The benchmark's model and payloads: train once with the project's entrypoint, build request
bodies from the project's data, and time the raw ``TrainedModel.predict`` as the floor to beat.
"""

from __future__ import annotations

import csv
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_wrk import BenchError

from abalone_model.model import load
from abalone_model.schema import DATA_FILE, Schema


def read_data(path: Path = DATA_FILE) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the raw data set (sex, seven measurements, rings)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader), [row for row in reader if row]


def encode(schema: Schema, header: list[str], rows: list[list[str]]) -> np.ndarray:
    """Raw rows -> float32 matrix in the schema's encoded order (one-hot for categories)."""
    index = {name: header.index(name) for name in schema.raw_names}
    out = np.empty((len(rows), len(schema.encoded_names)), dtype=np.float32)
    j = 0
    for col in schema.features:
        values = [row[index[col.name]] for row in rows]
        if col.is_category:
            for cat in col.categories:
                out[:, j] = [v == cat for v in values]
                j += 1
        else:
            out[:, j] = np.asarray(values, dtype=np.float32)
            j += 1
    return out


def write_splits(dest: Path, schema: Schema) -> tuple[Path, Path]:
    """Train/validation channel dirs (encoded CSV with header) from a fixed 85/15 row split."""
    header, rows = read_data()
    names = [schema.target.name, *schema.encoded_names]
    matrix = encode(schema, header, rows)
    target = [row[header.index(schema.target.name)] for row in rows]
    channels = {"train": dest / "train", "validation": dest / "validation"}
    files = {}
    for name, path in channels.items():
        path.mkdir(parents=True)
        files[name] = (path / "part-00000.csv").open("w", newline="", encoding="utf-8")
        csv.writer(files[name]).writerow(names)
    for i, (y, x) in enumerate(zip(target, matrix, strict=True)):
        channel = "validation" if i % 20 < 3 else "train"
        csv.writer(files[channel]).writerow([y, *(f"{v:.6g}" for v in x)])
    for fh in files.values():
        fh.close()
    return channels["train"], channels["validation"]


def train(workdir: Path) -> Path:
    """Run `python -m abalone_model train` on the project's data; return the model dir."""
    train_dir, validation_dir = write_splits(workdir / "data", Schema.load())
    model_dir, config_dir, output_dir = (workdir / n for n in ("model", "config", "output"))
    for d in (model_dir, config_dir, output_dir):
        d.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(train_dir),
        "SM_CHANNEL_VALIDATION": str(validation_dir),
        "SM_MODEL_DIR": str(model_dir),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_OUTPUT_DIR": str(output_dir),
    }
    cmd = [sys.executable, "-m", "abalone_model", "train"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise BenchError(f"training failed ({lines[-1] if lines else proc.returncode})")
    return model_dir


def csv_body(rows: list[list[str]], n_features: int) -> bytes:
    """Request body of raw feature rows (target column dropped), LF-separated."""
    return "\n".join(",".join(row[:n_features]) for row in rows).encode() + b"\n"


def raw_predict_seconds(model_dir: Path, matrix: np.ndarray, repeats: int = 200) -> float:
    """Best-of-``repeats`` wall time of one ``TrainedModel.predict`` call on ``matrix``."""
    model = load(model_dir)
    data = np.ascontiguousarray(matrix, dtype=np.float32)
    model.predict(data)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(data)
        best = min(best, time.perf_counter() - start)
    return best


def post_csv(base_url: str, body: bytes) -> list[float]:
    """POST a CSV body once and return the predictions (raises BenchError on a non-200)."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    except OSError as exc:
        raise BenchError(f"POST {base_url}/invocations failed: {exc}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"POST {base_url}/invocations answered {resp.status}: {text[:200]}")
    try:
        return [float(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise BenchError(f"{base_url}/invocations answered non-numeric CSV: {text[:200]}") from exc
