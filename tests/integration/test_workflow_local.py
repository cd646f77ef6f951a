"""`make pipeline` end to end (what `mlops run --local` runs), and IAM enforced under the roles the
templates create: who may assume what, and a grant taken out of a copy of the templates stops the
workflow at the step that needs it.

One run for the module: bootstrap, then deploy.yml's jobs in order with their real outputs, the run
folder written; each negative check then changes one grant and re-runs only the job that needs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops import bootstrap as bootstrap_mod
from mlops import config as config_mod
from mlops import stack as stack_mod
from mlops.local import jobs, oidc
from mlops.local.run import workflow_run

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
ACCESS = "github-access.yaml"


pytestmark = pytest.mark.cost(85)  # seconds on two workers: scheduled first


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cwd = Path.cwd()
    os.chdir(ROOT)  # the jobs' steps run the CLI from the checkout, as on GitHub
    try:
        cfg = config_mod.load(ROOT / "pipeline.toml")
        with workflow_run(ROOT, runs, cfg, lambda _what: True) as (runtime, ctx, github, runner):
            yield runtime, ctx, github, runner
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def run_folder(world) -> Path:
    return world[0].run_dir


def test_run_folder_keeps_model_report_and_capture(run_folder):
    manifest = json.loads((run_folder / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True
    assert manifest["promote"]["status"] == "InService"
    assert manifest["system_test_dev"]["passed"] and manifest["system_test_prod"]["passed"]
    evaluation = json.loads((run_folder / "evaluation" / "evaluation.json").read_text())
    assert evaluation["regression_metrics"]["rmse"]["value"] <= 2.15
    assert list(run_folder.glob("s3/*/runs/*/training/*/output/model.tar.gz"))
    captured = list(run_folder.glob("s3/*/capture/prod/*/AllTraffic/*/*/*/*/*.jsonl"))
    assert captured, "prod data capture missing from the run folder"
    record = json.loads(captured[0].read_text().splitlines()[0])
    assert record["captureData"]["endpointInput"]["observedContentType"]
    assert "seconds" in (run_folder / "summary.md").read_text()
    assert "never used" in (run_folder / "iam.txt").read_text()


def test_every_job_was_timed_in_order(run_folder):
    timings = json.loads((run_folder / "manifest.json").read_text())["timings"]
    assert list(timings) == [  # deploy.yml's jobs, in order (test runs as `make test`)
        "job build-and-push",
        "job train",
        "job deploy-dev",
        "job deploy-prod",
    ]


def _assume(runtime, github, role_var: str, environment: str = "", **claims):
    token = runtime.tokens.issue(oidc.claims(github.repository, environment=environment, **claims))
    role = github.vars_for(environment)[role_var]
    return runtime.anonymous_client("sts").assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="tests", WebIdentityToken=token
    )


def test_the_whole_workflow_ran_green_under_its_roles(world):
    runtime, _, _, runner = world
    assert [n for n, j in runner.jobs.items() if j.status == "success"] == [
        "build-and-push",
        "train",
        "deploy-dev",
        "deploy-prod",
    ]
    report = "\n".join(runtime.enforcer.report())
    for role in ("BuildRole", "DevDeployRole", "ProdDeployRole", "stack-dev", "stack-prod"):
        assert role in report
    assert runner.jobs["train"].outputs["model-package-arn"].startswith("arn:aws:sagemaker:")


@pytest.mark.parametrize(
    ("role_var", "environment", "claims"),
    [
        ("BUILD_ROLE_ARN", "", {"event": "pull_request", "ref": "refs/pull/7/merge"}),
        ("DEPLOY_ROLE_ARN", "dev", {"event": "pull_request", "ref": "refs/pull/7/merge"}),
        ("BUILD_ROLE_ARN", "", {"ref": "refs/heads/feature"}),
    ],
)
def test_tokens_github_would_not_trust_assume_no_role(world, role_var, environment, claims):
    runtime, _, github, _ = world
    with pytest.raises(ClientError, match="AccessDenied"):
        if environment:  # a pull request token, but aimed at the dev role
            token = runtime.tokens.issue(oidc.claims(github.repository, **claims))
            runtime.anonymous_client("sts").assume_role_with_web_identity(
                RoleArn=github.vars_for("dev")[role_var],
                RoleSessionName="tests",
                WebIdentityToken=token,
            )
        else:
            _assume(runtime, github, role_var, **claims)


def test_a_dev_token_cannot_assume_the_prod_role(world):
    runtime, _, github, _ = world
    token = runtime.tokens.issue(oidc.claims(github.repository, environment="dev"))
    with pytest.raises(ClientError, match=r"AccessDenied.*environment:dev"):
        runtime.anonymous_client("sts").assume_role_with_web_identity(
            RoleArn=github.vars_for("prod")["DEPLOY_ROLE_ARN"],
            RoleSessionName="tests",
            WebIdentityToken=token,
        )
    assert _assume(runtime, github, "DEPLOY_ROLE_ARN", "prod")["Credentials"]["AccessKeyId"]


def test_a_forged_token_or_a_too_long_session_is_refused(world):
    runtime, _, github, _ = world
    good = runtime.tokens.issue(oidc.claims(github.repository))
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    sts, role = runtime.anonymous_client("sts"), github.vars_for()["BUILD_ROLE_ARN"]
    with pytest.raises(ClientError, match="InvalidIdentityToken"):
        sts.assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="tests", WebIdentityToken=forged
        )
    with pytest.raises(ClientError, match="MaxSessionDuration"):
        sts.assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="tests", WebIdentityToken=good, DurationSeconds=14401
        )


def _without(action: str, tmp: Path, template: str = "github-access.yaml") -> Path:
    """A copy of the templates with one action taken out of its statement's Action list."""
    folder = tmp / "cloudformation"
    shutil.copytree(ROOT / "cloudformation", folder)
    path = folder / template
    text = path.read_text()
    changed = re.sub(rf",\s*{re.escape(action)}\b|\b{re.escape(action)}\s*,\s*", "", text, count=1)
    assert changed != text, f"{action} is not in a list in {template}"
    path.write_text(changed)
    return folder


