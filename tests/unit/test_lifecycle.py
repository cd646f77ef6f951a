"""The model registry as the pipeline's record, against moto with the local AWS rules it lacks.

register approves what passed the gate (AWS deploys nothing else) and records ModelLifeCycle;
deploy refuses what is not Approved, and prod what did not pass dev's tests; promote marks what
serves prod and retires what it replaced; rollback finds what really served prod before.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from mlops import config
from mlops.account import Account
from mlops.aws import new_session
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


pytestmark = pytest.mark.cost(8)  # seconds: scheduled before the small modules


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
        yield new_session(region_name=REGION)


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


def _endpoint(
    ctx: Context,
    config_name: str,
    status: str = "InService",
    *,
    name: str = "mlops-dev",
    reason: str | None = None,
) -> str:
    """An endpoint on ``config_name`` (config-old or config-new), in ``status`` with ``reason``."""
    sm = ctx.client("sagemaker")
    sm.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "i", "ModelDataUrl": "s3://b/m"},
    )
    variants = [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
                 "InstanceType": "ml.m5.large"}]  # fmt: skip
    for config_ in ("config-old", "config-new"):
        sm.create_endpoint_config(EndpointConfigName=config_, ProductionVariants=variants)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[name]
    endpoint.endpoint_status, endpoint.failure_reason = status, reason
    return name


@pytest.fixture(autouse=True)
def no_endless_waits(monkeypatch):
    """Waits poll without sleeping, and one that would poll on for ever fails the test at once
    (a wait whose done or failed states are wrong never ends)."""
    real = deploy.wait_for

    def wait_for(*args, **kwargs):
        polls = []

        def sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) > 5:
                raise AssertionError(f"{args[0]}: still polling after {len(polls)} polls")

        return real(*args, sleep=sleep, **kwargs)

    monkeypatch.setattr(deploy, "wait_for", wait_for)


LINK = "https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1#/endpoints/"


def test_deploy_accepts_the_endpoint_on_the_config_its_stack_created(ctx):
    name = _endpoint(ctx, "config-new")
    assert deploy.verify_endpoint(ctx, name, "config-new")["EndpointConfigName"] == "config-new"


def test_deploy_fails_when_sagemaker_rolled_the_update_back(ctx):
    name = _endpoint(ctx, "config-old")  # the stack created config-new; SageMaker serves old
    with pytest.raises(PipelineError, match="serves config config-old, not config-new: SageMaker"):
        deploy.verify_endpoint(ctx, name, "config-new")


def test_verify_endpoint_waits_for_in_service_and_says_so(ctx, monkeypatch, capsys):
    name = _endpoint(ctx, "config-new")
    desc = deploy.verify_endpoint(ctx, name, "config-new")
    assert (desc["EndpointName"], desc["EndpointStatus"]) == ("mlops-dev", "InService")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"  endpoint mlops-dev: {LINK}mlops-dev"
    assert re.fullmatch(r"  endpoint mlops-dev: InService after \d+\.\ds", lines[1]), lines
    assert len(lines) == 2


def test_verify_endpoint_without_a_config_name_accepts_any_config(ctx):
    name = _endpoint(ctx, "config-old")
    assert deploy.verify_endpoint(ctx, name, "")["EndpointConfigName"] == "config-old"


@pytest.mark.parametrize("status", ["Failed", "OutOfService"])
def test_an_endpoint_that_failed_is_one_line_with_its_reason(ctx, monkeypatch, status):
    name = _endpoint(ctx, "config-new", status, reason="the primary container did not start")
    with pytest.raises(PipelineError) as caught:
        deploy.verify_endpoint(ctx, name, "config-new")
    assert str(caught.value) == (
        f"endpoint mlops-dev {status}: the primary container did not start (see {LINK}mlops-dev)"
    )


def test_an_endpoint_in_service_with_a_failure_reason_is_a_failed_update(ctx, monkeypatch):
    # SageMaker keeps the endpoint InService on its old config after a failed update and says why
    name = _endpoint(ctx, "config-new", reason="update rolled back: alarm mlops-dev-model-latency")
    with pytest.raises(PipelineError) as caught:
        deploy.verify_endpoint(ctx, name, "config-new")
    assert str(caught.value) == (
        "endpoint mlops-dev: update rolled back: alarm mlops-dev-model-latency"
    )


def test_the_rolled_back_update_message_names_both_configs(ctx):
    name = _endpoint(ctx, "config-old")
    with pytest.raises(PipelineError) as caught:
        deploy.verify_endpoint(ctx, name, "config-new")
    assert str(caught.value) == (
        "endpoint mlops-dev serves config config-old, not config-new: SageMaker rolled the "
        "update back (check the auto-rollback alarms and the endpoint's CloudWatch logs)"
    )


# --- deploy.run and rollback.run end to end (the stack itself: test_stack.py) ----------------


def github_files(monkeypatch, tmp_path) -> tuple[Path, Path]:
    output, summary = tmp_path / "github-output", tmp_path / "github-summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return output, summary


def outputs_of(path: Path) -> dict[str, str]:
    """GitHub's name<<DELIMITER / value / DELIMITER records."""
    found = re.findall(r"^([\w-]+)<<(EOF_[0-9a-f]{32})\n(.*?)\n\2$", path.read_text(), re.M | re.S)
    return {name: value for name, _, value in found}


