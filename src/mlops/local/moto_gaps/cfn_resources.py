"""Resource types moto's CloudFormation ignores, applied through the real API as the stack's
resources: each ``@_gap`` function takes (logical name, properties) and returns (physical id,
attributes); a failure becomes the resource's FAILED stack event, as on AWS."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from mlops.aws import log
from mlops.local.moto_gaps import api_destinations

_runtime: Any = None  # the LocalRuntime whose admin session applies the resources


def bind(runtime: Any) -> None:
    global _runtime
    _runtime = runtime


class ResourceFailed(Exception):
    """A resource that failed while moto created it; becomes a FAILED stack event."""

    last: ResourceFailed | None = None  # moto retries updates and may hide the first failure

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason
        ResourceFailed.last = self


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
    def update_from_cloudformation_json(  # moto passes account_id and region_name by keyword
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        *_: Any,
        **__: Any,
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


@_gap("AWS::Scheduler::Schedule")
def _schedule(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Through CreateSchedule, which checks the expression and the target as AWS does."""
    schedule = props.get("Name") or name
    kwargs = _pick(
        props, "ScheduleExpression FlexibleTimeWindow Target State Description KmsKeyArn"
    )
    # moto resolves a Ref to a Number parameter as a number; CloudFormation gives a string ("the
    # parameter value becomes a string", Parameters, CloudFormation User Guide:
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html)
    for item in (
        kwargs.get("Target", {})
        .get("SageMakerPipelineParameters", {})
        .get("PipelineParameterList", [])
    ):
        item["Value"] = str(item["Value"])
    arn = _client("scheduler").create_schedule(Name=schedule, **kwargs)["ScheduleArn"]
    return schedule, {"Arn": arn}


for _type, _apply in api_destinations.CFN.items():  # EventBridge connections and API destinations
    _gap(_type)(_apply)
