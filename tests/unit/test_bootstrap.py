"""mlops.bootstrap (scripts/bootstrap): dry-run call order, a moto deploy of the bootstrap,
github-access and inference stacks, the OIDC provider choice, and one-line errors with a non-zero
exit. No real AWS or gh."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.client
import pytest
import yaml
from moto import mock_aws

from mlops import bootstrap as bs
from mlops import config, github_setup
from mlops.errors import PipelineError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap"
PIPELINE_TOML = Path(__file__).resolve().parents[2] / "pipeline.toml"
# What the bootstrap passes to inference.yaml for pipeline.toml's [inference]: prod only, no
# schedule, PSI 0.25
PROD_INFERENCE_PARAMS = {
    "ProjectName": "mlops",
    "Stage": "prod",
    "BootstrapStackName": "mlops-bootstrap",
    "AccessStackName": "mlops-github-access",
    "ScheduleExpression": "",
    "DriftAlarmThreshold": "0.25",
}
BOOT_PARAMS = ["ProjectName", "GlueWorkerType", "GlueNumberOfWorkers", "GlueExecutionClass",
               "ModelPackageGroupName"]  # fmt: skip
ACCESS_PARAMS = ["GitHubOrg", "GitHubRepo", "CreateOidcProvider", "ExistingOidcProviderArn",
                 "ProjectName", "BootstrapStackName"]  # fmt: skip
INFERENCE_PARAMS = ["ProjectName", "Stage", "BootstrapStackName", "AccessStackName",
                    "ScheduleExpression", "DriftAlarmThreshold"]  # fmt: skip
MONITOR_PARAMS = ["ProjectName", "Stage", "BootstrapStackName", "AccessStackName", "GitHubOrg",
                  "GitHubRepo", "DriftAlarmThreshold"]  # fmt: skip


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
    """A templates folder with stand-ins for bootstrap.yaml (a bucket), github-access.yaml (a
    queue) and inference.yaml (a topic)."""
    boot = _stand_in_template(BOOT_PARAMS, bs.BOOTSTRAP_OUTPUTS, "AWS::S3::Bucket")
    access = _stand_in_template(ACCESS_PARAMS, bs.ACCESS_OUTPUTS, "AWS::SQS::Queue")
    (tmp_path / bs.BOOTSTRAP_TEMPLATE).write_text(boot)  # JSON is YAML
    (tmp_path / bs.ACCESS_TEMPLATE).write_text(access)
    inference = _stand_in_template(INFERENCE_PARAMS, bs.INFERENCE_OUTPUTS, "AWS::SNS::Topic")
    (tmp_path / bs.INFERENCE_TEMPLATE).write_text(inference)
    monitor = _stand_in_template(MONITOR_PARAMS, bs.MONITOR_OUTPUTS, "AWS::SNS::Topic")
    (tmp_path / bs.MONITOR_TEMPLATE).write_text(monitor)
    return tmp_path


def _config(folder: Path, name: str, stack: str) -> Path:
    """The repository's pipeline.toml with another [project] name and bootstrap_stack."""
    text = PIPELINE_TOML.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^name = "mlops"', f'name = "{name}"', text, count=1)
    text = re.sub(r'(?m)^bootstrap_stack = "mlops-bootstrap"', f'bootstrap_stack = "{stack}"', text)
    assert f'name = "{name}"' in text and f'bootstrap_stack = "{stack}"' in text
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _inference_config(folder: Path, table: str | None) -> Path:
    """The repository's pipeline.toml with another [inference] table (None: without one)."""
    text = PIPELINE_TOML.read_text(encoding="utf-8")
    text, found = re.subn(r"(?ms)^\[inference\]\n.*?(?=^\[)", table or "", text)
    assert found == 1
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


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
    out = capsys.readouterr().out
    calls = [_call(line) for line in out.splitlines()]  # stdout is the plan, nothing else

    def deploy(stack: str) -> list[str]:
        return [
            f"aws cloudformation describe_stacks {stack}",  # does it exist?
            f"aws cloudformation create_change_set {stack}",
            f"aws cloudformation describe_change_set {stack}",
            f"aws cloudformation execute_change_set {stack}",
            f"aws cloudformation describe_stacks {stack}",  # settled, with its outputs
            f"aws cloudformation describe_stack_events {stack}",
        ]

    assert calls == [
        "gh auth status",
        "gh repo view --json owner,name",
        "gh api users/bob --jq .id",
        "aws sts get_caller_identity",
        *deploy("mlops-bootstrap"),  # first: the other stack imports its exports
        "aws cloudformation describe_stacks mlops-github-access",  # does it own the provider?
        "aws iam list_open_id_connect_providers",
        *deploy("mlops-github-access"),
        *deploy("mlops-inference-prod"),  # third: it imports both stacks' exports
        *deploy("mlops-monitor-prod"),  # fourth: prod captures data, so it gets live drift
        "gh api --method PUT repos/OWNER/REPO/environments/dev",
        "gh api --method PUT repos/OWNER/REPO/environments/prod",
        "gh api repos/OWNER/REPO/environments/prod --jq '[.protection_rules[]?.type]",  # kept?
        "gh api repos/OWNER/REPO/branches/main --jq .protected",
        "gh api --paginate repos/OWNER/REPO/actions/variables --jq",
        *["gh api --method POST repos/OWNER/REPO/actions/variables"] * 5,  # + PROD_MONITOR_ROLE_ARN
        "gh api --paginate repos/OWNER/REPO/environments/dev/variables --jq",
        *["gh api --method POST repos/OWNER/REPO/environments/dev/variables"] * 2,
        "gh api --paginate repos/OWNER/REPO/environments/prod/variables --jq",
        *["gh api --method POST repos/OWNER/REPO/environments/prod/variables"] * 2,
    ]


