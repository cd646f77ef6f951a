"""Run: every step in order, timed, with one summary at the end (also when a step fails)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlops import github
from mlops.aws import log
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.steps import deploy, etl, evaluate, gate, promote, register, system_test, train
from mlops.steps import tune as tuning


class ApprovalDenied(PipelineError):
    """The prod environment approval was not given."""


def run(
    ctx: Context, image_uri: str, approve: Callable[[str], bool], tune: bool = False
) -> dict[str, Any]:
    """etl → train (or tune) → evaluate → gate → register → dev → approval → prod → promote."""
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"\n== {name}")
        start = time.monotonic()
        try:
            return fn()
        finally:
            timings[name] = round(time.monotonic() - start, 2)
            ctx.manifest.update("timings", {name: timings[name]})

    arn = ""
    try:
        stage("etl", lambda: etl.run(ctx))
        stage("train", lambda: (tuning.run if tune else train.run)(ctx, image_uri))
        stage("evaluate", lambda: evaluate.run(ctx))
        stage("gate", lambda: gate.run(ctx))
        arn = stage("register", lambda: register.run(ctx))
        stage("deploy dev", lambda: deploy.run(ctx, "dev", arn))
        stage("system-test dev", lambda: system_test.run(ctx, "dev", arn))
        if not approve(arn):
            raise ApprovalDenied(f"prod deployment of {arn} was not approved; dev keeps serving it")
        stage("deploy prod", lambda: deploy.run(ctx, "prod", arn))
        stage("system-test prod", lambda: system_test.run(ctx, "prod", arn))
        stage("promote", lambda: promote.run(ctx, arn))
    finally:
        text = summary(ctx, timings)
        log("\n" + text)
        github.summary(text)
    return ctx.manifest.data


def _batch(name: str, b: dict) -> list[str]:
    score = b.get("max_score")
    shown = f"{score:.3f} ({b.get('max_feature')})" if isinstance(score, int | float) else "n/a"
    top = ", ".join(b.get("top_features") or []) or "none"
    where = b.get("predictions") or b.get("report_uri") or "n/a"  # live traffic: its report
    return [name, str(b.get("rows")), str(b.get("verdict")), shown, top, f"`{where}`"]


def summary(ctx: Context, timings: dict[str, float]) -> str:
    """Metrics against the gate, the package, endpoints, tests and seconds per stage."""
    m = ctx.manifest
    lines = [f"## Run {m.get('run.id', '?')}"]
    checks = m.get("gate.checks")
    if checks:
        lines.append(gate.render([gate.Check(**c) for c in checks]))
    if m.get("register.model_package_arn"):
        status = m.get("promote.status") or m.get("register.status")
        lines.append(
            f"\nModel package: `{m.get('register.model_package_arn')}` "
            f"(version {m.get('register.version')}, {status})"
        )
    rows = []
    for s in ("dev", "prod"):
        if m.get(f"deploy_{s}.endpoint"):
            passed = m.get(f"system_test_{s}.passed")
            verdict = {True: "passed", False: "FAILED", None: "not run"}[passed]
            rows.append([s, m.get(f"deploy_{s}.endpoint"), verdict])
    if rows:
        lines.append("\n" + github.table(["stage", "endpoint", "system tests"], rows))
    batches = m.get("batches") or {}
    if batches:
        header = ["batch", "rows", "drift", "max PSI (feature)", "top features", "predictions"]
        lines.append("\n" + github.table(header, [_batch(n, b) for n, b in batches.items()]))
    lines.append(
        "\n"
        + github.table(
            ["stage", "seconds"],
            [[k, f"{v:.1f}"] for k, v in timings.items()]
            + [["total", f"{sum(timings.values()):.1f}"]],
        )
    )
    return "\n".join(lines)
