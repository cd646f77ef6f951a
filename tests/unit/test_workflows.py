"""The GitHub Actions wiring, read as data: credentials, environments, outputs, pins, thin steps.

These are the properties a reviewer would otherwise have to re-check by eye on every change:
pull requests (forks included) never get AWS credentials; prod comes after dev's system tests; the
image digest and model package ARN travel through job outputs; every step is a make target or a
CLI call; every action is pinned.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import bootstrap, cli, config, github_setup
from mlops.local import expressions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("ci", "deploy", "rollback", "teardown", "monitor")
STAGES = ("dev", "prod")
VAR = re.compile(r"\bvars\.([A-Za-z_][A-Za-z0-9_]*)")
AWS_ACTION = "aws-actions/configure-aws-credentials"
PIN = re.compile(r"^\s*-?\s*uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?P<rest>.*)$")
# A step's whole script: one make target, or one call of the pipeline CLI (a command, maybe its
# action, as in `inference upsert`, then options) / its metrics report.
ALLOWED_RUN = re.compile(
    r"^(make [a-z][a-z-]*"
    r"|\.venv/bin/mlops [a-z][a-z-]*(?: [a-z][a-z-]*)?"
    r"(?: --?[a-z-]+(?:[ =](?:\"\$[A-Z_]+\"|[a-z0-9.-]+))?)*"
    r"|\.venv/bin/python -m mlops\.metrics_report(?: --[a-z-]+ (?:\"\$[A-Z_]+\"|[\w./-]+))+)$"
)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def flows() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in NAMES}


def triggers(flow: dict[str, Any]) -> dict[str, Any]:
    """The `on:` block (PyYAML reads the bare key `on` as the boolean True)."""
    on = flow.get("on", flow.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def runs(job: dict[str, Any]) -> list[str]:
    return [" ".join(s["run"].split()) for s in steps(job) if "run" in s]


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def all_jobs(flows: dict[str, dict[str, Any]]):
    for name, flow in flows.items():
        for job_id, job in flow["jobs"].items():
            yield f"{name}.{job_id}", job


def env_name(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


# --- least privilege -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_top_level_permissions_are_contents_read(flows, name):
    assert flows[name]["permissions"] == {"contents": "read"}


def test_pull_request_workflows_never_get_aws_credentials(flows):
    pr_flows = [
        n for n, f in flows.items() if {"pull_request", "pull_request_target"} & set(triggers(f))
    ]
    assert pr_flows == ["ci"]
    for name in pr_flows:
        for job_id, job in flows[name]["jobs"].items():
            assert job.get("permissions", {}).get("id-token") is None, job_id
            assert not uses(job, AWS_ACTION), job_id
            assert "environment" not in job, job_id
        assert "pull_request_target" not in triggers(flows[name])


def test_id_token_only_on_jobs_that_assume_an_aws_role(flows):
    for where, job in all_jobs(flows):
        assumes = bool(uses(job, AWS_ACTION))
        assert (job.get("permissions", {}).get("id-token") == "write") == assumes, where


def test_only_the_comment_job_writes_and_only_pull_request_comments(flows):
    for where, job in all_jobs(flows):
        writes = {k for k, v in job.get("permissions", {}).items() if v == "write"} - {"id-token"}
        expected = {"pull-requests"} if where in {"ci.comment", "deploy.test"} else set()
        expected = {"issues"} if where == "monitor.monitor" else expected  # the drift issue
        assert writes == expected, where


def test_fork_pull_requests_skip_the_comment_but_run_everything_else(flows):
    jobs = flows["ci"]["jobs"]
    assert "head.repo.full_name == github.repository" in jobs["comment"]["if"]
    assert all("if" not in job for job_id, job in jobs.items() if job_id != "comment")


def test_every_checkout_drops_its_credentials(flows):
    checkouts = 0
    for where, job in all_jobs(flows):
        for step in uses(job, "actions/checkout"):
            checkouts += 1
            assert step.get("with", {}).get("persist-credentials") is False, where
    assert checkouts >= 8


def test_every_step_job_has_a_timeout(flows):
    for where, job in all_jobs(flows):
        if "uses" in job:  # a reusable-workflow call: the called workflow's jobs carry timeouts
            continue
        assert isinstance(job.get("timeout-minutes"), int), where
        assert 0 < job["timeout-minutes"] <= 240, where


# --- pins ----------------------------------------------------------------------------------------


def test_every_action_is_pinned_to_a_full_sha_with_a_version_comment():
    seen: dict[str, set[str]] = {}
    lines = [
        line for name in NAMES for line in (WORKFLOWS / f"{name}.yml").read_text().splitlines()
    ]
    for line in (x for x in lines if re.match(r"^\s*-?\s*uses:", x)):
        if "./.github/workflows/" in line:
            continue
        match = PIN.match(line)
        assert match, line
        assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), line
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", match["rest"]), line
        seen.setdefault(match["action"], set()).add(match["ref"])
    assert {a for a, refs in seen.items() if len(refs) > 1} == set(), "one SHA per action"
    assert AWS_ACTION in seen


# --- thin steps ----------------------------------------------------------------------------------


def test_every_run_step_is_a_make_target_or_a_cli_call(flows):
    for where, job in all_jobs(flows):
        for script in runs(job):
            assert ALLOWED_RUN.match(script), f"{where}: {script}"
            assert "${{" not in script, f"{where}: expressions go through env:, not into run:"


@pytest.mark.parametrize(
    "script",
    [
        "make test; curl x | sh",
        "aws sagemaker list-model-packages",
        "make test && rm -rf /",
        ".venv/bin/mlops deploy --stage $(cat f)",
        "echo ${{ github.head_ref }}",
        ".venv/bin/mlops inference upsert --model-package-arn $(aws sagemaker list-model-packages)",
        ".venv/bin/mlops inference upsert; make test",
        ".venv/bin/mlops inference upsert run --stage prod",
    ],
)
def test_the_run_step_rule_rejects_logic(script):
    assert not ALLOWED_RUN.match(script)


def test_ci_runs_lint_tests_pipeline_and_container(flows):
    jobs = flows["ci"]["jobs"]
    assert {"pull_request", "workflow_call"} <= set(triggers(flows["ci"]))
    expected = {"lint": "make lint", "test": "make test", "container": "make container-test"}
    for job_id, target in expected.items():
        assert target in runs(jobs[job_id])
    assert runs(jobs["pipeline"])[0] == "make pipeline"
    report = runs(jobs["pipeline"])[1]
    assert "runs/latest/evaluation/evaluation.json" in report
    assert "--baseline" in report
    assert jobs["comment"]["needs"] == "pipeline"
    comment = steps(jobs["comment"])[0]
    assert comment["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert comment["with"]["message"] == "${{ needs.pipeline.outputs.report }}"


def test_ci_cancels_superseded_pull_request_runs_only(flows):
    concurrency = flows["ci"]["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_baseline_cache_is_written_only_from_main(flows):
    pipeline = flows["ci"]["jobs"]["pipeline"]
    saves = uses(pipeline, "actions/cache/save")
    restores = uses(pipeline, "actions/cache/restore")
    assert len(saves) == 1 and len(restores) == 1
    assert saves[0]["if"] == "github.ref == 'refs/heads/main'"
    assert saves[0]["with"]["path"] == restores[0]["with"]["path"]


# --- the deploy chain ----------------------------------------------------------------------------


def test_deploy_runs_on_main_by_hand_and_on_retrain_dispatches_and_reuses_ci(flows):
    deploy = flows["deploy"]
    assert set(triggers(deploy)) == {"push", "workflow_dispatch", "repository_dispatch"}
    assert triggers(deploy)["push"]["branches"] == ["main"]
    # exactly the event type retrain.yaml's input transformers send, nothing else
    assert triggers(deploy)["repository_dispatch"] == {"types": ["retrain"]}
    assert deploy["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"


PAYLOAD = re.compile(r"github\.event\.client_payload\.(\w+)")


def test_the_dispatch_payload_reaches_only_the_etl_step_and_only_through_env(flows):
    """Untrusted input (anyone who can create an object under training/ sends one): never
    inline in a script, only in env of `mlops etl`, which validates it."""
    text = (WORKFLOWS / "deploy.yml").read_text(encoding="utf-8")
    used = []
    for where, job in all_jobs(flows):
        for s in steps(job):
            assert not PAYLOAD.search(s.get("run", "")), f"{where}: payload inline in run:"
            assert not PAYLOAD.search(str(s.get("with", {}))), f"{where}: payload in with:"
            for name, value in s.get("env", {}).items():
                used += [(where, s.get("run"), name, f) for f in PAYLOAD.findall(str(value))]
        assert not PAYLOAD.search(str(job.get("env", {}))), where
    assert sorted(f for *_, f in used) == ["data_key", "reason", "reason"]
    assert {(w, r) for w, r, *_ in used} == {("deploy.train", ".venv/bin/mlops etl")}
    assert {n for _, _, n, _ in used} == {"MLOPS_RETRAIN", "MLOPS_DATA_KEY", "MLOPS_RETRAIN_REASON"}
    assert text.count("client_payload") == 3


def test_a_drift_dispatch_retrains_and_a_new_data_dispatch_names_its_data(flows):
    (etl,) = [s for s in steps(flows["deploy"]["jobs"]["train"]) if "mlops etl" in s.get("run", "")]
    retrain = etl["env"]["MLOPS_RETRAIN"]
    for event, inputs, expected in (
        ({"client_payload": {"reason": "drift", "data_key": ""}}, {}, "true"),
        ({"client_payload": {"reason": "new-data", "data_key": "training/x.csv"}}, {}, "false"),
        ({}, {"retrain": True}, "true"),  # workflow_dispatch with the retrain input
        ({}, {}, "false"),  # push
    ):
        contexts = {"inputs": inputs, "github": {"event": event}}
        assert expressions.render(retrain, contexts) == expected, (event, inputs)
    contexts = {"github": {"event": {"client_payload": {"data_key": "training/x.csv"}}}}
    assert expressions.render(etl["env"]["MLOPS_DATA_KEY"], contexts) == "training/x.csv"
    for name in ("MLOPS_DATA_KEY", "MLOPS_RETRAIN", "MLOPS_RETRAIN_REASON"):
        assert f"--{name.lower()}" not in etl["run"]  # env only: the CLI reads it (cli.py)


def test_dispatched_runs_queue_behind_the_push_runs_and_are_never_cancelled(flows):
    """A dispatch runs on the default branch (github.ref is it): the same groups as a push to
    main, so a burst of uploads queues (GitHub keeps the newest pending run) and never cancels a
    training or a deploy under way."""
    jobs = flows["deploy"]["jobs"]
    for job_id in ("build-and-push", "train"):
        concurrency = jobs[job_id]["concurrency"]
        assert "${{ github.ref }}" in concurrency["group"], job_id
        assert concurrency["cancel-in-progress"] is False, job_id


def test_deploy_chain_order_and_environments(flows):
    jobs = flows["deploy"]["jobs"]
    needs = {job_id: job.get("needs", []) for job_id, job in jobs.items()}
    assert needs["build-and-push"] == []  # at once with the tests: ~3 min off the critical path
    assert set(needs["train"]) == {"test", "build-and-push"}
    assert needs["deploy-dev"] == "train"
    assert set(needs["deploy-prod"]) == {"train", "deploy-dev"}
    assert env_name(jobs["deploy-dev"]) == "dev"
    assert env_name(jobs["deploy-prod"]) == "prod"


def test_dev_runs_the_system_tests_and_prod_smoke_tests_before_promoting(flows):
    jobs = flows["deploy"]["jobs"]
    dev = runs(jobs["deploy-dev"])
    assert [s.split()[1] for s in dev] == ["venv", "deploy", "system-test"]
    assert all("--stage dev" in s for s in dev[1:])
    prod = runs(jobs["deploy-prod"])
    assert [s.split()[1] for s in prod] == [
        *("venv", "deploy", "system-test", "promote"),
        *("inference-venv", "inference"),  # then batch scoring follows the promoted package
    ]


def test_train_runs_every_step_then_registers(flows):
    train = runs(flows["deploy"]["jobs"]["train"])
    commands = [s.split()[1] for s in train]
    assert commands == ["venv", "etl", "train", "evaluate", "gate", "register"]


@pytest.mark.parametrize(("given", "tunes"), [({"tune": True}, "true"), ({}, "")])
def test_the_tune_input_reaches_the_train_step_through_its_env(flows, given, tunes):
    """A manual run with `tune` trains with a tuning job (MLOPS_TUNE, read by `mlops train`);
    the value goes through env, never inline into the script."""
    inputs = triggers(flows["deploy"])["workflow_dispatch"]["inputs"]
    assert inputs["tune"]["type"] == "boolean" and inputs["tune"]["default"] is False
    (train,) = [s for s in steps(flows["deploy"]["jobs"]["train"]) if " train " in s.get("run", "")]
    assert "${{" not in train["run"] and "--tune" not in train["run"]
    contexts = {"inputs": {k: str(v).lower() for k, v in given.items()}}
    assert expressions.render(train["env"]["MLOPS_TUNE"], contexts) == tunes
    etl = [s for s in steps(flows["deploy"]["jobs"]["train"]) if " etl" in s.get("run", "")]
    assert "MLOPS_TUNE" not in etl[0].get("env", {})  # ETL outputs may still be reused


def step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    (found,) = [s for s in steps(job) if s.get("id") == step_id]
    return found


def test_image_digest_flows_through_job_outputs(flows):
    jobs = flows["deploy"]["jobs"]
    build = jobs["build-and-push"]
    assert build["outputs"]["image-digest"] == "${{ steps.image.outputs.digest }}"
    assert build["outputs"]["image-uri"] == "${{ steps.image.outputs.image-uri }}"
    pinned = step(build, "image")
    assert " ".join(pinned["run"].split()) == (
        '.venv/bin/mlops image --repository-uri "$ECR_REPOSITORY_URI" --tag "$GITHUB_SHA" '
        '--digest "$DIGEST"'
    )
    order = [s.get("id") for s in steps(build)]
    assert order.index("existing") < order.index("build") < order.index("image")
    pushed = step(build, "build")
    assert pushed["with"]["tags"].endswith(":${{ github.sha }}")
    assert pushed["with"]["provenance"] is False
    train = jobs["train"]
    assert train["env"]["MLOPS_IMAGE_URI"] == "${{ needs.build-and-push.outputs.image-uri }}"
    assert any('--image-uri "$MLOPS_IMAGE_URI"' in s for s in runs(train))


def _contexts(existing: str, built: str) -> dict[str, Any]:
    outputs = {"existing": {"outputs": {"digest": existing}}, "build": {"outputs": {}}}
    if built:
        outputs["build"]["outputs"]["digest"] = built
    return {"steps": outputs, "vars": {}, "github": {"sha": "a" * 40}, "env": {}}


def test_an_image_already_in_ecr_skips_login_buildx_and_the_push(flows):
    """ECR tags are immutable and the tag is the sha: a re-run must not push the same tag again."""
    build = flows["deploy"]["jobs"]["build-and-push"]
    existing = step(build, "existing")
    assert " ".join(existing["run"].split()) == (
        '.venv/bin/mlops image --repository-uri "$ECR_REPOSITORY_URI" --tag "$GITHUB_SHA"'
    )
    assert "if" not in existing
    guarded = [
        *uses(build, "aws-actions/amazon-ecr-login"),
        *uses(build, "docker/setup-buildx-action"),
        step(build, "build"),
    ]
    assert len(guarded) == 3
    old, new = _contexts(f"sha256:{'b' * 64}", ""), _contexts("", "")
    for guarded_step in guarded:
        assert expressions.condition(guarded_step["if"], old, "success") is False
        assert expressions.condition(guarded_step["if"], new, "success") is True
    assert "if" not in step(build, "image")  # the pinned image is always looked up


@pytest.mark.parametrize(
    ("existing", "built", "expected"),
    [
        (f"sha256:{'b' * 64}", "", f"sha256:{'b' * 64}"),  # a re-run: the image pushed before
        ("", f"sha256:{'c' * 64}", f"sha256:{'c' * 64}"),  # a new image: the push's digest
    ],
)
def test_the_pinned_digest_falls_back_from_the_existing_image_to_the_build(
    flows, existing, built, expected
):
    pinned = step(flows["deploy"]["jobs"]["build-and-push"], "image")
    digest = pinned["env"]["DIGEST"]
    assert digest == "${{ steps.existing.outputs.digest || steps.build.outputs.digest }}"
    assert expressions.render(digest, _contexts(existing, built)) == expected
    assert pinned["env"]["ECR_REPOSITORY_URI"] == "${{ vars.ECR_REPOSITORY_URI }}"


# --- variables: what the workflows read is what the bootstrap sets --------------------------------


class RecordingGh:
    """A gh that records each variable written: {base: {name: value}}."""

    def __init__(self) -> None:
        self.variables: dict[str, dict[str, str]] = {}

    def __call__(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        if args[:2] == ["api", "--method"] and args[2] in ("POST", "PATCH") and "-f" in args:
            base = (
                args[3].removesuffix("/" + args[5].removeprefix("name=")).removesuffix("/variables")
            )
            name, value = args[5].removeprefix("name="), args[7].removeprefix("value=")
            self.variables.setdefault(base, {})[name] = value
        return "required_reviewers" if args[1:2] == ["repos/o/r/environments/prod"] else ""


@pytest.fixture(scope="module")
def configured() -> dict[str, dict[str, str]]:
    """Which bootstrap output each variable holds, per scope ("repo", "dev", "prod"), as
    github_setup.configure writes them (every output's value is its own name)."""
    gh = RecordingGh()
    outputs = {key: key for key in bootstrap.OUTPUTS}
    monitor_roles = {f"{s.upper()}_MONITOR_ROLE_ARN": "MonitorWorkflowRoleArn" for s in STAGES}
    github_setup.configure(gh, "o/r", [], outputs, "REGION", "STACK", monitor_roles)
    scopes = {"repo": gh.variables.pop("repos/o/r/actions")}
    for stage in STAGES:
        scopes[stage] = gh.variables.pop(f"repos/o/r/environments/{stage}")
    assert not gh.variables
    return scopes


def job_stages(job: dict[str, Any]) -> tuple[str, ...]:
    """The environments a job can run in: none, one, or any stage (an expression)."""
    name = env_name(job)
    if name is None:
        return ()
    return (name,) if name in STAGES else STAGES


def test_every_variable_the_workflows_read_is_set_by_the_bootstrap(configured):
    every = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in WORKFLOWS.glob("*.yml")}
    assert set(NAMES) <= set(every)
    read = 0
    for name, flow in every.items():
        outside = {k: v for k, v in flow.items() if k != "jobs"}
        for var in VAR.findall(yaml.safe_dump(outside)):
            read += 1
            assert var in configured["repo"], f"{name}: vars.{var} outside a job"
        for job_id, job in flow["jobs"].items():
            # repository variables, and those of the job's environment (in each it may run in)
            per_stage = [set(configured[stage]) for stage in job_stages(job)]
            in_env = set.intersection(*per_stage) if per_stage else set()
            visible = set(configured["repo"]) | in_env
            for var in VAR.findall(yaml.safe_dump(job)):
                read += 1
                assert var in visible, f"{name}.{job_id}: vars.{var} is set by no bootstrap step"
    assert read >= 10


