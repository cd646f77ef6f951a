"""Batch inference: a SageMaker Pipeline (Predict, Monitor, Explain) per stage, and its runs.

``upsert`` points a stage's pipeline at the exact package the stage serves (its endpoint stack's,
never "latest"): a Model from it, the definition compiled by the SDK's own venv (a subprocess),
then Create/UpdatePipeline with the package's values as the parameters' defaults (an execution
started by the EventBridge rule on ``incoming/`` names only its input). The values also go to
``s3://<ArtifactBucket>/inference/<stage>/parameters.json`` for ``run``, which starts one
execution and waits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops import github, stack
from mlops.aws import call, log, read_json_object, s3_uri, split_s3, upload_file, wait_for
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import deploy, monitor
from mlops.steps.inference_compile import compile_definitions

ROLE_ENV = "MLOPS_INFERENCE_ROLE_ARN"
ROLE_OUTPUT = "InferencePipelineRoleArn"
# Keys of mlops.inference_definition.DEFAULTS that the config may set (ctx.config.inference)
INSTANCE_KEYS = tuple(
    f"{j}_instance_{k}" for j in ("transform", "processing") for k in ("type", "count")
)


def pipeline_name(ctx: Context, stage: str) -> str:
    return f"{ctx.config.project}-inference-{stage}"


def parameters_uri(ctx: Context, stage: str) -> str:
    return s3_uri(ctx.account.ArtifactBucket, "inference", stage, "parameters.json")


def _exists(what: str, fn: Any, **kwargs: Any) -> bool:
    """True when a describe call finds the resource; any other refusal stays an error."""

    def probe() -> bool:
        try:
            fn(**kwargs)
            return True
        except ClientError as exc:
            err = exc.response.get("Error", {})
            text = f"{err.get('Code', '')} {err.get('Message', '')}".lower()
            if any(s in text for s in ("404", "nosuchkey", "not found", "not find", "not exist")):
                return False
            raise

    return bool(call(what, probe))


def serving_package(ctx: Context, stage: str) -> str:
    """The package the stage's endpoint stack serves (its ModelPackageArn parameter)."""
    name = ctx.config.stack_name(stage)
    found = stack.describe(ctx.client("cloudformation"), name) or {}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in found.get("Parameters", [])}
    if not params.get("ModelPackageArn"):
        raise ConfigError(f"stack {name} serves no package: deploy it or pass --model-package-arn")
    return params["ModelPackageArn"]


def pipeline_role(ctx: Context, stage: str) -> str:
    """The role SageMaker Pipelines acts as: the stage's inference stack output (the bootstrap
    deploys cloudformation/inference.yaml per [inference] stages), else the environment."""
    if role := os.environ.get(ROLE_ENV, ""):
        return role
    name = ctx.config.inference_stack_name(stage)
    role = stack.outputs(stack.describe(ctx.client("cloudformation"), name) or {}).get(ROLE_OUTPUT)
    if not role:
        raise ConfigError(
            f"no inference pipeline role for {stage}: stack {name} is missing or has no "
            f"{ROLE_OUTPUT} output (add {stage} to [inference] stages in pipeline.toml and run "
            f"scripts/bootstrap again, or set {ROLE_ENV})"
        )
    return str(role)


def model_name(ctx: Context, arn: str) -> str:
    return f"{ctx.config.project}-batch-v{arn.rsplit('/', 1)[-1]}"


def ensure_model(ctx: Context, arn: str) -> str:
    """The SageMaker Model the transform runs: one per package version, kept when it exists."""
    name, sm = model_name(ctx, arn), ctx.client("sagemaker")
    if _exists(f"describe model {name}", sm.describe_model, ModelName=name):
        log(f"inference: model {name} exists (kept)")
        return name
    call(
        f"create model {name}",
        sm.create_model,
        ModelName=name,
        ExecutionRoleArn=ctx.account.SageMakerExecutionRoleArn,
        PrimaryContainer={"ModelPackageName": arn},  # as endpoint.yaml's Model has it
    )
    log(f"inference: model {name} created from {arn}")
    return name


def metrics_namespace(ctx: Context) -> str:
    """Where the Monitor step publishes (inference.yaml's DriftAlarm and the execution role's
    cloudwatch:namespace condition in bootstrap.yaml name the same)."""
    return f"{ctx.config.project}/inference"


def definition_config(ctx: Context, stage: str) -> dict[str, Any]:
    """What the compile needs: the jobs' role, the region, the configured instance types and the
    drift metrics' namespace and Pipeline dimension."""
    configured = ctx.config.inference
    cfg = {"role_arn": ctx.account.SageMakerExecutionRoleArn, "region": ctx.region}
    cfg |= {
        "metrics_namespace": metrics_namespace(ctx),
        "metrics_pipeline": pipeline_name(ctx, stage),
    }
    return cfg | {k: configured[k] for k in INSTANCE_KEYS}


