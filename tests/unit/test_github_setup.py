"""mlops.github_setup: gh argv for environments and variables, reviewers, and one-line gh errors."""

from __future__ import annotations

import subprocess

import pytest

from mlops import github_setup as gs
from mlops.errors import ConfigError, PipelineError

OUTPUT_KEYS = (
    "BuildRoleArn",
    "EcrRepositoryName",
    "EcrRepositoryUri",
    "DevDeployRoleArn",
    "ProdDeployRoleArn",
    "DevStackRoleArn",
    "ProdStackRoleArn",
)
PROD_RULES = "api repos/o/r/environments/prod --jq"  # the read-back of prod's protection rules


class FakeGh:
    """Records every gh call; answers from a table of argv prefixes (the longest match wins)."""

    def __init__(self, answers: dict[str, str] | None = None, fail: str | None = None) -> None:
        self.calls: list[tuple[list[str], dict | None]] = []
        self.answers = {
            "api user --jq .id": "42",
            PROD_RULES: "required_reviewers",
            **(answers or {}),
        }
        self.fail = fail

    def __call__(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        self.calls.append((args, body))
        line = " ".join(args)
        if self.fail and line.startswith(self.fail):
            raise PipelineError(f"gh {line} failed: HTTP 404")
        matches = sorted((k for k in self.answers if line.startswith(k)), key=len)
        return self.answers[matches[-1]] if matches else ""


def test_gh_argv_for_environments_and_upserted_variables():
    gh = FakeGh({"api --paginate repos/o/r/actions/variables": "AWS_REGION\nOTHER"})
    outputs = {k: f"arn:{k}" for k in OUTPUT_KEYS}
    outputs["EcrRepositoryUri"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p"
    gs.configure(gh, "o/r", [{"type": "User", "id": 7}], outputs, "eu-west-1", "p-bootstrap")
    argv = [args for args, _ in gh.calls]
    assert argv[0] == ["api", "--method", "PUT", "repos/o/r/environments/dev"]
    assert argv[1] == ["api", "--method", "PUT", "repos/o/r/environments/prod", "--input", "-"]
    assert gh.calls[1][1] == {
        "reviewers": [{"type": "User", "id": 7}],
        "deployment_branch_policy": {"protected_branches": True, "custom_branch_policies": False},
    }
    writes = [a for a in argv if a[2] in ("PATCH", "POST")]
    assert writes == [
        ["api", "--method", "PATCH", "repos/o/r/actions/variables/AWS_REGION",
         "-f", "name=AWS_REGION", "-f", "value=eu-west-1"],
        ["api", "--method", "POST", "repos/o/r/actions/variables",
         "-f", "name=BUILD_ROLE_ARN", "-f", "value=arn:BuildRoleArn"],
        ["api", "--method", "POST", "repos/o/r/actions/variables",
         "-f", "name=ECR_REPOSITORY_URI",
         "-f", "value=123456789012.dkr.ecr.eu-west-1.amazonaws.com/p"],
        ["api", "--method", "POST", "repos/o/r/actions/variables",
         "-f", "name=MLOPS_BOOTSTRAP_STACK", "-f", "value=p-bootstrap"],
        ["api", "--method", "POST", "repos/o/r/environments/dev/variables",
         "-f", "name=DEPLOY_ROLE_ARN", "-f", "value=arn:DevDeployRoleArn"],
        ["api", "--method", "POST", "repos/o/r/environments/dev/variables",
         "-f", "name=STACK_ROLE_ARN", "-f", "value=arn:DevStackRoleArn"],
        ["api", "--method", "POST", "repos/o/r/environments/prod/variables",
         "-f", "name=DEPLOY_ROLE_ARN", "-f", "value=arn:ProdDeployRoleArn"],
        ["api", "--method", "POST", "repos/o/r/environments/prod/variables",
         "-f", "name=STACK_ROLE_ARN", "-f", "value=arn:ProdStackRoleArn"],
    ]  # fmt: skip
    # prod is read back after it is written, before anything relies on its reviewers
    assert argv[2][:3] == ["api", "repos/o/r/environments/prod", "--jq"]


def test_unprotected_main_gets_a_warning(capsys):
    gs.create_environments(FakeGh({"api repos/o/r/branches/main": "false"}), "o/r", [])
    assert "branch main is not protected" in capsys.readouterr().err
    gs.create_environments(FakeGh({"api repos/o/r/branches/main": "true"}), "o/r", [])
    assert "not protected" not in capsys.readouterr().err


def test_prod_reviewers_present_pass():
    answers = {
        PROD_RULES: "branch_policy,required_reviewers",
        "api repos/o/r/branches/main": "true",
    }
    gh = FakeGh(answers)
    gs.create_environments(gh, "o/r", [{"type": "User", "id": 1}])
    assert gh.calls[2][0][:2] == ["api", "repos/o/r/environments/prod"]
    assert gh.calls[3][0][:2] == ["api", "repos/o/r/branches/main"]


@pytest.mark.parametrize("rules", ["", "branch_policy", "wait_timer,branch_policy"])
def test_prod_without_required_reviewers_fails_and_names_the_fix(rules):
    """GitHub accepts the environment yet drops its reviewers on a private free-plan repository:
    the prod role would then trust any job naming environment prod, unreviewed."""
    gh = FakeGh({PROD_RULES: rules, "api repos/o/r/branches/main": "true"})
    with pytest.raises(PipelineError) as caught:
        gs.create_environments(gh, "o/r", [{"type": "User", "id": 1}])
    message = str(caught.value)
    assert "\n" not in message
    assert "environment prod of o/r has no required reviewers" in message
    assert "public" in message and "paid plan" in message
    assert not any(a[:2] == ["api", "repos/o/r/branches/main"] for a, _ in gh.calls)  # stopped


def test_prod_reviewers_check_reads_the_protection_rule_types():
    gh = FakeGh()
    gs.check_reviewers(gh, "o/r")
    ((args, body),) = gh.calls
    assert args[:3] == ["api", "repos/o/r/environments/prod", "--jq"]
    assert ".protection_rules" in args[3] and ".type" in args[3]
    assert body is None


def test_the_dry_run_placeholder_passes_the_reviewers_check(capsys):
    gs.check_reviewers(gs.dry_gh, "OWNER/REPO")  # prints the call, raises nothing
    assert capsys.readouterr().out.startswith("gh api repos/OWNER/REPO/environments/prod --jq ")


def test_prod_environment_failure_explains_the_plan_limit():
    gh = FakeGh(fail="api --method PUT repos/o/r/environments/prod")
    with pytest.raises(PipelineError, match=r"HTTP 404 \(required reviewers need a public"):
        gs.create_environments(gh, "o/r", [{"type": "User", "id": 1}])


def test_reviewers_resolve_users_and_teams_to_ids():
    gh = FakeGh({"api users/alice": "101", "api orgs/acme/teams/ml-leads": "9"})
    found = gs.resolve_reviewers(gh, ["alice", "acme/ml-leads"])
    assert found == [{"type": "User", "id": 101}, {"type": "Team", "id": 9}]
    assert gs.resolve_reviewers(FakeGh(), []) == [{"type": "User", "id": 42}]  # you, by default
    with pytest.raises(ConfigError, match="at most 6"):
        gs.resolve_reviewers(FakeGh({"api users/": "1"}), [f"u{i}" for i in range(7)])
    with pytest.raises(ConfigError, match="'ghost' has no GitHub id"):
        gs.resolve_reviewers(FakeGh(), ["ghost"])


def test_detect_repo_reads_gh_or_asks_for_repo():
    assert gs.detect_repo(FakeGh({"repo view": "Acme/abalone"})) == "Acme/abalone"
    with pytest.raises(ConfigError, match="pass --repo OWNER/NAME"):
        gs.detect_repo(FakeGh({"repo view": "not a repo"}))


def test_dry_gh_prints_argv_and_body_and_answers_the_placeholder(capsys):
    assert gs.dry_gh(["api", "user", "--jq", ".id"], placeholder="<user-id>") == "<user-id>"
    assert gs.dry_gh(["api", "x", "--input", "-"], {"b": 1, "a": "it's"}) == ""
    assert capsys.readouterr().out.splitlines() == [
        "gh api user --jq .id",
        """gh api x --input - <<< '{"a": "it's", "b": 1}'""",
    ]


# --- the real runner: one line per failure -----------------------------------------------------


def _gh_process(code: int, stderr: str = "", stdout: str = ""):
    def run(argv, **_kw):
        return subprocess.CompletedProcess(argv, code, stdout=stdout, stderr=stderr)

    return run


def test_run_gh_passes_the_body_on_stdin_and_returns_stdout(monkeypatch):
    seen = {}

    def run(argv, **kw):
        seen.update(argv=argv, input=kw["input"])
        return subprocess.CompletedProcess(argv, 0, stdout=" 42\n", stderr="")

    monkeypatch.setattr(gs.subprocess, "run", run)
    assert gs.run_gh(["api", "x", "--input", "-"], {"a": 1}) == "42"
    assert seen == {"argv": ["gh", "api", "x", "--input", "-"], "input": '{"a": 1}'}


def test_gh_api_failure_names_the_call(monkeypatch):
    monkeypatch.setattr(gs.subprocess, "run", _gh_process(1, "gh: Not Found (HTTP 404)"))
    with pytest.raises(PipelineError, match=r"gh api users/nobody --jq .id failed: .*404"):
        gs.run_gh(["api", "users/nobody", "--jq", ".id"])


def test_gh_not_authenticated_or_missing(monkeypatch):
    monkeypatch.setattr(gs.subprocess, "run", _gh_process(1, "You are not logged into any host"))
    with pytest.raises(
        PipelineError, match=r"^gh is not authenticated: install gh and run gh auth"
    ):
        gs.check_gh(gs.run_gh)

    def missing(*_a, **_k):
        raise FileNotFoundError("gh")

    monkeypatch.setattr(gs.subprocess, "run", missing)
    with pytest.raises(PipelineError, match=r"^gh not found: install gh"):
        gs.check_gh(gs.run_gh)