def test_the_image_tag_carries_the_registry_host(flows, configured, boot_template):
    """A tag without the registry host goes to Docker Hub: the build tags the repository URI."""
    pushed = step(flows["deploy"]["jobs"]["build-and-push"], "build")
    tag = pushed["with"]["tags"]
    match = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}:\$\{\{ github\.sha \}\}", tag)
    assert match, tag
    assert configured["repo"][match[1]] == "EcrRepositoryUri"
    uri = boot_template["Outputs"]["EcrRepositoryUri"]["Value"]
    assert uri == {"Fn::GetAtt": ["EcrRepository", "RepositoryUri"]}  # host/name, not the name
    existing = step(flows["deploy"]["jobs"]["build-and-push"], "existing")
    assert existing["env"]["ECR_REPOSITORY_URI"] == f"${{{{ vars.{match[1]} }}}}"


def _stack_role_jobs(flows):
    for where, job in all_jobs(flows):
        if any(re.search(r"mlops (deploy|rollback) ", s) for s in runs(job)):
            yield where, job


def test_deploy_jobs_give_cloudformation_the_stage_stack_role(flows, configured):
    found = dict(_stack_role_jobs(flows))
    assert set(found) == {"deploy.deploy-dev", "deploy.deploy-prod", "rollback.rollback"}
    for where, job in found.items():
        match = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", job["env"]["MLOPS_STACK_ROLE_ARN"])
        assert match, where
        for stage in job_stages(job):
            assert configured[stage][match[1]] == f"{stage.title()}StackRoleArn", where


