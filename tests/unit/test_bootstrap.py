"""scripts/bootstrap: dry-run call order, gh argv, reviewers, a moto deploy, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from importlib.machinery import SourceFileLoader
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap"
BOOT_PARAMS = [
    "ProjectName",
    "GlueWorkerType",
    "GlueNumberOfWorkers",
    "GlueExecutionClass",
    "ModelPackageGroupName",
]
ACCESS_PARAMS = [
    "GitHubOrg",
    "GitHubRepo",
    "CreateOidcProvider",
    "ExistingOidcProviderArn",
    "ProjectName",
    "BootstrapStackName",
]


def _load():
    loader = SourceFileLoader("bootstrap_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("bootstrap_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


bs = _load()


def _stand_in_template(params: list[str], outputs: tuple[str, ...], resource: str) -> str:
    """Parameters and outputs as the real template has them, one real resource."""
    values = {key: {"Value": {"Fn::Sub": f"${{ProjectName}}-{key}"}} for key in outputs}
    values[outputs[0]] = {"Value": {"Ref": "Resource"}}
    return json.dumps(
        {
            "Parameters": {name: {"Type": "String"} for name in params},
            "Resources": {"Resource": {"Type": resource}},
            "Outputs": values,
        }
    )


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A templates folder with stand-ins for bootstrap.yaml (a bucket) and github-access.yaml."""
    boot = _stand_in_template(BOOT_PARAMS, bs.BOOTSTRAP_OUTPUTS, "AWS::S3::Bucket")
    access = _stand_in_template(ACCESS_PARAMS, bs.ACCESS_OUTPUTS, "AWS::SQS::Queue")
    (tmp_path / bs.BOOTSTRAP_TEMPLATE).write_text(boot)  # JSON is YAML
    (tmp_path / bs.ACCESS_TEMPLATE).write_text(access)
    return tmp_path