def fake_stack(monkeypatch, ctx, outputs: dict[str, str], config_name: str) -> list:
    """stack.deploy as far as deploy.run sees it: the endpoint exists and the stack's outputs."""
    calls = []

    def deploy_stack(*args, **kwargs):
        calls.append((args, kwargs))
        _endpoint(ctx, config_name, name=outputs.get("EndpointName", "mlops-dev"))
        return outputs

    monkeypatch.setattr(deploy.stack, "deploy", deploy_stack)
    return calls


def test_deploy_run_deploys_the_stack_checks_the_endpoint_and_records_it(
    ctx, monkeypatch, tmp_path, capsys
):
    (arn,) = packages(ctx, 1)
    output, summary = github_files(monkeypatch, tmp_path)
    role = f"arn:aws:iam::{ACCOUNT}:role/mlops-stack-dev"
    monkeypatch.setenv("MLOPS_STACK_ROLE_ARN", role)
    outputs = {"EndpointName": "mlops-dev-from-stack", "EndpointConfigName": "config-new"}
    calls = fake_stack(monkeypatch, ctx, outputs, "config-new")
    capsys.readouterr()
    values = deploy.run(ctx, "dev", arn)
    expected = {
        "stack": "mlops-endpoint-dev",
        "endpoint": "mlops-dev-from-stack",
        "model_package_arn": arn,
        "endpoint_config": "config-new",
    }
    assert values == expected
    ((args, kwargs),) = calls
    assert args == (
        ctx.client("cloudformation"),
        "mlops-endpoint-dev",
        tmp_path / "cloudformation" / "endpoint.yaml",
        deploy.parameters(ctx, "dev", arn),
    )
    assert kwargs == {"region": REGION, "tags": {"mlops:stage": "dev"}, "role_arn": role}
    assert ctx.manifest.get("deploy_dev") == expected
    assert described(ctx, arn)["ModelLifeCycle"] == {
        "Stage": "dev",
        "StageStatus": "Deployed",
        "StageDescription": "endpoint mlops-dev-from-stack, run 20260101-000000-abcdef0",
    }
    assert outputs_of(output) == {"endpoint-name": "mlops-dev-from-stack"}
    assert summary.read_text() == (
        f"### Deployed to dev\nEndpoint `mlops-dev-from-stack` serves `{arn}`\n\n"
    )
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"deploy: {arn} to dev (stack mlops-endpoint-dev)"


def test_deploy_run_without_stack_outputs_uses_the_configured_endpoint_name(
    ctx, monkeypatch, tmp_path
):
    (arn,) = packages(ctx, 1)
    output, _ = github_files(monkeypatch, tmp_path)
    calls = fake_stack(monkeypatch, ctx, {}, "config-old")  # no config to compare with
    values = deploy.run(ctx, "dev", arn)
    assert values == {
        "stack": "mlops-endpoint-dev",
        "endpoint": "mlops-dev",
        "model_package_arn": arn,
        "endpoint_config": "",
    }
    assert calls[0][1]["role_arn"] == ""
    assert outputs_of(output) == {"endpoint-name": "mlops-dev"}


def test_deploy_run_records_nothing_when_the_endpoint_check_fails(ctx, monkeypatch, tmp_path):
    (arn,) = packages(ctx, 1)
    output, summary = github_files(monkeypatch, tmp_path)
    fake_stack(monkeypatch, ctx, {"EndpointConfigName": "config-new"}, "config-old")
    with pytest.raises(PipelineError, match=r"^endpoint mlops-dev serves config config-old"):
        deploy.run(ctx, "dev", arn)
    assert stage_of(ctx, arn) == ("registered", "PassedGate")
    assert ctx.manifest.get("deploy_dev") is None
    assert not output.exists()
    assert not summary.exists()