# --- role sessions ----------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader reading CloudFormation's short tags (!Ref, !Sub, !GetAtt...) as the long form."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def template(name: str) -> dict[str, Any]:
    found = yaml.load((ROOT / "cloudformation" / name).read_text(), Loader=CfnLoader)
    if name == "github-access.yaml":  # the GitHub roles: those and monitor.yaml's workflow role
        live = yaml.load((ROOT / "cloudformation" / "monitor.yaml").read_text(), Loader=CfnLoader)
        for key in ("Resources", "Outputs"):
            found[key] |= {f"Monitor{k}": v for k, v in live[key].items()}
        found["Outputs"]["MonitorWorkflowRoleArn"] = found["Outputs"].pop(
            "MonitorMonitorWorkflowRoleArn"
        )
        found["Outputs"]["MonitorWorkflowRoleArn"]["Value"]["Fn::GetAtt"][0] = "MonitorWorkflowRole"
    return found


@pytest.fixture(scope="module")
def boot_template() -> dict[str, Any]:
    return template("bootstrap.yaml")


def _assumed_roles(job: dict[str, Any], configured, access) -> list[tuple[int, dict[str, Any]]]:
    """(role-duration-seconds, the role's properties) for each role a job's credential steps can
    assume: vars.X -> the bootstrap output configure sets it to -> that output's GetAtt role."""
    found = []
    for creds in uses(job, AWS_ACTION):
        match = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", creds["with"]["role-to-assume"])
        assert match, creds["with"]["role-to-assume"]
        scopes = [configured[s] for s in job_stages(job)] or [configured["repo"]]
        for scope in scopes:
            output = scope.get(match[1]) or configured["repo"][match[1]]
            value = access["Outputs"][output]["Value"]
            assert value["Fn::GetAtt"][1] == "Arn", output
            role = access["Resources"][value["Fn::GetAtt"][0]]
            found.append((creds["with"]["role-duration-seconds"], role["Properties"]))
    return found


