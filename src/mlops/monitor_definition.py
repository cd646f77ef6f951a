"""The live-drift SageMaker Pipeline: the Monitor job over an endpoint's data capture.

Compiled by :mod:`mlops.inference_definition` (config ``"pipeline": "capture"``) in the SDK's
venv, next to the batch pipeline and from the same helpers. One ``MonitorCapture`` processing
step reads the endpoint's capture prefix, judges the window's requests against the training
baseline and the captured predictions against the model's on the test split, writes the report
and publishes the per-feature CloudWatch metrics; ``DriftFound`` records the verdict.

The window is the job's own clock unless given: ``Since``/``Until`` empty and ``WindowHours``
24 is "the last 24 h", which is what the EventBridge Scheduler schedule starts (its target's
parameters are static). They go as ``--since=<value>`` tokens: an empty value stays one
argument.
"""

from __future__ import annotations

from typing import Any

from mlops.inference_definition import (
    PROCESSING,
    _input,
    _output,
    _processor,
    _session,
    drift_found,
)

PARAMETERS = (
    "ImageUri",  # the model image (by digest) that runs `monitor`
    "ModelDataUri",  # the serving package's model.tar.gz: the reference predictions on the test set
    "BaselineUri",  # the ETL's baseline/ (statistics.json) of that package
    "TestDataUri",  # the ETL's test split of that package
    "CaptureUri",  # s3://<CaptureBucket>/capture/<stage>/<endpoint>/
    "OutputPrefix",  # reports go to <OutputPrefix>/<execution id>/monitor
    "Since",  # ISO 8601, empty: WindowHours before Until
    "Until",  # ISO 8601, empty: the job's start
    "WindowHours",
)
DEFAULTS = {"Since": "", "Until": "", "WindowHours": "24"}
ARGUMENTS = [
    "monitor",
    *("--capture", f"{PROCESSING}/capture", "--baseline", f"{PROCESSING}/baseline"),
    *("--model", f"{PROCESSING}/model/model.tar.gz", "--test", f"{PROCESSING}/test"),
    *("--output", f"{PROCESSING}/monitor"),
]


def capture_pipeline(s: dict[str, Any]) -> Any:
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join
    from sagemaker.core.workflow.parameters import ParameterString
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep

    session = _session(s["region"])
    p = {n: ParameterString(n, default_value=DEFAULTS.get(n)) for n in PARAMETERS}
    execution = ExecutionVariables.PIPELINE_EXECUTION_ID
    out = Join(on="/", values=[p["OutputPrefix"], execution, "monitor"])

    def flag(name: str, parameter: str) -> Any:
        return Join(on="", values=[f"--{name}=", p[parameter]])

    arguments = [*ARGUMENTS, flag("since", "Since"), flag("until", "Until")]
    arguments.append(flag("window-hours", "WindowHours"))
    if s["metrics_namespace"]:
        arguments += ["--metrics-namespace", s["metrics_namespace"]]
        arguments += ["--metrics-dimension", f"Pipeline={s['metrics_pipeline']}"]
    report = PropertyFile(name="DriftReport", output_name="monitor", path="drift.json")
    step_args = _processor(s, p["ImageUri"], session).run(
        inputs=[
            _input("capture", p["CaptureUri"]),
            _input("baseline", p["BaselineUri"]),
            _input("model", p["ModelDataUri"]),
            _input("test", p["TestDataUri"]),
        ],
        outputs=[_output("monitor", out)],
        arguments=arguments,
    )
    monitor = ProcessingStep("MonitorCapture", step_args=step_args, property_files=[report])
    found = drift_found(monitor, report)
    return Pipeline(
        name="capture-monitor",  # not part of the definition: CreatePipeline names it
        parameters=list(p.values()),
        steps=[monitor, found],
        pipeline_experiment_config=None,
        sagemaker_session=session,
    )
