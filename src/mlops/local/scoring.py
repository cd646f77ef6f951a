"""The end of `make pipeline`: prod's batch inference pipeline scores two batches for real.

The held-out raw test split (the data the model never saw in training: no drift expected) and a
shifted copy of it (every numeric feature x1.6: drift expected), each through
``mlops inference run`` (upload, StartPipelineExecution, wait), both at once as two arrivals
would run on AWS. The results land in the run folder under ``inference/<batch>/`` (predictions,
drift report, explanations) and a line each in the run summary. Beside them, the capture
monitor judges the last hour of prod's data capture (``mlops monitor``), as its schedule would.
"""

from __future__ import annotations

import csv
import io
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops.aws import download_prefix, log
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.steps import inference, monitor, register

SHIFT = 1.6
STAGE = "prod"
LIVE = "live-traffic"  # prod's data capture (the system tests' requests), by the capture monitor


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _features(ctx: Context, arn: str) -> tuple[list[str], list[list[str]]]:
    """The package's raw test split as clients send it: the ETL writes the target first, then
    the raw features (test_raw/, in Spark part files, each with its header)."""
    uri = register.describe(ctx, arn)["CustomerMetadataProperties"]["test_data_uri"]
    header: list[str] = []
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="mlops-scoring-") as tmp:
        for part in sorted(download_prefix(ctx.client("s3"), uri, Path(tmp)).glob("*.csv")):
            lines = list(csv.reader(io.StringIO(part.read_text(encoding="utf-8"))))
            if lines:
                header = lines[0][1:]
                rows += [line[1:] for line in lines[1:] if line]
    if not rows:
        raise PipelineError(f"no test rows under {uri}: the ETL wrote an empty test split")
    return header, rows


def _shifted(rows: list[list[str]]) -> list[list[str]]:
    """Every numeric column times SHIFT; categories as they are."""
    numeric = [all(_number(r[j]) is not None for r in rows) for j in range(len(rows[0]))]
    return [
        [f"{float(v) * SHIFT:.4f}" if numeric[j] else v for j, v in enumerate(row)] for row in rows
    ]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def score_batches(ctx: Context, run_dir: Path) -> dict[str, Any]:
    """Both batches through prod's pipeline; each one's result in the manifest (``batches``)."""
    arn = ctx.manifest.get("inference.model_package_arn")
    if not arn:
        log("scoring: skipped: no batch inference pipeline was upserted in this run")
        return {}
    header, rows = _features(ctx, arn)
    folder = run_dir / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "held-out-test": _write(folder / "held-out-test.csv", header, rows),
        "shifted-test": _write(folder / "shifted-test.csv", header, _shifted(rows)),
    }
    log(f"\n== batch scoring: {', '.join(files)} through {inference.pipeline_name(ctx, STAGE)}")
    live = monitor.captures(ctx, STAGE)
    if live:
        name = monitor.pipeline_name(ctx, STAGE)
        log(f"== live drift: the last hour of {STAGE}'s data capture through {name}")
    with ThreadPoolExecutor(max_workers=len(files) + 1) as pool:
        runs = pool.map(lambda path: inference.run(ctx, STAGE, str(path)), files.values())
        watched = pool.submit(monitor.run, ctx, STAGE, monitor.window("1h")) if live else None
        found = dict(zip(files, runs, strict=True))
        if watched is not None:  # the system tests' traffic to prod
            found[LIVE] = watched.result()
    s3 = ctx.client("s3")
    for name, result in found.items():
        where = result.get("report_uri") or result.get("predictions")  # none: nothing captured
        if where:
            download_prefix(s3, where.rsplit("/", 2)[0] + "/", run_dir / "inference" / name)
        ctx.manifest.update("batches", {name: {k: v for k, v in result.items() if k != "report"}})
    return found