def test_role_sessions_fit_the_roles_they_assume(flows, configured):
    """STS refuses a DurationSeconds above the role's MaxSessionDuration (default 3600)."""
    access = template("github-access.yaml")
    checked = 0
    for where, job in all_jobs(flows):
        for duration, role in _assumed_roles(job, configured, access):
            checked += 1
            assert 900 <= duration <= role.get("MaxSessionDuration", 3600), where
    assert checked >= 6  # build, train, deploy-dev, deploy-prod, rollback, teardown (x2 stages)


def test_deploy_sessions_outlast_a_blue_green_update(flows, configured):
    """The CLI waits on the stack for up to the update's MaximumExecutionTimeout: the session that
    waits must last longer (the stack itself acts as its service role)."""
    access, endpoint = template("github-access.yaml"), template("endpoint.yaml")
    timeout = endpoint["Parameters"]["MaximumExecutionTimeoutInSeconds"]["Default"]
    margin = 15 * 60  # the change set, the wait for InService and the tests after it
    jobs = dict(_stack_role_jobs(flows))
    assert jobs
    for where, job in jobs.items():
        for duration, _ in _assumed_roles(job, configured, access):
            assert duration >= timeout + margin, where


def test_model_package_arn_flows_through_job_outputs(flows):
    jobs = flows["deploy"]["jobs"]
    assert jobs["train"]["outputs"]["model-package-arn"] == (
        "${{ steps.register.outputs.model-package-arn }}"
    )
    assert any(s.get("id") == "register" for s in steps(jobs["train"]))
    for job_id in ("deploy-dev", "deploy-prod"):
        job = jobs[job_id]
        assert job["env"]["MLOPS_MODEL_PACKAGE_ARN"] == (
            "${{ needs.train.outputs.model-package-arn }}"
        )
        cli = [s for s in runs(job) if s.startswith(".venv/bin/mlops")]
        assert cli and all('--model-package-arn "$MLOPS_MODEL_PACKAGE_ARN"' in s for s in cli)


