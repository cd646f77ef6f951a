"""Evaluate: the evaluation entrypoint scores the model on the held-out test split.

A freshly trained model is evaluated by a SageMaker processing job. A reused model (the same
data, code and hyperparameters as a registered package) is, by default, evaluated on this runner
with the same image and the same request ([evaluate] reused_model_on, mlops.container): it only
checks what this run's serving code predicts, and a processing job's instance start-up would be
most of a serving-only change's wait. When a prod endpoint exists, its model is evaluated on the
same test split too, so the gate compares like with like; both jobs run at once, and when prod
serves the very model data of the candidate, its one evaluation stands for both.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mlops import container, github, stack
from mlops.aws import call, console, log, read_json_object, s3_uri, wait_for
from mlops.context import Context
from mlops.errors import PipelineError

BASE = "/opt/ml/processing"


def request(
    ctx: Context, name: str, image: str, model_data: str, test: str, output: str
) -> dict[str, Any]:
    """The CreateProcessingJob request of one evaluation (also what the runner runs)."""
    acct, cfg = ctx.account, ctx.config.evaluate
    return {
        "ProcessingJobName": name,
        "RoleArn": acct.SageMakerExecutionRoleArn,
        "AppSpecification": {
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
        "ProcessingInputs": [
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
        "ProcessingOutputConfig": {
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
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": cfg.get("instance_type", "ml.t3.medium"),
                "VolumeSizeInGB": 10,
                "VolumeKmsKeyId": acct.KmsKeyArn,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": int(cfg.get("max_runtime_seconds", 1800))},
        "Tags": [{"Key": "mlops:run", "Value": ctx.run_id}],
    }


def start(ctx: Context, job: dict[str, Any]) -> None:
    call("create the processing job", ctx.client("sagemaker").create_processing_job, **job)
    log(f"evaluate: processing job {job['ProcessingJobName']}")


def wait(ctx: Context, name: str) -> None:
    sm = ctx.client("sagemaker")
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


def where(ctx: Context, train: dict[str, Any]) -> str:
    """``runner`` for a reused model when configured so (the default), else ``processing-job``."""
    if train.get("reused_from") and ctx.config.evaluate["reused_model_on"] == "runner":
        return "runner"
    return "processing-job"


def execute(ctx: Context, jobs: list[dict[str, Any]], on: str) -> None:
    """Every request on the runner, one after the other; or as processing jobs, all at once."""
    if on == "runner":
        for job in jobs:
            log(f"evaluate: {job['ProcessingJobName']} on this runner")
            container.run_processing(ctx, job)
        return
    for job in jobs:
        start(ctx, job)
    names = [job["ProcessingJobName"] for job in jobs]
    for i, name in enumerate(names):
        try:
            wait(ctx, name)
        except PipelineError:
            for other in names[i + 1 :]:  # no evaluation is left running (and billed) for nothing
                stop(ctx, other)
            raise


def stop(ctx: Context, name: str) -> None:
    """Stop a processing job that may still run; one that already ended is left as it is."""
    try:
        ctx.client("sagemaker").stop_processing_job(ProcessingJobName=name)
        log(f"evaluate: stopped processing job {name}")
    except ClientError as exc:  # ValidationException: it already ended
        log(f"evaluate: {name} not stopped: {exc.response['Error'].get('Message', exc)}")


def _output(job: dict[str, Any]) -> str:
    return job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]


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
    image, model_data = train["image_uri"], train["model_data"]
    candidate = request(ctx, ctx.job_name("evaluate"), image, model_data, test, base + "/candidate")
    jobs = [candidate]
    prod = prod_model_data(ctx)
    same = bool(prod) and prod[1] == model_data  # type: ignore[index]
    if prod and not same:
        name = ctx.job_name("evaluate-prod")
        jobs.append(request(ctx, name, image, prod[1], test, base + "/prod"))
    on = where(ctx, train)
    why = {
        "runner": "a reused model: its new image is checked without an instance start-up",
        "processing-job": "a newly trained model"
        if not train.get("reused_from")
        else '[evaluate] reused_model_on = "processing-job"',
    }[on]
    log(
        f"evaluate: on {'this runner' if on == 'runner' else 'SageMaker processing'} ({why})"
        + ("; prod serves this model data: one evaluation stands for both" if same else "")
    )
    execute(ctx, jobs, on)
    s3 = ctx.client("s3")
    evaluation = read_json_object(s3, _output(candidate) + "/evaluation.json")
    values: dict[str, Any] = {
        "uri": _output(candidate) + "/evaluation.json",
        "output": _output(candidate),
        "metrics": evaluation,
        "where": on,
        "image_uri": image,
    }
    if prod:
        metrics = (
            evaluation if same else read_json_object(s3, _output(jobs[1]) + "/evaluation.json")
        )
        values["prod"] = {"model_package_arn": prod[0], "metrics": metrics, "same_model": same}
    ctx.manifest.update("evaluate", values)
    rmse = evaluation["regression_metrics"]["rmse"]["value"]
    place = "on the runner" if on == "runner" else "by a processing job"
    github.summary(f"### Evaluation\nTest RMSE **{rmse:.4f}**, {place} (`{values['uri']}`)")
    return values
