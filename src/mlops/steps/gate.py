"""Gate: the candidate passes only if it is good in absolute terms, beats the mean predictor by a
margin and, when prod serves a model, is not worse than it on the same test set beyond a tolerance.

A candidate that fails is registered as Rejected (the record of what was tried), then the run stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops import github
from mlops.aws import log
from mlops.config import Config
from mlops.context import Context
from mlops.errors import GateFailed


@dataclass(frozen=True)
class Check:
    metric: str
    limit: float
    value: float
    passed: bool

    def row(self) -> list[str]:
        return [
            self.metric,
            f"≤ {self.limit:.4f}",
            f"{self.value:.4f}",
            "pass" if self.passed else "FAIL",
        ]


def rmse_of(evaluation: dict[str, Any]) -> float:
    return float(evaluation["regression_metrics"]["rmse"]["value"])


def checks(
    config: Config, evaluation: dict[str, Any], prod: dict[str, Any] | None = None
) -> list[Check]:
    """Pure function: the gate's verdict per rule, so it is tested without AWS."""
    rmse = rmse_of(evaluation)
    baseline = float(evaluation["baseline"]["mean_predictor_rmse"])
    result = [
        Check("rmse", config.max_rmse, rmse, rmse <= config.max_rmse),
    ]
    limit = baseline * (1 - config.min_improvement_over_baseline)
    result.append(Check("rmse vs mean predictor", limit, rmse, rmse <= limit))
    if prod is not None:
        limit = rmse_of(prod) * (1 + config.max_regression_vs_prod)
        result.append(Check("rmse vs prod model", limit, rmse, rmse <= limit))
    return result


def render(results: list[Check]) -> str:
    return github.table(["metric", "limit", "value", "verdict"], [c.row() for c in results])


def run(ctx: Context) -> list[Check]:
    evaluation = ctx.manifest.require("evaluate.metrics", "evaluate")
    prod = ctx.manifest.get("evaluate.prod.metrics")
    results = checks(ctx.config, evaluation, prod)
    passed = all(c.passed for c in results)
    table = render(results)
    log(table)
    ctx.manifest.update("gate", {"passed": passed, "checks": [c.__dict__ for c in results]})
    github.summary(f"### Gate: {'passed' if passed else 'FAILED'}\n{table}")
    if not passed:
        from mlops.steps import register

        arn = register.run(ctx, status="Rejected")
        failed = ", ".join(c.metric for c in results if not c.passed)
        raise GateFailed(f"gate failed on {failed}; candidate recorded as Rejected: {arn}")
    return results
