"""Each step against the local AWS with real compute, and every fault it must stop at.

Independent of order: fixtures build the state a test needs (bootstrap, ETL, training, a registered
package, dev, prod in conftest.py; a second package that replaced the first here) once, on first
use, so any test runs alone (``-k``, ``--lf``) or shuffled. A fault test leaves what it touched as
it found it and asserts that the failing step changed nothing. The deploy faults (stack create and
update, a silent SageMaker rollback, prod, system tests) and their aftermath are checked through
the whole orchestrator, in test_workflow_local.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import stack as stack_mod
from mlops.account import Account
from mlops.context import Context
from mlops.errors import GateFailed, PipelineError
from mlops.local.runtime import LocalRuntime
from mlops.steps import deploy, etl, evaluate, gate, promote, register, rollback, system_test, train

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.cost(55)  # seconds on two workers: scheduled first


@pytest.fixture(scope="module")
def replaced(local, in_prod) -> tuple[str, str]:
    """A second package (the same model data, as a re-run of this commit makes) through dev into
    prod: the first now Retired, so rollback has somewhere to go."""
    _, ctx = local
    evaluate.run(ctx)
    gate.run(ctx)
    second = register.run(ctx)
    for stage in ("dev", "prod"):
        deploy.run(ctx, stage, second)
        system_test.run(ctx, stage, second)
    promote.run(ctx, second)
    return in_prod, second


@contextlib.contextmanager
def fault(runtime: LocalRuntime, name: str) -> Iterator[None]:
    """An injected fault that never outlives its test, taken or not."""
    runtime.faults.names.add(name)
    try:
        yield
    finally:
        runtime.faults.names.discard(name)


def redeploy_dev(ctx: Context, arn: str) -> None:
    """Dev back on ``arn`` with the registry record it had (a redeploy records dev/Deployed, and
    prod only takes what dev tested)."""
    record = register.describe(ctx, arn)["ModelLifeCycle"]
    deploy.run(ctx, "dev", arn)
    ctx.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelLifeCycle=record)


def packages(ctx: Context) -> list[dict]:
    return ctx.client("sagemaker").list_model_packages(
        ModelPackageGroupName=ctx.account.ModelPackageGroupName
    )["ModelPackageSummaryList"]


def serving(ctx: Context, stage: str) -> tuple[str, str]:
    """The package a stage's stack serves and the config its endpoint runs."""
    found = stack_mod.describe(ctx.client("cloudformation"), ctx.config.stack_name(stage)) or {}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in found.get("Parameters", [])}
    endpoint = ctx.client("sagemaker").describe_endpoint(
        EndpointName=ctx.config.endpoint_name(stage)
    )
    return params.get("ModelPackageArn", ""), endpoint["EndpointConfigName"]


def life(ctx: Context, arn: str) -> tuple[str, str, str]:
    described = register.describe(ctx, arn)
    stage = described.get("ModelLifeCycle", {})
    return described["ModelApprovalStatus"], stage.get("Stage", ""), stage.get("StageStatus", "")


def test_glue_failure_stops_at_etl(local):
    runtime, ctx = local
    before = ctx.manifest.get("etl")
    with fault(runtime, "glue"), pytest.raises(PipelineError, match=r"Glue run .* FAILED: .*bad"):
        etl.run(ctx, retrain=True)
    assert ctx.manifest.get("etl") == before


def test_etl_writes_splits_and_lineage(etl_done):
    assert set(etl_done["splits"]) == {"train", "validation", "test"}
    assert len(etl_done["data_sha256"]) == 64
    assert sum(etl_done["row_counts"].values()) == 4175


def test_training_failure_surfaces_failure_reason(local, etl_done):
    runtime, ctx = local
    before = ctx.manifest.get("train")
    with fault(runtime, "training"), pytest.raises(PipelineError, match="injected_fault"):
        train.run(ctx, runtime.image_uri)
    assert ctx.manifest.get("train") == before


def test_train_refuses_an_image_without_digest(local, etl_done):
    _, ctx = local
    with pytest.raises(PipelineError, match="not pinned by digest"):
        train.run(ctx, ctx.account.EcrRepositoryUri + ":latest")


def test_training_writes_model_data(local, trained):
    _, ctx = local
    bucket, _, key = trained["model_data"].removeprefix("s3://").partition("/")
    assert ctx.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000


def test_evaluation_failure_stops_at_evaluate(local, trained):
    runtime, ctx = local
    before = ctx.manifest.get("evaluate")
    with (
        fault(runtime, "evaluation"),
        pytest.raises(PipelineError, match=r"processing job .* Failed"),
    ):
        evaluate.run(ctx)
    assert ctx.manifest.get("evaluate") == before


def test_evaluation_and_gate_pass(local, trained):
    _, ctx = local
    metrics = evaluate.run(ctx)["metrics"]
    assert metrics["regression_metrics"]["rmse"]["value"] <= 2.15
    assert all(c.passed for c in gate.run(ctx))