def test_deploy_run_refuses_a_package_before_touching_the_stack(ctx, monkeypatch):
    (arn,) = packages(ctx, 1)
    calls = fake_stack(monkeypatch, ctx, {}, "config-new")
    with pytest.raises(ConfigError, match="prod only takes"):
        deploy.run(ctx, "prod", arn)
    assert calls == []


def test_rollback_run_redeploys_the_previous_and_marks_the_replaced_rolled_back(
    ctx, monkeypatch, tmp_path, capsys
):
    older, current = packages(ctx, 2)
    promote.run(ctx, older)
    promote.run(ctx, current)  # retires older
    serve_prod(ctx, current)
    output, _ = github_files(monkeypatch, tmp_path)
    outputs = {"EndpointName": "mlops-prod", "EndpointConfigName": "config-new"}
    calls = fake_stack(monkeypatch, ctx, outputs, "config-new")
    capsys.readouterr()
    result = rollback.run(ctx, "prod")
    assert result == {
        "stack": "mlops-endpoint-prod",
        "endpoint": "mlops-prod",
        "model_package_arn": older,
        "endpoint_config": "config-new",
    }
    assert calls[0][0][3]["ModelPackageArn"] == older
    assert described(ctx, current)["ModelLifeCycle"] == {
        "Stage": "prod",
        "StageStatus": "RolledBack",
        "StageDescription": f"rolled back to {older}",
    }
    assert stage_of(ctx, older) == ("prod", "Deployed")
    assert outputs_of(output) == {"endpoint-name": "mlops-prod", "model-package-arn": older}
    assert f"rollback: prod to {older}" in capsys.readouterr().err.splitlines()


def test_rollback_run_to_what_serves_already_marks_nothing_rolled_back(ctx, monkeypatch, tmp_path):
    older, current = packages(ctx, 2)
    promote.run(ctx, older)
    promote.run(ctx, current)
    serve_prod(ctx, current)
    output, _ = github_files(monkeypatch, tmp_path)
    fake_stack(monkeypatch, ctx, {"EndpointName": "mlops-prod"}, "config-new")
    assert rollback.run(ctx, "prod", current)["model_package_arn"] == current
    assert stage_of(ctx, current) == ("prod", "Deployed")
    assert stage_of(ctx, older) == ("prod", "Retired")
    assert outputs_of(output)["model-package-arn"] == current


def test_rollback_run_with_no_stack_yet_marks_nothing_rolled_back(ctx, monkeypatch):
    older, current = packages(ctx, 2)
    promote.run(ctx, older)
    promote.run(ctx, current)
    fake_stack(monkeypatch, ctx, {"EndpointName": "mlops-prod"}, "config-new")
    assert rollback.run(ctx, "prod", older)["model_package_arn"] == older
    assert stage_of(ctx, older) == ("prod", "Deployed")
    assert stage_of(ctx, current) == ("prod", "InService")


# --- the exact one-line refusals --------------------------------------------------------------


def test_a_package_refused_by_the_gate_says_so_in_one_line(ctx):
    arn = register.run(ctx, status="Rejected")  # no ApprovalDescription
    with pytest.raises(ConfigError) as caught:
        deploy.check_package(ctx, "dev", arn)
    assert str(caught.value) == (
        f"model package {arn} is Rejected (it did not pass the gate): only an Approved package "
        "can be deployed"
    )