def _redeploy_access(runtime, ctx, github, templates: Path) -> None:
    args = bootstrap_mod.parse_args(
        [
            "--region",
            runtime.region,
            "--repo",
            github.repository,
            "--config",
            str(ROOT / "pipeline.toml"),
            "--templates",
            str(templates),
        ]
    )
    clients = {n: runtime.session.client(n) for n in ("sts", "iam", "cloudformation")}
    bootstrap_mod.bootstrap(args, clients, github)


@pytest.mark.parametrize(
    ("action", "job", "step", "template"),
    [
        ("sagemaker:InvokeEndpoint", "deploy-dev", "System tests against the dev endpoint", ACCESS),
        (
            "sagemaker:UpdateEndpointWeightsAndCapacities",
            "deploy-prod",
            "Deploy the endpoint stack",
            ACCESS,
        ),
        ("ecr:PutImage", "build-and-push", "Build and push", ACCESS),
        # the same data, code and hyperparameters: the reused model is evaluated on the runner,
        # whose pull asks ECR for each layer as the build role
        ("ecr:GetDownloadUrlForLayer", "train", "Evaluate (a processing job; a reused", ACCESS),
        # inference.yaml's UpsertPolicy, on the prod deploy role (the pipeline exists: an update)
        ("sagemaker:UpdatePipeline", "deploy-prod", "Point the batch inference", "inference.yaml"),
    ],
)
def test_taking_one_grant_out_stops_the_step_that_needs_it(
    world, tmp_path, capfd, action, job, step, template
):
    runtime, ctx, github, runner = world
    recreate = step == "Deploy the endpoint stack"
    if recreate:  # an update with no changes touches no resource: create it afresh
        stack_mod.delete(
            ctx.client("cloudformation"), ctx.config.stack_name("prod"), region=runtime.region
        )
    _redeploy_access(runtime, ctx, github, _without(action, tmp_path, template))
    arn = runner.jobs["train"].outputs["model-package-arn"]
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha="b" * 40)
        with pytest.raises(jobs.JobFailed, match=re.escape(step)):
            again.run(only=[job], done=runner.jobs)
        captured = capfd.readouterr()
        assert action in captured.err + captured.out
    finally:
        _redeploy_access(runtime, ctx, github, ROOT / "cloudformation")
        ctx.client("sagemaker").update_model_package(  # a failed system test rejected it
            ModelPackageArn=arn,
            ModelApprovalStatus="Approved",
            ModelLifeCycle={"Stage": "prod", "StageStatus": "InService"},
        )
        if recreate:  # prod back as it was, for the tests after this one
            jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha="b" * 40).run(
                only=["deploy-prod"], done=runner.jobs
            )