UPSERT = (
    '.venv/bin/mlops inference upsert --stage prod --model-package-arn "$MLOPS_MODEL_PACKAGE_ARN"'
)
PROMOTE = '.venv/bin/mlops promote --model-package-arn "$MLOPS_MODEL_PACKAGE_ARN"'


def test_prod_points_batch_inference_at_the_promoted_package_after_promoting(flows, configured):
    """The prod pipeline must score with the very package prod now serves: the train job's
    output, passed as is (without it upsert looks up what the endpoint stack serves)."""
    job = flows["deploy"]["jobs"]["deploy-prod"]
    scripts = runs(job)
    assert scripts.count(UPSERT) == 1
    assert scripts.index(PROMOTE) < scripts.index("make inference-venv") < scripts.index(UPSERT)
    assert job["env"]["MLOPS_MODEL_PACKAGE_ARN"] == "${{ needs.train.outputs.model-package-arn }}"
    (upsert,) = [s for s in steps(job) if " ".join(s.get("run", "").split()) == UPSERT]
    assert set(upsert) == {"name", "run"}  # no if:, continue-on-error: or env: of its own
    args = cli._parser().parse_args(shlex.split(UPSERT)[1:])  # what the CLI makes of it
    assert (args.command, args.action, args.stage) == ("inference", "upsert", env_name(job))
    assert args.model_package_arn == "$MLOPS_MODEL_PACKAGE_ARN"  # the job's env, not a lookup
    # it runs as the prod deploy role, the one the bootstrap's prod inference stack grants
    assert "prod" in config.load(ROOT / "pipeline.toml").inference["stages"]
    (creds,) = uses(job, AWS_ACTION)
    assert steps(job).index(creds) < steps(job).index(upsert)
    var = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", creds["with"]["role-to-assume"])[1]
    roles = template("inference.yaml")["Resources"]["UpsertPolicy"]["Properties"]["Roles"]
    branches = roles[0]["Fn::Select"][1]["Fn::Split"][1]["Fn::If"]
    assert branches[0] == "IsProd"
    assert branches[1] == {
        "Fn::ImportValue": {"Fn::Sub": f"${{AccessStackName}}-{configured['prod'][var]}"}
    }


