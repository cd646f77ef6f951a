"""What a caller must hold for CloudFormation to create, update or delete each resource.

Without a service role CloudFormation makes every change with the caller's credentials ("AWS
CloudFormation service role", CloudFormation User Guide); with one, with the role's. The actions
are the ``handlers.<create|update|delete>.permissions`` of each type's resource provider schema
(as cfn-lint ships them), kept to those the properties call for: a schema lists everything a
handler may ever call (S3 Tables, Lambda provisioned concurrency, ...), and ``action?Prop``
below means "only when the resource sets Prop" (``?Prop=value``: when it is that value).
Resources come from the properties through the same ARN tables as API calls
(:mod:`mlops.local.iam.arns`); actions without resource-level permissions get "*".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops.local.iam import arns
from mlops.local.iam.actions import Access, UnmappedOperation, resources_of, role_arn

__all__ = ["NEEDS", "Access", "ResourceChange", "UnmappedOperation", "accesses_for_change"]


@dataclass(frozen=True)
class ResourceChange:
    logical_id: str
    resource_type: str
    action: str  # "create" | "update" | "delete"
    properties: dict[str, Any] = field(default_factory=dict)  # resolved, as moto parsed them
    physical_id: str = ""


_SM_TAGS = "sagemaker:AddTags?Tags"
_SM_UNTAG = "sagemaker:DeleteTags?Tags"
# "Prerequisites", "Automatic scaling of Amazon SageMaker AI models" (SageMaker Developer Guide):
# who registers an endpoint variant also needs these, on the endpoint and its configuration.
_SM_SCALING = (
    "sagemaker:DescribeEndpoint?ServiceNamespace=sagemaker "
    "sagemaker:DescribeEndpointConfig?ServiceNamespace=sagemaker "
    "sagemaker:UpdateEndpointWeightsAndCapacities?ServiceNamespace=sagemaker "
)
_AAS = "application-autoscaling:"
_TARGET_ALARMS = "cloudwatch:PutMetricAlarm cloudwatch:DeleteAlarms cloudwatch:DescribeAlarms "
_LAMBDA = (
    "lambda:GetProvisionedConcurrencyConfig?ServiceNamespace=lambda "
    "lambda:PutProvisionedConcurrencyConfig?ServiceNamespace=lambda "
    "lambda:DeleteProvisionedConcurrencyConfig?ServiceNamespace=lambda "
)
_S3_CONFIG = (
    "s3:PutBucketTagging?Tags s3:PutEncryptionConfiguration?BucketEncryption "
    "s3:PutBucketPublicAccessBlock?PublicAccessBlockConfiguration "
    "s3:PutLifecycleConfiguration?LifecycleConfiguration "
    "s3:PutBucketVersioning?VersioningConfiguration "
    "s3:PutBucketOwnershipControls?OwnershipControls "
    "s3:PutBucketLogging?LoggingConfiguration s3:PutBucketCORS?CorsConfiguration "
    "s3:PutBucketNotification?NotificationConfiguration "
    "s3:PutReplicationConfiguration?ReplicationConfiguration "
    "s3:PutBucketWebsite?WebsiteConfiguration "
    "s3:PutBucketObjectLockConfiguration?ObjectLockConfiguration s3:PutBucketAcl?AccessControl "
)
_ROLE_POLICIES = (
    "iam:PutRolePolicy?Policies iam:AttachRolePolicy?ManagedPolicyArns iam:TagRole?Tags "
)
_POLICY_ATTACH = (
    "iam:AttachRolePolicy?Roles iam:AttachGroupPolicy?Groups iam:AttachUserPolicy?Users "
)
_POLICY_DETACH = (
    "iam:DetachRolePolicy?Roles iam:DetachGroupPolicy?Groups iam:DetachUserPolicy?Users "
)

# resource type -> operation -> the actions it needs
NEEDS: dict[str, dict[str, str]] = {
    "AWS::SageMaker::Model": {
        "create": f"sagemaker:CreateModel {_SM_TAGS}",
        "update": f"{_SM_TAGS} {_SM_UNTAG}",
        "delete": "sagemaker:DeleteModel",
    },
    "AWS::SageMaker::EndpointConfig": {
        "create": f"sagemaker:CreateEndpointConfig {_SM_TAGS} kms:DescribeKey?KmsKeyId",
        "update": f"{_SM_TAGS} {_SM_UNTAG}",
        "delete": "sagemaker:DeleteEndpointConfig",
    },
    "AWS::SageMaker::Endpoint": {
        "create": f"sagemaker:CreateEndpoint sagemaker:DescribeEndpoint {_SM_TAGS}",
        "update": f"sagemaker:UpdateEndpoint sagemaker:DescribeEndpoint {_SM_TAGS} {_SM_UNTAG}",
        "delete": "sagemaker:DeleteEndpoint sagemaker:DescribeEndpoint",
    },
    "AWS::SageMaker::ModelPackageGroup": {
        "create": "sagemaker:CreateModelPackageGroup sagemaker:DescribeModelPackageGroup "
        "sagemaker:PutModelPackageGroupPolicy?ModelPackageGroupPolicy "
        "sagemaker:GetModelPackageGroupPolicy?ModelPackageGroupPolicy "
        f"sagemaker:ListTags?Tags {_SM_TAGS}",
        "update": "sagemaker:DescribeModelPackageGroup "
        "sagemaker:PutModelPackageGroupPolicy?ModelPackageGroupPolicy "
        f"sagemaker:ListTags?Tags {_SM_TAGS} {_SM_UNTAG}",
        "delete": "sagemaker:DeleteModelPackageGroup sagemaker:DescribeModelPackageGroup "
        "sagemaker:GetModelPackageGroupPolicy "
        "sagemaker:DeleteModelPackageGroupPolicy?ModelPackageGroupPolicy",
    },
    "AWS::ApplicationAutoScaling::ScalableTarget": {
        "create": f"{_AAS}DescribeScalableTargets {_AAS}RegisterScalableTarget "
        f"{_AAS}DescribeScheduledActions?ScheduledActions "
        f"{_AAS}PutScheduledAction?ScheduledActions {_AAS}TagResource?Tags "
        f"{_AAS}ListTagsForResource?Tags iam:CreateServiceLinkedRole?!RoleARN "
        f"{_TARGET_ALARMS}{_LAMBDA}{_SM_SCALING}",
        "update": f"{_AAS}RegisterScalableTarget {_AAS}DescribeScalableTargets "
        f"{_AAS}DescribeScheduledActions?ScheduledActions "
        f"{_AAS}PutScheduledAction?ScheduledActions "
        f"{_AAS}DeleteScheduledAction?ScheduledActions {_AAS}TagResource?Tags "
        f"{_AAS}UntagResource?Tags {_AAS}ListTagsForResource?Tags "
        f"{_TARGET_ALARMS}{_LAMBDA}{_SM_SCALING}",
        "delete": f"{_AAS}DeregisterScalableTarget",
    },
    "AWS::ApplicationAutoScaling::ScalingPolicy": {
        # GetMetricData: the handler reads metrics for predictive scaling only (judgement: the
        # schema lists it for every policy; target tracking's alarms are made by the service)
        "create": f"{_AAS}DescribeScalingPolicies {_AAS}PutScalingPolicy "
        "cloudwatch:GetMetricData?PredictiveScalingPolicyConfiguration",
        "update": f"{_AAS}DescribeScalingPolicies {_AAS}PutScalingPolicy "
        "cloudwatch:GetMetricData?PredictiveScalingPolicyConfiguration",
        "delete": f"{_AAS}DescribeScalingPolicies {_AAS}DeleteScalingPolicy",
    },
    "AWS::CloudWatch::Alarm": {
        "create": "cloudwatch:PutMetricAlarm cloudwatch:DescribeAlarms cloudwatch:TagResource?Tags "
        "cloudwatch:ListTagsForResource?Tags",
        "update": "cloudwatch:PutMetricAlarm cloudwatch:DescribeAlarms cloudwatch:TagResource?Tags "
        "cloudwatch:UntagResource?Tags cloudwatch:ListTagsForResource?Tags",
        "delete": "cloudwatch:DeleteAlarms cloudwatch:DescribeAlarms",
    },
    "AWS::S3::Bucket": {
        "create": f"s3:CreateBucket {_S3_CONFIG}",
        "update": _S3_CONFIG,
        "delete": "s3:DeleteBucket s3:ListBucket",
    },
    "AWS::S3::BucketPolicy": {
        "create": "s3:GetBucketPolicy s3:PutBucketPolicy",
        "update": "s3:GetBucketPolicy s3:PutBucketPolicy",
        "delete": "s3:GetBucketPolicy s3:DeleteBucketPolicy",
    },
    "AWS::KMS::Key": {
        "create": "kms:CreateKey kms:EnableKeyRotation?EnableKeyRotation=true "
        "kms:DisableKey?Enabled=false kms:TagResource?Tags kms:PutKeyPolicy?KeyPolicy",
        "update": "kms:DescribeKey kms:PutKeyPolicy?KeyPolicy "
        "kms:EnableKeyRotation?EnableKeyRotation kms:UpdateKeyDescription?Description "
        "kms:TagResource?Tags kms:UntagResource?Tags kms:ListResourceTags",
        "delete": "kms:DescribeKey kms:ScheduleKeyDeletion",
    },
    "AWS::KMS::Alias": {
        "create": "kms:CreateAlias",
        "update": "kms:UpdateAlias",
        "delete": "kms:DeleteAlias",
    },
    "AWS::ECR::Repository": {
        "create": "ecr:CreateRepository ecr:PutLifecyclePolicy?LifecyclePolicy "
        "ecr:SetRepositoryPolicy?RepositoryPolicyText ecr:TagResource?Tags "
        "kms:DescribeKey?EncryptionConfiguration.KmsKey "
        "kms:CreateGrant?EncryptionConfiguration.KmsKey",
        "update": "ecr:DescribeRepositories ecr:PutLifecyclePolicy?LifecyclePolicy "
        "ecr:SetRepositoryPolicy?RepositoryPolicyText ecr:TagResource?Tags "
        "ecr:UntagResource?Tags "
        "ecr:PutImageScanningConfiguration?ImageScanningConfiguration "
        "ecr:PutImageTagMutability?ImageTagMutability",
        "delete": "ecr:DeleteRepository",
    },
    "AWS::Glue::Job": {
        "create": "iam:GetRole glue:CreateJob glue:GetJob glue:TagResource?Tags",
        "update": "iam:GetRole glue:UpdateJob glue:TagResource?Tags glue:UntagResource?Tags",
        "delete": "glue:DeleteJob glue:GetJob",
    },
    "AWS::Glue::SecurityConfiguration": {  # no update handler: every change replaces it
        "create": "glue:CreateSecurityConfiguration glue:GetSecurityConfiguration",
        "update": "",
        "delete": "glue:DeleteSecurityConfiguration",
    },
    "AWS::IAM::Role": {
        "create": f"iam:CreateRole iam:GetRole {_ROLE_POLICIES}iam:GetRolePolicy?Policies "
        "iam:PutRolePermissionsBoundary?PermissionsBoundary",
        "update": f"iam:UpdateRole iam:UpdateAssumeRolePolicy {_ROLE_POLICIES}"
        "iam:DeleteRolePolicy?Policies iam:DetachRolePolicy?ManagedPolicyArns "
        "iam:UntagRole?Tags iam:UpdateRoleDescription?Description "
        "iam:PutRolePermissionsBoundary?PermissionsBoundary",
        "delete": "iam:DeleteRole iam:GetRole iam:ListAttachedRolePolicies iam:ListRolePolicies "
        "iam:DetachRolePolicy?ManagedPolicyArns iam:DeleteRolePolicy?Policies",
    },
    "AWS::IAM::ManagedPolicy": {
        "create": f"iam:CreatePolicy {_POLICY_ATTACH}",
        "update": f"iam:GetPolicy iam:ListPolicyVersions iam:CreatePolicyVersion "
        f"iam:DeletePolicyVersion {_POLICY_ATTACH}{_POLICY_DETACH}",
        "delete": f"iam:GetPolicy iam:ListPolicyVersions iam:DeletePolicyVersion "
        f"iam:DeletePolicy iam:ListEntitiesForPolicy {_POLICY_DETACH}",
    },
    "AWS::IAM::OIDCProvider": {
        "create": "iam:CreateOpenIDConnectProvider iam:GetOpenIDConnectProvider "
        "iam:TagOpenIDConnectProvider?Tags",
        "update": "iam:GetOpenIDConnectProvider "
        "iam:UpdateOpenIDConnectProviderThumbprint?ThumbprintList "
        "iam:AddClientIDToOpenIDConnectProvider?ClientIdList "
        "iam:RemoveClientIDFromOpenIDConnectProvider?ClientIdList "
        "iam:TagOpenIDConnectProvider?Tags iam:UntagOpenIDConnectProvider?Tags "
        "iam:ListOpenIDConnectProviderTags",
        "delete": "iam:DeleteOpenIDConnectProvider",
    },
}

# Role-valued properties: iam:PassRole with iam:PassedToService on create and update
PASSES: dict[str, tuple[str, str]] = {
    "AWS::SageMaker::Model": ("ExecutionRoleArn", "sagemaker.amazonaws.com"),
    "AWS::SageMaker::EndpointConfig": ("ExecutionRoleArn", "sagemaker.amazonaws.com"),
    "AWS::Glue::Job": ("Role", "glue.amazonaws.com"),
    "AWS::ApplicationAutoScaling::ScalableTarget": (
        "RoleARN",
        "application-autoscaling.amazonaws.com",
    ),
    "AWS::S3::Bucket": ("ReplicationConfiguration.Role", "s3.amazonaws.com"),
}

# The service-linked role RegisterScalableTarget creates on first use ("Service-linked roles
# for Application Auto Scaling"): per namespace, the role's name.
SERVICE_LINKED = {"sagemaker": "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"}


def _name(change: ResourceChange, prop: str) -> str:
    """The resource's name: the property, else the physical id, else one like CloudFormation's
    generated names (the policies grant model/* and endpoint-config/* for those)."""
    given = change.properties.get(prop) or change.physical_id
    return str(given or f"{change.logical_id}-generated")


def _target_params(p: dict[str, Any], c: ResourceChange) -> dict[str, Any]:
    # ScalingTargetId is the ScalableTarget's Ref: "<ResourceId>|<ScalableDimension>|<Namespace>"
    ref = [*str(p.get("ScalingTargetId", "")).split("|"), "", ""][:3]
    rid, dim, ns = (
        p.get("ResourceId") or ref[0],
        p.get("ScalableDimension") or ref[1],
        p.get("ServiceNamespace") or ref[2],
    )
    parts = str(rid).split("/")
    endpoint = parts[1] if ns == "sagemaker" and len(parts) > 1 else ""
    alarms = [f"TargetTracking-{rid}-Alarm{side}-local" for side in ("High", "Low")]
    slr = SERVICE_LINKED.get(str(ns), "")
    return {
        "ServiceNamespace": ns,
        "ResourceId": rid,
        "ScalableDimension": dim,
        "EndpointName": endpoint,
        "EndpointConfigName": "*",  # the endpoint's, any of them
        "AlarmNames": alarms,
        "RoleName": slr and f"aws-service-role/{ns}.application-autoscaling.amazonaws.com/{slr}",
    }


def _role_name(p: dict[str, Any], c: ResourceChange) -> str:
    name = _name(c, "RoleName")
    if name.startswith("arn:"):
        return name
    path = str(p.get("Path", "/")).strip("/")
    return f"{path}/{name}" if path else name


# resource type -> API-shaped parameters naming what the change touches (see arns.NAMES)
PARAMS: dict[str, Callable[[dict[str, Any], ResourceChange], dict[str, Any]]] = {
    "AWS::SageMaker::Model": lambda p, c: {"ModelName": _name(c, "ModelName")},
    "AWS::SageMaker::EndpointConfig": lambda p, c: {
        "EndpointConfigName": _name(c, "EndpointConfigName"),
        "KeyId": p.get("KmsKeyId"),
    },
    "AWS::SageMaker::Endpoint": lambda p, c: {
        "EndpointName": _name(c, "EndpointName"),
        "EndpointConfigName": p.get("EndpointConfigName"),
    },
    "AWS::SageMaker::ModelPackageGroup": lambda p, c: {
        "ModelPackageGroupName": _name(c, "ModelPackageGroupName")
    },
    "AWS::ApplicationAutoScaling::ScalableTarget": _target_params,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _target_params,
    "AWS::CloudWatch::Alarm": lambda p, c: {"AlarmName": _name(c, "AlarmName")},
    "AWS::S3::Bucket": lambda p, c: {"Bucket": _name(c, "BucketName").lower()},
    "AWS::S3::BucketPolicy": lambda p, c: {"Bucket": p.get("Bucket") or c.physical_id},
    "AWS::KMS::Key": lambda p, c: {"KeyId": c.physical_id or f"{c.logical_id}-generated"},
    "AWS::KMS::Alias": lambda p, c: {
        "AliasName": p.get("AliasName"),
        "KeyId": p.get("TargetKeyId"),
    },
    "AWS::ECR::Repository": lambda p, c: {
        "repositoryName": _name(c, "RepositoryName"),
        "KeyId": arns.get(p, "EncryptionConfiguration.KmsKey")[:1] or None,
    },
    "AWS::Glue::Job": lambda p, c: {"JobName": _name(c, "Name"), "RoleName": p.get("Role")},
    "AWS::Glue::SecurityConfiguration": lambda p, c: {"Name": _name(c, "Name")},
    "AWS::IAM::Role": lambda p, c: {"RoleName": _role_name(p, c)},
    "AWS::IAM::ManagedPolicy": lambda p, c: {
        "PolicyName": c.physical_id
        if c.physical_id.startswith("arn:")
        else _name(c, "ManagedPolicyName"),
        "RoleName": p.get("Roles"),
        "GroupName": p.get("Groups"),
        "UserName": p.get("Users"),
    },
    "AWS::IAM::OIDCProvider": lambda p, c: {
        "OpenIDConnectProviderArn": c.physical_id if c.physical_id.startswith("arn:") else None,
        "Url": p.get("Url", "https://token.actions.githubusercontent.com"),
    },
}

# Tagging actions name their resource by ARN (their resource types are all optional)
TAGGING = frozenset(
    f"{p}:{a}"
    for p in ("sagemaker", "cloudwatch", "glue")
    for a in (
        "AddTags",
        "DeleteTags",
        "ListTags",
        "TagResource",
        "UntagResource",
        "ListTagsForResource",
    )
)


def _wanted(spec: str, props: dict[str, Any]) -> str | None:
    """The action of one ``action[?[!]Prop[=value]]`` entry, if this change needs it."""
    action, _, when = spec.partition("?")
    if not when:
        return action
    negate = when.startswith("!")
    prop, _, value = when.lstrip("!").partition("=")
    found = arns.get(props, prop)
    hit = bool(found) and (not value or str(found[0]).lower() == value)
    return action if hit != negate else None


def accesses_for_change(
    change: ResourceChange, *, region: str, account: str, partition: str = "aws"
) -> list[Access]:
    """What the caller must hold for CloudFormation to make this change (no service role)."""
    needs = NEEDS.get(change.resource_type)
    if needs is None or change.action not in needs:
        raise UnmappedOperation(
            f"no IAM permissions for CloudFormation {change.action} of {change.resource_type} "
            f"({change.logical_id}): add them to src/mlops/local/iam/cfn_permissions.py"
        )
    props = change.properties or {}
    params = {
        k: v
        for k, v in PARAMS[change.resource_type](props, change).items()
        if v not in (None, "", [])
    }
    found: list[Access] = []
    for spec in needs[change.action].split():
        action = _wanted(spec, props)
        if action is None:
            continue
        prefix, name = action.split(":")
        call = dict(params)
        own = [a.resource for a in found if a.action.startswith(f"{prefix}:") and a.resource != "*"]
        if action in TAGGING and own:  # tagging: on the resource the change makes
            call["ResourceArn"] = own[0]
        context: dict[str, Any] = {}
        if action == "iam:CreateServiceLinkedRole":
            context["iam:AWSServiceName"] = (
                f"{params.get('ServiceNamespace')}.application-autoscaling.amazonaws.com"
            )
        found += [
            Access(action, r, context)
            for r in resources_of(
                prefix, name, call, region=region, account=account, partition=partition
            )
        ]
    found += _model_packages(change, props, region, account, partition)
    role_prop, service = PASSES.get(change.resource_type, ("", ""))
    if change.action != "delete":
        for role in arns.get(props, role_prop) if role_prop else []:
            found.append(
                Access(
                    "iam:PassRole",
                    role_arn(str(role), account=account, partition=partition),
                    {"iam:PassedToService": service},
                )
            )
    return found


def _model_packages(
    change: ResourceChange, props: dict[str, Any], region: str, account: str, partition: str
) -> list[Access]:
    """A Model from a package: sagemaker:CreateModel on the package too (as the API call)."""
    if (change.resource_type, change.action) != ("AWS::SageMaker::Model", "create"):
        return []
    packages = arns.get(props, "PrimaryContainer.ModelPackageName") + arns.get(
        props, "Containers[].ModelPackageName"
    )
    return [
        Access("sagemaker:CreateModel", r, {})
        for p in packages
        for r in resources_of(
            "sagemaker",
            "DescribeModelPackage",
            {"ModelPackageName": p},
            region=region,
            account=account,
            partition=partition,
        )
    ]