def execution_parameters(ctx: Context, stage: str, package: dict, model: str) -> dict[str, str]:
    """The values every execution gets (all but InputDataUri), from the package's own record."""
    arn = package["ModelPackageArn"]
    container = package["InferenceSpecification"]["Containers"][0]
    etl_output = package.get("CustomerMetadataProperties", {}).get("etl_output", "")
    if not etl_output:
        raise ConfigError(
            f"model package {arn} records no etl_output (baseline and test split): "
            "register a package with this version of mlops"
        )
    etl_output = etl_output.rstrip("/") + "/"
    return {
        "ModelName": model,
        "ModelDataUri": container["ModelDataUrl"],
        "ImageUri": container["Image"],
        "BaselineUri": etl_output + "baseline/",
        "TestDataUri": etl_output + "test/",
        "OutputPrefix": s3_uri(ctx.account.ArtifactBucket, "inference", stage, "runs"),
    }


def with_defaults(definition: str, values: dict[str, str]) -> str:
    """The package's values as the parameters' defaults: an execution the EventBridge rule or
    the schedule starts names only InputDataUri and OutputPrefix (their targets are static)."""
    parsed = json.loads(definition)
    for parameter in parsed.get("Parameters", []):
        if parameter["Name"] in values:
            parameter["DefaultValue"] = values[parameter["Name"]]
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def put_pipeline(
    ctx: Context,
    stage: str,
    definition: str,
    role: str,
    name: str = "",
    what: str = "batch inference",
) -> str:
    """CreatePipeline the first time, UpdatePipeline after: one pipeline per stage and kind."""
    sm, name = ctx.client("sagemaker"), name or pipeline_name(ctx, stage)
    kwargs: dict[str, Any] = {"PipelineName": name, "PipelineDefinition": definition}
    kwargs |= {"RoleArn": role, "PipelineDescription": f"{what} for {stage}"}
    if _exists(f"describe pipeline {name}", sm.describe_pipeline, PipelineName=name):
        action, fn = "updated", sm.update_pipeline
    else:
        action, fn = "created", sm.create_pipeline
        kwargs["Tags"] = [{"Key": "mlops:stage", "Value": stage}]
    arn = call(f"{action[:-1]} pipeline {name}", fn, **kwargs)["PipelineArn"]
    log(f"inference: pipeline {name} {action}")
    return str(arn)


def upsert(ctx: Context, stage: str, arn: str | None = None) -> dict[str, Any]:
    """Everything is checked (package, role, lineage) before anything is created or changed."""
    arn = arn or serving_package(ctx, stage)
    package = {**deploy.check_package(ctx, stage, arn), "ModelPackageArn": arn}
    role = pipeline_role(ctx, stage)
    params = execution_parameters(ctx, stage, package, model_name(ctx, arn))
    ensure_model(ctx, arn)
    started, cfg = time.monotonic(), definition_config(ctx, stage)
    live = [monitor.definition_config(ctx, stage, cfg)] if monitor.captures(ctx, stage) else []
    definitions, cached = compile_definitions(ctx.root, [cfg, *live])
    how = f"{cached} reused (same config, compiler and SDK), {len(definitions) - cached} compiled"
    log(f"inference: definitions {how} in {time.monotonic() - started:.1f}s")
    pipeline_arn = put_pipeline(ctx, stage, with_defaults(definitions[0], params), role)
    if live:  # the live-drift pipeline, on the same package (cloudformation/monitor.yaml starts it)
        live_defaults = with_defaults(definitions[1], monitor.defaults(ctx, stage, params))
        put_pipeline(
            ctx, stage, live_defaults, role, monitor.pipeline_name(ctx, stage), "live drift"
        )
    uri = parameters_uri(ctx, stage)
    bucket, key = split_s3(uri)
    body = json.dumps(params, indent=2).encode()
    call(f"write {uri}", ctx.client("s3").put_object, Bucket=bucket, Key=key, Body=body)
    log(f"inference: execution parameters written to {uri}")
    values = {"stage": stage, "pipeline": pipeline_name(ctx, stage), "pipeline_arn": pipeline_arn}
    values |= {"model_package_arn": arn, "parameters_uri": uri, "parameters": params}
    ctx.manifest.update("inference", values)
    github.set_output("pipeline-arn", pipeline_arn)
    github.summary(
        f"### Batch inference pipeline ({stage})\n`{values['pipeline']}` runs `{arn}` "
        f"(model `{params['ModelName']}`); parameters in `{uri}`"
    )
    return values


# --- run ------------------------------------------------------------------------------------
def input_uri(ctx: Context, source: str) -> str:
    """An s3:// batch as is; a local file uploaded under batches/ (not incoming/: there the
    EventBridge rule would start a second execution for the same upload)."""
    if source.startswith("s3://"):
        split_s3(source)
        return source
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"input {source} is not a file or an s3:// URI: pass a CSV or s3://")
    uri = s3_uri(ctx.account.DataBucket, "batches", path.name)
    upload_file(ctx.client("s3"), path, uri)
    log(f"inference: {path} uploaded to {uri}")
    return uri


