"""Deploy: the endpoint stack for one stage, serving exactly the model package named.

After CloudFormation reports success, the endpoint itself is checked: SageMaker can roll a
blue/green
update back while the stack says UPDATE_COMPLETE.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from mlops import github, stack
from mlops.aws import call, console, log, s3_uri, wait_for
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.steps import register

TEMPLATE = "cloudformation/endpoint.yaml"


def parameters(ctx: Context, stage: str, arn: str) -> dict[str, str]:
    """Stack parameters: the stage's configuration plus the account's names.

    DeployId changes exactly when something the endpoint serves changes (the package or a setting):
    then the Model and EndpointConfig are replaced (a blue/green update); otherwise "no changes".
    """
    s, acct = ctx.config.stage(stage), ctx.account
    params = {
        "Stage": stage,
        "EndpointName": ctx.config.endpoint_name(stage),
        "ModelPackageArn": arn,
        "ExecutionRoleArn": acct.SageMakerExecutionRoleArn,
        "InstanceType": s.instance_type,
        "InitialInstanceCount": str(s.instance_count),
        "EnableAutoscaling": str(s.autoscaling).lower(),
        "MinCapacity": str(s.min_capacity),
        "MaxCapacity": str(s.max_capacity),
        "TargetInvocationsPerInstance": str(s.target_invocations_per_instance),
        "EnableDataCapture": str(s.capture_sampling_percent > 0).lower(),
        "CaptureSamplingPercentage": str(s.capture_sampling_percent),
        "CaptureS3Uri": s3_uri(acct.CaptureBucket, "capture", stage),
        "KmsKeyArn": acct.KmsKeyArn,
        "DeploymentType": s.deployment_type,
        "CanarySizePercent": str(s.canary_size_percent),
        "WaitIntervalInSeconds": str(s.wait_interval_seconds),
        "TerminationWaitInSeconds": str(s.termination_wait_seconds),
        "LatencyAlarmThresholdMicroseconds": str(s.latency_alarm_microseconds),
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    params["DeployId"] = f"v{arn.rsplit('/', 1)[-1]}-{digest}"
    return params


def check_package(ctx: Context, stage: str, arn: str) -> dict[str, Any]:
    """Only an Approved package can be deployed (AWS refuses the model otherwise); prod only takes
    one that passed dev's system tests or that served prod before (a rollback)."""
    package = register.describe(ctx, arn)
    status = package.get("ModelApprovalStatus")
    if status != "Approved":
        why = package.get("ApprovalDescription") or "it did not pass the gate"
        raise ConfigError(
            f"model package {arn} is {status} ({why}): only an Approved package can be deployed"
        )
    life = package.get("ModelLifeCycle", {})
    where = (life.get("Stage"), life.get("StageStatus"))
    if stage == "prod" and where != ("dev", "Tested") and where[0] != "prod":
        raise ConfigError(
            f"model package {arn} is {where[0] or 'registered'}/{where[1] or '?'}: prod only "
            "takes a package that passed the dev system tests (mlops system-test --stage dev) "
            "or served prod"
        )
    return package


def verify_endpoint(ctx: Context, name: str, config_name: str) -> dict[str, Any]:
    """Wait for InService and check the endpoint runs the config this deploy created."""
    sm = ctx.client("sagemaker")
    desc = wait_for(
        f"endpoint {name}",
        lambda: call("describe the endpoint", sm.describe_endpoint, EndpointName=name),
        lambda d: d["EndpointStatus"],
        done={"InService"},
        failed={"Failed", "OutOfService"},
        link=console(ctx.region, f"sagemaker/home?region={ctx.region}#/endpoints/{name}"),
    ).description
    if desc.get("FailureReason"):
        raise PipelineError(f"endpoint {name}: {desc['FailureReason']}")
    if config_name and desc["EndpointConfigName"] != config_name:
        raise PipelineError(
            f"endpoint {name} serves config {desc['EndpointConfigName']}, not {config_name}: "
            "SageMaker rolled the update back (check the auto-rollback alarms and the endpoint's "
            "CloudWatch logs)"
        )
    return desc


def run(ctx: Context, stage: str, arn: str) -> dict[str, str]:
    check_package(ctx, stage, arn)
    name = ctx.config.stack_name(stage)
    log(f"deploy: {arn} to {stage} (stack {name})")
    outputs = stack.deploy(
        ctx.client("cloudformation"),
        name,
        ctx.root / TEMPLATE,
        parameters(ctx, stage, arn),
        region=ctx.region,
        tags={"mlops:stage": stage},
        role_arn=os.environ.get("MLOPS_STACK_ROLE_ARN", ""),
    )
    endpoint = outputs.get("EndpointName") or ctx.config.endpoint_name(stage)
    verify_endpoint(ctx, endpoint, outputs.get("EndpointConfigName", ""))
    values = {
        "stack": name,
        "endpoint": endpoint,
        "model_package_arn": arn,
        "endpoint_config": outputs.get("EndpointConfigName", ""),
    }
    register.set_stage(ctx, arn, stage, "Deployed", f"endpoint {endpoint}, run {ctx.run_id}")
    ctx.manifest.update(f"deploy_{stage}", values)
    github.set_output("endpoint-name", endpoint)
    github.summary(f"### Deployed to {stage}\nEndpoint `{endpoint}` serves `{arn}`")
    return values
