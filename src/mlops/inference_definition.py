"""The batch-inference SageMaker Pipeline, defined with the SageMaker Python SDK 3.x.

Only the definition JSON is compiled here (``Pipeline(...).definition()``); boto3 creates,
updates and starts the pipeline. The SDK (~730 MB, the ``inference`` extra) lives in its own
virtualenv, so the control plane runs this module as a subprocess:

    .venv-inference/bin/python -m mlops.inference_definition --config CFG.json --out DEF.json

Steps: ``Predict`` (batch transform on the Model named by ``ModelName``), ``Monitor`` (drift of
the batch against the training baseline, with the prediction shift; a PropertyFile
``DriftReport`` on drift.json), ``Explain`` (TreeSHAP contributions) and ``DriftFound`` (a
condition on the report's verdict with empty branches: drift is a signal, not a failure; the
outcome is the step's ``Metadata.Condition.Outcome``).

Compiling opens no socket: the SDK's import and its step constructors build boto3 clients, so
the credential chain is stopped at fixed environment credentials, the instance metadata service
is disabled, the SDK's config files are skipped and its telemetry sender is stubbed (it has no
environment switch; ``.definition()`` does not emit any, create/start would).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError

PROCESSING = "/opt/ml/processing"
PARAMETERS = (
    "ModelName",  # the SageMaker Model (created by `mlops inference upsert` from the package)
    "ModelDataUri",  # that package's model.tar.gz: Explain and Monitor's reference predictions
    "ImageUri",  # the model image (by digest) that runs `monitor` and `explain`
    "InputDataUri",  # the batch: an S3 prefix or one object, raw CSV rows with their header
    "BaselineUri",  # the ETL's baseline/ (statistics.json)
    "TestDataUri",  # the ETL's test split: the reference for the prediction shift
    "OutputPrefix",  # results go to <OutputPrefix>/<execution id>/{predictions,monitor,explain}
)
DEFAULTS: dict[str, Any] = {
    "pipeline": "batch",  # or "capture": the live-drift pipeline of mlops.monitor_definition
    "region": "us-east-1",
    "transform_instance_type": "ml.m5.large",
    "transform_instance_count": 1,
    "processing_instance_type": "ml.m5.large",
    "processing_instance_count": 1,
    "volume_gb": 30,
    "max_runtime_seconds": 3600,
    "max_payload_mb": 6,
    # CloudWatch metrics of the Monitor step (MaxDriftScore, DriftScore per feature), with the
    # dimension Pipeline=<metrics_pipeline>: what inference.yaml's DriftAlarm watches. Empty = none.
    "metrics_namespace": "",
    "metrics_pipeline": "",
    "monitor_arguments": [
        "monitor",
        *("--batch", f"{PROCESSING}/batch", "--baseline", f"{PROCESSING}/baseline"),
        *("--predictions", f"{PROCESSING}/predictions"),
        *("--model", f"{PROCESSING}/model/model.tar.gz", "--test", f"{PROCESSING}/test"),
        *("--output", f"{PROCESSING}/monitor"),
    ],
    "explain_arguments": [
        "explain",
        *("--model", f"{PROCESSING}/model/model.tar.gz", "--batch", f"{PROCESSING}/batch"),
        *("--output", f"{PROCESSING}/explain"),
    ],
}
REQUIRED = ("role_arn",)


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULTS) - set(REQUIRED)
    if unknown:
        raise ConfigError(f"unknown inference config key {sorted(unknown)[0]!r}")
    missing = [k for k in REQUIRED if not cfg.get(k)]
    if missing:
        raise ConfigError(f"inference config needs {missing[0]!r} (the job role ARN)")
    return {**DEFAULTS, **cfg}


def _offline(region: str) -> None:
    """Before the SDK is imported: no credential chain, IMDS, config file or role lookup."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "compile-only",  # the import builds clients; nothing is called
            "AWS_SECRET_ACCESS_KEY": "compile-only",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": region,  # `import sagemaker.mlops` raises NoRegionError without
            "AWS_REGION": region,
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": os.devnull,  # an empty SDK config: no file, no S3
            "SAGEMAKER_USER_CONFIG_OVERRIDE": os.devnull,
            "SAGEMAKER_VALIDATE_ROLE": "false",
        }
    )
    warnings.filterwarnings("ignore", module=r"sagemaker\.")