class FakeGh:
    """Records every gh call; answers from a table of argv prefixes (the longest match wins)."""

    def __init__(self, answers: dict[str, str] | None = None, fail: str | None = None) -> None:
        self.calls: list[tuple[list[str], dict | None]] = []
        self.answers = {"api user --jq .id": "42", **(answers or {})}
        self.fail = fail

    def __call__(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        self.calls.append((args, body))
        line = " ".join(args)
        if self.fail and line.startswith(self.fail):
            raise bs.BootstrapError(f"gh {line} failed: HTTP 404")
        matches = sorted((k for k in self.answers if line.startswith(k)), key=len)
        return self.answers[matches[-1]] if matches else ""


def _args(*extra: str, templates: Path) -> object:
    return bs.parse_args(["--region", "eu-west-1", "--templates", str(templates), *extra])


# --- dry run ---------------------------------------------------------------------------------


def _call(line: str) -> str:
    """A printed call in short: 'aws SERVICE OPERATION [STACK]' or a gh call's first five words."""
    if line.startswith("gh "):
        return " ".join(line.split()[:5])
    words = line.split(" ", 3)
    return " ".join([*words[:3], json.loads(words[3]).get("StackName", "")]).strip()


def _change_sets(out: str) -> dict[str, dict]:
    """The printed create_change_set calls by stack name."""
    found = [json.loads(x.split(" ", 3)[3]) for x in out.splitlines() if "create_change_set" in x]
    return {change_set["StackName"]: change_set for change_set in found}


def test_dry_run_lists_every_call_in_order(stand_in, capsys):
    argv = ["--dry-run", "--region", "eu-west-1", "--templates", str(stand_in), "--reviewer", "bob"]
    assert bs.main(argv) == 0
    calls = [
        _call(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("aws ", "gh "))
    ]

    def deploy(stack: str) -> list[str]:
        return [
            f"aws cloudformation create_change_set {stack}",
            f"aws cloudformation describe_change_set {stack}",
            f"aws cloudformation describe_stack_events {stack}",
            f"aws cloudformation execute_change_set {stack}",
            f"aws cloudformation describe_stacks {stack}",
            f"aws cloudformation describe_stack_events {stack}",
            f"aws cloudformation describe_stacks {stack}",  # the outputs
        ]

    assert calls == [
        "gh auth status",
        "gh repo view --json owner,name",
        "gh api users/bob --jq .id",
        "aws sts get_caller_identity",
        "aws cloudformation describe_stacks repo-bootstrap",
        *deploy("repo-bootstrap"),  # first: the other stack imports its exports
        "aws cloudformation describe_stacks repo-github-access",
        "aws iam list_open_id_connect_providers",
        *deploy("repo-github-access"),
        "gh api --method PUT repos/OWNER/REPO/environments/dev",
        "gh api --method PUT repos/OWNER/REPO/environments/prod",
        "gh api repos/OWNER/REPO/branches/main --jq .protected",
        "gh api --paginate repos/OWNER/REPO/actions/variables --jq",
        *["gh api --method POST repos/OWNER/REPO/actions/variables"] * 4,
        "gh api --paginate repos/OWNER/REPO/environments/dev/variables --jq",
        "gh api --method POST repos/OWNER/REPO/environments/dev/variables",
        "gh api --paginate repos/OWNER/REPO/environments/prod/variables --jq",
        "gh api --method POST repos/OWNER/REPO/environments/prod/variables",
    ]


def test_dry_run_prints_parameters_and_makes_no_call(stand_in, capsys, monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("dry run made a real call")

    monkeypatch.setattr(bs.subprocess, "run", refuse)
    monkeypatch.setattr(boto3.session.Session, "client", refuse)
    argv = ["--dry-run", "--repo", "Acme/Abalone_Age", "--flex", "--glue-workers", "4"]
    assert bs.main([*argv, "--region", "us-east-2", "--templates", str(stand_in)]) == 0
    out = capsys.readouterr().out
    change_sets = _change_sets(out)
    assert list(change_sets) == ["abalone-age-bootstrap", "abalone-age-github-access"]
    boot, access = (
        {p["ParameterKey"]: p["ParameterValue"] for p in cs["Parameters"]}
        for cs in change_sets.values()
    )
    assert (boot["ProjectName"], access["ProjectName"]) == ("abalone-age", "abalone-age")
    assert (boot["GlueExecutionClass"], boot["GlueNumberOfWorkers"]) == ("FLEX", "4")
    assert (access["GitHubOrg"], access["GitHubRepo"]) == ("Acme", "Abalone_Age")
    assert access["BootstrapStackName"] == "abalone-age-bootstrap"
    assert access["CreateOidcProvider"] == "true"  # the dry run's account has no provider
    for change_set in change_sets.values():
        assert change_set["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert "-f value=abalone-age-bootstrap" in out  # MLOPS_BOOTSTRAP_STACK


# --- GitHub side -----------------------------------------------------------------------------


def test_gh_argv_for_environments_and_upserted_variables():
    gh = FakeGh({"api --paginate repos/o/r/actions/variables": "AWS_REGION\nOTHER"})
    outputs = {k: f"arn:{k}" for k in bs.OUTPUTS}
    bs.configure_github(gh, "o/r", [{"type": "User", "id": 7}], outputs, "eu-west-1", "p-bootstrap")
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
         "-f", "name=ECR_REPOSITORY", "-f", "value=arn:EcrRepositoryName"],
        ["api", "--method", "POST", "repos/o/r/actions/variables",
         "-f", "name=MLOPS_BOOTSTRAP_STACK", "-f", "value=p-bootstrap"],
        ["api", "--method", "POST", "repos/o/r/environments/dev/variables",
         "-f", "name=DEPLOY_ROLE_ARN", "-f", "value=arn:DevDeployRoleArn"],
        ["api", "--method", "POST", "repos/o/r/environments/prod/variables",
         "-f", "name=DEPLOY_ROLE_ARN", "-f", "value=arn:ProdDeployRoleArn"],
    ]  # fmt: skip


def test_unprotected_main_gets_a_warning(capsys):
    bs.create_environments(FakeGh({"api repos/o/r/branches/main": "false"}), "o/r", [])
    assert "branch main is not protected" in capsys.readouterr().out
    bs.create_environments(FakeGh({"api repos/o/r/branches/main": "true"}), "o/r", [])
    assert "not protected" not in capsys.readouterr().out


def test_prod_environment_failure_explains_the_plan_limit():
    gh = FakeGh(fail="api --method PUT repos/o/r/environments/prod")
    with pytest.raises(bs.BootstrapError, match=r"HTTP 404 \(required reviewers need a public"):
        bs.create_environments(gh, "o/r", [{"type": "User", "id": 1}])


def test_reviewers_resolve_users_and_teams_to_ids():
    gh = FakeGh({"api users/alice": "101", "api orgs/acme/teams/ml-leads": "9"})
    found = bs.resolve_reviewers(gh, ["alice", "acme/ml-leads"])
    assert found == [{"type": "User", "id": 101}, {"type": "Team", "id": 9}]
    assert bs.resolve_reviewers(FakeGh(), []) == [{"type": "User", "id": 42}]  # you, by default
    with pytest.raises(bs.BootstrapError, match="at most 6"):
        bs.resolve_reviewers(FakeGh({"api users/": "1"}), [f"u{i}" for i in range(7)])
    with pytest.raises(bs.BootstrapError, match="'ghost' has no GitHub id"):
        bs.resolve_reviewers(FakeGh(), ["ghost"])


@pytest.mark.parametrize(
    ("repo", "project"),
    [("Acme/Abalone_Age", "abalone-age"), ("a/My.Model--2", "my-model-2"), ("a/x-y-z", "x-y-z")],
)
def test_project_name_from_repo(repo, project):
    assert bs.project_name(None, repo) == project


@pytest.mark.parametrize("bad", ["Bad_Name", "9lives", "ab", "trailing-", "a" * 33])
def test_bad_project_names_are_refused(bad):
    with pytest.raises(bs.BootstrapError, match="bad project name"):
        bs.project_name(bad, "o/r")


# --- AWS side against moto -------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip
    with mock_aws():
        session = boto3.session.Session(region_name="eu-west-1")
        yield {s: session.client(s) for s in ("sts", "iam", "cloudformation")}


def _stack(cfn, name: str) -> dict:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    stack["params"] = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    return stack


def test_moto_create_through_a_change_set(aws, stand_in, capsys):
    params = {name: f"v-{name}" for name in BOOT_PARAMS}
    body = (stand_in / bs.BOOTSTRAP_TEMPLATE).read_text()
    bs.deploy_stack(aws["cloudformation"], "p-bootstrap", body, params, None, 0)
    out = capsys.readouterr().out
    assert "stack p-bootstrap: create started" in out
    assert re.search(r"^\s+\d+s\s+CREATE_COMPLETE\s+p-bootstrap ", out, re.MULTILINE)
    assert "REVIEW_IN_PROGRESS" not in out  # only this operation's events
    stack = _stack(aws["cloudformation"], "p-bootstrap")
    assert (stack["StackStatus"], stack["params"]) == ("CREATE_COMPLETE", params)
    assert stack["Tags"] == [{"Key": "project", "Value": "v-ProjectName"}]
    assert len(boto3.client("s3").list_buckets()["Buckets"]) == 1  # the stand-in's one resource


def test_moto_full_run_updates_both_stacks_and_sets_variables_from_their_outputs(
    aws, stand_in, capsys
):
    """An earlier bootstrap made both stacks (moto resolves outputs on create_stack, not on change
    sets) and the OIDC provider: this run updates both, keeps the provider, wires GitHub."""
    cfn = aws["cloudformation"]
    for name, template, params in (
        ("abalone-bootstrap", bs.BOOTSTRAP_TEMPLATE, BOOT_PARAMS),
        ("abalone-github-access", bs.ACCESS_TEMPLATE, ACCESS_PARAMS),
    ):
        earlier = dict.fromkeys(params, "x") | {"ProjectName": "abalone"}
        earlier |= {"CreateOidcProvider": "true"} if "CreateOidcProvider" in params else {}
        cfn.create_stack(
            StackName=name, TemplateBody=(stand_in / template).read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in earlier.items()],
        )  # fmt: skip
    aws["iam"].create_open_id_connect_provider(
        Url=f"https://{bs.OIDC_HOST}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )
    gh = FakeGh({"repo view": "Acme/abalone"})
    assert bs.bootstrap(_args("--glue-workers", "3", templates=stand_in), aws, gh, poll=0) == 0
    out = capsys.readouterr().out
    assert out.index("stack abalone-bootstrap: update started") < out.index(
        "stack abalone-github-access: update started"
    )
    boot, access = _stack(cfn, "abalone-bootstrap"), _stack(cfn, "abalone-github-access")
    assert boot["StackStatus"] == access["StackStatus"] == "UPDATE_COMPLETE"
    assert boot["params"]["GlueNumberOfWorkers"] == "3"
    assert access["params"]["CreateOidcProvider"] == "true"  # false would delete our provider
    assert access["params"]["GitHubOrg"] == "Acme"
    assert access["params"]["BootstrapStackName"] == "abalone-bootstrap"
    outputs = {o["OutputKey"]: o["OutputValue"] for s in (boot, access) for o in s["Outputs"]}
    sets = {(a[3], a[5]): a[7] for a, _ in gh.calls if a[:2] == ["api", "--method"] and len(a) > 7}
    repo_vars = "repos/Acme/abalone/actions/variables"
    assert sets[(repo_vars, "name=BUILD_ROLE_ARN")] == f"value={outputs['BuildRoleArn']}"
    assert sets[(repo_vars, "name=ECR_REPOSITORY")] == f"value={outputs['EcrRepositoryName']}"
    assert sets[(repo_vars, "name=AWS_REGION")] == "value=eu-west-1"
    assert sets[(repo_vars, "name=MLOPS_BOOTSTRAP_STACK")] == "value=abalone-bootstrap"
    dev = ("repos/Acme/abalone/environments/dev/variables", "name=DEPLOY_ROLE_ARN")
    assert sets[dev] == f"value={outputs['DevDeployRoleArn']}"


def test_existing_oidc_provider_is_reused_unless_the_stack_owns_it(aws):
    arn = aws["iam"].create_open_id_connect_provider(
        Url=f"https://{bs.OIDC_HOST}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )["OpenIDConnectProviderArn"]
    assert bs.oidc_parameters(aws["iam"], None) == {
        "CreateOidcProvider": "false",
        "ExistingOidcProviderArn": arn,
    }
    ours = {"Parameters": [{"ParameterKey": "CreateOidcProvider", "ParameterValue": "true"}]}
    assert bs.oidc_parameters(aws["iam"], ours)["CreateOidcProvider"] == "true"


def test_missing_outputs_name_the_stale_template(aws, tmp_path):
    template = tmp_path / "t.json"
    template.write_text(json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket"}}}))
    aws["cloudformation"].create_stack(StackName="s", TemplateBody=template.read_text())
    with pytest.raises(bs.BootstrapError, match="lacks outputs DataBucket, ArtifactBucket"):
        bs.read_outputs(aws["cloudformation"], "s")
    with pytest.raises(bs.BootstrapError, match=r"BuildRoleArn, .*: update .*/github-access\.yaml"):
        bs.read_outputs(aws["cloudformation"], "s", bs.ACCESS_OUTPUTS, bs.ACCESS_TEMPLATE)


# --- deploy edge cases with a scripted CloudFormation ----------------------------------------


class ScriptedCfn:
    """Answers describe_* from scripts; records every operation name."""

    def __init__(self, change_set: dict, stacks: list[str], events: list[dict]) -> None:
        self.ops: list[str] = []
        self.change_set, self.stacks, self.events = change_set, stacks, events

    def __getattr__(self, op: str):
        def call(**_kw):
            self.ops.append(op)
            if op == "describe_change_set":
                return self.change_set
            if op == "describe_stacks":
                return {"Stacks": [{"StackStatus": self.stacks.pop(0)}]}
            if op == "describe_stack_events":  # this operation's events appear once it runs
                shown = self.events if "execute_change_set" in self.ops else []
                return {"StackEvents": list(reversed(shown))}
            return {}

        return call


def _event(n: int, logical: str, status: str, reason: str = "") -> dict:
    return {"EventId": str(n), "LogicalResourceId": logical, "ResourceType": "AWS::IAM::Role",
            "ResourceStatus": status, "ResourceStatusReason": reason}  # fmt: skip


def test_failed_create_names_the_failing_resource_and_reason(capsys):
    events = [
        _event(1, "BuildRole", "CREATE_IN_PROGRESS"),
        _event(2, "BuildRole", "CREATE_FAILED", "MaxSessionDuration must be <= 43200"),
        _event(3, "DataBucket", "CREATE_FAILED", "Resource creation cancelled"),
    ]
    cfn = ScriptedCfn({"Status": "CREATE_COMPLETE"}, ["ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"],
                      events)  # fmt: skip
    with pytest.raises(bs.BootstrapError) as caught:
        bs.deploy_stack(cfn, "p-bootstrap", "{}", {"ProjectName": "p"}, None, poll=0)
    assert str(caught.value) == (
        "stack p-bootstrap ended ROLLBACK_COMPLETE: BuildRole (AWS::IAM::Role): "
        "MaxSessionDuration must be <= 43200"
    )
    assert len([x for x in capsys.readouterr().out.splitlines() if "s  CREATE_" in x]) == 3


def test_no_changes_is_success_and_deletes_the_change_set(capsys):
    empty = {
        "Status": "FAILED",
        "StatusReason": "The submitted information didn't contain changes.",
    }
    cfn = ScriptedCfn(empty, [], [])
    bs.deploy_stack(
        cfn, "p-bootstrap", "{}", {"ProjectName": "p"}, {"StackStatus": "UPDATE_COMPLETE"}
    )
    assert cfn.ops == ["create_change_set", "describe_change_set", "delete_change_set"]
    assert "no changes" in capsys.readouterr().out


def test_busy_stack_and_broken_change_set_are_refused():
    busy = {"StackStatus": "UPDATE_IN_PROGRESS"}
    with pytest.raises(bs.BootstrapError, match=r"busy \(UPDATE_IN_PROGRESS\): wait"):
        bs.deploy_stack(ScriptedCfn({}, [], []), "s", "{}", {"ProjectName": "p"}, busy)
    bad = {"Status": "FAILED", "StatusReason": "Template format error: bad resource"}
    with pytest.raises(bs.BootstrapError, match="change set for s failed: Template format error"):
        bs.deploy_stack(ScriptedCfn(bad, [], []), "s", "{}", {"ProjectName": "p"}, None, poll=0)


# --- errors at the command line: one line, non-zero, no traceback ----------------------------


def _gh_process(code: int, stderr: str = "", stdout: str = ""):
    def run(argv, **_kw):
        return subprocess.CompletedProcess(argv, code, stdout=stdout, stderr=stderr)

    return run


def _one_line_error(capsys, expected: str) -> None:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    assert expected in captured.err


def test_bad_project_name_fails_before_any_call(stand_in, capsys, monkeypatch):
    monkeypatch.setattr(bs.subprocess, "run", _gh_process(99))
    assert bs.main(["--project", "Bad_Name", "--region", "eu-west-1"]) == 1
    _one_line_error(capsys, "bad project name 'Bad_Name'")


def test_gh_not_authenticated_or_missing(stand_in, capsys, monkeypatch):
    argv = ["--repo", "o/repo", "--region", "eu-west-1", "--templates", str(stand_in)]
    monkeypatch.setattr(bs.subprocess, "run", _gh_process(1, "You are not logged into any host"))
    assert bs.main(argv) == 1
    _one_line_error(capsys, "gh is not authenticated: install gh and run gh auth login")

    def missing(*_a, **_k):
        raise FileNotFoundError("gh")

    monkeypatch.setattr(bs.subprocess, "run", missing)
    assert bs.main(argv) == 1
    _one_line_error(capsys, "gh not found: install gh")


def test_gh_api_failure_names_the_call(capsys, monkeypatch):
    monkeypatch.setattr(bs.subprocess, "run", _gh_process(1, "gh: Not Found (HTTP 404)"))
    with pytest.raises(bs.BootstrapError, match=r"gh api users/nobody --jq .id failed: .*404"):
        bs.run_gh(["api", "users/nobody", "--jq", ".id"])


def test_no_aws_credentials_says_what_to_run(stand_in, capsys, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(bs.subprocess, "run", _gh_process(0, stdout="42"))
    argv = ["--repo", "o/repo", "--region", "eu-west-1", "--templates", str(stand_in)]
    assert bs.main(argv) == 1
    _one_line_error(capsys, "no AWS credentials: run aws configure / aws sso login")


def test_missing_template_and_too_few_workers(stand_in, tmp_path, capsys):
    argv = ["--dry-run", "--repo", "o/repo", "--region", "eu-west-1"]
    assert bs.main([*argv, "--templates", str(tmp_path / "nope")]) == 1
    _one_line_error(capsys, "cannot read template")
    (stand_in / bs.ACCESS_TEMPLATE).unlink()  # the second one alone missing: still before any call
    assert bs.main([*argv, "--templates", str(stand_in)]) == 1
    _one_line_error(capsys, f"cannot read template {stand_in / bs.ACCESS_TEMPLATE}")
    assert bs.main([*argv, "--glue-workers", "1"]) == 1
    _one_line_error(capsys, "--glue-workers must be at least 2")


# --- contract with cloudformation/bootstrap.yaml and github-access.yaml ----------------------


def _top_level_keys(template: str, section: str) -> list[str]:
    """The keys of one top-level section of a template (two-space indent), in order."""
    lines = (bs.TEMPLATES / template).read_text(encoding="utf-8").splitlines()
    start = lines.index(f"{section}:") + 1
    end = next((i for i in range(start, len(lines)) if re.match(r"^\w", lines[i])), len(lines))
    return [m[1] for line in lines[start:end] if (m := re.match(r"^  (\w+):", line))]


@pytest.mark.parametrize(
    ("template", "stack", "outputs"),
    [
        (bs.BOOTSTRAP_TEMPLATE, "abalone-bootstrap", bs.BOOTSTRAP_OUTPUTS),
        (bs.ACCESS_TEMPLATE, "abalone-github-access", bs.ACCESS_OUTPUTS),
    ],
)
def test_parameters_outputs_and_project_pattern_match_the_real_templates(
    template, stack, outputs, capsys
):
    argv = ["--dry-run", "--repo", "Acme/abalone", "--region", "eu-west-1"]
    assert bs.main(argv) == 0  # the default templates: cloudformation/
    change_set = _change_sets(capsys.readouterr().out)[stack]
    passed = [p["ParameterKey"] for p in change_set["Parameters"]]
    assert sorted(passed) == sorted(_top_level_keys(template, "Parameters"))
    assert sorted(outputs) == sorted(_top_level_keys(template, "Outputs"))
    text = (bs.TEMPLATES / template).read_text(encoding="utf-8")
    pattern = re.search(r"ProjectName:\n(?:    .*\n)*?    AllowedPattern: '(.+)'", text)[1]
    assert pattern == bs.PROJECT_RE.pattern
