"""Rollback: redeploy an earlier Approved model package (by default the one before the current)."""

from __future__ import annotations

from mlops import github, stack
from mlops.aws import call, log
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import deploy


def previous_approved(ctx: Context, stage: str) -> str:
    """The newest Approved package that is not the one serving now (explicitly sorted)."""
    current = stack.describe(ctx.client("cloudformation"), ctx.config.stack_name(stage)) or {}
    serving = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
    serving_arn = serving.get("ModelPackageArn", "")
    packages = call(
        "list approved model packages",
        ctx.client("sagemaker").list_model_packages,
        ModelPackageGroupName=ctx.account.ModelPackageGroupName,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=50,
    )["ModelPackageSummaryList"]
    for package in packages:
        if package["ModelPackageArn"] != serving_arn:
            return package["ModelPackageArn"]
    raise ConfigError(
        f"no earlier Approved model package than {serving_arn or 'none'} to roll "
        "back to: pass --model-package-arn"
    )


def run(ctx: Context, stage: str, arn: str | None = None) -> dict[str, str]:
    target = arn or previous_approved(ctx, stage)
    log(f"rollback: {stage} to {target}")
    result = deploy.run(ctx, stage, target)
    github.set_output("model-package-arn", target)
    return result