class StepProgress:
    """One line per step status change (with elapsed time) and the step that failed."""

    def __init__(self, sm: Any, arn: str) -> None:
        self.sm, self.arn, self.start = sm, arn, time.monotonic()
        self.seen: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def poll(self, _described: dict[str, Any]) -> None:
        listed = self.sm.list_pipeline_execution_steps
        ref = {"PipelineExecutionArn": self.arn, "SortOrder": "Ascending"}
        for step in call("list the execution's steps", listed, **ref)["PipelineExecutionSteps"]:
            name, status = step["StepName"], step["StepStatus"]
            if self.seen.get(name) != status:
                self.seen[name] = status
                log(f"    step {name}: {status} after {time.monotonic() - self.start:.1f}s")
            if status == "Failed":
                self.failed[name] = step.get("FailureReason", "")

    def reason(self, described: dict[str, Any]) -> str:
        where = ", ".join(self.failed) or "none reported"
        return f"{described.get('FailureReason') or 'no reason given'} (failed step: {where})"


def execute(sm: Any, name: str, parameters: dict[str, str], what: str) -> tuple[str, str, Any]:
    """(ARN, id, wait result) of one execution of ``name``, started and waited for."""
    given = [{"Name": k, "Value": str(v)} for k, v in parameters.items()]
    start = sm.start_pipeline_execution
    arn = call(f"start pipeline {name}", start, PipelineName=name, PipelineParameters=given)[
        "PipelineExecutionArn"
    ]
    execution_id = arn.rsplit("/", 1)[-1]
    log(f"{what}: execution {execution_id}")
    return arn, execution_id, wait_execution(sm, arn)


def wait_execution(sm: Any, arn: str) -> Any:
    """Until the execution ends: one line per step status change; a failure names the step."""
    progress, ref = StepProgress(sm, arn), {"PipelineExecutionArn": arn}
    return wait_for(
        f"pipeline execution {arn.rsplit('/', 1)[-1]}",
        lambda: call("describe the execution", sm.describe_pipeline_execution, **ref),
        lambda d: d["PipelineExecutionStatus"],
        done={"Succeeded"},
        failed={"Failed", "Stopped"},
        on_poll=progress.poll,
        reason_of=progress.reason,
    )


def results(ctx: Context, prefix: str, execution_id: str) -> dict[str, Any]:
    """Where the predictions are, the drift verdict and the three most important features."""
    base = f"{prefix.rstrip('/')}/{execution_id}"
    s3 = ctx.client("s3")
    drift = read_json_object(s3, f"{base}/monitor/drift.json")
    importance = read_json_object(s3, f"{base}/explain/explanations.json")["global_importance"]
    top = sorted(importance, key=lambda name: -importance[name])[:3]
    found = {k: drift.get(k) for k in ("verdict", "max_feature", "max_score", "rows")}
    return {"predictions": f"{base}/predictions/", **found, "top_features": top}


def stored_parameters(ctx: Context, stage: str) -> dict[str, str]:
    """What upsert recorded for the stage's executions (a missing file: upsert never ran)."""
    uri = parameters_uri(ctx, stage)
    bucket, key = split_s3(uri)
    if not _exists(f"read {uri}", ctx.client("s3").head_object, Bucket=bucket, Key=key):
        raise ConfigError(f"{uri} not found: run `mlops inference upsert --stage {stage}` first")
    return dict(read_json_object(ctx.client("s3"), uri))


def run(ctx: Context, stage: str, source: str) -> dict[str, Any]:
    sm, name = ctx.client("sagemaker"), pipeline_name(ctx, stage)
    params = stored_parameters(ctx, stage)
    batch = input_uri(ctx, source)
    given = {**params, "InputDataUri": batch}
    arn, execution_id, waited = execute(sm, name, given, f"inference: {name} on {batch}")
    found = results(ctx, params["OutputPrefix"], execution_id)
    found = {"execution_arn": arn, "input": batch, **found, "seconds": round(waited.seconds, 1)}
    _report(ctx, stage, found)
    return found


def _report(ctx: Context, stage: str, found: dict[str, Any]) -> None:
    score = found["max_score"]
    shown = f"{score:.3f}" if isinstance(score, int | float) else "n/a"
    top = ", ".join(found["top_features"]) or "none"
    log(f"inference: predictions in {found['predictions']}")
    log(f"inference: drift {found['verdict']} (max PSI {shown} on {found['max_feature']})")
    log(f"inference: top features {top}")
    ctx.manifest.update("inference", {"run": found})
    github.set_output("drift-verdict", found["verdict"])
    github.summary(
        f"### Batch inference ({stage})\nPredictions: `{found['predictions']}`\n\n"
        f"Drift: **{found['verdict']}** (max PSI {shown} on `{found['max_feature']}`); "
        f"top features: {top}"
    )
