"""Evaluate: a SageMaker processing job runs the evaluation entrypoint on the held-out test split.

When a prod endpoint exists, its model is evaluated on the same test split too, so the gate compares
like with like.
"""

from __future__ import annotations

from typing import Any

from mlops import github, stack
from mlops.aws import call, console, log, read_json_object, s3_uri, wait_for
from mlops.context import Context

BASE = "/opt/ml/processing"


def processing_job(
    ctx: Context, name: str, image: str, model_data: str, test: str, output: str
) -> dict[str, Any]:
    """Run one evaluation processing job and return its evaluation.json."""
    sm, acct, cfg = ctx.client("sagemaker"), ctx.account, ctx.config.evaluate
    call(
        "create the processing job",
        sm.create_processing_job,
        ProcessingJobName=name,
        RoleArn=acct.SageMakerExecutionRoleArn,
        AppSpecification={
            "ImageUri": image,
            "ContainerArguments": [
                "evaluate",
                "--model",
                f"{BASE}/model",
                "--test",
                f"{BASE}/test",
                "--output",
                f"{BASE}/evaluation",
            ],
        },
        ProcessingInputs=[
            {
                "InputName": "model",
                "S3Input": {
                    "S3Uri": model_data,
                    "LocalPath": f"{BASE}/model",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "test",
                "S3Input": {
                    "S3Uri": test,
                    "LocalPath": f"{BASE}/test",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
        ],
        ProcessingOutputConfig={
            "KmsKeyId": acct.KmsKeyArn,
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {
                        "S3Uri": output,
                        "LocalPath": f"{BASE}/evaluation",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
        },
        ProcessingResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": cfg.get("instance_type", "ml.t3.medium"),
                "VolumeSizeInGB": 10,
                "VolumeKmsKeyId": acct.KmsKeyArn,
            }
        },
        StoppingCondition={"MaxRuntimeInSeconds": int(cfg.get("max_runtime_seconds", 1800))},
        Tags=[{"Key": "mlops:run", "Value": ctx.run_id}],
    )
    log(f"evaluate: processing job {name}")
    wait_for(
        f"processing job {name}",
        lambda: call(
            "describe the processing job", sm.describe_processing_job, ProcessingJobName=name
        ),
        lambda d: d["ProcessingJobStatus"],
        done={"Completed"},
        failed={"Failed", "Stopped"},
        link=console(ctx.region, f"sagemaker/home?region={ctx.region}#/processing-jobs/{name}"),
    )
    return read_json_object(ctx.client("s3"), output.rstrip("/") + "/evaluation.json")


def prod_model_data(ctx: Context) -> tuple[str, str] | None:
    """The model package serving prod (from its stack's parameters) and its model data."""
    current = stack.describe(ctx.client("cloudformation"), ctx.config.stack_name("prod"))
    if not current or not current["StackStatus"].endswith("COMPLETE"):
        return None
    params = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
    arn = params.get("ModelPackageArn")
    if not arn:
        return None
    package = call(
        "describe the prod model package",
        ctx.client("sagemaker").describe_model_package,
        ModelPackageName=arn,
    )
    return arn, package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]


def run(ctx: Context) -> dict[str, Any]:
    train = ctx.manifest.require("train", "train")
    test = ctx.manifest.require("etl.splits.test", "etl")
    base = s3_uri(ctx.account.ArtifactBucket, "runs", ctx.run_id, "evaluation")
    evaluation = processing_job(
        ctx,
        ctx.job_name("evaluate"),
        train["image_uri"],
        train["model_data"],
        test,
        base + "/candidate",
    )
    values: dict[str, Any] = {
        "uri": base + "/candidate/evaluation.json",
        "output": base + "/candidate",
        "metrics": evaluation,
    }
    prod = prod_model_data(ctx)
    if prod:
        arn, model_data = prod
        prod_eval = processing_job(
            ctx, ctx.job_name("evaluate-prod"), train["image_uri"], model_data, test, base + "/prod"
        )
        values["prod"] = {"model_package_arn": arn, "metrics": prod_eval}
    ctx.manifest.update("evaluate", values)
    rmse = evaluation["regression_metrics"]["rmse"]["value"]
    github.summary(f"### Evaluation\nTest RMSE **{rmse:.4f}** (`{values['uri']}`)")
    return values