def bare_package(ctx: Context, image_uri: str) -> str:
    """An Approved package registered by hand, without a ModelLifeCycle."""
    return ctx.client("sagemaker").create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification={
            "Containers": [{"Image": image_uri}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]


def test_prod_refuses_a_package_without_a_lifecycle_in_one_line(ctx, image_uri):
    arn = bare_package(ctx, image_uri)
    assert deploy.check_package(ctx, "dev", arn)["ModelPackageArn"] == arn
    with pytest.raises(ConfigError) as caught:
        deploy.check_package(ctx, "prod", arn)
    assert str(caught.value) == (
        f"model package {arn} is registered/?: prod only takes a package that passed the dev "
        "system tests (mlops system-test --stage dev) or served prod"
    )


def test_verify_endpoint_of_a_missing_endpoint_is_one_line(ctx):
    with pytest.raises(PipelineError) as caught:
        deploy.verify_endpoint(ctx, "mlops-dev", "config-new")
    assert str(caught.value) == (
        "describe the endpoint: ValidationException: Could not find endpoint "
        f"'arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/mlops-dev'."
    )


def test_rollback_without_a_prod_stack_takes_the_newest_that_served_prod(ctx):
    older, newer = packages(ctx, 2)
    register.set_stage(ctx, older, "prod", "Retired", "why")
    register.set_stage(ctx, newer, "prod", "InService", "why")  # nothing deployed serves it
    assert rollback.previous_approved(ctx, "prod") == newer


def test_rollback_with_nothing_that_served_prod_says_so_in_one_line(ctx, image_uri):
    packages(ctx, 1)
    bare_package(ctx, image_uri)  # no ModelLifeCycle at all
    with pytest.raises(ConfigError) as caught:
        rollback.previous_approved(ctx, "prod")
    assert str(caught.value) == (
        "no earlier package that served prod than none to roll back to: pass --model-package-arn"
    )
    serving = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/9"
    serve_prod(ctx, serving)
    with pytest.raises(ConfigError) as caught:
        rollback.previous_approved(ctx, "prod")
    assert str(caught.value) == (
        f"no earlier package that served prod than {serving} to roll back to: pass "
        "--model-package-arn"
    )


def test_rollback_never_picks_a_package_whose_approval_was_revoked(ctx):
    revoked, current = packages(ctx, 2)
    promote.run(ctx, revoked)
    promote.run(ctx, current)
    ctx.client("sagemaker").update_model_package(
        ModelPackageArn=revoked, ModelApprovalStatus="Rejected"
    )  # still prod/Retired, but AWS would not deploy it
    serve_prod(ctx, current)
    with pytest.raises(ConfigError, match="no earlier package that served prod"):
        rollback.previous_approved(ctx, "prod")


@pytest.mark.parametrize("step", ["rollback", "promote"])
def test_a_refused_package_listing_is_one_line(ctx, monkeypatch, step):
    def refuse(**_kwargs):
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no ListModelPackages"}},
            "ListModelPackages",
        )

    monkeypatch.setattr(ctx.client("sagemaker"), "list_model_packages", refuse)
    with pytest.raises(PipelineError) as caught:
        if step == "rollback":
            rollback.previous_approved(ctx, "prod")
        else:
            promote.serving_prod(ctx)
    assert str(caught.value) == (
        "list approved model packages: AccessDeniedException: no ListModelPackages"
    )


def test_serving_prod_lists_newest_first(ctx, image_uri):
    older, newer, dev_only, revoked = packages(ctx, 4)
    for arn in (older, newer, revoked):  # an interrupted promote leaves two InService
        register.set_stage(ctx, arn, "prod", "InService", "why")
    register.set_stage(ctx, dev_only, "dev", "Tested", "why")
    ctx.client("sagemaker").update_model_package(
        ModelPackageArn=revoked, ModelApprovalStatus="Rejected"
    )
    bare_package(ctx, image_uri)  # no ModelLifeCycle: never served prod
    assert promote.serving_prod(ctx) == [newer, older]
    assert promote.serving_prod(ctx, exclude=newer) == [older]


# --- register's record, exactly ---------------------------------------------------------------