def test_deploys_queue_per_environment_and_are_never_cancelled(flows):
    groups = {}
    for where, job in all_jobs(flows):
        if env_name(job):
            concurrency = job["concurrency"]
            assert concurrency["cancel-in-progress"] is False, where
            groups[where] = concurrency["group"]
    assert groups["deploy.deploy-dev"] == "deploy-dev"
    assert groups["deploy.deploy-prod"] == groups["rollback.rollback"] == "deploy-prod"
    assert groups["teardown.teardown"] == "deploy-${{ inputs.stage }}"


def test_role_sessions_outlast_the_work(flows):
    def duration(job: dict[str, Any]) -> int:
        return uses(job, AWS_ACTION)[0]["with"]["role-duration-seconds"]

    jobs = flows["deploy"]["jobs"]
    assert duration(jobs["train"]) >= 3 * 3600
    assert duration(jobs["train"]) >= jobs["train"]["timeout-minutes"] * 60
    for job_id in ("build-and-push", "deploy-dev", "deploy-prod"):
        assert duration(jobs[job_id]) >= 3600


# --- rollback and teardown -----------------------------------------------------------------------


def test_rollback_is_manual_prod_and_defaults_to_the_previous_package(flows):
    rollback = flows["rollback"]
    inputs = triggers(rollback)["workflow_dispatch"]["inputs"]
    assert set(triggers(rollback)) == {"workflow_dispatch"}
    assert inputs["model-package-arn"]["required"] is False
    assert inputs["model-package-arn"]["default"] == ""
    job = rollback["jobs"]["rollback"]
    assert env_name(job) == "prod"
    assert job["env"]["MLOPS_MODEL_PACKAGE_ARN"] == "${{ inputs.model-package-arn }}"
    assert ".venv/bin/mlops rollback --stage prod" in runs(job)


