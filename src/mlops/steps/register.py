"""Register: a model package with its inference spec, metrics and lineage; the registry's record.

A versioned package must be Approved to be deployed at all (CreateModelPackage API reference,
ModelApprovalStatus: "For versioned models, the value of this parameter must be set to Approved to
deploy the model."), so the automated gate approves it for dev; prod's approval is the GitHub
environment's required reviewers. Where a package is in its life is recorded in the registry itself
(ModelLifeCycle: Stage / StageStatus), so rollback can find what really served prod.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from mlops import github
from mlops.aws import call, log
from mlops.context import Context
from mlops.errors import ConfigError


def run(ctx: Context, status: str = "Approved") -> str:
    if status != "Rejected" and not ctx.manifest.get("gate.passed"):
        raise ConfigError("the candidate has not passed the gate: run `mlops gate` first")
    m, cfg, acct = ctx.manifest, ctx.config, ctx.account
    train, etl = m.require("train", "train"), m.require("etl", "etl")
    evaluation_uri = m.require("evaluate.uri", "evaluate")
    rmse = m.require("evaluate.metrics", "evaluate")["regression_metrics"]["rmse"]["value"]
    content_types = ["text/csv", "application/json"]
    lineage = {
        "git_sha": m.get("run.git_sha", "unknown"),
        "run_id": ctx.run_id,
        "image_digest": train["image_digest"],
        "data_sha256": etl["data_sha256"],
        "data_uri": etl["data_uri"],
        "training_job": train["job_name"],
        "test_data_uri": etl["test_raw"],
        "evaluation_uri": evaluation_uri,
        "evaluated_on": m.get("evaluate.where"),  # processing-job, or runner (a reused model)
        "github_run_id": os.environ.get("GITHUB_RUN_ID"),  # where a runner evaluation's log is
        "rmse": f"{rmse:.6f}",
        "etl_output": etl.get("output"),
        "training_key": m.get("reuse.training_key"),  # what a later run may reuse it by
        "code_sha256": m.get("reuse.code_sha256"),
        "reused_from": train.get("reused_from"),  # its model data and ETL came from that package
        "tuning_job": train.get("tuning_job"),  # the best trial of that tuning job
        "hyperparameters": _hyperparameters(train.get("hyperparameters")),
    }
    lineage = {k: v for k, v in lineage.items() if v}  # AWS refuses empty metadata values
    response = call(
        "create the model package",
        ctx.client("sagemaker").create_model_package,
        ModelPackageGroupName=acct.ModelPackageGroupName,
        ModelPackageDescription=f"run {ctx.run_id} ({lineage['git_sha'][:12]})",
        InferenceSpecification={
            "Containers": [{"Image": train["image_uri"], "ModelDataUrl": train["model_data"]}],
            "SupportedContentTypes": content_types,
            "SupportedResponseMIMETypes": content_types,
            "SupportedRealtimeInferenceInstanceTypes": sorted(
                {s.instance_type for s in cfg.stages.values()}
            ),
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}
            }
        },
        ModelApprovalStatus=status,
        CustomerMetadataProperties=lineage,
        ModelLifeCycle={
            "Stage": "registered",
            "StageStatus": "PassedGate" if status == "Approved" else "FailedGate",
            "StageDescription": f"test rmse {rmse:.4f} (run {ctx.run_id})",
        },
    )
    arn = response["ModelPackageArn"]
    version = arn.rsplit("/", 1)[-1]
    log(f"register: {arn} ({status})")
    m.update("register", {"model_package_arn": arn, "version": version, "status": status})
    if status != "Rejected":
        github.set_output("model-package-arn", arn)
        github.summary(f"### Registered\n`{arn}` (version {version}), {status}")
    return arn


def _hyperparameters(values: dict[str, str] | None) -> str:
    """What the model was trained with (a tuned model: static + tuned), as compact JSON; left
    out when over the 256 characters a metadata value may hold (CreateModelPackage,
    CustomerMetadataProperties) — the training job then records them."""
    text = json.dumps(values or {}, sort_keys=True, separators=(",", ":"))
    return text if values and len(text) <= 256 else ""


def set_stage(
    ctx: Context, arn: str, stage: str, status: str, why: str, *, reject: bool = False
) -> None:
    """Record where the package is (ModelLifeCycle); ``reject`` also marks it Rejected.

    A package that has reached prod keeps its prod record when it is (re)deployed or tested in
    dev: rollback finds what served prod by that record.
    """
    if stage == "dev" and not reject:
        current = describe(ctx, arn).get("ModelLifeCycle", {})
        if current.get("Stage") == "prod":
            log(f"registry: {arn} stays prod/{current.get('StageStatus')} (also in dev now)")
            return
    extra: dict[str, Any] = {"ModelApprovalStatus": "Rejected", "ApprovalDescription": why[:1000]}
    call(
        f"record {stage} {status} on {arn}",
        ctx.client("sagemaker").update_model_package,
        ModelPackageArn=arn,
        ModelLifeCycle={"Stage": stage, "StageStatus": status, "StageDescription": why[:1000]},
        **(extra if reject else {}),
    )
    log(f"registry: {arn} {stage} {status}" + (" (Rejected)" if reject else ""))


def describe(ctx: Context, arn: str) -> dict[str, Any]:
    if not arn or ":model-package/" not in arn:
        raise ConfigError(
            f"{arn!r} is not a model package ARN: pass --model-package-arn "
            "(the train job's model-package-arn output)"
        )
    return call(
        f"describe model package {arn}",
        ctx.client("sagemaker").describe_model_package,
        ModelPackageName=arn,
    )


SCAN = 50  # the newest packages searched by promote, rollback and reuse (no paging beyond)


def approved_newest_first(ctx: Context) -> Iterator[dict[str, Any]]:
    """The group's Approved packages, newest first, each described (lazily: a caller that
    stops at the first match describes no more)."""
    packages = call(
        "list approved model packages",
        ctx.client("sagemaker").list_model_packages,
        ModelPackageGroupName=ctx.account.ModelPackageGroupName,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=SCAN,
    )["ModelPackageSummaryList"]
    for summary in packages:  # DescribeModelPackage answers with the ModelPackageArn too
        yield describe(ctx, summary["ModelPackageArn"])