def _quiet() -> None:
    """After the import (it configures its loggers): no INFO lines about configs or credentials."""
    for name in ("sagemaker", "sagemaker.config", "botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _no_telemetry(*_: Any, **__: Any) -> None:
    return None


def _session(region: str) -> Any:
    import boto3
    from sagemaker.core.telemetry import telemetry_logging
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    telemetry_logging._send_telemetry_request = _no_telemetry
    _quiet()
    boto = boto3.Session(region_name=region)
    # an explicit bucket: default_bucket() would ask STS for the account and create a bucket
    return PipelineSession(boto_session=boto, default_bucket="unused-by-this-pipeline")


def _input(name: str, uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    s3 = ProcessingS3Input(
        s3_uri=uri,
        local_path=f"{PROCESSING}/{name}",
        s3_data_type="S3Prefix",
        s3_input_mode="File",
    )
    return ProcessingInput(input_name=name, s3_input=s3)


def _output(name: str, uri: Any) -> Any:
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    s3 = ProcessingS3Output(
        s3_uri=uri, local_path=f"{PROCESSING}/{name}", s3_upload_mode="EndOfJob"
    )
    return ProcessingOutput(output_name=name, s3_output=s3)


def _processor(s: dict[str, Any], image: Any, session: Any) -> Any:
    from sagemaker.core.processing import Processor

    return Processor(
        role=s["role_arn"],
        image_uri=image,
        instance_count=s["processing_instance_count"],
        instance_type=s["processing_instance_type"],
        volume_size_in_gb=s["volume_gb"],
        max_runtime_in_seconds=s["max_runtime_seconds"],
        # the Monitor's CloudWatch client needs a region: named here, not left to the container
        env={"AWS_REGION": s["region"], "AWS_DEFAULT_REGION": s["region"]},
        sagemaker_session=session,
    )


def _monitor_arguments(s: dict[str, Any]) -> list[str]:
    args = list(s["monitor_arguments"])
    if s["metrics_namespace"]:
        args += ["--metrics-namespace", s["metrics_namespace"]]
        args += ["--metrics-dimension", f"Pipeline={s['metrics_pipeline']}"]
    return args


def drift_found(monitor: Any, report: Any) -> Any:
    """``DriftFound``: the report's verdict as a condition with empty branches (drift is a
    signal, not a failure; the outcome is the step's ``Metadata.Condition.Outcome``)."""
    from sagemaker.core.workflow.conditions import ConditionEquals
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.mlops.workflow.condition_step import ConditionStep

    verdict = JsonGet(step_name=monitor.name, property_file=report, json_path="verdict")
    condition = ConditionEquals(left=verdict, right="drift")
    return ConditionStep("DriftFound", conditions=[condition], if_steps=[], else_steps=[])


def _pipeline(s: dict[str, Any]) -> Any:
    from sagemaker.core.transformer import Transformer
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join
    from sagemaker.core.workflow.parameters import ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TransformStep

    session = _session(s["region"])
    p = {name: ParameterString(name) for name in PARAMETERS}

    def out(kind: str) -> Any:
        execution = ExecutionVariables.PIPELINE_EXECUTION_ID
        return Join(on="/", values=[p["OutputPrefix"], execution, kind])

    transformer = Transformer(
        model_name=p["ModelName"],
        instance_count=s["transform_instance_count"],
        instance_type=s["transform_instance_type"],
        strategy="MultiRecord",
        assemble_with="Line",
        accept="text/csv",
        max_payload=s["max_payload_mb"],
        output_path=out("predictions"),
        sagemaker_session=session,
    )
    predict = TransformStep(
        "Predict",
        step_args=transformer.transform(
            data=p["InputDataUri"], content_type="text/csv", split_type="Line"
        ),
    )
    drift = PropertyFile(name="DriftReport", output_name="monitor", path="drift.json")
    monitor_args = _processor(s, p["ImageUri"], session).run(
        inputs=[
            _input("batch", p["InputDataUri"]),
            _input("predictions", predict.properties.TransformOutput.S3OutputPath),
            _input("baseline", p["BaselineUri"]),
            _input("model", p["ModelDataUri"]),
            _input("test", p["TestDataUri"]),
        ],
        outputs=[_output("monitor", out("monitor"))],
        arguments=_monitor_arguments(s),
    )
    monitor = ProcessingStep("Monitor", step_args=monitor_args, property_files=[drift])
    explain_args = _processor(s, p["ImageUri"], session).run(
        inputs=[_input("batch", p["InputDataUri"]), _input("model", p["ModelDataUri"])],
        outputs=[_output("explain", out("explain"))],
        arguments=list(s["explain_arguments"]),
    )
    explain = ProcessingStep("Explain", step_args=explain_args)
    found = drift_found(monitor, drift)
    return Pipeline(
        name="batch-inference",  # not part of the definition: CreatePipeline names it
        parameters=list(p.values()),
        steps=[predict, monitor, explain, found],
        pipeline_experiment_config=None,  # no Experiments/Trials records per execution
        sagemaker_session=session,
    )


def build_definition(cfg: dict[str, Any]) -> str:
    """The pipeline definition JSON (compact) for ``cfg``; opens no network connection."""
    settings = _settings(cfg)
    _offline(settings["region"])
    if settings["pipeline"] == "capture":
        from mlops.monitor_definition import capture_pipeline

        pipeline = capture_pipeline(settings)
    elif settings["pipeline"] == "batch":
        pipeline = _pipeline(settings)
    else:
        raise ConfigError(f"unknown pipeline {settings['pipeline']!r}: batch or capture")
    definition = json.loads(pipeline.definition())
    return json.dumps(definition, separators=(",", ":"), sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.inference_definition")
    parser.add_argument(
        "--config", type=Path, required=True, help="JSON object (see DEFAULTS) or list"
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the definition")
    args = parser.parse_args(argv)
    try:
        cfg = json.loads(args.config.read_text())
        many = isinstance(cfg, list)  # several definitions for one SDK import
        if not all(isinstance(c, dict) for c in (cfg if many else [cfg])):
            raise ConfigError(f"{args.config} must hold a JSON object or a list of them")
        text = json.dumps([build_definition(c) for c in cfg]) if many else build_definition(cfg)
        args.out.write_text(text + "\n")
    except ModuleNotFoundError as exc:
        print(
            f"error: {exc.name} is missing: run this with the inference venv (make inference-venv)",
            file=sys.stderr,
        )
        return 4
    except (OSError, ValueError, ConfigError) as exc:
        print(f"error: inference definition: {exc}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