def test_dry_run_prints_parameters_and_makes_no_call(stand_in, capsys, monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("dry run made a real call")

    monkeypatch.setattr(github_setup.subprocess, "run", refuse)
    monkeypatch.setattr(boto3.session.Session, "client", refuse)
    argv = ["--dry-run", "--repo", "Acme/Abalone_Age", "--flex", "--glue-workers", "4"]
    assert bs.main([*argv, "--region", "us-east-2", "--templates", str(stand_in)]) == 0
    out = capsys.readouterr().out
    change_sets = _change_sets(out)
    # The names come from pipeline.toml, as the CLI's jobs, stacks and endpoints do (the IAM
    # grants are scoped by ProjectName), never from the repository's name.
    assert list(change_sets) == [
        "mlops-bootstrap",
        "mlops-github-access",
        "mlops-inference-prod",
        "mlops-monitor-prod",
    ]
    boot, access, inference, live = (
        {p["ParameterKey"]: p["ParameterValue"] for p in cs["Parameters"]}
        for cs in change_sets.values()
    )
    assert live == {
        "ProjectName": "mlops",
        "Stage": "prod",
        "BootstrapStackName": "mlops-bootstrap",
        "AccessStackName": "mlops-github-access",
        "GitHubOrg": "Acme",
        "GitHubRepo": "Abalone_Age",
        "DriftAlarmThreshold": "0.25",
    }
    assert "-f name=PROD_MONITOR_ROLE_ARN -f 'value=<MonitorWorkflowRoleArn>'" in out
    assert (boot["ProjectName"], access["ProjectName"]) == ("mlops", "mlops")
    assert boot["ModelPackageGroupName"] == "mlops-models"
    assert (boot["GlueExecutionClass"], boot["GlueNumberOfWorkers"]) == ("FLEX", "4")
    assert (access["GitHubOrg"], access["GitHubRepo"]) == ("Acme", "Abalone_Age")
    assert access["BootstrapStackName"] == "mlops-bootstrap"
    assert access["CreateOidcProvider"] == "true"  # the dry run's account has no provider
    assert inference == PROD_INFERENCE_PARAMS
    for change_set in change_sets.values():
        assert change_set["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
        assert change_set["Tags"] == [{"Key": "project", "Value": "mlops"}]
    assert "-f value=mlops-bootstrap" in out  # MLOPS_BOOTSTRAP_STACK
    assert "-f name=AWS_REGION -f value=us-east-2" in out
    assert "abalone" not in out.lower().replace("abalone_age", "")  # nothing from the repo name


def test_the_project_and_bootstrap_stack_come_from_the_config_file(stand_in, tmp_path, capsys):
    cfg = _config(tmp_path, "churn-model", "churn-base")
    argv = ["--dry-run", "--repo", "Acme/Abalone_Age", "--region", "eu-west-1"]
    assert bs.main([*argv, "--templates", str(stand_in), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    change_sets = _change_sets(out)
    assert list(change_sets) == [
        "churn-base",
        "churn-model-github-access",
        "churn-model-inference-prod",
        "churn-model-monitor-prod",
    ]
    boot, access, inference, _ = (
        {p["ParameterKey"]: p["ParameterValue"] for p in cs["Parameters"]}
        for cs in change_sets.values()
    )
    assert (boot["ProjectName"], access["ProjectName"]) == ("churn-model", "churn-model")
    assert access["BootstrapStackName"] == "churn-base"  # the imports follow the real name
    assert inference["ProjectName"] == "churn-model"
    assert (inference["BootstrapStackName"], inference["AccessStackName"]) == (
        "churn-base",
        "churn-model-github-access",
    )
    assert "-f name=MLOPS_BOOTSTRAP_STACK -f value=churn-base" in out


def test_the_default_config_is_the_repository_pipeline_toml():
    assert bs.parse_args([]).config == PIPELINE_TOML
    with pytest.raises(SystemExit):
        bs.parse_args(["--project", "x"])


@pytest.mark.parametrize("good", ["mlops", "abc", "x-y-z", "a" + "b" * 31])
def test_good_project_names_pass(good):
    assert bs.project_name(good) == good


@pytest.mark.parametrize("bad", ["Bad_Name", "9lives", "ab", "trailing-", "a" * 33])
def test_bad_project_names_are_refused(bad):
    with pytest.raises(PipelineError, match=f"bad project name '{bad}'.*pipeline.toml"):
        bs.project_name(bad)


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


def _provider(iam) -> str:
    return iam.create_open_id_connect_provider(
        Url=f"https://{bs.OIDC_HOST}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )["OpenIDConnectProviderArn"]


class FakeGhRepo:
    """A gh that knows the repository, a user id and prod's reviewers; records every argv."""

    def __init__(self, repo: str) -> None:
        self.repo, self.argv = repo, []

    def __call__(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        self.argv.append(args)
        prod = f"api repos/{self.repo}/environments/prod"
        answers = {"repo view": self.repo, "api user": "42", prod: "required_reviewers"}
        return answers.get(" ".join(args[:2]), "")


EARLIER = (  # what an earlier bootstrap made: (stack, template, parameters)
    ("mlops-bootstrap", bs.BOOTSTRAP_TEMPLATE, BOOT_PARAMS),
    ("mlops-github-access", bs.ACCESS_TEMPLATE, ACCESS_PARAMS),
    ("mlops-inference-prod", bs.INFERENCE_TEMPLATE, INFERENCE_PARAMS),
    ("mlops-monitor-prod", bs.MONITOR_TEMPLATE, MONITOR_PARAMS),
)


def _earlier_stacks(cfn, templates: Path) -> None:
    """Every stack as an earlier bootstrap made it (moto resolves outputs on create_stack, not on
    change sets)."""
    for name, template, params in EARLIER:
        earlier = dict.fromkeys(params, "x") | {"ProjectName": "mlops"}
        earlier |= {"CreateOidcProvider": "true"} if "CreateOidcProvider" in params else {}
        cfn.create_stack(
            StackName=name, TemplateBody=(templates / template).read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in earlier.items()],
        )  # fmt: skip


def test_moto_full_run_updates_every_stack_and_sets_variables_from_their_outputs(
    aws, stand_in, capsys
):
    """An earlier bootstrap made the three stacks and the OIDC provider: this run updates them in
    order, keeps the provider, wires GitHub."""
    cfn = aws["cloudformation"]
    _earlier_stacks(cfn, stand_in)
    _provider(aws["iam"])
    gh = FakeGhRepo("Acme/abalone")
    argv = ["--region", "eu-west-1", "--glue-workers", "3", "--config", str(PIPELINE_TOML)]
    args = bs.parse_args(argv, stand_in)
    assert bs.bootstrap(args, aws, gh) == 0
    err = capsys.readouterr().err
    updates = [err.index(f"stack {name}: update with") for name, _, _ in EARLIER]
    assert updates == sorted(updates)  # bootstrap, then github-access, then inference
    assert "stack mlops-github-access: UPDATE_COMPLETE after" in err
    assert "stack mlops-inference-prod: UPDATE_COMPLETE after" in err
    boot, access = _stack(cfn, "mlops-bootstrap"), _stack(cfn, "mlops-github-access")
    inference = _stack(cfn, "mlops-inference-prod")
    assert boot["StackStatus"] == access["StackStatus"] == "UPDATE_COMPLETE"
    assert inference["StackStatus"] == "UPDATE_COMPLETE"
    assert boot["params"]["GlueNumberOfWorkers"] == "3"
    assert access["params"]["CreateOidcProvider"] == "true"  # false would delete our provider
    assert access["params"]["GitHubOrg"] == "Acme"
    assert access["params"]["BootstrapStackName"] == "mlops-bootstrap"
    assert inference["params"] == PROD_INFERENCE_PARAMS
    outputs = {o["OutputKey"]: o["OutputValue"] for s in (boot, access) for o in s["Outputs"]}
    sets = {(a[3], a[5]): a[7] for a in gh.argv if a[:2] == ["api", "--method"] and len(a) > 7}
    repo_vars = "repos/Acme/abalone/actions/variables"
    assert sets[(repo_vars, "name=BUILD_ROLE_ARN")] == f"value={outputs['BuildRoleArn']}"
    # the full URI (registry host included), not the bare repository name
    assert sets[(repo_vars, "name=ECR_REPOSITORY_URI")] == f"value={outputs['EcrRepositoryUri']}"
    assert (repo_vars, "name=ECR_REPOSITORY") not in sets
    assert sets[(repo_vars, "name=AWS_REGION")] == "value=eu-west-1"
    assert sets[(repo_vars, "name=MLOPS_BOOTSTRAP_STACK")] == "value=mlops-bootstrap"
    for env in ("dev", "prod"):
        base = f"repos/Acme/abalone/environments/{env}/variables"
        stage = env.title()
        assert sets[(base, "name=DEPLOY_ROLE_ARN")] == f"value={outputs[f'{stage}DeployRoleArn']}"
        assert sets[(base, "name=STACK_ROLE_ARN")] == f"value={outputs[f'{stage}StackRoleArn']}"


class Recorded:
    """stack.deploy's stand-in: records (stack, template file, parameters, options) in order and
    answers every output but those in ``lacking``; the gh calls go into the same list."""

    def __init__(self, lacking: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple] = []
        self.lacking, self.repo = lacking, FakeGhRepo("o/r")

    def deploy(self, _cfn, name, template, parameters, **options) -> dict[str, str]:
        self.calls.append(("deploy", name, Path(template).name, dict(parameters), options))
        return {key: f"<{key}>" for key in bs.OUTPUTS if key not in self.lacking}

    def gh(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        self.calls.append(("gh", *args))
        return self.repo(args, body, placeholder)


INFERENCE_TABLES = {
    "two stages, a schedule, another threshold": (
        '[inference]\nstages = ["dev", "prod"]\nschedule = "rate(1 day)"\n'
        "drift_alarm_threshold = 0.4\n\n",
        [("dev", "rate(1 day)", "0.4"), ("prod", "rate(1 day)", "0.4")],
    ),
    "prod then dev: the configured order": (
        '[inference]\nstages = ["prod", "dev"]\n\n',
        [("prod", "", "0.25"), ("dev", "", "0.25")],
    ),
    "no [inference] table: prod only, no schedule, 0.25": (
        None,
        [("prod", "", "0.25")],
    ),
}


@pytest.mark.parametrize(("table", "expected"), INFERENCE_TABLES.values(), ids=INFERENCE_TABLES)
def test_one_inference_stack_per_configured_stage_after_github_access(
    table, expected, tmp_path, stand_in, monkeypatch
):
    recorded = Recorded()
    monkeypatch.setattr(bs.stack, "deploy", recorded.deploy)
    cfg = _inference_config(tmp_path, table)
    args = bs.parse_args(["--region", "eu-west-1", "--config", str(cfg)], stand_in)
    assert bs.bootstrap(args, bs.dry_clients(), recorded.gh) == 0
    deploys = [call[1:] for call in recorded.calls if call[0] == "deploy"]
    options = {
        "region": "eu-west-1",
        "capabilities": ("CAPABILITY_NAMED_IAM",),  # its policy and roles
        "tags": {"project": "mlops"},
    }
    assert [(name, template) for name, template, *_ in deploys[:2]] == [
        ("mlops-bootstrap", bs.BOOTSTRAP_TEMPLATE),
        ("mlops-github-access", bs.ACCESS_TEMPLATE),  # before: inference imports its exports
    ]
    inference = [d for d in deploys[2:] if d[1] == bs.INFERENCE_TEMPLATE]
    # live drift only where the stage captures: prod (100 %), not dev (0 %), after the inference
    monitored = [(d[0], d[2]["Stage"]) for d in deploys[2:] if d[1] == bs.MONITOR_TEMPLATE]
    assert monitored == [("mlops-monitor-prod", "prod")]
    assert [d[1] for d in deploys[2:]][-1] == bs.MONITOR_TEMPLATE
    assert inference == [
        (
            f"mlops-inference-{stage}",
            bs.INFERENCE_TEMPLATE,
            {
                "ProjectName": "mlops",
                "Stage": stage,
                "BootstrapStackName": "mlops-bootstrap",
                "AccessStackName": "mlops-github-access",
                "ScheduleExpression": schedule,
                "DriftAlarmThreshold": threshold,
            },
            options,
        )
        for stage, schedule, threshold in expected
    ]
    last_deploy = max(i for i, call in enumerate(recorded.calls) if call[0] == "deploy")
    first_write = next(i for i, call in enumerate(recorded.calls) if "--method" in call)
    assert last_deploy < first_write  # GitHub is set up once every stack has its outputs


@pytest.mark.parametrize("missing", bs.INFERENCE_OUTPUTS)
def test_a_missing_inference_output_is_one_line_naming_the_stack_before_github(
    missing, stand_in, monkeypatch, capsys
):
    recorded = Recorded(lacking=frozenset({missing}))
    monkeypatch.setattr(bs.stack, "deploy", recorded.deploy)
    argv = ["--dry-run", "--repo", "o/r", "--region", "eu-west-1", "--templates", str(stand_in)]
    assert bs.main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.splitlines()[-1] == (  # the last line, the only error line
        f"bootstrap: error: stack mlops-inference-prod lacks outputs {missing}: "
        "update cloudformation/inference.yaml"
    )
    assert sum(line.startswith("bootstrap: error:") for line in captured.err.splitlines()) == 1
    assert [c[1] for c in recorded.calls][-1] == "mlops-inference-prod"  # the last deploy
    assert "gh api --method" not in captured.out  # no GitHub change after a stale stack


def test_existing_oidc_provider_is_reused_unless_the_stack_owns_it(aws):
    assert bs.oidc_parameters(aws["iam"], None)["CreateOidcProvider"] == "true"  # none yet
    arn = _provider(aws["iam"])
    assert bs.oidc_parameters(aws["iam"], None) == {
        "CreateOidcProvider": "false",
        "ExistingOidcProviderArn": arn,
    }
    ours = {"Parameters": [{"ParameterKey": "CreateOidcProvider", "ParameterValue": "true"}]}
    assert bs.oidc_parameters(aws["iam"], ours)["CreateOidcProvider"] == "true"


def test_missing_outputs_name_the_stale_template():
    with pytest.raises(PipelineError, match="lacks outputs DataBucket, ArtifactBucket"):
        bs.check_outputs({"Other": "x"}, "s", bs.BOOTSTRAP_OUTPUTS, bs.BOOTSTRAP_TEMPLATE)
    with pytest.raises(PipelineError, match=r"BuildRoleArn, .*: update .*/github-access\.yaml"):
        bs.check_outputs({}, "s", bs.ACCESS_OUTPUTS, bs.ACCESS_TEMPLATE)
    every = dict.fromkeys(bs.OUTPUTS, "v")
    assert bs.check_outputs(every, "s", bs.ACCESS_OUTPUTS, bs.ACCESS_TEMPLATE) == every


# --- errors at the command line: one line, non-zero, no traceback ----------------------------


def _gh_process(code: int, stderr: str = "", stdout: str = ""):
    def run(argv, **_kw):
        return subprocess.CompletedProcess(argv, code, stdout=stdout, stderr=stderr)

    return run


def _one_line_error(capsys, expected: str) -> None:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("bootstrap: error: ")
    assert expected in captured.err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("trailing-", "bad project name 'trailing-'"),  # pipeline.toml allows it, the stacks not
        ("ab", "bad project name 'ab'"),
        ("Bad_Name", "project.name"),  # pipeline.toml's own check names the key
    ],
)
def test_bad_project_name_in_the_config_fails_before_any_call(
    name, expected, tmp_path, capsys, monkeypatch
):
    def refuse(*_a, **_k):
        raise AssertionError("a call was made before the project name was checked")

    monkeypatch.setattr(github_setup.subprocess, "run", refuse)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)
    cfg = _config(tmp_path, name, "x-bootstrap")
    assert bs.main(["--config", str(cfg), "--region", "eu-west-1"]) == 4
    _one_line_error(capsys, expected)


def test_a_missing_config_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(github_setup.subprocess, "run", _gh_process(99))
    assert bs.main(["--dry-run", "--config", str(tmp_path / "nope.toml")]) == 4
    _one_line_error(capsys, "nope.toml: not found")


def test_gh_not_authenticated_or_missing(stand_in, capsys, monkeypatch):
    argv = ["--repo", "o/repo", "--region", "eu-west-1", "--templates", str(stand_in)]
    auth = _gh_process(1, "You are not logged into any host")
    monkeypatch.setattr(github_setup.subprocess, "run", auth)
    assert bs.main(argv) == 1
    _one_line_error(capsys, "gh is not authenticated: install gh and run gh auth login")

    def missing(*_a, **_k):
        raise FileNotFoundError("gh")

    monkeypatch.setattr(github_setup.subprocess, "run", missing)
    assert bs.main(argv) == 1
    _one_line_error(capsys, "gh not found: install gh")


def test_no_aws_credentials_says_what_to_run(stand_in, capsys, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(github_setup.subprocess, "run", _gh_process(0, stdout="42"))
    argv = ["--repo", "o/repo", "--region", "eu-west-1", "--templates", str(stand_in)]
    assert bs.main(argv) == 1
    _one_line_error(capsys, "no AWS credentials: run aws configure / aws sso login")


def test_a_busy_stack_is_refused_before_any_change(stand_in, aws):
    states = iter(["UPDATE_IN_PROGRESS"])  # then settled, should deploy go on regardless
    aws["cloudformation"].describe_stacks = lambda **_kw: {
        "Stacks": [{"StackName": "mlops-bootstrap", "StackStatus": next(states, "UPDATE_COMPLETE")}]
    }
    argv = ["--repo", "a/demo", "--region", "eu-west-1", "--config", str(PIPELINE_TOML)]
    args = bs.parse_args(argv, stand_in)
    busy = r"mlops-bootstrap is busy \(UPDATE_IN_PROGRESS\): wait"
    with pytest.raises(PipelineError, match=busy):
        bs.bootstrap(args, aws, FakeGhRepo("a/demo"))


def test_missing_template_and_too_few_workers(stand_in, tmp_path, capsys):
    argv = ["--dry-run", "--repo", "o/repo", "--region", "eu-west-1"]
    assert bs.main([*argv, "--templates", str(tmp_path / "nope")]) == 4
    _one_line_error(capsys, "cannot read template")
    for name in (bs.ACCESS_TEMPLATE, bs.INFERENCE_TEMPLATE):  # one alone missing: before any call
        kept = (stand_in / name).read_text()
        (stand_in / name).unlink()
        assert bs.main([*argv, "--templates", str(stand_in)]) == 4
        _one_line_error(capsys, f"cannot read template {stand_in / name}")
        (stand_in / name).write_text(kept)
    assert bs.main([*argv, "--glue-workers", "1"]) == 4
    _one_line_error(capsys, "--glue-workers must be at least 2")


def test_the_script_is_a_wrapper_that_runs_the_package(tmp_path):
    argv = [sys.executable, str(SCRIPT), "--dry-run", "--repo", "a/demo", "--region", "eu-west-1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "aws cloudformation create_change_set" in done.stdout  # default templates: the repo's
    assert done.stderr.splitlines()[-1].startswith("bootstrap: done.")


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
        (bs.BOOTSTRAP_TEMPLATE, "mlops-bootstrap", bs.BOOTSTRAP_OUTPUTS),
        (bs.ACCESS_TEMPLATE, "mlops-github-access", bs.ACCESS_OUTPUTS),
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


class _AnyTag(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short tags (!Sub, !Ref...) as null: enough for the
    Parameters and Outputs keys."""


_AnyTag.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def test_the_inference_parameters_and_outputs_match_the_real_template(capsys):
    """Every inference.yaml parameter without a default is passed, nothing it does not declare,
    each value allowed by the template; the outputs checked are outputs it has."""
    argv = ["--dry-run", "--repo", "Acme/abalone", "--region", "eu-west-1"]
    assert bs.main(argv) == 0  # the default templates and pipeline.toml
    change_set = _change_sets(capsys.readouterr().out)["mlops-inference-prod"]
    passed = {p["ParameterKey"]: p["ParameterValue"] for p in change_set["Parameters"]}
    text = (bs.TEMPLATES / bs.INFERENCE_TEMPLATE).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_AnyTag)  # a SafeLoader subclass
    declared = template["Parameters"]
    required = {name for name, spec in declared.items() if "Default" not in spec}
    assert required <= set(passed) <= set(declared)
    assert set(passed) == set(INFERENCE_PARAMS)  # the stand-in above declares the same
    for name, value in passed.items():
        spec = declared[name]
        assert value in spec.get("AllowedValues", [value]), name
        assert re.fullmatch(spec.get("AllowedPattern", ".*"), value), name
        if spec["Type"] == "Number":
            assert float(value) >= spec.get("MinValue", float("-inf")), name
    # any stage [inference] stages accepts is one the template takes
    assert set(config.STAGES) <= set(declared["Stage"]["AllowedValues"])
    assert set(bs.INFERENCE_OUTPUTS) <= set(template["Outputs"])
    assert declared["ProjectName"]["AllowedPattern"] == bs.PROJECT_RE.pattern


def test_dry_run_with_two_inference_stages_creates_both(stand_in, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(github_setup.subprocess, "run", lambda *_a, **_k: 1 / 0)
    toml = PIPELINE_TOML.read_text().replace('stages = ["prod"]', 'stages = ["dev", "prod"]')
    config = tmp_path / "pipeline.toml"
    config.write_text(toml)
    argv = ["--dry-run", "--repo", "o/r", "--region", "us-east-2", "--config", str(config)]
    assert bs.main([*argv, "--templates", str(stand_in)]) == 0
    out = capsys.readouterr().out
    assert list(_change_sets(out))[2:] == [
        "mlops-inference-dev",
        "mlops-inference-prod",
        "mlops-monitor-prod",
    ]
    creates = [line for line in out.splitlines() if "create_change_set" in line]
    assert all('"ChangeSetType": "CREATE"' in line for line in creates), creates


# --- retraining by itself: opt-in, the token in Secrets Manager, retrain.yaml last ----------------

RETRAIN_TOKEN = "github_pat_11ABCDEFG0123456789_abcdef"


def _retrain_stand_in(stand_in: Path) -> Path:
    from mlops import retrain_setup

    (stand_in / retrain_setup.TEMPLATE).write_text(
        (bs.TEMPLATES / retrain_setup.TEMPLATE).read_text()
    )
    return stand_in


def test_without_the_option_no_secret_and_no_retrain_stack(stand_in, monkeypatch):
    recorded = Recorded()
    monkeypatch.setattr(bs.stack, "deploy", recorded.deploy)
    args = bs.parse_args(["--region", "eu-west-1", "--repo", "o/r", "--templates", str(stand_in)])
    clients = bs.dry_clients()
    clients["secretsmanager"] = None  # any use would fail
    assert bs.bootstrap(args, clients, recorded.gh) == 0
    assert "mlops-retrain" not in [c[1] for c in recorded.calls if c[0] == "deploy"]


def test_retrain_keeps_the_token_in_secrets_manager_and_deploys_retrain_last(
    stand_in, monkeypatch, capsys
):
    from mlops import retrain_setup

    monkeypatch.setenv("MY_DISPATCH_TOKEN", RETRAIN_TOKEN)
    recorded = Recorded()
    monkeypatch.setattr(
        bs.stack,
        "deploy",
        lambda *a, **k: {**recorded.deploy(*a, **k), **dict.fromkeys(retrain_setup.OUTPUTS, "<o>")},
    )
    argv = ["--region", "eu-west-1", "--repo", "o/r", "--retrain-token-env", "MY_DISPATCH_TOKEN"]
    args = bs.parse_args([*argv, "--templates", str(_retrain_stand_in(stand_in))])
    assert bs.bootstrap(args, bs.dry_clients(retrain=True), recorded.gh) == 0
    deploys = [c for c in recorded.calls if c[0] == "deploy"]
    assert deploys[-1][1:4] == (
        "mlops-retrain",
        "retrain.yaml",
        {
            "ProjectName": "mlops",
            "BootstrapStackName": "mlops-bootstrap",
            "GitHubOwner": "o",
            "GitHubRepo": "r",
            "TokenSecretName": "mlops-github-dispatch",
            "TokenSecretVersion": "0" * 32,  # what CreateSecret answered
        },
    )
    out = capsys.readouterr().out
    assert "aws secretsmanager create_secret" in out and '"SecretString": "<secret>"' in out
    assert RETRAIN_TOKEN not in out  # a dry client prints its calls: never the token


def test_a_missing_token_fails_before_any_call(stand_in, monkeypatch, capsys):
    monkeypatch.delenv("MY_DISPATCH_TOKEN", raising=False)
    folder = str(_retrain_stand_in(stand_in))
    argv = ["--dry-run", "--repo", "o/r", "--region", "eu-west-1", "--templates", folder]
    assert bs.main([*argv, "--retrain-token-env", "MY_DISPATCH_TOKEN"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""  # no call printed: refused first
    (line,) = captured.err.splitlines()
    assert line.startswith(
        "bootstrap: error: no GitHub token in environment variable MY_DISPATCH_TOKEN: set it to"
    )


def test_the_help_names_the_token_permission(capsys):
    with pytest.raises(SystemExit):
        bs.parse_args(["--help"])
    assert "Contents: Read and write" in " ".join(capsys.readouterr().out.split())
