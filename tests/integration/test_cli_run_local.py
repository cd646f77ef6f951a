"""`mlops run --local --approve` (what `make pipeline` runs): end to end through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlops import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        assert cli.main(["run", "--local", "--approve", "--runs-dir", str(runs)]) == 0
    finally:
        os.chdir(cwd)
    return (runs / "latest").resolve()


def test_run_folder_keeps_model_report_and_capture(run_folder):
    manifest = json.loads((run_folder / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True
    assert manifest["promote"]["status"] == "InService"
    assert manifest["system_test_dev"]["passed"] and manifest["system_test_prod"]["passed"]
    evaluation = json.loads((run_folder / "evaluation" / "evaluation.json").read_text())
    assert evaluation["regression_metrics"]["rmse"]["value"] <= 2.15
    assert list(run_folder.glob("s3/*/runs/*/training/*/output/model.tar.gz"))
    captured = list(run_folder.glob("s3/*/capture/prod/*/AllTraffic/*/*/*/*/*.jsonl"))
    assert captured, "prod data capture missing from the run folder"
    record = json.loads(captured[0].read_text().splitlines()[0])
    assert record["captureData"]["endpointInput"]["observedContentType"]
    assert "seconds" in (run_folder / "summary.md").read_text()


def test_every_stage_was_timed(run_folder):
    timings = json.loads((run_folder / "manifest.json").read_text())["timings"]
    assert list(timings) == [  # deploy.yml's jobs, in order (test runs as `make test`)
        "job build-and-push",
        "job train",
        "job deploy-dev",
        "job deploy-prod",
    ]
