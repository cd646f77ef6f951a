"""Every patch of moto (5.2.5) in one place: hooks that run the real compute, states moto cannot
reach, and CloudFormation resource types moto ignores (applied through the API, and said so).

Step code never sees any of this: it calls the same boto3 APIs as against AWS.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing as cfn_parsing
from moto.glue import models as glue_models
from moto.moto_api import state_manager
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses

from mlops.aws import log
from mlops.local import pipelines, transform
from mlops.local.moto_gaps import (
    alarms,
    api_destinations,
    cfn_resources,
    ecr,
    events,
    rules,
    tuning,
)
from mlops.local.moto_gaps.cfn_resources import GAPS, ResourceFailed

_patches: list[tuple[Any, str, Any]] = []
_restarts: list[Any] = []  # endpoints a failed stack update must serve again
_runtime: Any = None  # the LocalRuntime that performs compute and owns the API session


def _wrap(cls: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = getattr(cls, name)
    _patches.append((cls, name, original))
    setattr(cls, name, make(original))


def _after(cls: Any, name: str, hook: Callable[..., None]) -> None:
    def make(original: Any) -> Any:
        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            hook(self, result, *args, **kwargs)
            return result

        return patched

    _wrap(cls, name, make)


# --- jobs: moto finishes them at once and computes nothing; the runtime runs them for real --------
def _glue_run_started(
    backend: Any, run_id: str, name: str, arguments: Any = None, **_: Any
) -> None:
    run = backend.get_job_run(name, run_id)
    run.status = "RUNNING"
    _runtime.submit(lambda: _runtime.compute.glue(backend.get_job(name), run))


def _glue_as_dict(original: Any) -> Any:
    def as_dict(self: Any) -> dict[str, Any]:
        result = original(self)
        if getattr(self, "error_message", None):
            result["ErrorMessage"] = self.error_message
        return result

    return as_dict


def _training_created(_backend: Any, job: Any, *_: Any, **__: Any) -> None:
    job.training_job_status, job.secondary_status = "InProgress", "Starting"
    _runtime.submit(lambda: _runtime.compute.training(job))


_request = threading.local()


def _processing_environment(original: Any) -> Any:
    """moto's CreateProcessingJob drops Environment (its backend takes none); AWS sets it in
    the container ("The environment variables to set in the Docker container",
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html).
    Kept for the hook below, which runs in this same request thread."""

    def create_processing_job(self: Any) -> Any:
        _request.environment = self._get_param("Environment") or {}
        try:
            return original(self)
        finally:
            _request.environment = {}

    return create_processing_job


def _processing_created(_backend: Any, job: Any, *_: Any, **__: Any) -> None:
    job.processing_job_status = "InProgress"
    job.environment = dict(getattr(_request, "environment", {}) or {})
    _runtime.submit(lambda: _runtime.compute.processing(job))


def _transform_created(_backend: Any, job: Any, *_: Any, **__: Any) -> None:
    job.transform_job_status = "InProgress"
    _runtime.submit(lambda: transform.run(_runtime, job))


def _endpoint_created(backend: Any, endpoint: Any, *_: Any, **__: Any) -> None:
    endpoint.endpoint_status = "Creating"
    config = backend.endpoint_configs[endpoint.endpoint_config_name]
    endpoint.local_start = _runtime.submit(lambda: _runtime.endpoints.serve(endpoint, config))


def _endpoint_deleting(original: Any) -> Any:
    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        original(self, endpoint_name)
        _runtime.endpoints.stop(endpoint_name)

    return delete_endpoint


# --- CloudFormation: a failing resource leaves moto's stack CREATE_IN_PROGRESS; roll back instead
def _execute_change_set(original: Any) -> Any:
    def execute(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = next(
            c for k, c in self.change_sets.items() if change_set_name in (k, c.change_set_name)
        )
        stack = self.stacks[change_set.stack_id]
        ResourceFailed.last = None
        # a change set's stack sees no exports in moto: Fn::ImportValue must resolve, as on AWS
        stack.cross_stack_resources = stack.resource_map.cross_stack_resources = self.exports
        resources = stack.resource_map
        before = dict(resources.input_parameters), dict(resources.resolved_parameters)
        sagemaker = sm_models.sagemaker_backends[self.account_id][self.region_name]
        kept = dict(sagemaker._models), dict(sagemaker.endpoint_configs)
        configs = {name: e.endpoint_config_name for name, e in sagemaker.endpoints.items()}
        _restarts.clear()

        def restore() -> None:  # what a rolled-back update leaves: the previous resources
            for live, previous in zip(
                (sagemaker._models, sagemaker.endpoint_configs), kept, strict=True
            ):
                for name, resource in previous.items():
                    live.setdefault(name, resource)

        try:
            original(self, change_set_name, stack_name)
            _silent_rollback(sagemaker, configs, restore)
            # moto applies the resources but keeps the old template, outputs and parameters
            stack.template, stack.parameters = change_set.template, change_set.parameters
            stack._parse_template()
            stack.output_map = stack._create_output_map()
            for export in stack.exports:  # moto registers exports only in create_stack
                self.exports[export.name] = export
        except Exception as error:  # any failure rolls the stack back, with the first cause
            exc = ResourceFailed.last or ResourceFailed(
                stack.name, "AWS::CloudFormation::Stack", str(error)
            )
            kind = change_set.change_set_type
            status = "ROLLBACK_COMPLETE" if kind == "CREATE" else "UPDATE_ROLLBACK_COMPLETE"
            # a rolled-back update keeps the stack's previous parameters and resources, as on AWS
            resources.input_parameters, resources.resolved_parameters = before
            restore()
            for endpoint in _restarts:
                _runtime.endpoints.serve(
                    endpoint, sagemaker.endpoint_configs[endpoint.endpoint_config_name]
                )
            event = cfn_models.Event(
                stack_id=stack.stack_id,
                stack_name=stack.name,
                logical_resource_id=exc.logical_id,
                physical_resource_id="",
                resource_type=exc.resource_type,
                resource_status=f"{kind}_FAILED",
                resource_status_reason=exc.reason,
                resource_properties=None,
            )
            stack.events.append(event)
            stack._add_stack_event(status)
            stack.status = status
            change_set.execution_status = "EXECUTE_FAILED"
            log(f"  local: {exc.logical_id} failed: {exc.reason}; stack {stack.name} {status}")

    return execute


def _silent_rollback(sagemaker: Any, configs: dict[str, str], restore: Callable[[], None]) -> None:
    """The sagemaker-rollback fault: CloudFormation reports the update done, yet SageMaker's
    deployment guardrails rolled the endpoint back to its previous config (the deploy step must
    notice: it compares the served config with the one its stack created)."""
    for name, endpoint in sagemaker.endpoints.items():
        previous = configs.get(name)
        changed = previous and previous != endpoint.endpoint_config_name
        if changed and _runtime.faults.take("sagemaker-rollback"):
            restore()
            _runtime.endpoints.serve(endpoint, sagemaker.endpoint_configs[previous])
            endpoint.endpoint_config_name = previous
            log(f"  local: injected sagemaker-rollback fault: {name} rolled back to {previous}")


def _endpoint_from_cfn(original: Any) -> Any:
    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        reason = _runtime.faults.stack_failure(cloudformation_json)
        if reason:
            raise ResourceFailed(
                kwargs.get("LogicalId", "Endpoint"), "AWS::SageMaker::Endpoint", reason
            )
        # moto generates the name; AWS honours EndpointName (scaling targets and alarms use it)
        resource_name = cloudformation_json["Properties"].get("EndpointName", resource_name)
        endpoint = original.__func__(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        # CloudFormation waits for InService and fails the resource otherwise, as on AWS
        endpoint.local_start.result(timeout=300)
        if endpoint.endpoint_status != "InService":
            sm_models.sagemaker_backends[account_id][region_name].delete_endpoint(
                endpoint.endpoint_name
            )
            raise ResourceFailed(
                kwargs.get("LogicalId", "Endpoint"),
                "AWS::SageMaker::Endpoint",
                endpoint.failure_reason or "the endpoint did not reach InService",
            )
        return endpoint

    return classmethod(create)


def _endpoint_update_from_cfn(original: Any) -> Any:
    """An endpoint update as AWS does it (UpdateEndpoint): moto deletes the endpoint and creates
    it again, so a failed update would leave no endpoint at all; on AWS the endpoint keeps serving
    its previous config."""

    def update(cls: Any, original_resource: Any, **kwargs: Any) -> Any:
        if ResourceFailed.last is not None:  # moto retries a failed update: it failed, for good
            raise ResourceFailed.last
        backend = sm_models.sagemaker_backends[kwargs["account_id"]][kwargs["region_name"]]
        try:
            return original.__func__(cls, original_resource=original_resource, **kwargs)
        except ResourceFailed:  # the rollback serves the previous config again
            backend.endpoints[original_resource.endpoint_name] = original_resource
            _restarts.append(original_resource)
            raise

    return classmethod(update)


def _sub_references(original: Any) -> Any:
    """moto updates a resource for a changed parameter only when the resource ``Ref``s it; a
    ``${Param}`` in Fn::Sub counts too, as on AWS, where any property whose value changes is
    updated (retrain.yaml's connection: a new TokenSecretVersion re-resolves the token)."""

    def references(template: Any) -> list[str]:
        found = list(original(template))
        stack = [template]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                sub = node.get("Fn::Sub")
                text = sub[0] if isinstance(sub, list) and sub else sub
                if isinstance(text, str):
                    found += re.findall(r"\$\{([A-Za-z0-9]+)\}", text)
                stack += list(node.values())
            elif isinstance(node, list):
                stack += node
        return found

    return references


def install(runtime: Any) -> None:
    """Apply every patch; :func:`uninstall` restores moto as it was."""
    global _runtime
    _runtime = runtime
    cfn_resources.bind(runtime)
    state_manager.set_transition(
        model_name="glue::job_run", transition={"progression": "manual", "times": 10**9}
    )
    _after(
        glue_models.GlueBackend,
        "start_job_run",
        lambda b, run_id, name, *a, **k: _glue_run_started(b, run_id, name),
    )
    _wrap(glue_models.FakeJobRun, "as_dict", _glue_as_dict)
    tuning.install(runtime, _wrap)  # tuning jobs run their trials for real (before the hook below)
    _after(sm_models.SageMakerModelBackend, "create_training_job", _training_created)
    _after(sm_models.SageMakerModelBackend, "create_processing_job", _processing_created)
    _wrap(sm_responses.SageMakerResponse, "create_processing_job", _processing_environment)
    _after(sm_models.SageMakerModelBackend, "create_transform_job", _transform_created)
    pipelines.install(runtime, _wrap)  # executions run their steps for real
    events.install(runtime, _wrap)  # S3 events reach EventBridge rules and pipeline targets
    api_destinations.install(runtime)  # ... and API destination targets, as the target's role
    alarms.install(_wrap)  # alarm state changes reach EventBridge rules too
    _after(sm_models.SageMakerModelBackend, "create_endpoint", _endpoint_created)
    _wrap(sm_models.SageMakerModelBackend, "delete_endpoint", _endpoint_deleting)
    _wrap(cfn_models.CloudFormationBackend, "execute_change_set", _execute_change_set)
    _wrap(sm_models.FakeEndpoint, "create_from_cloudformation_json", _endpoint_from_cfn)
    _wrap(sm_models.FakeEndpoint, "update_from_cloudformation_json", _endpoint_update_from_cfn)
    _wrap(cfn_parsing, "get_model_map", lambda original: lambda: {**original(), **GAPS})
    _wrap(cfn_parsing, "get_references_from_template", _sub_references)
    rules.install(_wrap)
    ecr.install(_wrap)  # a pull's layer URLs


def uninstall() -> None:
    global _runtime
    cfn_resources.bind(None)
    events.uninstall()
    api_destinations.uninstall()
    pipelines.uninstall()
    tuning.uninstall()
    while _patches:
        cls, name, original = _patches.pop()
        setattr(cls, name, original)
    state_manager.unset_transition(model_name="glue::job_run")
    _runtime = None


def new_id() -> str:
    return uuid.uuid4().hex[:12]
