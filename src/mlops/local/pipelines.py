"""SageMaker Pipelines executions, run for real against the local AWS.

moto stores a pipeline and marks each execution Succeeded at once, running nothing (and answers
ListPipelineExecutionSteps with a 500). Here StartPipelineExecution checks the parameters as AWS
does, then the execution runs on its own thread (it only waits: the jobs run on the runtime's
compute pool, which two waiting executions would otherwise fill): steps in dependency order
(DependsOn and every ``Steps.X`` reference), each through the local AWS's API AS the pipeline's
role, as SageMaker Pipelines acts on AWS (CreateProcessingJob / CreateTransformJob, then wait).
Step types run: Processing, Transform, Condition (then the branch it chose) and Fail; any other
fails the execution with a reason naming it. Steps whose dependencies are done run at once, as
on AWS (Explain needs nothing of Predict, so the two overlap). The expressions are in
:mod:`mlops.local.pipeline_expressions`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.utils import get_pipeline_execution_from_arn, get_pipeline_from_name

from mlops.local.pipeline_expressions import Resolver, StepFailed, deps, parameters

RUNS = ("Processing", "Transform", "Condition", "Fail")
POLL_S = 0.2
MAX_PARALLEL_STEPS = 8  # they only wait: the jobs themselves queue on the runtime's compute pool
JOB_TIMEOUT_S = 3600
_stop = threading.Event()
_threads: list[threading.Thread] = []
_runtime: Any = None


class Execution:
    """One pipeline execution: its moto record, the role's clients and each step's outcome."""

    def __init__(self, pipeline: Any, record: Any, definition: dict, params: dict) -> None:
        self.pipeline, self.record, self.definition = pipeline, record, definition
        self.id = record.arn.rsplit("/", 1)[-1]
        self.variables = {
            "PipelineExecutionId": self.id,
            "PipelineExecutionArn": record.arn,
            "PipelineName": pipeline.pipeline_name,
            "PipelineArn": pipeline.arn,
            "StartDateTime": record.start_time.isoformat(),
        }
        self.params = params
        record.local_steps = []

    def run(self) -> None:
        try:
            session = _runtime.role_session(self.pipeline.role_arn, "sagemaker")
            self.sm = session.client("sagemaker")
            self.expr = Resolver(self.params, self.variables, session.client("s3"))
            self._run(list(self.definition.get("Steps", [])))
            self._finish("Succeeded", "")
        except Exception as exc:  # the execution's FailureReason, whatever failed
            reason = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
            self._finish("Failed", reason)

    def _finish(self, status: str, reason: str) -> None:
        self.record.pipeline_execution_failure_reason = reason[:1300]
        self.record.pipeline_execution_status = status
        self.record.last_modified_time = utcnow()

    def _run(self, pending: list[dict[str, Any]]) -> None:
        """Each ready step on its own thread; the first failure fails the execution once the
        steps already running have ended."""
        done: set[str] = set()
        self.expr.steps.update({s["Name"]: s for s in pending})
        running: dict[Future, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_STEPS) as pool:
            while pending or running:
                for step in [s for s in pending if deps(s) <= done]:
                    pending.remove(step)
                    running[pool.submit(self._step, step)] = step
                if not running:
                    waiting = {s["Name"]: sorted(deps(s) - done) for s in pending}
                    raise StepFailed(f"steps wait on steps that never run: {waiting}")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    step = running.pop(future)
                    branch = future.result()
                    done.add(step["Name"])
                    self.expr.steps.update({s["Name"]: s for s in branch})
                    pending += branch

    def _step(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one step and record it; a Condition step returns the branch it chose."""
        entry = {"StepName": step["Name"], "StartTime": utcnow(), "StepStatus": "Executing"}
        entry.update({"AttemptCount": 1, "Metadata": {}})
        entry.update({f"Step{k}": step[k] for k in ("DisplayName", "Description") if k in step})
        self.record.local_steps.append(entry)
        try:
            kind = step.get("Type", "")
            if kind not in RUNS:
                raise StepFailed(
                    f"step type {kind} is not run by the local runtime (it runs {', '.join(RUNS)})"
                )
            branch = getattr(self, f"_{kind.lower()}")(step, entry["Metadata"])
            entry["StepStatus"] = "Succeeded"
            return branch
        except Exception as exc:  # a refused call (ClientError) fails the step like a job does
            reason = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
            entry.update(StepStatus="Failed", FailureReason=reason[:1300])
            raise StepFailed(f"step {step['Name']} ({step.get('Type')}) failed: {reason}") from None
        finally:
            entry["EndTime"] = utcnow()

    # --- step types ---------------------------------------------------------------------------
    def _processing(self, step: dict[str, Any], metadata: dict[str, Any]) -> list:
        return self._job(step, metadata, "Processing", self.sm.create_processing_job)

    def _transform(self, step: dict[str, Any], metadata: dict[str, Any]) -> list:
        return self._job(step, metadata, "Transform", self.sm.create_transform_job)

    def _job(self, step: dict[str, Any], metadata: dict, kind: str, create: Any) -> list:
        """Create the step's job with its resolved arguments, as the pipeline role, and wait."""
        name = self._job_name(step)
        arn = create(**{f"{kind}JobName": name}, **self.expr.resolve(step["Arguments"]))
        metadata[f"{kind}Job"] = {"Arn": arn[f"{kind}JobArn"]}
        describe = getattr(self.sm, f"describe_{kind.lower()}_job")
        self.expr.described[step["Name"]] = self._wait(describe, kind, name)
        return []

    def _condition(self, step: dict[str, Any], metadata: dict[str, Any]) -> list:
        args = step["Arguments"]
        outcome = all(self.expr.condition(c) for c in args.get("Conditions", []))
        metadata["Condition"] = {"Outcome": str(outcome)}
        return list(args.get("IfSteps" if outcome else "ElseSteps", []))

    def _fail(self, step: dict[str, Any], metadata: dict[str, Any]) -> list:
        message = str(self.expr.resolve(step.get("Arguments", {}).get("ErrorMessage", "")))
        metadata["Fail"] = {"ErrorMessage": message}
        raise StepFailed(message or "a Fail step ran")

    def _job_name(self, step: dict[str, Any]) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", step["Name"]).strip("-")[:30]
        return f"pipelines-{self.id}-{slug}-{uuid.uuid4().hex[:8]}"

    def _wait(self, describe: Any, kind: str, name: str) -> dict[str, Any]:
        field, deadline = f"{kind}JobStatus", time.monotonic() + JOB_TIMEOUT_S
        while not _stop.is_set() and time.monotonic() < deadline:
            described = describe(**{f"{kind}JobName": name})
            status = described[field]
            if status == "Completed":
                return described
            if status in ("Failed", "Stopped"):
                reason = described.get("FailureReason") or "no reason given"
                raise StepFailed(f"{kind} job {name} {status}: {reason}")
            _stop.wait(POLL_S)
        raise StepFailed(f"{kind} job {name} did not finish (local runtime stopped or timed out)")


