"""Every patch of moto (5.2.5) in one place: hooks that run the real compute, states moto cannot
reach, and CloudFormation resource types moto ignores (applied through the API, and said so).

Step code never sees any of this: it calls the same boto3 APIs as against AWS.
"""

from __future__ import annotations

import contextlib
import json
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
from mlops.local.moto_gaps import events, rules, tuning

_patches: list[tuple[Any, str, Any]] = []
_restarts: list[Any] = []  # endpoints a failed stack update must serve again
_runtime: Any = None  # the LocalRuntime that performs compute and owns the API session


class ResourceFailed(Exception):
    """A resource that failed while moto created it; becomes a FAILED stack event."""

    last: ResourceFailed | None = None  # moto retries updates and may hide the first failure

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason
        ResourceFailed.last = self


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


# --- resource types moto's CloudFormation ignores: applied through the API -----------------------
class _ApiResource:
    """A resource of a type moto ignores, created through the real API by ``APPLY``.

    Deliberately not a moto CloudFormationModel subclass: these join moto's model map only while
    the runtime is installed (see :func:`install`).
    """

    TYPE = ""
    NOTE = "applied through the API"
    APPLY: Callable[[str, dict[str, Any]], tuple[str, dict[str, str]]]

    def __init__(self, physical_id: str, attributes: dict[str, str]) -> None:
        self.physical_resource_id, self.attributes = physical_id, attributes

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.attributes.get(attribute_name, self.physical_resource_id)

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, *_: Any, **kwargs: Any
    ) -> Any:
        logical = kwargs.get("LogicalId", resource_name)
        try:
            physical_id, attributes = cls.APPLY(resource_name, cloudformation_json["Properties"])
        except Exception as exc:  # becomes a FAILED stack event, as on AWS
            raise ResourceFailed(logical, cls.TYPE, str(exc)) from exc
        log(f"  local: moto ignores {cls.TYPE} {logical}: {cls.NOTE}")
        return cls(physical_id, attributes)

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, *_: Any
    ) -> Any:
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json)

    @classmethod
    def delete_from_cloudformation_json(cls, *_: Any) -> None:
        return None


GAPS: dict[str, type[_ApiResource]] = {}


def _gap(resource_type: str, note: str = _ApiResource.NOTE) -> Callable[[Any], Any]:
    """Register ``fn(name, properties) -> (physical id, attributes)`` for a type moto ignores."""

    def register(fn: Any) -> Any:
        attrs = {"TYPE": resource_type, "NOTE": note, "APPLY": staticmethod(fn)}
        GAPS[resource_type] = type(resource_type.replace("::", ""), (_ApiResource,), attrs)
        return fn

    return register


def _client(service: str) -> Any:
    return _runtime.session.client(service)


def _pick(props: dict[str, Any], keys: str) -> dict[str, Any]:
    return {k: props[k] for k in keys.split() if k in props}