def test_a_rerun_of_the_build_job_reuses_the_commit_s_image(world):
    """ECR tags are immutable and the tag is the commit sha: "Re-run jobs" must not push again."""
    runtime, _, github, runner = world
    again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha=runner.sha)
    rerun = again.run(only=["build-and-push"], done=runner.jobs)["build-and-push"]
    assert rerun.outputs == runner.jobs["build-and-push"].outputs
    assert "build" not in rerun.steps  # skipped: steps.existing found the digest
    assert rerun.steps["existing"]["outputs"]["digest"] == rerun.outputs["image-digest"]


# --- faults through the whole workflow: the failing step stops it, and nothing after it happens --
LATER = ["train", "deploy-dev", "deploy-prod"]


def _packages(ctx) -> list[dict]:
    return ctx.client("sagemaker").list_model_packages(
        ModelPackageGroupName=ctx.account.ModelPackageGroupName
    )["ModelPackageSummaryList"]


def _serving(ctx, stage: str) -> tuple[str, str]:
    """The package a stage's stack serves and the config its endpoint runs."""
    cfn, sm = ctx.client("cloudformation"), ctx.client("sagemaker")
    found = stack_mod.describe(cfn, ctx.config.stack_name(stage)) or {}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in found.get("Parameters", [])}
    endpoint = sm.describe_endpoint(EndpointName=ctx.config.endpoint_name(stage))
    return params.get("ModelPackageArn", ""), endpoint["EndpointConfigName"]


class Asked(list):
    """The prod approval as a record: a test asserts nobody was asked."""

    def __call__(self, what: str) -> bool:
        self.append(what)
        return True


def _statuses(ctx) -> dict[str, tuple[str, str, str]]:
    sm = ctx.client("sagemaker")
    found = {}
    for p in _packages(ctx):
        d = sm.describe_model_package(ModelPackageName=p["ModelPackageArn"])
        life = d.get("ModelLifeCycle", {})
        found[p["ModelPackageArn"]] = (
            d["ModelApprovalStatus"],
            life.get("Stage", ""),
            life.get("StageStatus", ""),
        )
    return found


@pytest.mark.parametrize(
    ("fault", "step", "message", "rejected", "retrain"),
    [  # the same data, code and hyperparameters: evaluation and gate run on the reused model
        ("glue", "ETL (Glue)", "--max_bad_fraction must be between 0 and 1", 0, True),
        ("training", "Train (SageMaker training job, or a tuning job)", "injected_fault", 0, True),
        ("evaluation", "Evaluate (a processing job; a reused", "failed on this runner", 0, False),
        ("gate", "Gate (fail when the model is worse", "rmse", 1, False),
    ],
)
def test_a_failed_train_job_step_stops_everything_after_it(
    world, capfd, fault, step, message, rejected, retrain
):
    runtime, ctx, github, runner = world
    before = (_statuses(ctx), _serving(ctx, "dev"), _serving(ctx, "prod"))
    asked = Asked()
    runtime.faults.names.add(fault)
    dispatch = {"event": "workflow_dispatch", "inputs": {"retrain": "true"}} if retrain else {}
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, asked, sha="c" * 40, **dispatch)
        with pytest.raises(jobs.JobFailed, match=re.escape(step)) as failed:
            again.run(only=LATER, done=runner.jobs)
    finally:
        runtime.faults.names.discard(fault)
    assert failed.value.exit_code != 0
    assert message in capfd.readouterr().err
    assert set(again.jobs) - set(runner.jobs) == set()  # no job of its own after train
    assert again.jobs["deploy-dev"] is runner.jobs["deploy-dev"]
    assert again.jobs["train"].outputs["model-package-arn"] == ""  # nothing to hand on
    statuses = _statuses(ctx)
    new = {arn: s for arn, s in statuses.items() if arn not in before[0]}
    assert [s[0] for s in new.values()] == ["Rejected"] * rejected  # the gate records its verdict
    assert {arn: statuses[arn] for arn in before[0]} == before[0]  # nobody else changed
    assert (_serving(ctx, "dev"), _serving(ctx, "prod")) == before[1:]
    assert asked == []


