"""Train: a SageMaker training job on the ETL splits with the image pinned by digest."""

from __future__ import annotations

import re
from typing import Any

from mlops import github
from mlops.aws import call, console, log, s3_uri, wait_for
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import reuse

DIGEST_URI = re.compile(r"^(?P<repo>[^@\s:]+(?::\d+)?/[^@\s:]+)@(?P<digest>sha256:[0-9a-f]{64})$")
METRICS = [
    {"Name": "train:rmse", "Regex": r"train:rmse=([0-9.]+)"},
    {"Name": "validation:rmse", "Regex": r"validation:rmse=([0-9.]+)"},
]
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def parse_image(uri: str) -> tuple[str, str]:
    """Split REPO@sha256:DIGEST; a tag is refused: dev and prod must run the very same image."""
    match = DIGEST_URI.match(uri or "")
    if not match:
        raise ConfigError(
            f"image {uri!r} is not pinned by digest: pass --image-uri "
            "REPOSITORY_URI@sha256:<64 hex> (the build job's digest output)"
        )
    return match["repo"], match["digest"]


def check_image(ecr: Any, uri: str) -> str:
    """The image must exist in ECR under exactly this digest."""
    repo_uri, digest = parse_image(uri)
    name = repo_uri.split("/", 1)[-1]
    call(
        f"find image {digest[:19]} in ECR repository {name}",
        ecr.describe_images,
        repositoryName=name,
        imageIds=[{"imageDigest": digest}],
    )
    return digest


class LogTail:
    """Prints the job's CloudWatch log lines as they arrive (where the logs exist)."""

    def __init__(self, logs: Any, job: str) -> None:
        self.logs, self.job, self.since, self.seen = logs, job, 0, set()

    def __call__(self, _desc: dict[str, Any]) -> None:
        try:
            page = self.logs.filter_log_events(
                logGroupName=LOG_GROUP, startTime=self.since, logStreamNamePrefix=self.job
            )
        except self.logs.exceptions.ResourceNotFoundException:
            return
        for event in page.get("events", []):
            if event["eventId"] not in self.seen:
                self.seen.add(event["eventId"])
                self.since = max(self.since, event["timestamp"])
                log(f"    | {event['message'].rstrip()}")


def job_definition(ctx: Context, image_uri: str, splits: dict[str, str]) -> dict[str, Any]:
    """What a training job runs on: image, metrics, role, channels, output, resources. A tuning
    job's trials get exactly this (steps/tune.py), so a tuned model is trained as a plain one."""
    acct, train = ctx.account, ctx.config.train
    return {
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": acct.SageMakerExecutionRoleArn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": splits[channel],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in ("train", "validation")
        ],
        "OutputDataConfig": {
            "S3OutputPath": s3_uri(acct.ArtifactBucket, "runs", ctx.run_id, "training"),
            "KmsKeyId": acct.KmsKeyArn,
        },
        "ResourceConfig": {
            "InstanceType": train.get("instance_type", "ml.m5.large"),
            "InstanceCount": int(train.get("instance_count", 1)),
            "VolumeSizeInGB": int(train.get("volume_gb", 10)),
            "VolumeKmsKeyId": acct.KmsKeyArn,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": int(train.get("max_runtime_seconds", 3600))},
    }


def run(ctx: Context, image_uri: str) -> dict[str, Any]:
    parse_image(image_uri)  # refuse a tag before any AWS call
    cfg, sm = ctx.config, ctx.client("sagemaker")
    digest = check_image(ctx.client("ecr"), image_uri)
    splits = ctx.manifest.require("etl.splits", "etl")
    reused = reuse.model_outputs(ctx, image_uri, digest)
    if reused:
        ctx.manifest.update("train", {**reused, "hyperparameters": cfg.hyperparameters})
        github.summary(f"### Training\nReused the model of `{reused['reused_from']}`")
        return reused
    name = ctx.job_name("train")
    call(
        "create the training job",
        sm.create_training_job,
        TrainingJobName=name,
        HyperParameters=cfg.hyperparameters,
        Tags=[{"Key": "mlops:run", "Value": ctx.run_id}],
        **job_definition(ctx, image_uri, splits),
    )
    log(f"train: training job {name}")
    result = wait_for(
        f"training job {name}",
        lambda: call("describe the training job", sm.describe_training_job, TrainingJobName=name),
        lambda d: d["TrainingJobStatus"],
        done={"Completed"},
        failed={"Failed", "Stopped"},
        link=console(ctx.region, f"sagemaker/home?region={ctx.region}#/jobs/{name}"),
        on_poll=LogTail(ctx.client("logs"), name),
    ).description
    values = {
        "job_name": name,
        "image_uri": image_uri,
        "image_digest": digest,
        "model_data": result["ModelArtifacts"]["S3ModelArtifacts"],
        "hyperparameters": cfg.hyperparameters,
    }
    ctx.manifest.update("train", values)
    github.summary(f"### Training\n`{name}` on `{digest[:19]}…` → `{values['model_data']}`")
    return values
