"""Rollback: redeploy a package that really served prod before (by default the newest such)."""

from __future__ import annotations

from mlops import github, stack
from mlops.aws import log
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import deploy, register


def previous_approved(ctx: Context, stage: str) -> str:
    """The newest Approved package, other than the one serving now, whose lifecycle says it served
    prod (InService or Retired there): never one that only reached dev or failed its tests."""
    current = stack.describe(ctx.client("cloudformation"), ctx.config.stack_name(stage)) or {}
    serving = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
    serving_arn = serving.get("ModelPackageArn", "")
    for package in register.approved_newest_first(ctx):
        arn, life = package["ModelPackageArn"], package.get("ModelLifeCycle", {})
        if arn == serving_arn:
            continue
        if life.get("Stage") == "prod" and life.get("StageStatus") in {"InService", "Retired"}:
            return arn
    raise ConfigError(
        f"no earlier package that served prod than {serving_arn or 'none'} to roll "
        "back to: pass --model-package-arn"
    )


def run(ctx: Context, stage: str, arn: str | None = None) -> dict[str, str]:
    target = arn or previous_approved(ctx, stage)
    current = stack.describe(ctx.client("cloudformation"), ctx.config.stack_name(stage)) or {}
    serving = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
    log(f"rollback: {stage} to {target}")
    result = deploy.run(ctx, stage, target)
    replaced = serving.get("ModelPackageArn", "")
    if replaced and replaced != target:  # never a rollback target again
        register.set_stage(ctx, replaced, stage, "RolledBack", f"rolled back to {target}")
    github.set_output("model-package-arn", target)
    return result
