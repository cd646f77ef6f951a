"""The evaluation gate: each rule as a pure function, the rendered table, and the step's outcome."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops import config
from mlops.context import Context
from mlops.errors import EXIT_GATE, ConfigError, GateFailed
from mlops.manifest import Manifest
from mlops.steps import gate, register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    loaded = config.load(ROOT / "pipeline.toml")
    return dataclasses.replace(
        loaded, max_rmse=2.0, min_improvement_over_baseline=0.1, max_regression_vs_prod=0.05
    )


def evaluation(rmse: float, baseline: float = 3.0) -> dict:
    return {
        "regression_metrics": {"rmse": {"value": rmse}},
        "baseline": {"mean_predictor_rmse": baseline},
    }


def verdicts(results: list[gate.Check]) -> dict[str, bool]:
    return {c.metric: c.passed for c in results}


def test_absolute_ceiling(cfg):
    assert verdicts(gate.checks(cfg, evaluation(2.0)))["rmse"] is True  # at the limit passes
    failed = gate.checks(cfg, evaluation(2.01))[0]
    assert (failed.metric, failed.limit, failed.value, failed.passed) == ("rmse", 2.0, 2.01, False)


def test_must_beat_the_mean_predictor_by_the_margin(cfg):
    # limit = 2.0 * (1 - 0.1) = 1.8
    ok = gate.checks(cfg, evaluation(1.8, baseline=2.0))[1]
    assert ok.metric == "rmse vs mean predictor"
    assert ok.limit == pytest.approx(1.8)
    assert ok.passed
    assert not gate.checks(cfg, evaluation(1.85, baseline=2.0))[1].passed
    assert verdicts(gate.checks(cfg, evaluation(1.85, baseline=2.0)))["rmse"] is True


def test_without_a_prod_model_there_are_two_rules(cfg):
    assert [c.metric for c in gate.checks(cfg, evaluation(1.5))] == [
        "rmse",
        "rmse vs mean predictor",
    ]


def test_may_be_only_a_little_worse_than_prod(cfg):
    # limit = 1.5 * 1.05 = 1.575
    prod = evaluation(1.5)
    within = gate.checks(cfg, evaluation(1.57), prod)
    assert [c.metric for c in within] == ["rmse", "rmse vs mean predictor", "rmse vs prod model"]
    assert within[2].limit == pytest.approx(1.575)
    assert all(c.passed for c in within)
    beyond = gate.checks(cfg, evaluation(1.58), prod)
    assert verdicts(beyond) == {
        "rmse": True,
        "rmse vs mean predictor": True,
        "rmse vs prod model": False,
    }


def test_zero_tolerance_means_not_worse_at_all(cfg):
    strict = dataclasses.replace(cfg, max_regression_vs_prod=0.0)
    assert gate.checks(strict, evaluation(1.5), evaluation(1.5))[2].passed
    assert not gate.checks(strict, evaluation(1.5001), evaluation(1.5))[2].passed


def test_render_is_a_markdown_table(cfg):
    table = gate.render(gate.checks(cfg, evaluation(1.9, baseline=2.0), evaluation(1.5)))
    assert table.split("\n") == [
        "| metric | limit | value | verdict |",
        "|---|---|---|---|",
        "| rmse | ≤ 2.0000 | 1.9000 | pass |",
        "| rmse vs mean predictor | ≤ 1.8000 | 1.9000 | FAIL |",
        "| rmse vs prod model | ≤ 1.5750 | 1.9000 | FAIL |",
    ]


def context(cfg, tmp_path, data: dict) -> Context:
    manifest = Manifest(tmp_path / "run.json", data)
    return Context(cfg, SimpleNamespace(region_name="us-east-1"), manifest, root=tmp_path)


def test_run_records_a_pass(cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    ctx = context(cfg, tmp_path, {"evaluate": {"metrics": evaluation(1.5)}})
    results = gate.run(ctx)
    assert all(c.passed for c in results)
    saved = Manifest.load(tmp_path / "run.json")
    assert saved.require("gate.passed", "gate") is True
    assert [c["metric"] for c in saved.require("gate.checks", "gate")] == [
        "rmse",
        "rmse vs mean predictor",
    ]


def test_run_compares_with_prod_and_records_a_failure_as_rejected(cfg, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rejected: list[str] = []

    def fake_register(ctx, status="PendingManualApproval"):
        rejected.append(status)
        return "arn:aws:sagemaker:us-east-1:1:model-package/g/9"

    monkeypatch.setattr(register, "run", fake_register)
    ctx = context(
        cfg,
        tmp_path,
        {"evaluate": {"metrics": evaluation(1.7), "prod": {"metrics": evaluation(1.5)}}},
    )
    with pytest.raises(GateFailed) as exc:
        gate.run(ctx)
    assert str(exc.value) == (
        "gate failed on rmse vs prod model; candidate recorded as Rejected: "
        "arn:aws:sagemaker:us-east-1:1:model-package/g/9"
    )
    assert exc.value.exit_code == EXIT_GATE
    assert rejected == ["Rejected"]
    assert Manifest.load(tmp_path / "run.json").require("gate.passed", "gate") is False
    assert summary.read_text(encoding="utf-8").startswith("### Gate: FAILED\n| metric |")


def test_run_without_an_evaluation_names_the_step(cfg, tmp_path):
    with pytest.raises(ConfigError, match="run `mlops evaluate` first"):
        gate.run(context(cfg, tmp_path, {}))


# --- every boundary at, just above and just below its threshold ---------------------------------
# Thresholds chosen so each limit is exact in binary floating point: 4.0 * (1 - 0.25) == 3.0 and
# 2.0 * (1 + 0.5) == 3.0; "just above/below" is the next representable float.
ABOVE, BELOW = math.inf, -math.inf


def near(x: float, direction: float) -> float:
    return math.nextafter(x, direction)


@pytest.fixture(scope="module")
def exact(cfg) -> config.Config:
    return dataclasses.replace(
        cfg, max_rmse=3.0, min_improvement_over_baseline=0.25, max_regression_vs_prod=0.5
    )


def one(results: list[gate.Check], metric: str) -> gate.Check:
    (check,) = [c for c in results if c.metric == metric]
    return check


@pytest.mark.parametrize(
    ("rmse", "passed"), [(3.0, True), (near(3.0, ABOVE), False), (near(3.0, BELOW), True)]
)
def test_max_rmse_boundary(exact, rmse, passed):
    check = one(gate.checks(exact, evaluation(rmse, baseline=100.0)), "rmse")
    assert (check.limit, check.value, check.passed) == (3.0, rmse, passed)


@pytest.mark.parametrize(
    ("rmse", "passed"), [(3.0, True), (near(3.0, ABOVE), False), (near(3.0, BELOW), True)]
)
def test_min_improvement_over_baseline_boundary(exact, rmse, passed):
    check = one(gate.checks(exact, evaluation(rmse, baseline=4.0)), "rmse vs mean predictor")
    assert (check.limit, check.value, check.passed) == (3.0, rmse, passed)


@pytest.mark.parametrize(
    ("rmse", "passed"), [(3.0, True), (near(3.0, ABOVE), False), (near(3.0, BELOW), True)]
)
def test_max_regression_vs_prod_boundary(exact, rmse, passed):
    loose = dataclasses.replace(exact, max_rmse=10.0)
    results = gate.checks(loose, evaluation(rmse, baseline=100.0), evaluation(2.0, baseline=1.0))
    check = one(results, "rmse vs prod model")
    assert (check.limit, check.value, check.passed) == (3.0, rmse, passed)
    assert [c.passed for c in results if c.metric != "rmse vs prod model"] == [True, True]


def test_the_baseline_and_prod_limits_scale_with_their_reference(exact):
    # limit = baseline * (1 - margin) and prod * (1 + tolerance): not a fixed offset.
    results = gate.checks(exact, evaluation(1.0, baseline=8.0), evaluation(4.0))
    assert [c.limit for c in results] == [3.0, 6.0, 6.0]


def test_a_failed_rule_alone_fails_the_run(exact, tmp_path, monkeypatch):
    monkeypatch.setattr(register, "run", lambda ctx, status: f"arn:{status}")
    ctx = context(exact, tmp_path, {"evaluate": {"metrics": evaluation(3.5, baseline=100.0)}})
    with pytest.raises(GateFailed, match=r"^gate failed on rmse; candidate recorded as Rejected: "):
        gate.run(ctx)
    checks = Manifest.load(tmp_path / "run.json").require("gate.checks", "gate")
    assert checks[0] == {"metric": "rmse", "limit": 3.0, "value": 3.5, "passed": False}
    assert [c["passed"] for c in checks] == [False, True]


# --- what the step shows: the log, the job summary and the failure message -----------------------
def test_a_pass_is_logged_and_summarised_as_passed(cfg, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    results = gate.run(context(cfg, tmp_path, {"evaluate": {"metrics": evaluation(1.5)}}))
    table = gate.render(results)
    assert table in capsys.readouterr().err
    assert summary.read_text(encoding="utf-8") == f"### Gate: passed\n{table}\n\n"


def test_every_failed_rule_is_named_and_the_context_is_registered(exact, tmp_path, monkeypatch):
    seen: list[object] = []

    def fake_register(ctx, status):
        seen.append(ctx)
        return f"arn:{status}"

    monkeypatch.setattr(register, "run", fake_register)
    candidate, prod = evaluation(3.5, baseline=100.0), evaluation(1.0)
    ctx = context(exact, tmp_path, {"evaluate": {"metrics": candidate, "prod": {"metrics": prod}}})
    with pytest.raises(GateFailed) as info:
        gate.run(ctx)
    assert str(info.value) == (
        "gate failed on rmse, rmse vs prod model; candidate recorded as Rejected: arn:Rejected"
    )
    assert seen == [ctx]