def test_teardown_needs_explicit_confirmation_for_prod(flows):
    teardown = flows["teardown"]
    inputs = triggers(teardown)["workflow_dispatch"]["inputs"]
    assert inputs["stage"]["default"] == "dev"
    assert inputs["stage"]["options"] == ["dev", "prod"]
    job = teardown["jobs"]["teardown"]
    assert job["if"] == "inputs.stage == 'dev' || inputs.confirm == 'prod'"
    assert env_name(job) == "${{ inputs.stage }}"
    assert runs(job)[-1] == '.venv/bin/mlops teardown --stage "$STAGE" --confirm "$CONFIRM"'


# --- dependabot and the lint stack ---------------------------------------------------------------


def test_dependabot_updates_actions_and_pip_weekly_grouped():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    for update in updates.values():
        assert update["schedule"]["interval"] == "weekly"
        assert update["groups"]


def test_pre_commit_uses_only_local_hooks_from_the_lint_venv():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = config["repos"][0]["hooks"]
    for hook in hooks:
        assert hook["language"] == "unsupported", hook["id"]
        assert ".venv-lint/bin/" in hook["entry"], hook["id"]
    ids = {hook["id"] for hook in hooks}
    assert {"ruff-check", "ruff-format", "cfn-lint", "checkov", "actionlint", "zizmor"} <= ids
    assert {"check-workflows-schema", "check-dependabot-schema", "check-yaml"} <= ids
    assert {"check-json", "end-of-file-fixer", "trailing-whitespace"} <= ids
    actionlint = next(h for h in hooks if h["id"] == "actionlint")
    assert "-shellcheck=.venv-lint/bin/shellcheck" in actionlint["entry"]


