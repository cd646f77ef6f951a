"""The whole pipeline against moto with real compute, and every fault it must stop at.

One local runtime serves the scenario; each test adds one step (or one injected fault) to the shared
state, in order, and asserts that a failing step stops with the AWS reason and changes nothing
downstream. The happy path end to end goes through the CLI in test_cli_run_local.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops import config as config_mod
from mlops import stack as stack_mod
from mlops.context import Context
from mlops.errors import GateFailed, PipelineError
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest
from mlops.steps import deploy, etl, evaluate, gate, promote, register, rollback, system_test, train
from mlops.steps import run as run_step

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with LocalRuntime(ROOT, runs) as runtime:
        cfg = config_mod.load(ROOT / "pipeline.toml")
        ctx = Context(cfg, runtime.session, Manifest(runtime.run_dir / "manifest.json"), root=ROOT)
        runtime.bootstrap(ctx)
        yield runtime, ctx


def packages(ctx: Context) -> list[dict]:
    return ctx.client("sagemaker").list_model_packages(
        ModelPackageGroupName=ctx.account.ModelPackageGroupName
    )["ModelPackageSummaryList"]


def test_glue_failure_stops_at_etl(local):
    runtime, ctx = local
    runtime.faults.names.add("glue")
    with pytest.raises(PipelineError, match=r"Glue run .* FAILED: .*bad"):
        etl.run(ctx)
    assert ctx.manifest.get("etl") is None


def test_etl_writes_splits_and_lineage(local):
    _, ctx = local
    result = etl.run(ctx)
    assert set(result["splits"]) == {"train", "validation", "test"}
    assert len(result["data_sha256"]) == 64
    assert sum(result["row_counts"].values()) == 4175


def test_training_failure_surfaces_failure_reason(local):
    runtime, ctx = local
    runtime.faults.names.add("training")
    with pytest.raises(PipelineError, match="injected_fault"):
        train.run(ctx, runtime.image_uri)
    assert ctx.manifest.get("train") is None


def test_train_refuses_an_image_without_digest(local):
    _, ctx = local
    with pytest.raises(PipelineError, match="not pinned by digest"):
        train.run(ctx, ctx.account.EcrRepositoryUri + ":latest")


def test_training_writes_model_data(local):
    runtime, ctx = local
    result = train.run(ctx, runtime.image_uri)
    bucket, _, key = result["model_data"].removeprefix("s3://").partition("/")
    assert ctx.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 1000


def test_evaluation_failure_stops_at_evaluate(local):
    runtime, ctx = local
    runtime.faults.names.add("evaluation")
    with pytest.raises(PipelineError, match=r"processing job .* Failed"):
        evaluate.run(ctx)
    assert ctx.manifest.get("evaluate") is None


def test_evaluation_and_gate_pass(local):
    _, ctx = local
    metrics = evaluate.run(ctx)["metrics"]
    assert metrics["regression_metrics"]["rmse"]["value"] <= 2.15
    assert all(c.passed for c in gate.run(ctx))


def test_gate_failure_records_rejected_candidate(local):
    _, ctx = local
    strict = dataclasses.replace(ctx.config, max_rmse=0.5)
    strict_ctx = dataclasses.replace(ctx, config=strict)
    with pytest.raises(GateFailed, match="rmse"):
        gate.run(strict_ctx)
    assert [p["ModelApprovalStatus"] for p in packages(ctx)] == ["Rejected"]
    gate.run(ctx)  # the real thresholds pass again for the next steps


def test_register_approves_what_passed_the_gate(local):
    _, ctx = local
    arn = register.run(ctx)
    described = register.describe(ctx, arn)
    assert described["ModelApprovalStatus"] == "Approved"  # AWS deploys nothing else
    assert described["ModelLifeCycle"]["Stage"] == "registered"
    assert described["CustomerMetadataProperties"]["image_digest"].startswith("sha256:")


def test_stack_create_failure_rolls_back(local):
    runtime, ctx = local
    runtime.faults.names.add("stack-create")
    with pytest.raises(PipelineError, match=r"Endpoint .*CREATE_FAILED: injected"):
        deploy.run(ctx, "dev", ctx.manifest.require("register.model_package_arn", "register"))
    assert ctx.manifest.get("deploy_dev") is None


def test_deploy_dev_serves_the_package(local):
    _, ctx = local
    arn = ctx.manifest.require("register.model_package_arn", "register")
    result = deploy.run(ctx, "dev", arn)
    sm = ctx.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=result["endpoint"])["EndpointStatus"] == "InService"


def test_system_test_failure_is_reported(local):
    runtime, ctx = local
    runtime.faults.names.add("system-test")
    arn = ctx.manifest.require("register.model_package_arn", "")
    try:
        with pytest.raises(PipelineError, match="system tests failed"):
            system_test.run(ctx, "dev", arn)
        described = register.describe(ctx, arn)
        assert described["ModelApprovalStatus"] == "Rejected"
        assert described["ModelLifeCycle"]["StageStatus"] == "Failed"
        with pytest.raises(PipelineError, match="only an Approved package"):
            deploy.run(ctx, "prod", arn)  # what failed dev never reaches prod
    finally:
        runtime.faults.names.discard("system-test")
        ctx.client("sagemaker").update_model_package(  # the fixed model, for the next tests
            ModelPackageArn=arn,
            ModelApprovalStatus="Approved",
            ModelLifeCycle={"Stage": "dev", "StageStatus": "Deployed"},
        )


def test_system_tests_pass_on_dev(local):
    _, ctx = local
    system_test.run(ctx, "dev", ctx.manifest.require("register.model_package_arn", ""))
    assert ctx.manifest.get("system_test_dev.passed") is True


def test_prod_deploy_failure_leaves_dev_serving(local):
    runtime, ctx = local
    runtime.faults.names.add("prod-deploy")
    with pytest.raises(PipelineError, match="CREATE_FAILED: injected prod-deploy"):
        deploy.run(ctx, "prod", ctx.manifest.require("register.model_package_arn", ""))
    dev = ctx.manifest.require("deploy_dev.endpoint", "deploy")
    sm = ctx.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=dev)["EndpointStatus"] == "InService"
    assert ctx.manifest.get("deploy_prod") is None


def test_prod_deploy_with_capture_and_autoscaling_then_promote(local):
    _, ctx = local
    arn = ctx.manifest.require("register.model_package_arn", "")
    endpoint = deploy.run(ctx, "prod", arn)["endpoint"]
    system_test.run(ctx, "prod", arn)
    promote.run(ctx, arn)
    described = register.describe(ctx, arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ModelLifeCycle"]["Stage"] == "prod"
    assert described["ModelLifeCycle"]["StageStatus"] == "InService"
    targets = ctx.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    assert any(endpoint in t["ResourceId"] for t in targets)


def test_rollback_without_an_earlier_approved_package_says_what_to_do(local):
    _, ctx = local
    with pytest.raises(PipelineError, match="no earlier package that served prod"):
        rollback.run(ctx, "prod")


def test_next_candidate_is_compared_with_prod_on_the_same_test_set(local):
    _, ctx = local
    serving = ctx.manifest.require("register.model_package_arn", "")
    values = evaluate.run(ctx)
    assert values["prod"]["model_package_arn"] == serving
    assert values["prod"]["metrics"]["regression_metrics"]["rmse"]["value"] == pytest.approx(
        values["metrics"]["regression_metrics"]["rmse"]["value"]
    )  # the same model on the same rows
    checks = {c.metric: c for c in gate.run(ctx)}
    assert checks["rmse vs prod model"].passed


def test_redeploy_updates_in_place_without_duplicates(local):
    _, ctx = local
    sm, cfn = ctx.client("sagemaker"), ctx.client("cloudformation")
    before = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    deploy.run(ctx, "dev", ctx.manifest.require("register.model_package_arn", ""))
    after = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    endpoints = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert before == after
    assert len(endpoints) == len(set(endpoints)) == 2


def test_rerun_of_the_whole_pipeline_updates_in_place(local, tmp_path):
    runtime, ctx = local
    cfn, sm = ctx.client("cloudformation"), ctx.client("sagemaker")
    stacks = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    rerun = dataclasses.replace(ctx, manifest=Manifest(tmp_path / "manifest.json"))
    run_step.run(rerun, runtime.image_uri, approve=lambda _arn: True)
    arn = rerun.manifest.require("register.model_package_arn", "register")
    assert {s["StackName"] for s in cfn.describe_stacks()["Stacks"]} == stacks
    endpoints = sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"])
    assert endpoints == ["mlops-dev", "mlops-prod"]
    prod = stack_mod.describe(cfn, "mlops-endpoint-prod")
    assert {p["ParameterKey"]: p["ParameterValue"] for p in prod["Parameters"]}[
        "ModelPackageArn"
    ] == arn
    versions = [p["ModelPackageArn"].rsplit("/", 1)[-1] for p in packages(ctx)]
    assert len(versions) == len(set(versions)) == 3  # rejected, first run, this run


def test_stack_update_failure_rolls_back(local):
    runtime, ctx = local
    runtime.faults.names.add("stack-update")
    dev = dataclasses.replace(ctx.config.stage("dev"), capture_sampling_percent=50)
    changed = dataclasses.replace(ctx.config, stages={**ctx.config.stages, "dev": dev})
    with pytest.raises(PipelineError, match="UPDATE_FAILED: injected"):
        deploy.run(
            dataclasses.replace(ctx, config=changed),
            "dev",
            ctx.manifest.require("register.model_package_arn", ""),
        )
    stack = ctx.client("cloudformation").describe_stacks(StackName="mlops-endpoint-dev")
    assert stack["Stacks"][0]["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"


def test_rollback_redeploys_the_previous_approved_package(local):
    _, ctx = local
    first = ctx.manifest.require("register.model_package_arn", "register")
    result = rollback.run(ctx, "prod")
    assert result["model_package_arn"] == first
    assert (
        ctx.client("sagemaker").describe_endpoint(EndpointName="mlops-prod")["EndpointStatus"]
        == "InService"
    )
