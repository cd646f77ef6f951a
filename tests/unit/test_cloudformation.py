"""The CloudFormation templates read as data, and deployed into moto as `make pipeline` does."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import warnings
from pathlib import Path

import pytest
import yaml

from mlops.aws import new_session

ROOT = Path(__file__).resolve().parents[2] / "cloudformation"
ACCOUNT, REGION = "123456789012", "us-east-1"
# moto ignores these types: a Ref gives "" and a GetAtt fails the whole stack.
MOTO_IGNORED = (
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::",
    "AWS::Glue::",
    "AWS::IAM::OIDCProvider",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::S3::BucketPolicy",
    "AWS::Scheduler::",
)
# The only actions allowed on Resource "*": AWS offers no resource-level permission for them.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "sagemaker:ListModelPackages",
    "cloudwatch:PutMetricData",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScalingActivities",
}
TEMPLATES = [
    "bootstrap.yaml",
    "github-access.yaml",
    "endpoint.yaml",
    "inference.yaml",
    "retrain.yaml",
]
MAX_LINES = 300  # the project's limit for one template
BOOTSTRAP_OUTPUTS = {
    "DataBucket",
    "ArtifactBucket",
    "CaptureBucket",
    "KmsKeyArn",
    "SageMakerExecutionRoleArn",
    "GlueRoleArn",
    "GlueJobName",
    "EcrRepositoryName",
    "EcrRepositoryUri",
    "ModelPackageGroupName",
}
ACCESS_OUTPUTS = {
    "BuildRoleArn",
    "DevDeployRoleArn",
    "ProdDeployRoleArn",
    "DevStackRoleArn",
    "ProdStackRoleArn",
    "OidcProviderArn",
}
GITHUB_ROLES = ("BuildRole", "DevDeployRole", "ProdDeployRole")
STACK_ROLES = {"DevStackRole": "dev", "ProdStackRole": "prod"}
GROUP_PACKAGES = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:model-package/${Group}/*",
        {"Group": {"Fn::ImportValue": {"Fn::Sub": "${BootstrapStackName}-ModelPackageGroupName"}}},
    ]
}
STACK_ROLE_PASS = {
    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/"
    "${ProjectName}-stack-${!aws:PrincipalTag/Stage}"
}


class CfnLoader(yaml.SafeLoader):
    """SafeLoader turning the short intrinsic tags (!Ref, !Sub, !GetAtt...) into the long form."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=CfnLoader)  # a SafeLoader subclass


@pytest.fixture(scope="module")
def boot() -> dict:
    return load("bootstrap.yaml")


@pytest.fixture(scope="module")
def access() -> dict:
    return load("github-access.yaml")


@pytest.fixture(scope="module")
def endpoint() -> dict:
    return load("endpoint.yaml")


@pytest.fixture(scope="module")
def inference() -> dict:
    return load("inference.yaml")


def walk(node, path=()):
    """Every (path, node) pair in a loaded template."""
    yield path, node
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield from walk(child, (*path, key))


def statements(template: dict):
    """Every IAM, key and bucket policy statement of a template, with its resource's logical id."""
    for path, node in walk(template["Resources"]):
        if path and path[-1] in ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy"):
            for statement in node["Statement"]:
                yield path[0], path[-1], statement


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def of_type(template: dict, type_: str) -> dict:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


@pytest.mark.parametrize("name", TEMPLATES)
def test_size_parameters_and_exported_outputs(name: str) -> None:
    text = (ROOT / name).read_text()
    assert len(text.splitlines()) <= MAX_LINES
    template = load(name)
    constraints = {"AllowedValues", "AllowedPattern", "MinValue", "MaxValue", "MinLength"}
    for key, param in template["Parameters"].items():
        assert param.get("Description"), f"{name}: parameter {key} has no Description"
        assert constraints & param.keys(), f"{name}: parameter {key} has no constraint"
    for key, output in template["Outputs"].items():
        assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{key}"}, key


def test_outputs_are_the_names_the_pipeline_and_bootstrap_script_read(boot, access) -> None:
    from mlops import bootstrap

    assert set(boot["Outputs"]) == BOOTSTRAP_OUTPUTS == set(bootstrap.BOOTSTRAP_OUTPUTS)
    assert set(access["Outputs"]) == ACCESS_OUTPUTS == set(bootstrap.ACCESS_OUTPUTS)
    for role, stage in STACK_ROLES.items():
        value = access["Outputs"][f"{stage.title()}StackRoleArn"]["Value"]
        assert value == {"Fn::GetAtt": [role, "Arn"]}


def test_github_access_imports_only_bootstrap_exports(boot: dict, access: dict) -> None:
    """Every resource of the bootstrap stack reaches the GitHub roles as one of its exports."""
    imports = [
        n["Fn::ImportValue"]
        for _, n in walk(access)
        if isinstance(n, dict) and "Fn::ImportValue" in n
    ]
    names = {i["Fn::Sub"].removeprefix("${BootstrapStackName}-") for i in imports}
    assert names <= set(boot["Outputs"])
    assert {"KmsKeyArn", "SageMakerExecutionRoleArn", "ModelPackageGroupName"} <= names
    assert not {"Key", "DataBucket", "SageMakerExecutionRole"} & set(access["Resources"])


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("BuildRole", "ref:refs/heads/main"),
        ("DevDeployRole", "environment:dev"),
        ("ProdDeployRole", "environment:prod"),
    ],
)
def test_github_roles_trust_exactly_one_subject(access: dict, role: str, subject: str) -> None:
    props = access["Resources"][role]["Properties"]
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]
    assert set(condition) == {"StringEquals"}  # no StringLike wildcards
    assert condition["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": {
            "Fn::Sub": f"repo:${{GitHubOrg}}/${{GitHubRepo}}:{subject}"
        },
    }
    assert access["Resources"]["BuildRole"]["Properties"]["MaxSessionDuration"] >= 4 * 3600
    assert set(of_type(access, "AWS::IAM::Role")) == {*GITHUB_ROLES, *STACK_ROLES}