def test_register_records_the_package_its_lineage_and_tells_github(
    ctx, image_uri, monkeypatch, tmp_path, capsys
):
    output, summary = github_files(monkeypatch, tmp_path)
    ctx.manifest.update("etl", {"output": "s3://data/runs/r/etl/"})
    ctx.manifest.update("reuse", {"training_key": "k" * 16, "code_sha256": "e" * 64})
    ctx.manifest.update("train", {"reused_from": "arn:of/an/earlier/package"})
    # what a tuned model was trained with (static + tuned) and the tuning job it won
    ctx.manifest.update("train", {"hyperparameters": {"eta": "0.2"}, "tuning_job": "mlops-tune-1"})
    ctx.manifest.update("evaluate", {"where": "runner"})  # a reused model, evaluated on the runner
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    capsys.readouterr()
    arn = register.run(ctx)
    package = described(ctx, arn)
    assert package["ModelPackageDescription"] == "run 20260101-000000-abcdef0 (aaaaaaaaaaaa)"
    assert package["CustomerMetadataProperties"] == {
        "git_sha": "a" * 40,
        "run_id": "20260101-000000-abcdef0",
        "image_digest": image_uri.split("@")[1],
        "data_sha256": "d" * 64,
        "data_uri": "s3://data/abalone.csv",
        "training_job": "mlops-train-1",
        "test_data_uri": "s3://data/runs/r/etl/test_raw/",
        "evaluation_uri": "s3://artifacts/evaluation.json",
        "evaluated_on": "runner",
        "github_run_id": "4242",
        "rmse": "2.100000",
        "etl_output": "s3://data/runs/r/etl/",
        "training_key": "k" * 16,
        "code_sha256": "e" * 64,
        "reused_from": "arn:of/an/earlier/package",
        "tuning_job": "mlops-tune-1",
        "hyperparameters": '{"eta":"0.2"}',
    }
    spec = package["InferenceSpecification"]
    assert spec["Containers"][0]["Image"] == image_uri
    assert spec["Containers"][0]["ModelDataUrl"] == "s3://artifacts/model.tar.gz"
    assert spec["SupportedContentTypes"] == ["text/csv", "application/json"]
    assert spec["SupportedResponseMIMETypes"] == ["text/csv", "application/json"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == sorted(
        {s.instance_type for s in ctx.config.stages.values()}
    )
    assert package["ModelMetrics"] == {
        "ModelQuality": {
            "Statistics": {
                "ContentType": "application/json",
                "S3Uri": "s3://artifacts/evaluation.json",
            }
        }
    }
    assert package["ModelLifeCycle"] == {
        "Stage": "registered",
        "StageStatus": "PassedGate",
        "StageDescription": "test rmse 2.1000 (run 20260101-000000-abcdef0)",
    }
    version = arn.rsplit("/", 1)[-1]
    assert ctx.manifest.get("register") == {
        "model_package_arn": arn,
        "version": version,
        "status": "Approved",
    }
    assert outputs_of(output) == {"model-package-arn": arn}
    assert summary.read_text() == f"### Registered\n`{arn}` (version {version}), Approved\n\n"
    assert f"register: {arn} (Approved)" in capsys.readouterr().err.splitlines()


def test_register_without_a_git_sha_says_unknown(ctx):
    del ctx.manifest.data["run"]["git_sha"]
    arn = register.run(ctx)
    package = described(ctx, arn)
    assert package["CustomerMetadataProperties"]["git_sha"] == "unknown"
    assert package["ModelPackageDescription"] == "run 20260101-000000-abcdef0 (unknown)"
    assert "etl_output" not in package["CustomerMetadataProperties"]  # empty values are left out


def test_a_rejected_registration_needs_no_gate_and_tells_github_nothing(ctx, monkeypatch, tmp_path):
    output, summary = github_files(monkeypatch, tmp_path)
    ctx.manifest.update("gate", {"passed": False})
    arn = register.run(ctx, status="Rejected")
    assert ctx.manifest.get("register.status") == "Rejected"
    assert described(ctx, arn)["ModelLifeCycle"]["StageStatus"] == "FailedGate"
    assert not output.exists()
    assert not summary.exists()


def test_register_refusal_without_the_gate_is_one_line(ctx):
    ctx.manifest.update("gate", {"passed": False})
    with pytest.raises(ConfigError) as caught:
        register.run(ctx)
    assert str(caught.value) == "the candidate has not passed the gate: run `mlops gate` first"


def test_set_stage_logs_what_it_records_and_cuts_long_reasons(ctx, capsys):
    (arn,) = packages(ctx, 1)
    capsys.readouterr()
    why = "x" * 1500
    register.set_stage(ctx, arn, "dev", "Failed", why, reject=True)
    package = described(ctx, arn)
    assert package["ModelLifeCycle"]["StageDescription"] == "x" * 1000
    assert package["ApprovalDescription"] == "x" * 1000
    register.set_stage(ctx, arn, "prod", "InService", "serving")
    register.set_stage(ctx, arn, "dev", "Deployed", "redeployed")
    assert capsys.readouterr().err.splitlines() == [
        f"registry: {arn} dev Failed (Rejected)",
        f"registry: {arn} prod InService",
        f"registry: {arn} stays prod/InService (also in dev now)",
    ]


def test_set_stage_and_describe_of_a_missing_package_are_one_line(ctx):
    missing = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/99"
    with pytest.raises(PipelineError) as caught:
        register.describe(ctx, missing)
    assert str(caught.value) == (
        f"describe model package {missing}: ValidationException: Model package {missing} not found"
    )
    with pytest.raises(PipelineError) as caught:
        register.set_stage(ctx, missing, "prod", "Retired", "why")
    assert str(caught.value) == (
        f"record prod Retired on {missing}: ValidationException: Model package {missing} not found"
    )


@pytest.mark.parametrize("arn", ["", "arn:aws:sagemaker:us-east-1:1:model/m"])
def test_describe_refuses_what_is_not_a_package_arn_in_one_line(ctx, arn):
    with pytest.raises(ConfigError) as caught:
        register.describe(ctx, arn)
    assert str(caught.value) == (
        f"{arn!r} is not a model package ARN: pass --model-package-arn "
        "(the train job's model-package-arn output)"
    )


def test_promote_records_why_and_tells_github(ctx, monkeypatch, tmp_path, capsys):
    _, summary = github_files(monkeypatch, tmp_path)
    first, second = packages(ctx, 2)
    promote.run(ctx, first)
    capsys.readouterr()
    promote.run(ctx, second)
    assert described(ctx, first)["ModelLifeCycle"]["StageDescription"] == (
        f"replaced by {second} (run 20260101-000000-abcdef0)"
    )
    assert described(ctx, second)["ModelLifeCycle"]["StageDescription"] == (
        "serving prod since run 20260101-000000-abcdef0"
    )
    assert f"promote: {second} serves prod" in capsys.readouterr().err.splitlines()
    assert summary.read_text().endswith(
        f"### Promoted\n`{second}` serves prod (ModelLifeCycle prod/InService)\n\n"
    )
    promote.run(ctx, second)  # a rerun: what it promotes is not "previous"
    assert capsys.readouterr().err.splitlines() == [
        f"registry: {second} prod InService",
        f"promote: {second} serves prod",
    ]
    del ctx.manifest.data["run"]["id"]
    promote.run(ctx, first)
    assert described(ctx, first)["ModelLifeCycle"]["StageDescription"] == (
        "serving prod since run n/a"
    )


def test_promote_refuses_what_is_not_a_package(ctx):
    with pytest.raises(ConfigError) as caught:
        promote.run(ctx, "")
    assert str(caught.value).startswith("'' is not a model package ARN: ")


def test_set_stage_in_dev_of_a_package_without_a_lifecycle_records_it(ctx, image_uri):
    arn = bare_package(ctx, image_uri)
    register.set_stage(ctx, arn, "dev", "Deployed", "endpoint mlops-dev")
    assert stage_of(ctx, arn) == ("dev", "Deployed")


@pytest.mark.parametrize(
    "missing, key, step",
    [
        (("train",), "train", "train"),
        (("etl",), "etl", "etl"),
        (("evaluate", "uri"), "evaluate.uri", "evaluate"),
        (("evaluate", "metrics"), "evaluate.metrics", "evaluate"),
    ],
)
def test_register_without_an_earlier_step_names_that_step_in_one_line(ctx, missing, key, step):
    node = ctx.manifest.data
    for part in missing[:-1]:
        node = node[part]
    del node[missing[-1]]
    with pytest.raises(ConfigError) as caught:
        register.run(ctx)
    assert str(caught.value) == (
        f"run manifest {ctx.manifest.path} has no {key}: run `mlops {step}` first"
    )
    assert ctx.manifest.get("register") is None


def test_a_refused_registration_is_one_line_naming_it(ctx, monkeypatch):
    def refuse(**_kwargs):
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no CreateModelPackage"}},
            "CreateModelPackage",
        )

    monkeypatch.setattr(ctx.client("sagemaker"), "create_model_package", refuse)
    with pytest.raises(PipelineError) as caught:
        register.run(ctx)
    assert str(caught.value) == (
        "create the model package: AccessDeniedException: no CreateModelPackage"
    )
    assert ctx.manifest.get("register") is None


def test_the_approved_listing_asks_for_the_newest_scan_of_the_group(ctx, monkeypatch):
    sm = ctx.client("sagemaker")
    real, sent = sm.list_model_packages, []

    def spy(**kwargs):
        sent.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(sm, "list_model_packages", spy)
    (arn,) = packages(ctx, 1)
    assert [p["ModelPackageArn"] for p in register.approved_newest_first(ctx)] == [arn]
    assert sent == [
        {
            "ModelPackageGroupName": GROUP,
            "ModelApprovalStatus": "Approved",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": register.SCAN,
        }
    ]
    assert register.SCAN == 50
