"""deploy.yml and the dispatches as act runs, one job each (local/act/jobs.py), with act replaced
by a fake that does what the job's configure-aws-credentials step does first: it fetches the ID
token from the loopback token service with the request token it was given, and the claims are
read back with the key the local STS trusts. No act, no AWS."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlops.errors import ConfigError, PipelineError
from mlops.local import control, oidc
from mlops.local.act import derive, jobs

ROOT = Path(__file__).resolve().parents[2]
REAL_RUN = subprocess.run
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/7"
URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "b" * 64
OUTPUTS = {
    "build-and-push": {"image-uri": URI, "image-digest": "sha256:" + "b" * 64},
    "train": {"model-package-arn": ARN},
    "deploy-dev": {"endpoint-name": "mlops-dev"},
    "deploy-prod": {"endpoint-name": "mlops-prod"},
}


@pytest.fixture
def aws(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    for name, role in (("vars", ""), ("vars.dev", "Dev"), ("vars.prod", "Prod")):
        (state / name).write_text(f"AWS_REGION=us-east-1\nDEPLOY_ROLE_ARN={role}\n")
    oidc.TokenService().save(state / control.OIDC_KEY)
    data = {"moto_url": "http://127.0.0.1:1", "runtime_url": "http://127.0.0.1:2",
            "repository": "o/r"}  # fmt: skip
    return jobs.LocalAws(state, data)


class FakeAct:
    """Records each act run: the job, its var file, env, token claims and needs' outputs."""

    def __init__(self, aws: jobs.LocalAws, fail: str = "") -> None:
        self.aws, self.fail, self.runs = aws, fail, []

    def __call__(self, argv, cwd=None, env=None, **kw):
        if argv[0] != "act":
            return REAL_RUN(argv, cwd=cwd, env=env, **kw)  # git rev-parse and the like
        flags = dict(itertools.pairwise(argv))
        envs = dict(v.split("=", 1) for k, v in itertools.pairwise(argv) if k == "--env")
        workflow = derive.load(Path(flags["-W"]))
        job = next(n for n, s in workflow["jobs"].items()
                   if n != derive.RECORD and "(replayed)" not in s.get("name", ""))  # fmt: skip
        url = envs["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=sts.amazonaws.com"
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {envs['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            claims = self.aws.tokens().verify(json.load(reply)["value"])
        replays = {n: s.get("outputs", {}) for n, s in workflow["jobs"].items()
                   if "(replayed)" in s.get("name", "")}  # fmt: skip
        self.runs.append(SimpleNamespace(
            job=job, var_file=Path(flags["--var-file"]).name, env=envs, claims=claims,
            replays=replays, process=env, event=json.loads(Path(flags["-e"]).read_text()),
        ))  # fmt: skip
        result = "failure" if job == self.fail else "success"
        record = {"result": result, "outputs": OUTPUTS.get(job, {}) if result == "success" else {}}
        Path(envs[derive.RECORD_ENV]).write_text(json.dumps(record))
        return subprocess.CompletedProcess(argv, 1 if self.fail == job else 0)


def run(aws, tmp_path, monkeypatch, which=("deploy.yml",), approve=True, fail=""):
    fake = FakeAct(aws, fail)
    monkeypatch.setattr(jobs.subprocess, "run", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never a real act's folders
    asked = []

    def approver(what: str) -> bool:
        asked.append(what)
        return approve

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    try:
        replayed = {"test": "ran as ci.yml"}
        flags = ["--action-offline-mode"]
        jobs.run_against_local_aws(
            ROOT, work, aws, approver, which, replayed, act="act", act_args=flags, env={}
        )
    finally:
        fake.asked = asked
    return fake


def test_deploy_runs_each_job_in_order_with_its_vars_claims_and_needs_outputs(
    aws, tmp_path, monkeypatch
):
    fake = run(aws, tmp_path, monkeypatch)
    assert [r.job for r in fake.runs] == ["build-and-push", "train", "deploy-dev", "deploy-prod"]
    assert [r.var_file for r in fake.runs] == ["vars", "vars", "vars.dev", "vars.prod"]
    assert [r.claims["sub"] for r in fake.runs] == [
        "repo:o/r:ref:refs/heads/main",
        "repo:o/r:ref:refs/heads/main",
        "repo:o/r:environment:dev",
        "repo:o/r:environment:prod",
    ]
    assert all(r.claims["workflow"] == "deploy.yml" for r in fake.runs)
    build, train, dev, prod = fake.runs
    assert train.replays == {"test": {}, "build-and-push": OUTPUTS["build-and-push"]}
    assert dev.replays == {"train": {"model-package-arn": ARN}}
    assert prod.replays == {
        "train": {"model-package-arn": ARN},
        "deploy-dev": OUTPUTS["deploy-dev"],
    }
    assert build.event["ref"] == "refs/heads/main" and build.event["after"] == prod.claims["sha"]
    assert fake.asked == ["deploy.yml deploy-prod"]


def test_a_job_is_given_where_aws_is_but_never_the_local_administrator_keys(
    aws, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    fake = run(aws, tmp_path, monkeypatch)
    for job_run in fake.runs:
        assert job_run.env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
        assert job_run.env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == "http://127.0.0.1:2"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(job_run.env)
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(job_run.process)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "local"  # this process keeps its own


def test_prod_waits_for_approval_and_nothing_runs_there_without_it(aws, tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="deploy-prod waits for the prod environment's "
                       "reviewers: run with --approve"):  # fmt: skip
        run(aws, tmp_path, monkeypatch, approve=False)
    assert [r.job for r in jobs.subprocess.run.runs] == ["build-and-push", "train", "deploy-dev"]


def test_a_failed_job_stops_the_run_before_the_jobs_that_need_it(aws, tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match=r"deploy.yml job train failed"):
        run(aws, tmp_path, monkeypatch, fail="train")
    assert [r.job for r in jobs.subprocess.run.runs] == ["build-and-push", "train"]


def test_rollback_redeploys_what_deploy_promoted_and_teardown_deletes_dev(
    aws, tmp_path, monkeypatch
):
    fake = run(aws, tmp_path, monkeypatch, which=jobs.WORKFLOW_FILES)
    rollback, teardown = fake.runs[-2:]
    assert (rollback.job, teardown.job) == ("rollback", "teardown")
    assert rollback.event["inputs"] == {"model-package-arn": ARN}
    assert teardown.event["inputs"] == {"stage": "dev", "confirm": ""}
    assert (rollback.var_file, teardown.var_file) == ("vars.prod", "vars.dev")
    assert rollback.claims["sub"] == "repo:o/r:environment:prod"
    assert teardown.claims["sub"] == "repo:o/r:environment:dev"
    assert teardown.claims["event_name"] == "workflow_dispatch"
    assert fake.asked == ["deploy.yml deploy-prod", "rollback.yml rollback"]


def test_without_deploy_in_the_run_rollback_takes_the_workflow_s_default(
    aws, tmp_path, monkeypatch
):
    fake = run(aws, tmp_path, monkeypatch, which=("rollback.yml",))
    assert [(r.job, r.event["inputs"]) for r in fake.runs] == [
        ("rollback", {"model-package-arn": ""})
    ]


def test_the_derived_files_are_left_for_a_look(aws, tmp_path, monkeypatch):
    run(aws, tmp_path, monkeypatch)
    written = yaml.safe_load((tmp_path / "work" / "deploy.deploy-dev.yml").read_text())
    assert list(written["jobs"]) == ["train", "deploy-dev", derive.RECORD]


def test_the_vars_of_a_job_are_its_environment_s_or_the_repository_s(aws):
    assert aws.var_file("").name == "vars" and aws.var_file("prod").name == "vars.prod"
    with pytest.raises(ConfigError, match="no GitHub environment 'qa'"):
        aws.var_file("qa")


def test_no_running_local_aws_says_how_to_start_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no local AWS is running .*make local-up"):
        jobs.LocalAws.find(tmp_path)


def test_a_state_without_the_signing_key_says_to_restart(aws):
    (aws.state / control.OIDC_KEY).unlink()
    with pytest.raises(ConfigError, match=r"oidc-key\.pem is missing: restart the local AWS"):
        aws.tokens()