def grants(template: dict, role: str) -> list[dict]:
    """Every Allow statement a role holds: its inline policies and the managed policies of this
    template it attaches (by Ref)."""
    props = template["Resources"][role]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for arn in props.get("ManagedPolicyArns", []):
        documents.append(template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"])
    return [st for doc in documents for st in doc["Statement"] if st["Effect"] == "Allow"]


def granted(template: dict, role: str) -> set[str]:
    return {a for st in grants(template, role) for a in as_list(st["Action"])}


@pytest.mark.parametrize(("role", "stage"), STACK_ROLES.items())
def test_stack_roles_trust_only_cloudformation_of_this_account(access, role, stage) -> None:
    props = access["Resources"][role]["Properties"]
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    this_account = {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert statement["Condition"] == {"StringEquals": this_account}
    assert props["RoleName"] == {"Fn::Sub": f"${{ProjectName}}-stack-{stage}"}
    assert props["Tags"] == [{"Key": "Stage", "Value": stage}]  # StackPolicy scopes by the tag
    assert props["ManagedPolicyArns"] == [{"Ref": "StackPolicy"}]
    assert "Policies" not in props


def test_the_deploy_roles_pass_only_their_stage_stack_role_to_cloudformation(access) -> None:
    policy = access["Resources"]["DeployPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (passes,) = [st for st in policy if "iam:PassRole" in as_list(st["Action"])]
    assert as_list(passes["Action"]) == ["iam:PassRole"]
    assert passes["Resource"] == STACK_ROLE_PASS
    assert passes["Condition"] == {
        "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}
    }
    for role, stage in STACK_ROLES.items():  # the pattern names exactly that stage's role
        name = access["Resources"][role]["Properties"]["RoleName"]["Fn::Sub"]
        assert (
            passes["Resource"]["Fn::Sub"]
            .replace("${!aws:PrincipalTag/Stage}", stage)
            .endswith("role/" + name)
        )
    for role in ("DevDeployRole", "ProdDeployRole"):
        props = access["Resources"][role]["Properties"]
        assert props["ManagedPolicyArns"] == [{"Ref": "ReadPolicy"}, {"Ref": "DeployPolicy"}]
        assert "Policies" not in props  # no inline "promote" policy any more
        passed = [st for st in grants(access, role) if "iam:PassRole" in as_list(st["Action"])]
        services = {st["Condition"]["StringEquals"]["iam:PassedToService"] for st in passed}
        assert services == {"sagemaker.amazonaws.com", "cloudformation.amazonaws.com"}


def test_the_deploy_policy_holds_change_sets_endpoint_checks_and_the_lifecycle(access) -> None:
    policy = access["Resources"]["DeployPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_action = {a: st for st in policy for a in as_list(st["Action"])}
    assert set(by_action) == {
        "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DeleteChangeSet",
        "cloudformation:DeleteStack",
        "iam:PassRole",
        "sagemaker:DescribeEndpoint",
        "sagemaker:InvokeEndpoint",
        "sagemaker:UpdateModelPackage",
    }
    stage_stack = {
        "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
        "stack/${ProjectName}-endpoint-${!aws:PrincipalTag/Stage}/*"
    }
    stage_endpoint = {
        "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
        "endpoint/${ProjectName}-${!aws:PrincipalTag/Stage}"
    }
    assert by_action["cloudformation:CreateChangeSet"]["Resource"] == stage_stack
    assert by_action["cloudformation:DeleteStack"]["Resource"] == stage_stack
    assert by_action["sagemaker:InvokeEndpoint"]["Resource"] == stage_endpoint
    assert by_action["sagemaker:UpdateModelPackage"]["Resource"] == GROUP_PACKAGES


def test_the_registry_lifecycle_is_written_by_the_build_and_deploy_roles_only(boot, access) -> None:
    """Registering (build) and recording dev/prod stages (deploy roles) update packages; the
    grant names the group's packages, nothing wider."""
    holders = {
        role
        for role in of_type(access, "AWS::IAM::Role")
        if "sagemaker:UpdateModelPackage" in granted(access, role)
    }
    assert holders == set(GITHUB_ROLES)
    for role in holders:
        for st in grants(access, role):
            if "sagemaker:UpdateModelPackage" in as_list(st["Action"]):
                packages = [r for r in as_list(st["Resource"]) if "model-package/" in json.dumps(r)]
                assert packages == [GROUP_PACKAGES], role
                assert "*" not in as_list(st["Resource"])
    in_boot = [rid for rid, _, st in statements(boot) if "sagemaker:UpdateModelPackage" in str(st)]
    assert in_boot == []


TUNING = {
    "sagemaker:CreateHyperParameterTuningJob",
    "sagemaker:DescribeHyperParameterTuningJob",
    "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
}
TUNING_JOBS = {
    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
    "hyper-parameter-tuning-job/${ProjectName}-*"
}


def test_only_the_build_role_tunes_and_only_the_projects_tuning_jobs(access) -> None:
    """mlops train --tune (the train job, as the build role): create, wait, list the trials; the
    tuning job's tags need AddTags on it too; the best trial is a training-job/<project>-*."""
    for role in GITHUB_ROLES:
        assert TUNING & granted(access, role) == (TUNING if role == "BuildRole" else set()), role
    (statement,) = [st for st in grants(access, "BuildRole") if TUNING & set(as_list(st["Action"]))]
    assert TUNING | {"sagemaker:AddTags", "sagemaker:DescribeTrainingJob"} <= set(
        as_list(statement["Action"])
    )
    assert TUNING_JOBS in as_list(statement["Resource"])
    assert "*" not in as_list(statement["Resource"])


SAGEMAKER_CREATE = {
    "sagemaker:CreateModel",
    "sagemaker:CreateEndpoint",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:UpdateEndpoint",
    "sagemaker:DeleteEndpoint",
}


def test_only_cloudformation_stack_roles_create_models_and_endpoints(access) -> None:
    for role in GITHUB_ROLES:
        assert not SAGEMAKER_CREATE & granted(access, role), role
    for role in STACK_ROLES:
        actions = granted(access, role)
        assert actions >= SAGEMAKER_CREATE, role
        assert "sagemaker:UpdateEndpointWeightsAndCapacities" in actions  # autoscaling needs it
        assert "sagemaker:InvokeEndpoint" not in actions
        assert not {a for a in actions if a.startswith("cloudformation:")}


def test_the_stack_policy_covers_what_the_endpoint_stack_creates(access, endpoint) -> None:
    policy = access["Resources"]["StackPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # CreateModel from a package is authorised on the package as well as on the model
    from_package = [st for st in policy if st["Resource"] == GROUP_PACKAGES]
    assert any("sagemaker:CreateModel" in as_list(st["Action"]) for st in from_package)
    (passes,) = [st for st in policy if "iam:PassRole" in as_list(st["Action"])]
    assert passes["Resource"] == {
        "Fn::ImportValue": {"Fn::Sub": "${BootstrapStackName}-SageMakerExecutionRoleArn"}
    }
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert passes["Condition"] == {"StringEquals": to_sagemaker}
    actions = {a for st in policy for a in as_list(st["Action"])}
    assert {"kms:CreateGrant", "cloudwatch:PutMetricAlarm"} <= actions
    assert "application-autoscaling:RegisterScalableTarget" in actions
    assert "application-autoscaling:PutScalingPolicy" in actions
    types = {r["Type"] for r in endpoint["Resources"].values()}
    assert "AWS::ApplicationAutoScaling::ScalableTarget" in types  # what those grants are for


def test_the_read_policy_lets_system_tests_read_the_held_out_test_set_only(access) -> None:
    policy = access["Resources"]["ReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    data = {"Bucket": {"Fn::ImportValue": {"Fn::Sub": "${BootstrapStackName}-DataBucket"}}}
    on_data = [st for st in policy if json.dumps(data) in json.dumps(st["Resource"])]
    assert len(on_data) == 2
    by_action = {st["Action"]: st for st in on_data}
    assert set(by_action) == {"s3:GetObject", "s3:ListBucket"}
    assert by_action["s3:GetObject"]["Resource"] == {
        "Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/runs/*/etl/test_raw/*", data]
    }
    assert "Condition" not in by_action["s3:GetObject"]
    listing = by_action["s3:ListBucket"]
    assert listing["Resource"] == {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}", data]}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "runs/*/etl/test_raw/*"}}


@pytest.mark.parametrize("name", TEMPLATES)
def test_least_privilege(name: str) -> None:
    for rid, kind, st in statements(load(name)):
        actions = as_list(st.get("Action", []))
        assert not {"*", "*:*"} & set(actions), f"{rid}: wildcard action"
        if kind == "KeyPolicy" or st["Effect"] == "Deny":
            continue  # in a key policy "*" means the key itself
        if "*" in as_list(st.get("Resource", [])):
            assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{rid}: {actions} on Resource *"
        if "iam:PassRole" in actions:
            service = st["Condition"]["StringEquals"]["iam:PassedToService"]
            expected = {
                # the bootstrap stack's export of the execution role, to SageMaker; the batch
                # inference pipeline's own role (CreatePipeline's RoleArn), to SageMaker
                "sagemaker.amazonaws.com": [
                    {
                        "Fn::ImportValue": {
                            "Fn::Sub": "${BootstrapStackName}-SageMakerExecutionRoleArn"
                        }
                    },
                    *([{"Fn::GetAtt": ["PipelineRole", "Arn"]}] if rid == "UpsertPolicy" else []),
                ],
                # the stage's CloudFormation service role, to CloudFormation
                "cloudformation.amazonaws.com": [STACK_ROLE_PASS],
            }
            assert st["Resource"] in expected[service], rid


@pytest.mark.parametrize("name", TEMPLATES)
def test_nothing_reads_attributes_of_types_moto_ignores(name: str) -> None:
    template = load(name)
    ignored = {k for k, r in template["Resources"].items() if r["Type"].startswith(MOTO_IGNORED)}
    for path, node in walk(template):
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            assert node["Fn::GetAtt"][0] not in ignored, f"GetAtt at {path}"
        if isinstance(node, dict) and "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            for ref in re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text):
                assert ref not in ignored, f"Sub of {ref} at {path}"
    for key, output in template["Outputs"].items():
        refs = [n["Ref"] for _, n in walk(output["Value"]) if isinstance(n, dict) and "Ref" in n]
        assert not ignored & set(refs), f"output {key} refers to a resource moto ignores"


def test_buckets_encrypted_versioned_private_tls_only(boot: dict) -> None:
    buckets = of_type(boot, "AWS::S3::Bucket")
    assert set(buckets) == {"DataBucket", "ArtifactBucket", "CaptureBucket"}
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in of_type(boot, "AWS::S3::BucketPolicy").values()
    }
    for key, bucket in buckets.items():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert len(props["PublicAccessBlockConfiguration"]) == 4
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        (deny,) = policies[key]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_key_ecr_and_glue_job(boot: dict) -> None:
    res = boot["Resources"]
    assert res["Key"]["Properties"]["EnableKeyRotation"] is True
    ecr = res["EcrRepository"]["Properties"]
    assert ecr["ImageTagMutability"] == "IMMUTABLE"
    assert ecr["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert ecr["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    (rule,) = json.loads(ecr["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"]["countType"] == "imageCountMoreThan"
    job = res["GlueJob"]["Properties"]
    assert job["Command"] == {
        "Name": "glueetl",
        "PythonVersion": "3",
        "ScriptLocation": {"Fn::Sub": "s3://${ArtifactBucket}/code/etl.py"},
    }
    assert job["GlueVersion"] == "5.1"
    assert job["WorkerType"] == {"Ref": "GlueWorkerType"}
    assert job["ExecutionClass"] == {"Ref": "GlueExecutionClass"}
    assert boot["Parameters"]["GlueNumberOfWorkers"]["MinValue"] == 2
    assert {"--enable-metrics", "--enable-continuous-cloudwatch-log", "--job-language"} <= set(
        job["DefaultArguments"]
    )
    assert boot["Outputs"]["GlueJobName"]["Value"] == job["Name"]


def test_endpoint_blue_green_with_alarm_rollback(endpoint: dict) -> None:
    res = endpoint["Resources"]
    assert "ModelName" not in res["Model"]["Properties"]
    assert res["Model"]["Properties"]["PrimaryContainer"] == {
        "ModelPackageName": {"Ref": "ModelPackageArn"}
    }
    assert "EndpointConfigName" not in res["EndpointConfig"]["Properties"]
    (variant,) = res["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    props = res["Endpoint"]["Properties"]
    assert props["EndpointName"] == {"Ref": "EndpointName"}
    assert props["RetainAllVariantProperties"] is True
    alarm_names = [
        a["AlarmName"] for a in props["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    ]
    alarms = of_type(endpoint, "AWS::CloudWatch::Alarm").values()
    assert alarm_names == [a["Properties"]["AlarmName"] for a in alarms]
    assert {a["Properties"]["MetricName"] for a in alarms} == {
        "Invocation5XXErrors",
        "ModelLatency",
    }
    for alarm in alarms:
        assert alarm["Properties"]["Dimensions"] == [
            {"Name": "EndpointName", "Value": {"Ref": "EndpointName"}},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
    for key in ("Model", "EndpointConfig", "Endpoint"):
        assert {"Key": "DeployId", "Value": {"Ref": "DeployId"}} in res[key]["Properties"]["Tags"]


def test_endpoint_capture_and_autoscaling_by_condition(endpoint: dict) -> None:
    res = endpoint["Resources"]
    condition, capture, absent = res["EndpointConfig"]["Properties"]["DataCaptureConfig"]["Fn::If"]
    assert (condition, absent) == ("HasDataCapture", {"Ref": "AWS::NoValue"})
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert set(capture["CaptureContentTypeHeader"]) == {"CsvContentTypes", "JsonContentTypes"}
    target, policy = res["ScalableTarget"], res["ScalingPolicy"]
    assert target["Condition"] == policy["Condition"] == "HasAutoscaling"
    assert target["DependsOn"] == "Endpoint"
    assert target["Properties"]["ResourceId"] == {
        "Fn::Sub": "endpoint/${EndpointName}/variant/AllTraffic"
    }
    config = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert endpoint["Parameters"]["TargetInvocationsPerInstance"]["Default"] == 750


# --- inference.yaml: what surrounds the batch-inference pipeline ---------------------------------
INFERENCE_OUTPUTS = {
    "InferencePipelineRoleArn",
    "InferencePipelineName",
    "InferencePipelineArn",
    "IncomingRuleArn",
    "DriftAlarmName",
}
PIPELINE_NAME = {"Fn::Sub": "${ProjectName}-inference-${Stage}"}
PIPELINE_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
    "pipeline/${ProjectName}-inference-${Stage}"
}
MONITOR_PIPELINE_ARN = {  # the live-drift pipeline of the stage (cloudformation/monitor.yaml)
    "Fn::Sub": PIPELINE_ARN["Fn::Sub"].replace("-inference-", "-monitor-")
}
THIS_ACCOUNT = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def imported(output: str) -> dict:
    return {"Fn::ImportValue": {"Fn::Sub": f"${{BootstrapStackName}}-{output}"}}


def in_bucket(output: str, path: str) -> dict:
    return {
        "Fn::Sub": [f"arn:${{AWS::Partition}}:s3:::${{Bucket}}{path}", {"Bucket": imported(output)}]
    }


def pipeline_parameters(target: dict) -> dict:
    pairs = target["SageMakerPipelineParameters"]["PipelineParameterList"]
    return {p["Name"]: p["Value"] for p in pairs}


def test_inference_outputs_and_imports(boot: dict, access: dict, inference: dict) -> None:
    from mlops import bootstrap

    assert set(inference["Outputs"]) == INFERENCE_OUTPUTS
    assert set(bootstrap.INFERENCE_OUTPUTS) <= INFERENCE_OUTPUTS  # what scripts/bootstrap checks
    outputs = inference["Outputs"]
    assert outputs["InferencePipelineName"]["Value"] == PIPELINE_NAME
    assert outputs["InferencePipelineArn"]["Value"] == PIPELINE_ARN
    assert outputs["InferencePipelineRoleArn"]["Value"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    assert outputs["IncomingRuleArn"]["Value"] == {"Fn::GetAtt": ["IncomingRule", "Arn"]}
    alarm = inference["Resources"]["DriftAlarm"]["Properties"]["AlarmName"]
    assert outputs["DriftAlarmName"]["Value"] == alarm
    imports = [
        n["Fn::ImportValue"]
        for _, n in walk(inference)
        if isinstance(n, dict) and "Fn::ImportValue" in n
    ]
    by_stack: dict[str, set[str]] = {}
    for name in imports:  # "${<Parameter>}-<Output>": each import names its stack's parameter
        stack, output = re.fullmatch(r"\$\{(\w+)\}-(\w+)", name["Fn::Sub"]).groups()
        by_stack.setdefault(stack, set()).add(output)
    assert by_stack == {
        "BootstrapStackName": {
            "DataBucket",
            "ArtifactBucket",
            "KmsKeyArn",
            "SageMakerExecutionRoleArn",
            "ModelPackageGroupName",
        },
        "AccessStackName": {"DevDeployRoleArn", "ProdDeployRoleArn"},  # UpsertPolicy's role
    }
    assert by_stack["BootstrapStackName"] <= set(boot["Outputs"])
    assert by_stack["AccessStackName"] <= set(access["Outputs"])
    parameters = inference["Parameters"]
    assert parameters["AccessStackName"] == parameters["BootstrapStackName"] | {
        "Description": parameters["AccessStackName"]["Description"]
    }  # the same type and pattern: a stack name


def test_the_inference_pipeline_role_is_scoped_to_pipeline_jobs_and_prefixes(inference) -> None:
    props = inference["Resources"]["PipelineRole"]["Properties"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert (trust["Action"], trust["Condition"]) == ("sts:AssumeRole", THIS_ACCOUNT)
    policy = grants(inference, "PipelineRole")
    jobs = [
        f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/pipelines-*"
        for kind in ("transform-job", "processing-job")
    ]
    sagemaker = [
        st for st in policy if any(a.startswith("sagemaker:") for a in as_list(st["Action"]))
    ]
    for st in sagemaker:  # every SageMaker grant names only the jobs a pipeline creates
        assert [r["Fn::Sub"] for r in as_list(st["Resource"])] == jobs
    actions = {a for st in sagemaker for a in as_list(st["Action"])}
    assert actions == {
        f"sagemaker:{verb}{kind}Job"
        for verb in ("Create", "Describe", "Stop")
        for kind in ("Transform", "Processing")
    } | {"sagemaker:AddTags"}
    (passes,) = [st for st in policy if "iam:PassRole" in as_list(st["Action"])]
    assert as_list(passes["Action"]) == ["iam:PassRole"]
    assert passes["Resource"] == imported("SageMakerExecutionRoleArn")
    assert passes["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    written = [
        r
        for st in policy
        if "s3:PutObject" in as_list(st["Action"])
        for r in as_list(st["Resource"])
    ]
    assert written == [in_bucket("ArtifactBucket", "/inference/*")]
    read = [
        r
        for st in policy
        if "s3:GetObject" in as_list(st["Action"])
        for r in as_list(st["Resource"])
    ]
    assert sorted(map(json.dumps, read)) == sorted(
        json.dumps(r)
        for r in (
            in_bucket("ArtifactBucket", "/inference/*"),
            in_bucket("DataBucket", "/${IncomingPrefix}*"),
            in_bucket("DataBucket", "/batches/*"),
            in_bucket("DataBucket", "/runs/*/etl/*"),
        )
    )
    listing = [st for st in policy if "s3:ListBucket" in as_list(st["Action"])]
    assert len(listing) == 2 and all("s3:prefix" in st["Condition"]["StringLike"] for st in listing)
    (key,) = [st for st in policy if "kms:Decrypt" in as_list(st["Action"])]
    assert key["Resource"] == imported("KmsKeyArn")
    assert key["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
    }
    # Pipelines only starts the jobs: the Monitor job publishes the drift metrics as the bootstrap
    # execution role (see the PutMetricData test below), so this role has no CloudWatch grant.
    assert not {a for st in policy for a in as_list(st["Action"]) if a.startswith("cloudwatch:")}
    assert {a.split(":")[0] for st in policy for a in as_list(st["Action"])} == {
        "sagemaker",
        "iam",
        "s3",
        "kms",
    }


def evaluate(template: dict, node, values: dict):
    """A template expression for given parameter values: enough of Ref, Sub, ImportValue (as
    values["import:<export name>"]), Equals, Not, If, Split and Select for the tests below."""

    def ev(n):
        if isinstance(n, list):
            return [ev(x) for x in n]
        if not isinstance(n, dict):
            return n
        if len(n) != 1 or not (next(iter(n)) == "Ref" or next(iter(n)).startswith("Fn::")):
            return {k: ev(v) for k, v in n.items()}
        ((key, arg),) = n.items()
        if key == "Ref":
            return values[arg]
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], ev(arg[1]))
            return re.sub(r"\$\{([\w:]+)\}", lambda m: {**values, **local}[m[1]], text)
        if key == "Fn::ImportValue":
            return values[f"import:{ev(arg)}"]
        if key == "Fn::Equals":
            left, right = ev(arg)
            return left == right
        if key == "Fn::Not":
            return not ev(arg[0])
        if key == "Fn::If":
            condition, yes, no = arg
            return ev(yes if ev(template["Conditions"][condition]) else no)
        if key == "Fn::Split":
            separator, text = arg
            return ev(text).split(separator)
        if key == "Fn::Select":
            index, items = arg
            return ev(items)[int(index)]
        raise AssertionError(f"evaluate: {key} is not supported")

    return ev(node)


DEPLOY_ROLES = {"dev": "DevDeployRole", "prod": "ProdDeployRole"}


def upsert_values(stage: str) -> dict:
    """inference.yaml's parameters for a stage and the github-access exports it imports (role
    ARNs as CloudFormation names unnamed roles: no path)."""
    access = "abalone-github-access"
    return {
        "ProjectName": "abalone",
        "Stage": stage,
        "BootstrapStackName": "abalone-bootstrap",
        "AccessStackName": access,
    } | {
        f"import:{access}-{role}Arn": f"arn:aws:iam::{ACCOUNT}:role/{access}-{role}-ABC123"
        for role in DEPLOY_ROLES.values()
    }


@pytest.mark.parametrize(("stage", "role"), DEPLOY_ROLES.items())
def test_the_upsert_policy_is_attached_to_the_deploy_role_of_its_stage(
    access: dict, inference: dict, stage: str, role: str
) -> None:
    """`mlops inference upsert` runs in deploy.yml's job of the stage, as its deploy role."""
    upsert = inference["Resources"]["UpsertPolicy"]
    assert upsert["Type"] == "AWS::IAM::Policy"
    assert "Condition" not in upsert  # every inference stack has one
    props = upsert["Properties"]
    assert set(props) == {"PolicyName", "Roles", "PolicyDocument"}  # no Users, no Groups
    values = upsert_values(stage)
    assert evaluate(inference, props["Roles"], values) == [f"abalone-github-access-{role}-ABC123"]
    assert evaluate(inference, props["PolicyName"], values) == f"abalone-inference-{stage}-upsert"
    assert inference["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert set(inference["Parameters"]["Stage"]["AllowedValues"]) == set(DEPLOY_ROLES)
    # the role's name is the last part of its ARN only while the role has no path
    assert "Path" not in access["Resources"][role]["Properties"]
    assert access["Outputs"][f"{role}Arn"]["Value"] == {"Fn::GetAtt": [role, "Arn"]}


UPSERT_GRANTS = {  # action -> its resources: what `mlops inference upsert` calls, on what
    "cloudformation:DescribeStacks": [  # its own stack's outputs (the pipeline role)
        {
            "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
            "stack/${AWS::StackName}/*"
        }
    ],
    **{
        f"sagemaker:{verb}": [PIPELINE_ARN, MONITOR_PIPELINE_ARN]
        for verb in ("DescribePipeline", "CreatePipeline", "UpdatePipeline", "AddTags")
    },
    **{
        f"sagemaker:{verb}": [
            {
                "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
                "model/${ProjectName}-batch-*"
            },
            GROUP_PACKAGES,  # CreateModel from a package is authorized on the package too
        ]
        for verb in ("DescribeModel", "CreateModel")
    },
    "iam:PassRole": [{"Fn::GetAtt": ["PipelineRole", "Arn"]}],  # CreatePipeline's RoleArn
    "s3:PutObject": [in_bucket("ArtifactBucket", "/inference/${Stage}/parameters.json")],
}


def test_the_upsert_policy_grants_exactly_what_upsert_calls_on_its_own_stage(inference) -> None:
    document = inference["Resources"]["UpsertPolicy"]["Properties"]["PolicyDocument"]
    by_action: dict[str, dict] = {}
    for st in document["Statement"]:
        assert st["Effect"] == "Allow"
        assert set(st) <= {"Effect", "Action", "Resource", "Condition"}  # no NotAction...
        for action in as_list(st["Action"]):
            assert action not in by_action, f"{action} twice"
            by_action[action] = st
    assert {a: as_list(st["Resource"]) for a, st in by_action.items()} == UPSERT_GRANTS
    to_sagemaker = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert {a: st.get("Condition") for a, st in by_action.items()} == dict.fromkeys(
        UPSERT_GRANTS
    ) | {"iam:PassRole": to_sagemaker}


def test_the_execution_role_publishes_metrics_to_sagemaker_and_the_inference_namespace_only(
    boot: dict, inference: dict
) -> None:
    """The Monitor step of the batch pipeline runs as the bootstrap execution role and publishes
    MaxDriftScore to <ProjectName>/inference, which the stage's DriftAlarm watches."""
    from types import SimpleNamespace

    from mlops.steps import inference as step

    published = [
        (rid, st)
        for rid, _, st in statements(boot)
        if "cloudwatch:PutMetricData" in as_list(st.get("Action", []))
    ]
    assert [rid for rid, _ in published] == ["SageMakerExecutionRole", "GlueRole"]
    (_, st), (_, glue) = published
    assert (as_list(st["Action"]), st["Resource"]) == (["cloudwatch:PutMetricData"], "*")
    namespace = {"Fn::Sub": "${ProjectName}/inference"}
    assert st["Condition"] == {
        "StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*", namespace]}
    }
    assert glue["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Glue"}}
    assert inference["Resources"]["DriftAlarm"]["Properties"]["Namespace"] == namespace
    ctx = SimpleNamespace(config=SimpleNamespace(project="abalone"))
    assert step.metrics_namespace(ctx) == evaluate(boot, namespace, {"ProjectName": "abalone"})


def test_the_events_role_only_starts_this_pipeline(inference: dict) -> None:
    props = inference["Resources"]["EventsRole"]["Properties"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": ["events.amazonaws.com", "scheduler.amazonaws.com"]}
    assert (trust["Action"], trust["Condition"]) == ("sts:AssumeRole", THIS_ACCOUNT)
    (statement,) = grants(inference, "EventsRole")
    assert statement["Action"] == "sagemaker:StartPipelineExecution"
    assert statement["Resource"] == PIPELINE_ARN
    assert of_type(inference, "AWS::IAM::Role").keys() == {"PipelineRole", "EventsRole"}


def test_the_incoming_rule_watches_only_the_incoming_prefix_of_the_data_bucket(inference) -> None:
    rule = inference["Resources"]["IncomingRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [imported("DataBucket")]},
            "object": {"key": [{"prefix": {"Ref": "IncomingPrefix"}}]},
        },
    }
    assert inference["Parameters"]["IncomingPrefix"]["Default"] == "incoming/"
    assert re.fullmatch(inference["Parameters"]["IncomingPrefix"]["AllowedPattern"], "incoming/")
    assert not re.fullmatch(inference["Parameters"]["IncomingPrefix"]["AllowedPattern"], "")
    (target,) = rule["Targets"]
    assert target["Arn"] == PIPELINE_ARN
    assert target["RoleArn"] == {"Fn::GetAtt": ["EventsRole", "Arn"]}
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)  # a pipeline takes none
    params = pipeline_parameters(target)
    # static values only: the whole incoming prefix is scored (see the template's comment)
    assert params["InputDataUri"] == {
        "Fn::Sub": ["s3://${Bucket}/${IncomingPrefix}", {"Bucket": imported("DataBucket")}]
    }
    assert params["OutputPrefix"] == {
        "Fn::Sub": [
            "s3://${Bucket}/inference/${Stage}/runs",
            {"Bucket": imported("ArtifactBucket")},
        ]
    }


def test_the_schedule_exists_only_with_a_schedule_expression(inference: dict) -> None:
    param = inference["Parameters"]["ScheduleExpression"]
    assert param["Default"] == ""
    assert re.fullmatch(param["AllowedPattern"], "") and re.fullmatch(
        param["AllowedPattern"], "rate(1 day)"
    )
    assert inference["Conditions"]["HasSchedule"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ScheduleExpression"}, ""]}]
    }
    schedules = of_type(inference, "AWS::Scheduler::Schedule")
    assert list(schedules) == ["Schedule"]
    schedule = schedules["Schedule"]
    assert schedule["Condition"] == "HasSchedule"
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert props["Target"]["Arn"] == PIPELINE_ARN  # the templated SageMaker target
    assert props["Target"]["RoleArn"] == {"Fn::GetAtt": ["EventsRole", "Arn"]}
    (rule_target,) = inference["Resources"]["IncomingRule"]["Properties"]["Targets"]
    assert pipeline_parameters(props["Target"]) == pipeline_parameters(rule_target)
    unconditional = {k for k, r in inference["Resources"].items() if "Condition" not in r}
    assert "Schedule" not in unconditional


def test_the_drift_alarm_watches_the_pipeline_daily_maximum(inference: dict) -> None:
    props = inference["Resources"]["DriftAlarm"]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (
        {"Fn::Sub": "${ProjectName}/inference"},
        "MaxDriftScore",
    )
    assert props["Dimensions"] == [{"Name": "Pipeline", "Value": PIPELINE_NAME}]
    assert (props["Statistic"], props["Period"], props["EvaluationPeriods"]) == (
        "Maximum",
        86400,
        1,
    )
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["Threshold"] == {"Ref": "DriftAlarmThreshold"}
    assert inference["Parameters"]["DriftAlarmThreshold"]["Default"] == 0.25
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }
    assert inference["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }


def test_only_the_data_bucket_sends_its_events_to_eventbridge(boot: dict) -> None:
    notified = {
        key: bucket["Properties"].get("NotificationConfiguration")
        for key, bucket in of_type(boot, "AWS::S3::Bucket").items()
    }
    assert notified == {
        "DataBucket": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        "ArtifactBucket": None,
        "CaptureBucket": None,
    }


# --- deployed into moto (5.2.5), as `make pipeline` does ---------------------------------------
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")


@pytest.fixture(scope="module")
def aws():
    """One in-process moto for the module: (cloudformation, sagemaker, session) clients."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
            env.delenv(name)  # another test's local server must not catch these calls
        session = new_session(region_name=REGION)
        yield session.client("cloudformation"), session.client("sagemaker"), session


def deploy(cfn, stack: str, name: str, update: bool = False, **params: str) -> dict:
    """Create (or update) a stack and return its outputs; fails the test on a failed status."""
    call = cfn.update_stack if update else cfn.create_stack
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(
            StackName=stack,
            TemplateBody=(ROOT / name).read_text(),
            Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )
    (described,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == ("UPDATE_COMPLETE" if update else "CREATE_COMPLETE")
    return {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}


BOOT_PARAMS = {"ProjectName": "abalone", "ModelPackageGroupName": "abalone-models"}
ACCESS_PARAMS = {
    "GitHubOrg": "Acme-Org",
    "GitHubRepo": "abalone",
    "ProjectName": "abalone",
    "BootstrapStackName": "abalone-bootstrap",
}


@pytest.fixture(scope="module")
def boot_out(aws) -> dict:
    """The bootstrap stack, deployed first: github-access imports its exports."""
    return deploy(aws[0], "abalone-bootstrap", "bootstrap.yaml", **BOOT_PARAMS)


@pytest.fixture(scope="module")
def access_out(aws, boot_out: dict) -> dict:
    """The github-access stack, after bootstrap (it imports its exports), before inference (which
    imports the deploy roles)."""
    return deploy(aws[0], "abalone-github-access", "github-access.yaml", **ACCESS_PARAMS)


def test_bootstrap_deploys_into_moto(aws, boot_out: dict) -> None:
    _, _, session = aws
    out = boot_out
    assert set(out) == BOOTSTRAP_OUTPUTS and all(out.values())
    assert (out["GlueJobName"], out["ModelPackageGroupName"]) == ("abalone-etl", "abalone-models")
    s3 = session.client("s3")
    for key in ("DataBucket", "ArtifactBucket", "CaptureBucket"):
        (rule,) = s3.get_bucket_encryption(Bucket=out[key])["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == out["KmsKeyArn"]
    (repo,) = session.client("ecr").describe_repositories(
        repositoryNames=[out["EcrRepositoryName"]]
    )["repositories"]
    assert (repo["repositoryUri"], repo["imageTagMutability"]) == (
        out["EcrRepositoryUri"],
        "IMMUTABLE",
    )


def _role(session, arn: str) -> tuple[dict, str]:
    """A role's trust statement and its inline policies as one JSON text."""
    iam, name = session.client("iam"), arn.split("/")[-1]
    role = iam.get_role(RoleName=name)["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    inline = [
        iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
    ]
    return statement, json.dumps(inline)


def test_github_access_deploys_after_bootstrap_into_moto(aws, boot_out, access_out) -> None:
    _, _, session = aws
    out = access_out
    assert set(out) == ACCESS_OUTPUTS and all(out.values())
    assert out["OidcProviderArn"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    subject = "token.actions.githubusercontent.com:sub"
    for key, expected in (
        ("BuildRoleArn", "ref:refs/heads/main"),
        ("DevDeployRoleArn", "environment:dev"),
        ("ProdDeployRoleArn", "environment:prod"),
    ):
        statement, _ = _role(session, out[key])
        assert (
            statement["Condition"]["StringEquals"][subject] == f"repo:Acme-Org/abalone:{expected}"
        )
    _, build = _role(session, out["BuildRoleArn"])  # the imports resolved to the real names
    assert f":s3:::{boot_out['DataBucket']}/*" in build
    assert f":repository/{boot_out['EcrRepositoryName']}" in build
    assert ":job/abalone-etl" in build and ":model-package/abalone-models/*" in build
    _, prod = _role(session, out["ProdDeployRoleArn"])
    # no inline policy: the shared DeployPolicy holds the registry grant (this module deploys no
    # prod inference stack of abalone, whose UpsertPolicy would be one)
    assert prod == "[]"
    iam = session.client("iam")
    for stage in ("dev", "prod"):
        arn = out[f"{stage.title()}StackRoleArn"]
        assert arn.endswith(f":role/abalone-stack-{stage}")  # what DeployPolicy may pass
        statement, _ = _role(session, arn)
        assert statement["Principal"] == {"Service": "cloudformation.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
        tags = iam.list_role_tags(RoleName=arn.split("/")[-1])["Tags"]
        assert {"Key": "Stage", "Value": stage} in tags
    documents = {
        p["PolicyName"]: json.dumps(
            iam.get_policy_version(PolicyArn=p["Arn"], VersionId=p["DefaultVersionId"])[
                "PolicyVersion"
            ]["Document"]
        )
        for p in iam.list_policies(Scope="Local")["Policies"]
    }
    deploy_policy = next(d for name, d in documents.items() if "DeployPolicy" in name)
    assert ":model-package/abalone-models/*" in deploy_policy  # the import resolved
    assert ":role/abalone-stack-${aws:PrincipalTag/Stage}" in deploy_policy
    stack_policy = next(d for name, d in documents.items() if "StackPolicy" in name)
    assert boot_out["SageMakerExecutionRoleArn"] in stack_policy


def test_github_access_with_an_existing_oidc_provider(aws, boot_out: dict) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    existing = {"CreateOidcProvider": "false", "ExistingOidcProviderArn": arn}
    params = ACCESS_PARAMS | {"ProjectName": "other"}  # role names are per project
    out = deploy(aws[0], "other-github-access", "github-access.yaml", **params, **existing)
    assert out["OidcProviderArn"] == arn


def register(sm, group: str, count: int) -> list[str]:
    """Model packages as the register step makes them (moto ignores the group in CloudFormation)."""
    sm.create_model_package_group(ModelPackageGroupName=group)
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/abalone@sha256:{'a' * 64}"
    spec = {
        "Containers": [{"Image": image, "ModelDataUrl": "s3://artifacts/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    return [
        sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=spec)[
            "ModelPackageArn"
        ]
        for _ in range(count)
    ]


def endpoint_params(stage: str, package: str, deploy_id: str, **extra: str) -> dict:
    return {
        "Stage": stage,
        "EndpointName": f"abalone-{stage}",
        "ModelPackageArn": package,
        "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution",
        "CaptureS3Uri": "s3://capture-bucket/capture",
        "DeployId": deploy_id,
        "KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        **extra,
    }


def test_prod_endpoint_deploys_and_updates_in_place_in_moto(aws) -> None:
    cfn, sm, _ = aws
    first, second = register(sm, "prod-models", 2)
    prod = {"EnableAutoscaling": "true", "DeploymentType": "CANARY", "InitialInstanceCount": "2"}
    out = deploy(
        cfn,
        "abalone-endpoint-prod",
        "endpoint.yaml",
        **endpoint_params("prod", first, "run-1", **prod),
    )
    assert sm.describe_model(ModelName=out["ModelName"])["PrimaryContainer"] == {
        "ModelPackageName": first
    }
    config = sm.describe_endpoint_config(EndpointConfigName=out["EndpointConfigName"])
    assert config["DataCaptureConfig"]["CaptureOptions"] == [
        {"CaptureMode": "Input"},
        {"CaptureMode": "Output"},
    ]
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["AllTraffic"]
    assert out["ErrorsAlarmName"] == "abalone-prod-invocation-5xx-errors"

    new = deploy(
        cfn,
        "abalone-endpoint-prod",
        "endpoint.yaml",
        update=True,
        **endpoint_params("prod", second, "run-2", **prod),
    )
    assert new["EndpointName"] == out["EndpointName"]
    assert new["EndpointConfigName"] != out["EndpointConfigName"]
    described = sm.describe_endpoint(EndpointName=new["EndpointName"])
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
        "InService",
        new["EndpointConfigName"],
    )
    assert sm.describe_model(ModelName=new["ModelName"])["PrimaryContainer"] == {
        "ModelPackageName": second
    }
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert out["EndpointConfigName"] not in configs  # replaced, not duplicated


def test_dev_endpoint_without_capture_in_moto(aws) -> None:
    cfn, sm, _ = aws
    (package,) = register(sm, "dev-models", 1)
    out = deploy(
        cfn,
        "abalone-endpoint-dev",
        "endpoint.yaml",
        **endpoint_params("dev", package, "run-1", EnableDataCapture="false"),
    )
    config = sm.describe_endpoint_config(EndpointConfigName=out["EndpointConfigName"])
    assert not config.get("DataCaptureConfig")  # moto answers {} where AWS omits it
    assert sm.describe_endpoint(EndpointName=out["EndpointName"])["EndpointStatus"] == "InService"


# --- the deploy step hands CloudFormation the stack role (mlops.stack.deploy) --------------------


def _sent_change_sets(cfn) -> list[dict]:
    """The parameters of every CreateChangeSet call this client sends, as sent."""
    sent: list[dict] = []

    def record(params, **_kwargs):
        sent.append(dict(params))

    cfn.meta.events.register("provide-client-params.cloudformation.CreateChangeSet", record)
    return sent


@pytest.mark.parametrize("role", [f"arn:aws:iam::{ACCOUNT}:role/abalone-stack-dev", ""])
def test_stack_deploy_sends_the_role_arn_only_when_given(aws, tmp_path, role) -> None:
    from mlops import stack

    _, _, session = aws
    cfn = session.client("cloudformation")
    sent = _sent_change_sets(cfn)
    body = tmp_path / "queue.yaml"
    body.write_text("Resources:\n  Queue: {Type: 'AWS::SQS::Queue'}\n")
    name = f"role-arn-{'given' if role else 'absent'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack.deploy(cfn, name, body, {}, region=REGION, role_arn=role)
    (change_set,) = sent
    assert change_set["StackName"] == name
    if role:
        assert change_set["RoleARN"] == role
    else:
        assert "RoleARN" not in change_set  # the caller's session, as before
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


# --- what the ReadPolicy's test-set grant is for: download_prefix, one line on a refusal ---------


def test_download_prefix_fetches_the_held_out_test_set(aws, tmp_path) -> None:
    from mlops import aws as mlops_aws

    s3 = aws[2].client("s3")
    s3.create_bucket(Bucket="data-bucket")
    for key in ("runs/r1/etl/test_raw/part-0.csv", "runs/r1/etl/test_raw/part-1.csv"):
        s3.put_object(Bucket="data-bucket", Key=key, Body=b"a,b\n1,2\n")
    dest = mlops_aws.download_prefix(s3, "s3://data-bucket/runs/r1/etl/test_raw/", tmp_path / "t")
    assert sorted(p.name for p in dest.iterdir()) == ["part-0.csv", "part-1.csv"]


class _Refusing:
    """An S3 client whose list or download is refused with an AWS error code."""

    def __init__(self, refuse: str, code: str) -> None:
        self.refuse, self.code = refuse, code

    def _error(self, operation: str):
        from botocore.exceptions import ClientError

        body = {"Error": {"Code": self.code, "Message": f"{self.code} says no"}}
        return ClientError(body, operation)

    def get_paginator(self, _name: str):
        outer = self

        class Pages:
            def paginate(self, **_kwargs):
                if outer.refuse == "list":
                    raise outer._error("ListObjectsV2")
                return [{"Contents": [{"Key": "runs/r1/etl/test_raw/part-0.csv"}]}]

        return Pages()

    def download_file(self, **_kwargs) -> None:
        raise self._error("GetObject")


@pytest.mark.parametrize(
    ("refuse", "code", "names"),
    [
        ("list", "AccessDenied", "list s3://data-bucket/runs/r1/etl/test_raw/"),
        ("download", "NoSuchKey", "download s3://data-bucket/runs/r1/etl/test_raw/part-0.csv"),
    ],
)
def test_download_prefix_refusals_are_one_line_naming_the_uri_and_the_code(
    tmp_path, refuse, code, names
) -> None:
    from mlops import aws as mlops_aws
    from mlops.errors import PipelineError

    uri = "s3://data-bucket/runs/r1/etl/test_raw/"
    with pytest.raises(PipelineError) as caught:
        mlops_aws.download_prefix(_Refusing(refuse, code), uri, tmp_path / "t")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(names)
    assert f"{code}: {code} says no" in message


def _inline(session, role_arn: str) -> dict[str, dict]:
    """A role's inline policies by name."""
    iam, name = session.client("iam"), role_arn.split("/")[-1]
    return {
        policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
    }


def _upsert_resources(document: dict) -> dict[str, list[str]]:
    return {
        action: as_list(st["Resource"])
        for st in document["Statement"]
        for action in as_list(st["Action"])
    }


def test_inference_deploys_after_bootstrap_into_moto(aws, boot_out, access_out) -> None:
    """moto creates the roles, the rule and the upsert policy (it ignores the alarm and
    AWS::Scheduler::Schedule); the stack imports both stacks' exports."""
    cfn, _, session = aws
    params = {
        "ProjectName": "abalone",
        "Stage": "dev",
        "BootstrapStackName": "abalone-bootstrap",
        "AccessStackName": "abalone-github-access",
    }
    out = deploy(cfn, "abalone-inference-dev", "inference.yaml", **params)
    assert set(out) == INFERENCE_OUTPUTS and all(out.values())
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/abalone-inference-dev"
    assert (out["InferencePipelineName"], out["InferencePipelineArn"]) == (
        "abalone-inference-dev",
        arn,
    )
    events = session.client("events")
    rule = out["IncomingRuleArn"].split("/")[-1]
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    assert pattern["detail"] == {
        "bucket": {"name": [boot_out["DataBucket"]]},
        "object": {"key": [{"prefix": "incoming/"}]},
    }
    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert target["Arn"] == arn
    assert pipeline_parameters(target) == {
        "InputDataUri": f"s3://{boot_out['DataBucket']}/incoming/",
        "OutputPrefix": f"s3://{boot_out['ArtifactBucket']}/inference/dev/runs",
    }
    trust, policy = _role(session, out["InferencePipelineRoleArn"])
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert boot_out["SageMakerExecutionRoleArn"] in policy  # the import resolved
    assert f":s3:::{boot_out['DataBucket']}/incoming/*" in policy
    # the upsert grants went to the dev deploy role (and only there), resolved to this stage
    upsert = _inline(session, access_out["DevDeployRoleArn"])
    assert list(upsert) == ["abalone-inference-dev-upsert"]
    resources = _upsert_resources(upsert["abalone-inference-dev-upsert"])
    assert resources["sagemaker:CreatePipeline"] == [arn, arn.replace("-inference-", "-monitor-")]
    assert resources["iam:PassRole"] == [out["InferencePipelineRoleArn"]]
    assert resources["sagemaker:CreateModel"] == [
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/abalone-batch-*",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/abalone-models/*",
    ]
    assert resources["s3:PutObject"] == [
        f"arn:aws:s3:::{boot_out['ArtifactBucket']}/inference/dev/parameters.json"
    ]
    (own,) = resources["cloudformation:DescribeStacks"]
    stack_id = cfn.describe_stacks(StackName="abalone-inference-dev")["Stacks"][0]["StackId"]
    assert fnmatch.fnmatchcase(stack_id, own) and own.endswith(":stack/abalone-inference-dev/*")
    assert _inline(session, access_out["ProdDeployRoleArn"]) == {}
    assert list(_inline(session, access_out["BuildRoleArn"])) == ["build"]  # its own, as before


def test_a_prod_inference_stack_grants_the_prod_deploy_role_in_moto(aws, boot_out) -> None:
    """Another project (its own github-access stack) so that abalone's prod role stays as
    github-access.yaml made it; its names are what `mlops inference upsert` uses."""
    from types import SimpleNamespace

    from mlops.steps import inference as step
    from mlops.steps import monitor

    cfn, _, session = aws
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    access = deploy(
        cfn,
        "batch-github-access",
        "github-access.yaml",
        **ACCESS_PARAMS | {"ProjectName": "batch"},
        CreateOidcProvider="false",
        ExistingOidcProviderArn=provider,
    )
    params = {
        "ProjectName": "batch",
        "Stage": "prod",
        "BootstrapStackName": "abalone-bootstrap",
        "AccessStackName": "batch-github-access",
    }
    out = deploy(cfn, "batch-inference-prod", "inference.yaml", **params)
    assert _inline(session, access["DevDeployRoleArn"]) == {}
    upsert = _inline(session, access["ProdDeployRoleArn"])
    assert list(upsert) == ["batch-inference-prod-upsert"]
    resources = _upsert_resources(upsert["batch-inference-prod-upsert"])
    ctx = SimpleNamespace(
        config=SimpleNamespace(project="batch"),
        account=SimpleNamespace(ArtifactBucket=boot_out["ArtifactBucket"]),
    )
    pipeline = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{step.pipeline_name(ctx, 'prod')}"
    assert pipeline == out["InferencePipelineArn"]
    live = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{monitor.pipeline_name(ctx, 'prod')}"
    for verb in ("DescribePipeline", "CreatePipeline", "UpdatePipeline", "AddTags"):
        assert resources[f"sagemaker:{verb}"] == [pipeline, live]
    model = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{step.model_name(ctx, 'x/7')}"
    assert fnmatch.fnmatchcase(model, resources["sagemaker:CreateModel"][0])
    bucket, key = step.parameters_uri(ctx, "prod").removeprefix("s3://").split("/", 1)
    assert resources["s3:PutObject"] == [f"arn:aws:s3:::{bucket}/{key}"]
    assert resources["iam:PassRole"] == [out["InferencePipelineRoleArn"]]


# --- retrain.yaml: EventBridge -> API destination -> GitHub repository dispatch ------------------


@pytest.fixture(scope="module")
def retrain() -> dict:
    return load("retrain.yaml")


def test_retrain_invoke_role_may_only_invoke_that_destination(retrain: dict) -> None:
    props = retrain["Resources"]["InvokeRole"]["Properties"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (policy,) = props["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "events:InvokeApiDestination"
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["ApiDestination", "ArnForPolicy"]},
        {"Fn::GetAtt": ["ApiDestination", "Arn"]},
    ]


def test_retrain_destination_is_githubs_dispatches_endpoint_rate_limited(retrain: dict) -> None:
    props = retrain["Resources"]["ApiDestination"]["Properties"]
    assert props["HttpMethod"] == "POST"
    assert props["InvocationEndpoint"] == {
        "Fn::Sub": "https://api.github.com/repos/${GitHubOwner}/${GitHubRepo}/dispatches"
    }
    assert props["InvocationRateLimitPerSecond"] == {"Ref": "InvocationRateLimit"}
    conn = retrain["Resources"]["Connection"]["Properties"]
    auth = conn["AuthParameters"]
    assert conn["AuthorizationType"] == "API_KEY"
    assert auth["ApiKeyAuthParameters"]["ApiKeyName"] == "Authorization"
    value = auth["ApiKeyAuthParameters"]["ApiKeyValue"]["Fn::Sub"]
    # the token from Secrets Manager, pinned to the version the bootstrap stored
    assert value == (
        "{{resolve:secretsmanager:${TokenSecretName}:SecretString:authorization::"
        "${TokenSecretVersion}}}"
    )
    headers = {h["Key"]: h["Value"] for h in auth["InvocationHttpParameters"]["HeaderParameters"]}
    assert headers == {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def test_retrain_rules_follow_training_data_and_every_drift_alarm(retrain: dict) -> None:
    inference = load("inference.yaml")
    rules = of_type(retrain, "AWS::Events::Rule")
    assert set(rules) == {"NewDataRule", "DriftRule"}
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["ApiDestination", "Arn"]}
        assert target["RoleArn"] == {"Fn::GetAtt": ["InvokeRole", "Arn"]}
        template = target["InputTransformer"]["InputTemplate"]
        assert template.startswith('{"event_type": "retrain", "client_payload": {')
    new = rules["NewDataRule"]["Properties"]["EventPattern"]
    assert new["detail"]["bucket"]["name"] == [
        {"Fn::ImportValue": {"Fn::Sub": "${BootstrapStackName}-DataBucket"}}
    ]
    assert new["detail"]["object"]["key"] == [{"prefix": {"Ref": "TrainingPrefix"}}]
    assert retrain["Parameters"]["TrainingPrefix"]["Default"] == "training/"
    drift = rules["DriftRule"]["Properties"]["EventPattern"]
    assert drift["detail-type"] == ["CloudWatch Alarm State Change"]
    assert drift["detail"]["state"] == {"value": ["ALARM"]}
    stages = inference["Parameters"]["Stage"]["AllowedValues"]
    names = {n["Fn::Sub"] for n in drift["detail"]["alarmName"]}
    assert names == {
        f"${{ProjectName}}-{k}-{s}-drift" for k in ("inference", "monitor") for s in stages
    }
    # the batch alarm's name is inference.yaml's own
    alarm = inference["Resources"]["DriftAlarm"]["Properties"]["AlarmName"]["Fn::Sub"]
    assert alarm.replace("${Stage}", "prod") in names
