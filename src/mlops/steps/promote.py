"""Promote: mark the model package Approved once prod serves it and its smoke tests passed."""

from __future__ import annotations

from mlops import github
from mlops.aws import call, log
from mlops.context import Context
from mlops.steps import register


def run(ctx: Context, arn: str) -> None:
    register.describe(ctx, arn)
    call(
        "approve the model package",
        ctx.client("sagemaker").update_model_package,
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription=f"serving prod since run {ctx.manifest.get('run.id', 'n/a')}",
    )
    log(f"promote: {arn} Approved")
    ctx.manifest.update("promote", {"model_package_arn": arn, "status": "Approved"})
    github.summary(f"### Promoted\n`{arn}` is Approved")