@_gap("AWS::Glue::Job")
def _glue_job(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    job = props.get("Name") or name
    args = _pick(
        props,
        "Role Command DefaultArguments GlueVersion WorkerType Timeout "
        "ExecutionClass MaxRetries SecurityConfiguration",
    )
    _client("glue").create_job(
        Name=job, NumberOfWorkers=int(props.get("NumberOfWorkers", 2)), **args
    )
    return job, {}


@_gap("AWS::Glue::SecurityConfiguration")
def _glue_security(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    config, glue = props.get("Name") or name, _client("glue")
    # CloudFormation spells the S3 list "S3Encryptions"; the API "S3Encryption"
    encryption = dict(props.get("EncryptionConfiguration", {}))
    if "S3Encryptions" in encryption:
        encryption["S3Encryption"] = encryption.pop("S3Encryptions")
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_security_configuration(Name=config, EncryptionConfiguration=encryption)
    return config, {}


@_gap("AWS::SageMaker::ModelPackageGroup")
def _package_group(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    group, sm = props.get("ModelPackageGroupName") or name, _client("sagemaker")
    try:
        arn = sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    except sm.exceptions.ClientError:
        arn = sm.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", group),
        )["ModelPackageGroupArn"]
    return arn, {"ModelPackageGroupArn": arn, "ModelPackageGroupName": group}


@_gap("AWS::IAM::OIDCProvider")
def _oidc_provider(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    arn = _client("iam").create_open_id_connect_provider(
        Url=props.get("Url", "https://token.actions.githubusercontent.com"),
        ClientIDList=props.get("ClientIdList", ["sts.amazonaws.com"]),
        ThumbprintList=props.get("ThumbprintList", ["0" * 40]),
    )["OpenIDConnectProviderArn"]
    return arn, {"Arn": arn}


@_gap(
    "AWS::S3::BucketPolicy",
    note="applied by the local IAM check, as written (aws:SecureTransport is true: every AWS "
    "call is TLS; the local endpoint's plain HTTP is not what the policy is about)",
)
def _bucket_policy(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    document = props["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    if not document.get("Statement"):
        raise ValueError(f"bucket policy for {props['Bucket']} has no Statement")
    _runtime.enforcer.bucket_policies[props["Bucket"]] = document
    return props["Bucket"], {}


@_gap("AWS::ApplicationAutoScaling::ScalableTarget")
def _scalable_target(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    _client("application-autoscaling").register_scalable_target(
        **_pick(props, "ServiceNamespace ResourceId ScalableDimension"),
        MinCapacity=int(props["MinCapacity"]),
        MaxCapacity=int(props["MaxCapacity"]),
    )
    ids = (props["ResourceId"], props["ScalableDimension"], props["ServiceNamespace"])
    return "|".join(ids), {}  # the Ref format ScalingPolicy.ScalingTargetId takes


@_gap("AWS::ApplicationAutoScaling::ScalingPolicy")
def _scaling_policy(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    resource_id, dimension, namespace = [*props.get("ScalingTargetId", "").split("|"), "", ""][:3]
    config = dict(props.get("TargetTrackingScalingPolicyConfiguration", {}))
    for key in ("ScaleInCooldown", "ScaleOutCooldown"):
        if key in config:
            config[key] = int(config[key])
    config["TargetValue"] = float(config.get("TargetValue", 0))
    arn = _client("application-autoscaling").put_scaling_policy(
        PolicyName=props.get("PolicyName", name),
        PolicyType=props["PolicyType"],
        ServiceNamespace=props.get("ServiceNamespace", namespace),
        ResourceId=props.get("ResourceId", resource_id),
        ScalableDimension=props.get("ScalableDimension", dimension),
        TargetTrackingScalingPolicyConfiguration=config,
    )["PolicyARN"]
    return arn, {"Arn": arn}


@_gap("AWS::CloudWatch::Alarm")
def _alarm(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    alarm = props.get("AlarmName") or name
    _client("cloudwatch").put_metric_alarm(
        AlarmName=alarm,
        Period=int(props.get("Period", 60)),
        EvaluationPeriods=int(props.get("EvaluationPeriods", 1)),
        Threshold=float(props.get("Threshold", 0)),
        **_pick(
            props,
            "AlarmDescription MetricName Namespace Statistic ComparisonOperator "
            "Dimensions TreatMissingData",
        ),
    )
    return alarm, {"Arn": f"arn:aws:cloudwatch:::alarm:{alarm}"}


def install(runtime: Any) -> None:
    """Apply every patch; :func:`uninstall` restores moto as it was."""
    global _runtime
    _runtime = runtime
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
    _after(sm_models.SageMakerModelBackend, "create_endpoint", _endpoint_created)
    _wrap(sm_models.SageMakerModelBackend, "delete_endpoint", _endpoint_deleting)
    _wrap(cfn_models.CloudFormationBackend, "execute_change_set", _execute_change_set)
    _wrap(sm_models.FakeEndpoint, "create_from_cloudformation_json", _endpoint_from_cfn)
    _wrap(sm_models.FakeEndpoint, "update_from_cloudformation_json", _endpoint_update_from_cfn)
    _wrap(cfn_parsing, "get_model_map", lambda original: lambda: {**original(), **GAPS})
    rules.install(_wrap)


def uninstall() -> None:
    global _runtime
    events.uninstall()
    pipelines.uninstall()
    tuning.uninstall()
    while _patches:
        cls, name, original = _patches.pop()
        setattr(cls, name, original)
    state_manager.unset_transition(model_name="glue::job_run")
    _runtime = None


def new_id() -> str:
    return uuid.uuid4().hex[:12]