def test_gate_failure_records_rejected_candidate(local, trained):
    _, ctx = local
    evaluate.run(ctx)
    before = {p["ModelPackageArn"] for p in packages(ctx)}
    strict = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, max_rmse=0.5))
    with pytest.raises(GateFailed, match="rmse"):
        gate.run(strict)
    new = [p for p in packages(ctx) if p["ModelPackageArn"] not in before]
    assert [p["ModelApprovalStatus"] for p in new] == ["Rejected"]
    gate.run(ctx)  # the manifest's verdict is the real thresholds' again


def test_register_approves_what_passed_the_gate(local, registered):
    _, ctx = local
    described = register.describe(ctx, registered)
    assert described["ModelApprovalStatus"] == "Approved"  # AWS deploys nothing else
    assert described["CustomerMetadataProperties"]["image_digest"].startswith("sha256:")


def test_deploy_dev_serves_the_package(local, in_dev):
    _, ctx = local
    sm = ctx.client("sagemaker")
    assert sm.describe_endpoint(EndpointName="mlops-dev")["EndpointStatus"] == "InService"


def test_system_tests_pass_on_dev(local, in_dev):
    _, ctx = local
    system_test.run(ctx, "dev", serving(ctx, "dev")[0])
    assert ctx.manifest.get("system_test_dev.passed") is True


def test_prod_deploy_with_capture_and_autoscaling_then_promote(local, in_prod):
    _, ctx = local
    assert life(ctx, serving(ctx, "prod")[0]) == ("Approved", "prod", "InService")  # in_prod, or
    # the package that replaced it when the `replaced` fixture ran first
    targets = ctx.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    assert any("endpoint/mlops-prod/" in t["ResourceId"] for t in targets)
    described = ctx.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=serving(ctx, "prod")[1]
    )
    assert described["DataCaptureConfig"]["EnableCapture"] is True


def test_promote_marks_prod_in_service(local, in_prod):
    _, ctx = local
    assert life(ctx, serving(ctx, "prod")[0]) == ("Approved", "prod", "InService")


def test_rollback_without_an_earlier_package_says_what_to_do(local, in_prod):
    _, ctx = local
    outputs = {**ctx.account.outputs, "ModelPackageGroupName": "mlops-lonely"}
    lonely = dataclasses.replace(ctx, _account=Account(ctx.region, outputs))
    ctx.client("sagemaker").create_model_package_group(ModelPackageGroupName="mlops-lonely")
    with pytest.raises(PipelineError, match="no earlier package that served prod"):
        rollback.run(lonely, "prod")


def test_next_candidate_is_compared_with_prod_on_the_same_test_set(local, in_prod):
    _, ctx = local
    values = evaluate.run(ctx)
    assert values["prod"]["model_package_arn"] == serving(ctx, "prod")[0]
    assert values["prod"]["metrics"]["regression_metrics"]["rmse"]["value"] == pytest.approx(
        values["metrics"]["regression_metrics"]["rmse"]["value"]
    )  # the same model on the same rows
    checks = {c.metric: c for c in gate.run(ctx)}
    assert checks["rmse vs prod model"].passed


def test_a_new_package_replaces_the_old_in_place(local, replaced):
    _, ctx = local
    first, second = replaced
    cfn, sm = ctx.client("cloudformation"), ctx.client("sagemaker")
    names = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    assert {"mlops-endpoint-dev", "mlops-endpoint-prod"} <= names
    assert not any(n.startswith("mlops-endpoint-") and n[15:] not in {"dev", "prod"} for n in names)
    endpoints = sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"])
    assert endpoints.count("mlops-dev") == endpoints.count("mlops-prod") == 1
    assert serving(ctx, "prod")[0] == serving(ctx, "dev")[0] == second != first
    assert life(ctx, first) == ("Approved", "prod", "Retired")


def test_redeploy_of_the_same_package_changes_nothing(local, in_dev):
    _, ctx = local
    cfn = ctx.client("cloudformation")
    before = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    dev = serving(ctx, "dev")
    redeploy_dev(ctx, dev[0])
    assert {s["StackName"] for s in cfn.describe_stacks()["Stacks"]} == before
    assert serving(ctx, "dev") == dev


def test_rollback_redeploys_the_previous_package_that_served_prod(local, replaced):
    _, ctx = local
    first, second = replaced
    try:
        assert rollback.run(ctx, "prod")["model_package_arn"] == first
        assert serving(ctx, "prod")[0] == first
        assert life(ctx, second)[2] == "RolledBack"
        sm = ctx.client("sagemaker")
        assert sm.describe_endpoint(EndpointName="mlops-prod")["EndpointStatus"] == "InService"
    finally:  # prod back on the second package, as `replaced` left it
        deploy.run(ctx, "prod", second)
        promote.run(ctx, second)
        register.set_stage(ctx, first, "prod", "Retired", "replaced by the second package")
