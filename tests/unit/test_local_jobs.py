"""The local job runner reads the workflows themselves: expressions, outputs, order, stand-ins."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mlops import cli, github_setup
from mlops.errors import ConfigError
from mlops.local import expressions as expr
from mlops.local import jobs, oidc
from mlops.local.github_stub import LocalGitHub

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CONTEXTS = {
    "vars": {"ECR_REPOSITORY_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops"},
    "steps": {
        "existing": {"outputs": {"digest": ""}},
        "build": {"outputs": {"digest": "sha256:b"}},
    },
    "github": {"sha": "abc"},
    "needs": {"train": {"outputs": {"model-package-arn": "arn:p/1"}}},
    "inputs": {},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "${{ vars.ECR_REPOSITORY_URI }}:${{ github.sha }}",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops:abc",
        ),
        ("${{ steps.existing.outputs.digest || steps.build.outputs.digest }}", "sha256:b"),
        ("${{ needs.train.outputs.model-package-arn }}", "arn:p/1"),
        ("${{ vars.MISSING }}", ""),
        ("plain", "plain"),
    ],
)
def test_templates_render_as_github_would(text, expected):
    assert expr.render(text, CONTEXTS) == expected


@pytest.mark.parametrize(
    ("condition", "status", "runs"),
    [
        ("steps.existing.outputs.digest == ''", "success", True),
        ("steps.existing.outputs.digest != ''", "success", False),
        ("steps.existing.outputs.digest == ''", "failure", False),  # success() && is implied
        ("always()", "failure", True),
        (None, "failure", False),
        ("!(steps.build.outputs.digest == 'sha256:b') || failure()", "success", False),
    ],
)
def test_step_conditions(condition, status, runs):
    assert expr.condition(condition, CONTEXTS, status) is runs


@pytest.mark.parametrize("bad", ["hashFiles('x')", "vars.A ==", "unknown.context", "a ? b"])
def test_an_expression_the_runner_cannot_read_is_an_error(bad):
    with pytest.raises(ConfigError):
        expr.evaluate(bad, CONTEXTS)


def test_step_outputs_in_both_formats():
    text = "digest=sha256:1\nimage-uri<<EOF_1\nx@sha256:1\nEOF_1\n"
    assert jobs.parse_outputs(text) == {"digest": "sha256:1", "image-uri": "x@sha256:1"}


def test_jobs_run_in_needs_order_and_cycles_are_refused():
    deploy = jobs.load(WORKFLOWS / "deploy.yml")["jobs"]
    assert jobs.order(deploy) == ["test", "build-and-push", "train", "deploy-dev", "deploy-prod"]
    with pytest.raises(ConfigError, match="cycle"):
        jobs.order({"a": {"needs": "b"}, "b": {"needs": ["a"]}})


@pytest.mark.parametrize("workflow", ["deploy.yml", "rollback.yml", "teardown.yml"])
def test_every_step_of_the_aws_workflows_runs_locally(workflow):
    """What the runner cannot run fails the offline run: every action has a stand-in and every
    command is the CLI, with a subcommand the CLI has."""
    subcommands = set(cli._parser()._subparsers._group_actions[0].choices)
    for name, job in jobs.load(WORKFLOWS / workflow)["jobs"].items():
        for step in job.get("steps", []):
            if "uses" in step:
                assert step["uses"].split("@")[0] in jobs.STAND_INS, (name, step["uses"])
                continue
            argv = shlex.split(step["run"])
            assert argv in (["make", "venv"], ["make", "inference-venv"]) or (
                argv[0] == ".venv/bin/mlops" and argv[1] in subcommands
            ), (name, step["run"])


def test_make_inference_venv_runs_make_for_real_outside_the_outer_make(monkeypatch, tmp_path):
    """`make pipeline` runs the jobs under make: the step's own make must not join its jobserver."""
    seen = {}

    def fake_run(argv, cwd, env, check):
        seen.update(argv=argv, cwd=cwd, env=env)
        return type("Done", (), {"returncode": 2})()

    monkeypatch.setattr(jobs.subprocess, "run", fake_run)
    monkeypatch.setenv("MAKEFLAGS", "-j2 --jobserver-auth=fifo:/tmp/x")
    monkeypatch.setenv("MAKELEVEL", "1")
    runner = jobs.Runner.__new__(jobs.Runner)
    runner.rt = type("Runtime", (), {"root": tmp_path})()
    job = type("Job", (), {"name": "deploy-prod"})()
    assert runner.run_command(job, "make inference-venv", {}, {}, 0) == 2  # its exit code
    assert seen["argv"] == ["make", "inference-venv"] and seen["cwd"] == tmp_path
    assert "MAKEFLAGS" not in seen["env"] and "MAKELEVEL" not in seen["env"]
    assert runner.run_command(job, "make venv", {}, {}, 0) == 0  # this process is the CLI
    with pytest.raises(ConfigError, match="only `make venv`, `make inference-venv`"):
        runner.run_command(job, "make lint", {}, {}, 0)


def test_the_github_stand_in_keeps_what_github_setup_sets():
    github = LocalGitHub(repository="acme/model")
    outputs = {
        k: f"<{k}>"
        for k in (
            "BuildRoleArn",
            "EcrRepositoryUri",
            "DevDeployRoleArn",
            "ProdDeployRoleArn",
            "DevStackRoleArn",
            "ProdStackRoleArn",
        )
    }
    github_setup.configure(
        github, "acme/model", [{"type": "User", "id": 1}], outputs, "eu-west-1", "mlops-bootstrap"
    )
    assert github.vars_for()["ECR_REPOSITORY_URI"] == "<EcrRepositoryUri>"
    assert github.vars_for("prod")["DEPLOY_ROLE_ARN"] == "<ProdDeployRoleArn>"
    assert github.vars_for("dev")["STACK_ROLE_ARN"] == "<DevStackRoleArn>"
    assert "DEPLOY_ROLE_ARN" not in github.vars_for()


def test_a_plan_without_reviewers_stops_the_local_bootstrap_too():
    github = LocalGitHub(reviewers_supported=False)
    with pytest.raises(Exception, match="no required reviewers"):
        github_setup.create_environments(github, github.repository, [{"type": "User", "id": 1}])


@pytest.mark.parametrize(
    ("environment", "event", "ref", "subject"),
    [
        ("prod", "push", "refs/heads/main", "repo:o/r:environment:prod"),
        ("", "pull_request", "refs/pull/1/merge", "repo:o/r:pull_request"),
        ("", "push", "refs/heads/main", "repo:o/r:ref:refs/heads/main"),
    ],
)
def test_token_claims_per_job(environment, event, ref, subject):
    service = oidc.TokenService()
    claims = service.verify(
        service.issue(oidc.claims("o/r", event=event, ref=ref, environment=environment))
    )
    assert claims["sub"] == subject
    assert claims["aud"] == "sts.amazonaws.com"
    context = oidc.condition_context(claims)
    assert context["token.actions.githubusercontent.com:sub"] == subject
    assert ("token.actions.githubusercontent.com:environment" in context) == bool(environment)


def test_a_token_from_another_signer_is_refused():
    token = oidc.TokenService().issue(oidc.claims("o/r"))
    with pytest.raises(oidc.TokenError):
        oidc.TokenService().verify(token)
