"""The model registry as the pipeline's record, against moto with the local AWS rules it lacks.

register approves what passed the gate (AWS deploys nothing else) and records ModelLifeCycle;
deploy refuses what is not Approved, and prod what did not pass dev's tests; promote marks what
serves prod and retires what it replaced; rollback finds what really served prod before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlops import config
from mlops.account import Account
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.local.moto_gaps import rules
from mlops.manifest import Manifest
from mlops.steps import deploy, promote, register, rollback

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION, GROUP = "123456789012", "us-east-1", "mlops-models"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                   "digest": "sha256:" + "c" * 64},
        "layers": [],
    }
)  # fmt: skip
SERVING_TEMPLATE = json.dumps(
    {
        "Parameters": {"ModelPackageArn": {"Type": "String"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    }
)


@pytest.fixture
def moto_rules() -> Iterator[None]:
    """moto with the rules of mlops.local.moto_gaps.rules installed, restored afterwards."""
    patches = []

    def wrap(cls, name, make):
        original = getattr(cls, name)
        patches.append((cls, name, original))
        setattr(cls, name, make(original))

    rules.install(wrap)
    try:
        yield
    finally:
        while patches:
            cls, name, original = patches.pop()
            setattr(cls, name, original)


@pytest.fixture
def session(monkeypatch, moto_rules) -> Iterator[boto3.Session]:
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)  # another test's local server must not catch these calls
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def image_uri(session) -> str:
    """An image in ECR, pinned by digest, as the build job outputs it."""
    ecr = session.client("ecr")
    uri = ecr.create_repository(repositoryName="mlops", imageTagMutability="IMMUTABLE")[
        "repository"
    ]["repositoryUri"]
    pushed = ecr.put_image(repositoryName="mlops", imageManifest=MANIFEST, imageTag="a" * 40)
    return f"{uri}@{pushed['image']['imageId']['imageDigest']}"


@pytest.fixture
def ctx(session, image_uri, tmp_path) -> Context:
    session.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
    account = Account(
        REGION,
        {
            "ModelPackageGroupName": GROUP,
            "SageMakerExecutionRoleArn": ROLE,
            "CaptureBucket": "capture-bucket",
            "KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
        },
    )
    manifest = Manifest(tmp_path / "run.json")
    manifest.update("run", {"id": "20260101-000000-abcdef0", "git_sha": "a" * 40})
    manifest.update("gate", {"passed": True})
    manifest.update(
        "train",
        {
            "image_uri": image_uri,
            "image_digest": image_uri.split("@")[1],
            "job_name": "mlops-train-1",
            "model_data": "s3://artifacts/model.tar.gz",
        },
    )
    manifest.update(
        "etl",
        {"data_sha256": "d" * 64, "data_uri": "s3://data/abalone.csv",
         "test_raw": "s3://data/runs/r/etl/test_raw/"},
    )  # fmt: skip
    manifest.update(
        "evaluate",
        {"uri": "s3://artifacts/evaluation.json",
         "metrics": {"regression_metrics": {"rmse": {"value": 2.1}}}},
    )  # fmt: skip
    cfg = config.load(ROOT / "pipeline.toml")
    return Context(cfg, session, manifest, root=tmp_path, _account=account)


def described(ctx: Context, arn: str) -> dict:
    return ctx.client("sagemaker").describe_model_package(ModelPackageName=arn)


def stage_of(ctx: Context, arn: str) -> tuple[str, str]:
    life = described(ctx, arn).get("ModelLifeCycle", {})
    return life.get("Stage", ""), life.get("StageStatus", "")


def packages(ctx: Context, count: int) -> list[str]:
    """``count`` packages registered as the register step does, oldest first."""
    return [register.run(ctx) for _ in range(count)]


def serve_prod(ctx: Context, arn: str) -> None:
    """The prod endpoint stack, as far as rollback reads it: its ModelPackageArn parameter."""
    cfn, name = ctx.client("cloudformation"), ctx.config.stack_name("prod")
    params = [{"ParameterKey": "ModelPackageArn", "ParameterValue": arn}]
    try:
        cfn.describe_stacks(StackName=name)
        cfn.update_stack(StackName=name, TemplateBody=SERVING_TEMPLATE, Parameters=params)
    except ClientError:
        cfn.create_stack(StackName=name, TemplateBody=SERVING_TEMPLATE, Parameters=params)


# --- register and set_stage ------------------------------------------------------------------


def test_register_approves_what_passed_the_gate_and_records_its_lifecycle(ctx, image_uri):
    (arn,) = packages(ctx, 1)
    package = described(ctx, arn)
    assert package["ModelApprovalStatus"] == "Approved"  # AWS deploys nothing else
    assert package["ModelLifeCycle"]["Stage"] == "registered"
    assert package["ModelLifeCycle"]["StageStatus"] == "PassedGate"
    assert "rmse 2.1000" in package["ModelLifeCycle"]["StageDescription"]
    assert package["CustomerMetadataProperties"]["image_digest"] == image_uri.split("@")[1]
    assert ctx.manifest.get("register.status") == "Approved"


def test_a_rejected_registration_records_failed_gate(ctx):
    arn = register.run(ctx, status="Rejected")
    assert described(ctx, arn)["ModelApprovalStatus"] == "Rejected"
    assert stage_of(ctx, arn) == ("registered", "FailedGate")


def test_register_refuses_a_candidate_that_did_not_pass_the_gate(ctx):
    ctx.manifest.update("gate", {"passed": False})
    with pytest.raises(ConfigError, match="has not passed the gate"):
        register.run(ctx)


def test_set_stage_records_the_lifecycle_and_keeps_approval_and_lineage(ctx):
    (arn,) = packages(ctx, 1)
    lineage = described(ctx, arn)["CustomerMetadataProperties"]
    register.set_stage(ctx, arn, "dev", "Tested", "system tests passed")
    package = described(ctx, arn)
    assert package["ModelLifeCycle"] == {
        "Stage": "dev",
        "StageStatus": "Tested",
        "StageDescription": "system tests passed",
    }
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["CustomerMetadataProperties"] == lineage


def test_set_stage_with_reject_marks_the_package_rejected(ctx):
    (arn,) = packages(ctx, 1)
    register.set_stage(ctx, arn, "dev", "Failed", "system tests failed", reject=True)
    package = described(ctx, arn)
    assert (package["ModelApprovalStatus"], stage_of(ctx, arn)) == ("Rejected", ("dev", "Failed"))
    assert package["ApprovalDescription"] == "system tests failed"


# --- deploy.check_package --------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_only_an_approved_package_can_be_deployed(ctx, status, stage):
    (arn,) = packages(ctx, 1)
    ctx.client("sagemaker").update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription="failed its tests"
    )
    with pytest.raises(ConfigError) as caught:
        deploy.check_package(ctx, stage, arn)
    assert f"is {status} (failed its tests): only an Approved package" in str(caught.value)


@pytest.mark.parametrize(
    ("stage", "status", "prod_ok"),
    [
        ("registered", "PassedGate", False),  # never deployed to dev
        ("dev", "Deployed", False),  # deployed, not tested
        ("dev", "Failed", False),
        ("dev", "Tested", True),
        ("prod", "Retired", True),  # a rollback target
        ("prod", "InService", True),
    ],
)
def test_prod_takes_only_what_passed_dev_or_served_prod(ctx, stage, status, prod_ok):
    (arn,) = packages(ctx, 1)
    if stage != "registered":
        register.set_stage(ctx, arn, stage, status, "why")
    assert deploy.check_package(ctx, "dev", arn)["ModelPackageArn"] == arn
    if prod_ok:
        assert deploy.check_package(ctx, "prod", arn)["ModelPackageArn"] == arn
    else:
        with pytest.raises(ConfigError, match=f"is {stage}/{status}: prod only takes"):
            deploy.check_package(ctx, "prod", arn)


def test_deploy_hands_cloudformation_the_stack_role_from_the_environment(ctx, monkeypatch):
    (arn,) = packages(ctx, 1)
    seen = {}

    class Stop(Exception):
        pass

    def fake_deploy(*_args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(deploy.stack, "deploy", fake_deploy)
    role = f"arn:aws:iam::{ACCOUNT}:role/mlops-stack-dev"
    monkeypatch.setenv("MLOPS_STACK_ROLE_ARN", role)
    with pytest.raises(Stop):
        deploy.run(ctx, "dev", arn)
    assert seen["role_arn"] == role
    monkeypatch.delenv("MLOPS_STACK_ROLE_ARN")
    with pytest.raises(Stop):
        deploy.run(ctx, "dev", arn)
    assert seen["role_arn"] == ""


# --- promote and rollback --------------------------------------------------------------------


def test_promote_marks_prod_in_service_and_retires_the_previous(ctx):
    first, second, dev_only = packages(ctx, 3)
    register.set_stage(ctx, dev_only, "dev", "Tested", "why")
    promote.run(ctx, first)
    assert stage_of(ctx, first) == ("prod", "InService")
    promote.run(ctx, second)
    assert stage_of(ctx, second) == ("prod", "InService")
    assert stage_of(ctx, first) == ("prod", "Retired")
    assert stage_of(ctx, dev_only) == ("dev", "Tested")  # untouched: it never served prod
    assert promote.serving_prod(ctx) == [second]
    assert ctx.manifest.get("promote") == {"model_package_arn": second, "status": "InService"}


def test_a_package_serving_prod_keeps_its_prod_record_when_redeployed_to_dev(ctx):
    """A dev redeploy of what serves prod must not erase the record rollback relies on; a
    failure in dev still rejects it."""
    (arn,) = packages(ctx, 1)
    promote.run(ctx, arn)
    register.set_stage(ctx, arn, "dev", "Deployed", "redeployed to dev")
    register.set_stage(ctx, arn, "dev", "Tested", "tests passed")
    assert stage_of(ctx, arn) == ("prod", "InService")
    register.set_stage(ctx, arn, "dev", "Failed", "tests failed", reject=True)
    assert stage_of(ctx, arn) == ("dev", "Failed")
    assert described(ctx, arn)["ModelApprovalStatus"] == "Rejected"


def test_rollback_picks_the_newest_package_that_served_prod_not_the_current(ctx):
    older, newer, current, dev_a, dev_b = packages(ctx, 5)  # oldest first
    for arn in (older, newer, current):
        promote.run(ctx, arn)  # each retires the one before
    for arn in (dev_a, dev_b):  # the newest two only reached dev
        register.set_stage(ctx, arn, "dev", "Tested", "why")
    serve_prod(ctx, current)
    # Descending by creation: newer, not older (an Ascending sort would pick older)
    assert rollback.previous_approved(ctx, "prod") == newer


def test_rollback_never_picks_a_package_that_only_reached_dev(ctx):
    current, dev_only = packages(ctx, 2)
    promote.run(ctx, current)
    register.set_stage(ctx, dev_only, "dev", "Tested", "why")
    serve_prod(ctx, current)
    with pytest.raises(ConfigError, match="no earlier package that served prod than"):
        rollback.previous_approved(ctx, "prod")


def test_rollback_skips_rejected_and_rolled_back_packages(ctx):
    oldest, rolled_back, rejected, current = packages(ctx, 4)
    for arn in (oldest, rolled_back, rejected, current):
        promote.run(ctx, arn)
    register.set_stage(ctx, rolled_back, "prod", "RolledBack", "rolled back")
    register.set_stage(ctx, rejected, "prod", "Failed", "smoke tests", reject=True)
    serve_prod(ctx, current)
    assert rollback.previous_approved(ctx, "prod") == oldest


# --- the moto gap rules the steps rely on ----------------------------------------------------


def test_update_model_package_keeps_what_the_call_does_not_name(ctx):
    (arn,) = packages(ctx, 1)
    before = described(ctx, arn)
    ctx.client("sagemaker").update_model_package(
        ModelPackageArn=arn,
        ModelLifeCycle={"Stage": "dev", "StageStatus": "Deployed", "StageDescription": "x"},
    )
    after = described(ctx, arn)
    assert after["CustomerMetadataProperties"] == before["CustomerMetadataProperties"]
    assert after["CustomerMetadataProperties"]["run_id"] == "20260101-000000-abcdef0"
    assert after["ModelApprovalStatus"] == "Approved"
    assert after["ModelLifeCycle"]["Stage"] == "dev"


def _create_model(ctx, arn: str) -> dict:
    return ctx.client("sagemaker").create_model(
        ModelName=f"m-{arn.rsplit('/', 1)[-1]}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": arn},
    )


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_create_model_from_a_package_that_is_not_approved_is_refused(ctx, status):
    (arn,) = packages(ctx, 1)
    ctx.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    with pytest.raises(ClientError) as caught:
        _create_model(ctx, arn)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert f"ModelApprovalStatus {status}" in error["Message"]
    assert "must be Approved" in error["Message"]


def test_create_model_from_an_approved_package_is_accepted(ctx):
    (arn,) = packages(ctx, 1)
    assert _create_model(ctx, arn)["ModelArn"].endswith(f"model/m-{arn.rsplit('/', 1)[-1]}")


def _training_job(ctx, name: str, image: str) -> dict:
    return ctx.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://artifacts/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def test_create_training_job_with_an_image_digest_not_in_ecr_is_refused(ctx, image_uri):
    missing = image_uri.split("@")[0] + "@sha256:" + "9" * 64
    with pytest.raises(ClientError) as caught:
        _training_job(ctx, "mlops-train-missing", missing)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert f"image {missing} does not exist in ECR" in error["Message"]
    assert _training_job(ctx, "mlops-train-pushed", image_uri)["TrainingJobArn"]


def test_describe_model_package_returns_the_model_lifecycle(ctx, image_uri):
    """moto drops ModelLifeCycle; the rules keep it on create and on update, and describe it."""
    sm = ctx.client("sagemaker")
    spec = {
        "Containers": [{"Image": image_uri}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    life = {"Stage": "registered", "StageStatus": "PassedGate", "StageDescription": "gate"}
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification=spec,
        ModelApprovalStatus="Approved",
        ModelLifeCycle=life,
    )["ModelPackageArn"]
    assert described(ctx, arn)["ModelLifeCycle"] == life
    moved = {"Stage": "prod", "StageStatus": "InService", "StageDescription": "serving"}
    sm.update_model_package(ModelPackageArn=arn, ModelLifeCycle=moved)
    assert described(ctx, arn)["ModelLifeCycle"] == moved


def test_an_immutable_tag_pushed_again_with_another_image_is_aws_s_error(ctx, image_uri):
    ecr = ctx.client("ecr")
    other = MANIFEST.replace("}", ', "annotations": {"build": "2"}}', 1)
    with pytest.raises(ClientError) as info:
        ecr.put_image(repositoryName="mlops", imageManifest=other, imageTag="a" * 40)
    assert info.value.response["Error"]["Code"] == "ImageTagAlreadyExistsException"
    with pytest.raises(ClientError) as same:  # the very same image: AWS's other error
        ecr.put_image(repositoryName="mlops", imageManifest=MANIFEST, imageTag="a" * 40)
    assert same.value.response["Error"]["Code"] == "ImageAlreadyExistsException"


# --- deploy's last check: the endpoint runs the config its stack created ----------------------


def _endpoint(ctx: Context, config_name: str, status: str = "InService") -> str:
    sm = ctx.client("sagemaker")
    sm.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "i", "ModelDataUrl": "s3://b/m"},
    )
    variants = [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
                 "InstanceType": "ml.m5.large"}]  # fmt: skip
    for name in ("config-old", "config-new"):
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)
    sm.create_endpoint(EndpointName="mlops-dev", EndpointConfigName=config_name)
    return "mlops-dev"


def test_deploy_accepts_the_endpoint_on_the_config_its_stack_created(ctx):
    name = _endpoint(ctx, "config-new")
    assert deploy.verify_endpoint(ctx, name, "config-new")["EndpointConfigName"] == "config-new"


def test_deploy_fails_when_sagemaker_rolled_the_update_back(ctx):
    name = _endpoint(ctx, "config-old")  # the stack created config-new; SageMaker serves old
    with pytest.raises(PipelineError, match="serves config config-old, not config-new: SageMaker"):
        deploy.verify_endpoint(ctx, name, "config-new")
