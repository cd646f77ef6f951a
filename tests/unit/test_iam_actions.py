"""The request -> IAM authorisation map of the local IAM check, and CloudFormation's share."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest

from mlops.local.iam import actions as act
from mlops.local.iam import arns
from mlops.local.iam import cfn_permissions as cfnp

REGION, ACCOUNT = "us-east-1", "123456789012"
SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/exec"
TO_SM = {"iam:PassedToService": "sagemaker.amazonaws.com"}
PACKAGE = f"{SM}:model-package/abalone/3"


pytestmark = pytest.mark.cost(10)  # seconds: scheduled before the small modules


def accesses(service: str, operation: str, **params: Any) -> list[tuple[str, str, dict]]:
    found = act.accesses(service, operation, params, region=REGION, account=ACCOUNT)
    return [(a.action, a.resource, a.context) for a in found]


CASES = [
    (  # mlops train --tune: the tuning job, its tags and the role its trials run as
        "sagemaker",
        "CreateHyperParameterTuningJob",
        {
            "HyperParameterTuningJobName": "mlops-tune-1",
            "TrainingJobDefinition": {"RoleArn": ROLE},
            "Tags": [{"Key": "mlops:run", "Value": "r"}],
        },
        [
            (
                "sagemaker:CreateHyperParameterTuningJob",
                f"{SM}:hyper-parameter-tuning-job/mlops-tune-1",
                {"aws:RequestTag/mlops:run": "r", "aws:TagKeys": ["mlops:run"]},
            ),
            (
                "sagemaker:AddTags",
                f"{SM}:hyper-parameter-tuning-job/mlops-tune-1",
                {"aws:RequestTag/mlops:run": "r", "aws:TagKeys": ["mlops:run"]},
            ),
            ("iam:PassRole", ROLE, TO_SM),
        ],
    ),
    (
        "sagemaker",
        "ListTrainingJobsForHyperParameterTuningJob",
        {"HyperParameterTuningJobName": "mlops-tune-1"},
        [
            (
                "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                f"{SM}:hyper-parameter-tuning-job/mlops-tune-1",
                {},
            )
        ],
    ),
    (
        "sagemaker",
        "CreateTrainingJob",
        {"TrainingJobName": "abalone-1", "RoleArn": ROLE},
        [
            ("sagemaker:CreateTrainingJob", f"{SM}:training-job/abalone-1", {}),
            ("iam:PassRole", ROLE, TO_SM),
        ],
    ),
    (
        "sagemaker",
        "CreateModel",
        {"ModelName": "m", "ExecutionRoleArn": ROLE, "Containers": [{"ModelPackageName": PACKAGE}]},
        [
            ("sagemaker:CreateModel", f"{SM}:model/m", {}),
            ("sagemaker:CreateModel", PACKAGE, {}),
            ("iam:PassRole", ROLE, TO_SM),
        ],
    ),
    (
        "sagemaker",
        "CreateModelPackage",
        {"ModelPackageGroupName": "abalone", "ModelApprovalStatus": "PendingManualApproval"},
        [
            (
                "sagemaker:CreateModelPackage",
                f"{SM}:model-package/abalone/{arns.NEW_VERSION}",
                {"sagemaker:ModelApprovalStatus": "PendingManualApproval"},
            )
        ],
    ),
    (
        "sagemaker",
        "ListModelPackages",
        {"ModelPackageGroupName": "abalone"},
        [("sagemaker:ListModelPackages", "*", {})],
    ),
    (
        "sagemaker",
        "CreateEndpoint",
        {
            "EndpointName": "e",
            "EndpointConfigName": "c",
            "Tags": [{"Key": "Stage", "Value": "dev"}],
        },
        [
            (a, r, {"aws:RequestTag/Stage": "dev", "aws:TagKeys": ["Stage"]})
            for a, r in [
                ("sagemaker:CreateEndpoint", f"{SM}:endpoint/e"),
                ("sagemaker:CreateEndpoint", f"{SM}:endpoint-config/c"),
                ("sagemaker:AddTags", f"{SM}:endpoint/e"),
            ]
        ],
    ),
    (
        "sagemaker-runtime",
        "InvokeEndpoint",
        {"EndpointName": "e", "Body": b"1"},
        [("sagemaker:InvokeEndpoint", f"{SM}:endpoint/e", {})],
    ),
    (
        "cloudformation",
        "DescribeStacks",
        {"StackName": "abalone-dev"},
        [
            (
                "cloudformation:DescribeStacks",
                f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/abalone-dev/{arns.STACK_ID}",
                {},
            )
        ],
    ),
    ("cloudformation", "DescribeStacks", {}, [("cloudformation:DescribeStacks", "*", {})]),
    (
        "cloudformation",
        "CreateChangeSet",
        {"StackName": "s", "ChangeSetName": "c", "RoleARN": ROLE},
        [
            (
                "cloudformation:CreateChangeSet",
                f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/s/local",
                {"cloudformation:RoleArn": ROLE},
            ),
            ("iam:PassRole", ROLE, {"iam:PassedToService": "cloudformation.amazonaws.com"}),
        ],
    ),
    (
        "s3",
        "GetObject",
        {"Bucket": "b", "Key": "k/x.csv"},
        [("s3:GetObject", "arn:aws:s3:::b/k/x.csv", {})],
    ),
    (
        "s3",
        "PutObject",
        {"Bucket": "b", "Key": "k", "Body": b""},
        [("s3:PutObject", "arn:aws:s3:::b/k", {})],
    ),
    (
        "s3",
        "UploadPart",
        {"Bucket": "b", "Key": "k", "PartNumber": 1, "UploadId": "u"},
        [("s3:PutObject", "arn:aws:s3:::b/k", {})],
    ),
    ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k", {})]),
    (
        "s3",
        "ListObjectsV2",
        {"Bucket": "b", "Prefix": "runs/"},
        [("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "runs/"})],
    ),
    ("s3", "ListBuckets", {}, [("s3:ListAllMyBuckets", "*", {})]),
    (
        "cloudwatch",
        "PutMetricAlarm",
        {"AlarmName": "a", "MetricName": "m"},
        [("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a", {})],
    ),
    (
        "cloudwatch",
        "DeleteAlarms",
        {"AlarmNames": ["a", "b"]},
        [
            ("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{n}", {})
            for n in "ab"
        ],
    ),
    (
        "glue",
        "CreateJob",
        {"Name": "etl", "Role": "glue-role", "Tags": {"Stage": "dev"}},
        [
            (
                "glue:CreateJob",
                f"arn:aws:glue:{REGION}:{ACCOUNT}:job/etl",
                {"aws:RequestTag/Stage": "dev", "aws:TagKeys": ["Stage"]},
            ),
            (
                "iam:PassRole",
                f"arn:aws:iam::{ACCOUNT}:role/glue-role",
                {"iam:PassedToService": "glue.amazonaws.com"},
            ),
        ],
    ),
    (
        "glue",
        "CreateSecurityConfiguration",
        {"Name": "s"},
        [("glue:CreateSecurityConfiguration", "*", {})],
    ),
    (
        "ecr",
        "PutImage",
        {"repositoryName": "r", "imageManifest": "{}"},
        [("ecr:PutImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/r", {})],
    ),
    ("ecr", "GetAuthorizationToken", {}, [("ecr:GetAuthorizationToken", "*", {})]),
    (
        "logs",
        "FilterLogEvents",
        {"logGroupName": "/aws/sagemaker/TrainingJobs"},
        [
            (
                "logs:FilterLogEvents",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs",
                {},
            )
        ],
    ),
    (
        "logs",
        "PutLogEvents",
        {"logGroupName": "g", "logStreamName": "s", "logEvents": []},
        [("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:g:log-stream:s", {})],
    ),
    (
        "kms",
        "Decrypt",
        {"KeyId": "1234", "CiphertextBlob": b""},
        [("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234", {})],
    ),
    ("iam", "ListOpenIDConnectProviders", {}, [("iam:ListOpenIDConnectProviders", "*", {})]),
    (
        "sts",
        "AssumeRole",
        {"RoleArn": ROLE, "RoleSessionName": "x"},
        [("sts:AssumeRole", ROLE, {})],
    ),
    ("sts", "GetCallerIdentity", {}, []),
    ("sts", "AssumeRoleWithWebIdentity", {"RoleArn": ROLE}, []),
]


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES]
)
def test_accesses(service: str, operation: str, params: dict, expected: list) -> None:
    assert accesses(service, operation, **params) == expected


def test_scalable_target_is_opaque_and_carries_its_condition_keys() -> None:
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/e/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    [(action, resource, context)] = accesses(
        "application-autoscaling", "RegisterScalableTarget", **target, MinCapacity=1, MaxCapacity=2
    )
    assert action == "application-autoscaling:RegisterScalableTarget"
    assert re.fullmatch(
        rf"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:"
        r"scalable-target/[0-9a-f]{32}",
        resource,
    )
    assert context == {
        "application-autoscaling:service-namespace": "sagemaker",
        "application-autoscaling:scalable-dimension": target["ScalableDimension"],
    }


def test_unknown_operation_raises() -> None:
    with pytest.raises(act.UnmappedOperation, match=r"sagemaker:CreateDomain.*actions\.py"):
        accesses("sagemaker", "CreateDomain", DomainName="d")
    with pytest.raises(act.UnmappedOperation):
        accesses("lambda", "Invoke", FunctionName="f")


def test_missing_required_resource_raises() -> None:
    with pytest.raises(act.UnmappedOperation, match="training-job"):
        accesses("sagemaker", "DescribeTrainingJob")
    with pytest.raises(act.UnmappedOperation, match="alias"):
        accesses("kms", "Decrypt", KeyId="alias/data")


def _dummy_params(service: str, operation: str) -> dict[str, Any]:
    """A value for every key any name in the table reads, so each resource type is named."""
    params: dict[str, Any] = {}
    for namer in [*arns.NAMES.values(), *arns.SPECIAL.values()]:
        for key in (*namer.keys, *namer.extra):
            params[key] = ["x"] if key.endswith("Names") else "x"
    params["Delete"] = {"Objects": [{"Key": "x"}]}
    params.pop("ModelPackageArn", None)
    return params


COVERED = act.covered()


@pytest.mark.parametrize(("service", "operation"), COVERED, ids=[f"{s}:{o}" for s, o in COVERED])
def test_every_covered_operation_maps_to_real_actions(service: str, operation: str) -> None:
    model = botocore.session.get_session().get_service_model(service)
    assert operation in model.operation_names, "not a botocore operation"
    for action, resource, _ in accesses(service, operation, **_dummy_params(service, operation)):
        prefix, name = action.split(":")
        info = act.action_info(prefix, name)
        assert info["name"] == name  # exact spelling, as the reference has it
        if resource == "*":  # only where the reference requires no resource type
            assert not any(r["required"] for r in info["resourceTypes"]), action
        assert "${" not in resource


# What the project calls through boto3 (src/, tests/system/, moto_gaps on the user's behalf, the
# ETL script, the bootstrap), S3 transfers (upload_file/download_file) and paginators included.
PROJECT_CALLS = {
    "sagemaker": "CreateTrainingJob DescribeTrainingJob CreateProcessingJob DescribeProcessingJob "
    "CreateModelPackage DescribeModelPackage UpdateModelPackage ListModelPackages "
    "CreateModelPackageGroup DescribeModelPackageGroup DescribeEndpoint DescribeModel "
    "CreateModel CreateEndpoint DeleteEndpoint CreateHyperParameterTuningJob "
    "DescribeHyperParameterTuningJob ListTrainingJobsForHyperParameterTuningJob",
    "sagemaker-runtime": "InvokeEndpoint",
    "glue": "CreateJob CreateSecurityConfiguration GetJob StartJobRun GetJobRun",
    "ecr": "DescribeImages PutImage BatchGetImage GetAuthorizationToken "
    "BatchCheckLayerAvailability InitiateLayerUpload UploadLayerPart CompleteLayerUpload",
    "cloudformation": "CreateChangeSet DescribeChangeSet ExecuteChangeSet DeleteChangeSet "
    "DescribeStacks DescribeStackEvents DeleteStack GetTemplate ValidateTemplate "
    "ListExports",
    "cloudwatch": "PutMetricAlarm",
    "application-autoscaling": "RegisterScalableTarget PutScalingPolicy",
    "logs": "CreateLogGroup CreateLogStream PutLogEvents FilterLogEvents GetLogEvents "
    "DescribeLogStreams",
    "kms": "Decrypt GenerateDataKey Encrypt DescribeKey CreateGrant",
    "iam": "ListOpenIDConnectProviders CreateOpenIDConnectProvider",
    "sts": "GetCallerIdentity AssumeRole AssumeRoleWithWebIdentity",
    "s3": "GetObject PutObject HeadObject ListObjectsV2 ListBuckets CreateMultipartUpload "
    "UploadPart CompleteMultipartUpload AbortMultipartUpload",
}


def test_project_calls_are_covered() -> None:
    missing = [
        f"{s}:{op}"
        for s, ops in PROJECT_CALLS.items()
        for op in ops.split()
        if op not in act.COVERED.get(s, ())
    ]
    assert missing == []


def change(resource_type: str, action: str = "create", **props: Any) -> list[tuple]:
    found = cfnp.accesses_for_change(
        cfnp.ResourceChange("Res", resource_type, action, props), region=REGION, account=ACCOUNT
    )
    return [(a.action, a.resource, a.context) for a in found]


def test_cfn_endpoint_create() -> None:
    found = change("AWS::SageMaker::Endpoint", EndpointName="abalone-dev", EndpointConfigName="c")
    assert ("sagemaker:CreateEndpoint", f"{SM}:endpoint/abalone-dev", {}) in found
    assert ("sagemaker:CreateEndpoint", f"{SM}:endpoint-config/c", {}) in found
    assert all(a != "sagemaker:AddTags" for a, _, _ in found)  # no Tags: no tagging


def test_cfn_model_passes_its_role_and_uses_the_package() -> None:
    found = change(
        "AWS::SageMaker::Model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": PACKAGE},
    )
    assert found == [
        ("sagemaker:CreateModel", f"{SM}:model/Res-generated", {}),
        ("sagemaker:CreateModel", PACKAGE, {}),
        ("iam:PassRole", ROLE, TO_SM),
    ]


def test_cfn_scalable_target_needs_the_sagemaker_prerequisites() -> None:
    found = change(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/abalone-dev/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    assert (
        "sagemaker:UpdateEndpointWeightsAndCapacities",
        f"{SM}:endpoint/abalone-dev",
        {},
    ) in found
    assert ("sagemaker:DescribeEndpoint", f"{SM}:endpoint/abalone-dev", {}) in found
    assert ("application-autoscaling:DescribeScalableTargets", "*", {}) in found
    slr = [a for a in found if a[0] == "iam:CreateServiceLinkedRole"]
    assert slr and slr[0][2] == {
        "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"
    }
    assert all(not a.startswith("lambda:") for a, _, _ in found)


def test_cfn_alarm_tags_only_when_tagged() -> None:
    alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a"
    assert change("AWS::CloudWatch::Alarm", AlarmName="a") == [
        ("cloudwatch:PutMetricAlarm", alarm, {}),
        ("cloudwatch:DescribeAlarms", alarm, {}),
    ]
    tagged = change("AWS::CloudWatch::Alarm", AlarmName="a", Tags=[{"Key": "k", "Value": "v"}])
    assert ("cloudwatch:TagResource", alarm, {}) in tagged


def test_cfn_unknown_type_raises() -> None:
    with pytest.raises(cfnp.UnmappedOperation, match=r"AWS::Lambda::Function.*cfn_permissions"):
        change("AWS::Lambda::Function", FunctionName="f")


@pytest.mark.parametrize("resource_type", sorted(cfnp.NEEDS))
def test_cfn_every_type_maps_to_real_actions(resource_type: str) -> None:
    """Every table entry, every property set: real actions, "*" only where the reference has
    no resource types (where it lists some, a concrete ARN)."""
    props = {
        "Tags": [{"Key": "k", "Value": "v"}],
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/e/variant/v",
        "ScalableDimension": "d",
        "Roles": ["r"],
        "EndpointConfigName": "c",
        "AliasName": "alias/a",
        "TargetKeyId": "k",
        "Bucket": "b",
        "Role": "r",
        "KmsKeyId": "k",
    }
    for action in ("create", "update", "delete"):
        for name, resource, _ in change(resource_type, action, **props):
            prefix, short = name.split(":")
            info = act.action_info(prefix, short)
            assert info["name"] == short
            assert (resource == "*") == (not info["resourceTypes"]), (name, resource)


def test_cfn_tagging_is_on_the_resource_made() -> None:
    found = change(
        "AWS::SageMaker::Endpoint",
        EndpointName="e",
        EndpointConfigName="c",
        Tags=[{"Key": "Stage", "Value": "dev"}],
    )
    assert [r for a, r, _ in found if a == "sagemaker:AddTags"] == [f"{SM}:endpoint/e"]