def _candidate(ctx, runner) -> dict[str, jobs.Job]:
    """The jobs of a new run whose train job handed on another Approved package of the model."""
    sm = ctx.client("sagemaker")
    arn = runner.jobs["train"].outputs["model-package-arn"]
    first = sm.describe_model_package(ModelPackageName=arn)
    created = sm.create_model_package(
        ModelPackageGroupName=ctx.account.ModelPackageGroupName,
        InferenceSpecification=first["InferenceSpecification"],
        CustomerMetadataProperties=first["CustomerMetadataProperties"],
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    outputs = {**runner.jobs["train"].outputs, "model-package-arn": created}
    return {**runner.jobs, "train": dataclasses.replace(runner.jobs["train"], outputs=outputs)}


@pytest.mark.parametrize(
    ("fault", "message", "stack_status"),
    [
        ("stack-update", "UPDATE_FAILED: injected stack-update", "UPDATE_ROLLBACK_COMPLETE"),
        ("sagemaker-rollback", "SageMaker rolled the update back", "UPDATE_COMPLETE"),
    ],
)
def test_a_failed_dev_update_keeps_dev_on_its_config_and_prod_untouched(
    world, capfd, fault, message, stack_status
):
    runtime, ctx, github, runner = world
    done = _candidate(ctx, runner)
    candidate = done["train"].outputs["model-package-arn"]
    before = (_statuses(ctx), _serving(ctx, "dev"), _serving(ctx, "prod"))
    asked = Asked()
    runtime.faults.names.add(fault)
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, asked, sha="b" * 40)
        with pytest.raises(jobs.JobFailed, match="Deploy the endpoint stack"):
            again.run(only=["deploy-dev", "deploy-prod"], done=done)
    finally:
        runtime.faults.names.discard(fault)
    assert message in capfd.readouterr().err
    stack = ctx.client("cloudformation").describe_stacks(StackName="mlops-endpoint-dev")
    if fault == "stack-update":
        assert stack["Stacks"][0]["StackStatus"] == stack_status
    assert _serving(ctx, "dev")[1] == before[1][1]  # the endpoint kept its previous config
    assert _serving(ctx, "prod") == before[2]
    assert _statuses(ctx)[candidate] == ("Approved", "", "")  # never Deployed anywhere
    assert {arn: s for arn, s in _statuses(ctx).items() if arn in before[0]} == before[0]
    assert again.jobs["deploy-prod"] is runner.jobs["deploy-prod"]
    assert asked == []
    if fault == "sagemaker-rollback":  # the stack names the candidate: dev back on the first
        again.run(only=["deploy-dev"], done=runner.jobs)


