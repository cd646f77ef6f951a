"""Promote: record in the registry that the package serves prod, and retire the one it replaced.

The package is Approved already (AWS deploys nothing else); what promote adds is ModelLifeCycle
Stage "prod" / StageStatus "InService", which rollback reads to find what really served prod.
"""

from __future__ import annotations

from mlops import github
from mlops.aws import log
from mlops.context import Context
from mlops.steps import register


def serving_prod(ctx: Context, exclude: str = "") -> list[str]:
    """Approved packages whose lifecycle says InService in prod, newest first."""
    found = []
    for package in register.approved_newest_first(ctx):
        life = package.get("ModelLifeCycle", {})
        if package["ModelPackageArn"] != exclude and (
            life.get("Stage"),
            life.get("StageStatus"),
        ) == ("prod", "InService"):
            found.append(package["ModelPackageArn"])
    return found


def run(ctx: Context, arn: str) -> None:
    register.describe(ctx, arn)
    run_id = ctx.manifest.get("run.id", "n/a")
    for previous in serving_prod(ctx, exclude=arn):
        register.set_stage(ctx, previous, "prod", "Retired", f"replaced by {arn} (run {run_id})")
    register.set_stage(ctx, arn, "prod", "InService", f"serving prod since run {run_id}")
    log(f"promote: {arn} serves prod")
    ctx.manifest.update("promote", {"model_package_arn": arn, "status": "InService"})
    github.summary(f"### Promoted\n`{arn}` serves prod (ModelLifeCycle prod/InService)")
