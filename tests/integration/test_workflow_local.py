"""`make pipeline` end to end (what `mlops run --local` runs), and IAM enforced under the roles the
templates create: who may assume what, and a grant taken out of a copy of the templates stops the
workflow at the step that needs it.

One run for the module: bootstrap, then deploy.yml's jobs in order with their real outputs, the run
folder written; each negative check then changes one grant and re-runs only the job that needs it.
"""

from __future__ import annotations

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
    ("action", "job", "step"),
    [
        ("sagemaker:InvokeEndpoint", "deploy-dev", "System tests against the dev endpoint"),
        (
            "sagemaker:UpdateEndpointWeightsAndCapacities",
            "deploy-prod",
            "Deploy the endpoint stack",
        ),
        ("ecr:PutImage", "build-and-push", "Build and push"),
    ],
)
def test_taking_one_grant_out_stops_the_step_that_needs_it(
    world, tmp_path, capfd, action, job, step
):
    runtime, ctx, github, runner = world
    if job == "deploy-prod":  # an update with no changes touches no resource: create it afresh
        stack_mod.delete(
            ctx.client("cloudformation"), ctx.config.stack_name("prod"), region=runtime.region
        )
    _redeploy_access(runtime, ctx, github, _without(action, tmp_path))
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


def test_a_rerun_of_the_build_job_reuses_the_commit_s_image(world):
    """ECR tags are immutable and the tag is the commit sha: "Re-run jobs" must not push again."""
    runtime, _, github, runner = world
    again = jobs.Runner(runtime, WORKFLOW, github, lambda _what: True, sha=runner.sha)
    rerun = again.run(only=["build-and-push"], done=runner.jobs)["build-and-push"]
    assert rerun.outputs == runner.jobs["build-and-push"].outputs
    assert "build" not in rerun.steps  # skipped: steps.existing found the digest
    assert rerun.steps["existing"]["outputs"]["digest"] == rerun.outputs["image-digest"]