def test_a_failed_dev_stack_create_rolls_back_and_prod_never_runs(world, capfd):
    runtime, ctx, github, runner = world
    cfn = ctx.client("cloudformation")
    stack_mod.delete(cfn, ctx.config.stack_name("dev"), region=runtime.region)
    before = (_statuses(ctx), _serving(ctx, "prod"))
    asked = Asked()
    runtime.faults.names.add("stack-create")
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, asked, sha="a" * 40)
        with pytest.raises(jobs.JobFailed, match="Deploy the endpoint stack"):
            again.run(only=["deploy-dev", "deploy-prod"], done=runner.jobs)
        assert "CREATE_FAILED: injected stack-create" in capfd.readouterr().err
        status = cfn.describe_stacks(StackName="mlops-endpoint-dev")["Stacks"][0]["StackStatus"]
        assert status == "ROLLBACK_COMPLETE"
        assert (_statuses(ctx), _serving(ctx, "prod")) == before
        assert again.jobs["deploy-prod"] is runner.jobs["deploy-prod"]
        assert asked == []
    finally:
        runtime.faults.names.discard("stack-create")
        again.run(only=["deploy-dev"], done=runner.jobs)  # dev back, for the other tests
    assert _serving(ctx, "dev")[0] == runner.jobs["train"].outputs["model-package-arn"]


def test_failed_dev_system_tests_reject_the_package_and_prod_never_runs(world, capfd):
    runtime, ctx, github, runner = world
    arn = runner.jobs["train"].outputs["model-package-arn"]
    prod_before = _serving(ctx, "prod")
    runtime.faults.names.add("system-test")
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha="d" * 40)
        with pytest.raises(jobs.JobFailed, match="System tests against the dev endpoint"):
            again.run(only=["deploy-dev", "deploy-prod"], done=runner.jobs)
        described = ctx.client("sagemaker").describe_model_package(ModelPackageName=arn)
        assert described["ModelApprovalStatus"] == "Rejected"
        assert described["ModelLifeCycle"]["StageStatus"] == "Failed"
        assert again.jobs["deploy-prod"] is runner.jobs["deploy-prod"]  # not run again
        assert _serving(ctx, "prod") == prod_before
        with pytest.raises(jobs.JobFailed, match="Deploy the endpoint stack"):
            again.run(only=["deploy-prod"])  # a Rejected package is refused by prod
        assert "only an Approved package can be deployed" in capfd.readouterr().err
    finally:
        runtime.faults.names.discard("system-test")
        ctx.client("sagemaker").update_model_package(
            ModelPackageArn=arn,
            ModelApprovalStatus="Approved",
            ModelLifeCycle={"Stage": "prod", "StageStatus": "InService"},
        )


def test_a_failed_prod_deploy_rolls_back_and_promotes_nothing(world, capfd):
    runtime, ctx, github, runner = world
    arn = runner.jobs["train"].outputs["model-package-arn"]
    stack_mod.delete(
        ctx.client("cloudformation"), ctx.config.stack_name("prod"), region=runtime.region
    )
    dev_before = _serving(ctx, "dev")
    ctx.client("sagemaker").update_model_package(
        ModelPackageArn=arn, ModelLifeCycle={"Stage": "dev", "StageStatus": "Tested"}
    )
    runtime.faults.names.add("prod-deploy")
    try:
        again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha="e" * 40)
        with pytest.raises(jobs.JobFailed, match="Deploy the endpoint stack"):
            again.run(only=["deploy-prod"], done=runner.jobs)
    finally:
        runtime.faults.names.discard("prod-deploy")
    assert "CREATE_FAILED: injected prod-deploy" in capfd.readouterr().err
    stacks = ctx.client("cloudformation").describe_stacks(StackName="mlops-endpoint-prod")
    assert stacks["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    life = ctx.client("sagemaker").describe_model_package(ModelPackageName=arn)["ModelLifeCycle"]
    assert (life["Stage"], life["StageStatus"]) == ("dev", "Tested")  # never promoted
    assert _serving(ctx, "dev") == dev_before
    again.run(only=["deploy-prod"])  # the fault gone, prod comes back and is promoted
    life = ctx.client("sagemaker").describe_model_package(ModelPackageName=arn)["ModelLifeCycle"]
    assert (life["Stage"], life["StageStatus"]) == ("prod", "InService")


def test_the_prod_job_waits_for_its_reviewers(world):
    runtime, _, github, runner = world
    again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: False, sha="f" * 40)
    with pytest.raises(jobs.NotApproved, match="not approved"):
        again.run(only=["deploy-prod"], done=runner.jobs)
    assert again.jobs["deploy-prod"].status == "skipped"