# --- the system tests' options (tests/system/conftest.py) ---------------------------------------


class FakeParser:
    """Records pytest_addoption's options: {flag: keyword arguments}."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def getgroup(self, *_args: Any, **_kwargs: Any) -> FakeParser:
        return self

    def addoption(self, *flags: str, **kwargs: Any) -> None:
        for flag in flags:
            self.options[flag] = kwargs


def _system_options() -> dict[str, dict[str, Any]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "system_conftest", ROOT / "tests" / "system" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = FakeParser()
    module.pytest_addoption(parser)
    return parser.options


def test_capture_check_waits_minutes_for_asynchronous_delivery():
    """Capture reaches S3 asynchronously, with no documented bound: a minute is not enough."""
    option = _system_options()["--capture-wait-seconds"]
    assert option["type"] is float
    assert option["default"] >= 300
    test = (ROOT / "tests" / "system" / "test_endpoint.py").read_text(encoding="utf-8")
    assert 'getoption("capture_wait_seconds")' in test
    assert "range(60)" not in test  # the old fixed 60 x 1 s


def test_monitor_runs_daily_on_main_without_an_environment_and_reports_to_an_issue(flows):
    flow = flows["monitor"]
    assert set(triggers(flow)) == {"schedule", "workflow_dispatch"}
    (job,) = flow["jobs"].values()
    assert env_name(job) is None  # a reviewed environment would hold every scheduled run
    assert job["permissions"] == {"contents": "read", "id-token": "write", "issues": "write"}
    (step,) = [s for s in steps(job) if "mlops monitor" in s.get("run", "")]
    assert step["run"] == '.venv/bin/mlops monitor --stage prod --since "$SINCE" --issue'
    assert step["env"] == {
        "GH_TOKEN": "${{ github.token }}",
        "SINCE": "${{ inputs.since || '24h' }}",
    }
    live = template("monitor.yaml")
    trust = live["Resources"]["WorkflowRole"]["Properties"]["AssumeRolePolicyDocument"]
    sub = trust["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"
    ]
    assert sub == {"Fn::Sub": "repo:${GitHubOrg}/${GitHubRepo}:ref:refs/heads/main"}
