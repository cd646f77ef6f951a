"""The step-by-step orchestrator (steps/run.py): the order of the steps, the prod approval as the
only door to prod, and the summary written whatever happens."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import config
from mlops.context import Context
from mlops.manifest import Manifest
from mlops.steps import run

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/7"


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Every step replaced by a recorder: what ran, in order, with its stage."""
    seen: list[str] = []

    def record(name: str, result=None):
        def step(_ctx, *args, **_kwargs):
            seen.append(" ".join([name, *(a for a in args if a in ("dev", "prod"))]))
            return result

        return step

    for module, result in [("etl", None), ("train", None), ("evaluate", None), ("gate", [])]:
        monkeypatch.setattr(getattr(run, module), "run", record(module, result))
    monkeypatch.setattr(run.register, "run", record("register", ARN))
    for module in ("deploy", "system_test", "promote"):
        monkeypatch.setattr(getattr(run, module), "run", record(module))
    return seen


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(config.load(ROOT / "pipeline.toml"), None, Manifest(tmp_path / "m.json"))


def test_approved_runs_every_step_in_order_and_prod_after_dev(ctx, calls):
    asked: list[str] = []
    run.run(ctx, "image@sha256:" + "a" * 64, approve=lambda arn: asked.append(arn) or True)
    assert calls == [
        "etl", "train", "evaluate", "gate", "register", "deploy dev", "system_test dev",
        "deploy prod", "system_test prod", "promote",
    ]  # fmt: skip
    assert asked == [ARN]  # the approval is asked once, for the exact package dev tested


def test_no_approval_stops_before_prod_and_says_dev_keeps_serving(ctx, calls, capsys):
    with pytest.raises(run.ApprovalDenied, match=f"prod deployment of {ARN} was not approved"):
        run.run(ctx, "image@sha256:" + "a" * 64, approve=lambda _arn: False)
    assert calls[-2:] == ["deploy dev", "system_test dev"]
    assert not any("prod" in c or c == "promote" for c in calls)
    assert "| total |" in capsys.readouterr().err  # the summary, also when stopped


def test_a_failed_dev_step_never_asks_for_approval(ctx, calls, monkeypatch):
    def failing(*_args, **_kwargs):
        raise run.PipelineError("system tests failed")

    monkeypatch.setattr(run.system_test, "run", failing)
    asked: list[str] = []
    with pytest.raises(run.PipelineError, match="system tests failed"):
        run.run(ctx, "image@sha256:" + "a" * 64, approve=lambda arn: asked.append(arn) or True)
    assert asked == []
    assert "deploy prod" not in calls