# --- moto hooks ------------------------------------------------------------------------------
def _definition(pipeline: Any) -> dict[str, Any]:
    raw = pipeline.pipeline_definition
    try:
        definition = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"Pipeline definition is not valid JSON: {exc}") from None
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise ValidationError("Pipeline definition needs a Steps list")
    return definition


def _start(original: Any) -> Any:
    def start(self: Any, pipeline_name: str, display: str, given: Any, *args: Any) -> Any:
        pipeline = get_pipeline_from_name(self.pipelines, pipeline_name)
        definition = _definition(pipeline)
        params = parameters(definition, given)  # ValidationException before anything starts
        result = original(self, pipeline_name, display, given, *args)
        record = pipeline.pipeline_executions[result["PipelineExecutionArn"]]
        record.pipeline_execution_status, record.pipeline_execution_failure_reason = "Executing", ""
        thread = threading.Thread(
            target=Execution(pipeline, record, definition, params).run,
            name=f"pipeline-{pipeline_name}",
            daemon=True,
        )
        _threads.append(thread)
        thread.start()
        return result

    return start


def _describe(original: Any) -> Any:
    def describe(self: Any, arn: str) -> dict[str, Any]:
        result = original(self, arn)
        record = get_pipeline_execution_from_arn(self.pipelines, arn)
        reason = record.pipeline_execution_failure_reason
        result.pop("FailureReason", None)
        if reason:
            result["FailureReason"] = reason
        return result

    return describe


def _list_steps(self: Any) -> ActionResult:
    """ListPipelineExecutionSteps in the real API's shape: newest first unless Ascending."""
    arn = self._get_param("PipelineExecutionArn")
    record = get_pipeline_execution_from_arn(self.sagemaker_backend.pipelines, arn)
    steps = [dict(s) for s in getattr(record, "local_steps", [])]
    if self._get_param("SortOrder") != "Ascending":
        steps.reverse()
    return ActionResult({"PipelineExecutionSteps": steps})


def install(runtime: Any, wrap: Any) -> None:
    """Run executions for real (``wrap`` is moto_gaps' patch recorder; uninstall restores)."""
    global _runtime
    _runtime = runtime
    _stop.clear()
    wrap(sm_models.SageMakerModelBackend, "start_pipeline_execution", _start)
    wrap(sm_models.SageMakerModelBackend, "describe_pipeline_execution", _describe)
    sm_responses.SageMakerResponse.list_pipeline_execution_steps = _list_steps


def uninstall() -> None:
    """Stop waiting executions (before the moto server stops) and remove the added operation."""
    global _runtime
    _stop.set()
    while _threads:
        _threads.pop().join(timeout=10)
    if hasattr(sm_responses.SageMakerResponse, "list_pipeline_execution_steps"):
        del sm_responses.SageMakerResponse.list_pipeline_execution_steps
    _runtime = None
