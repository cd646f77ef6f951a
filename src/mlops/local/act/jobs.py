"""deploy.yml, rollback.yml and teardown.yml under act against the long-lived local AWS
(``mlops local up``), one job per act run (:mod:`.derive` says why), in ``needs`` order.

Each job gets what GitHub would give it: its environment's variables (the state folder's
``vars.<environment>``, else ``vars``), an OIDC request token whose ID tokens carry its claims
(``sub`` ``repo:OWNER/REPO:environment:prod`` in deploy-prod), signed with the key the local STS
trusts, and the endpoints of the local AWS, never its administrator keys: every AWS call a step
makes is made with the role configure-aws-credentials assumed, under the trust policy and the
role's permissions. A job with the prod environment starts only when approved (``--approve``, or
a yes at the terminal), as its required reviewers would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, PipelineError
from mlops.local import control, oidc
from mlops.local.act import command, derive
from mlops.local.act.artifact_stub import ArtifactStub
from mlops.local.act.token_service import Job, JobTokenService

Record = dict[str, Any]  # {"result": "success"|"failure"|"skipped", "outputs": {...}}
WORKFLOW_FILES = ("deploy.yml", "rollback.yml", "teardown.yml")  # the ones that call AWS


@dataclass(frozen=True)
class LocalAws:
    """The running local AWS, as its state folder describes it."""

    state: Path
    data: Mapping[str, Any]

    @classmethod
    def find(cls, state: Path) -> LocalAws:
        data = control.running(state)
        if data is None:
            raise ConfigError(f"no local AWS is running with state {state}: start it with "
                              "`make local-up` (mlops local up)")  # fmt: skip
        return cls(state, data)

    def var_file(self, environment: str) -> Path:
        """GitHub's ``vars`` for a job: the environment's values over the repository's."""
        path = self.state / (f"{control.VARS_FILE}.{environment}" if environment else
                             control.VARS_FILE)  # fmt: skip
        if not path.is_file():
            raise ConfigError(f"the bootstrap made no GitHub environment {environment!r} "
                              f"({path} is missing): run `make local-down local-up`")  # fmt: skip
        return path

    def tokens(self) -> oidc.TokenService:
        key = self.state / control.OIDC_KEY
        if not key.is_file():  # a server started before it saved its key
            raise ConfigError(f"{key} is missing: restart the local AWS (make local-down local-up)")
        return oidc.TokenService.load(key)

    def job_env(self) -> dict[str, str]:
        """Where AWS is; no credentials (configure-aws-credentials gets them, as on GitHub)."""
        return {
            "AWS_ENDPOINT_URL": self.data["moto_url"],
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.data["runtime_url"],
            "MLOPS_CONTAINER_ENGINE": "local",  # a reused model is evaluated by the local engine
        }


@dataclass
class WorkflowRun:
    """One workflow's jobs, each its own act run; ``records`` holds each job's result and
    outputs, which the next job's replays hand on."""

    root: Path
    work: Path
    aws: LocalAws
    tokens: JobTokenService
    artifacts: ArtifactStub
    event: str
    payload: dict[str, Any]
    approve: Callable[[str], bool]
    sha: str  # the commit the run is for (GITHUB_SHA; the tokens' sha claim)
    act: str = "act"
    act_args: list[str] = field(default_factory=list)  # --local-repository and the like
    env: dict[str, str] = field(default_factory=dict)  # every job's (the tool cache, ...)
    records: dict[str, Record] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, workflow: Path, replayed: Mapping[str, str] | None = None) -> dict[str, Record]:
        """Every job in ``needs`` order; a job named in ``replayed`` (job -> why) is not run and
        counts as a success with no outputs. Raises PipelineError at the first failed job."""
        from mlops.local.jobs import order

        replayed = replayed or {}
        data = derive.load(workflow)
        inputs = {k: str(v) for k, v in (self.payload.get("inputs") or {}).items()}
        for job in order(data["jobs"]):
            if job in replayed:
                _say(f"{workflow.name} {job}: not run here, {replayed[job]}")
                self.records[job] = {"result": "success", "outputs": {}}
                continue
            environment = derive.environment(data["jobs"][job], inputs)
            if environment == "prod" and not self.approve(f"{workflow.name} {job}"):
                raise PipelineError(f"{workflow.name} {job} waits for the prod environment's "
                                    "reviewers: run with --approve")  # fmt: skip
            if self.run_job(workflow, data, job, environment)["result"] == "failure":
                raise PipelineError(f"{workflow.name} job {job} failed (its steps' log is above)")
        return self.records

    def claims(self, workflow: Path, job: str, environment: str) -> Job:
        return Job(
            job=job,
            repository=str(self.aws.data.get("repository") or "example-org/abalone-mlops"),
            event=self.event,
            sha=self.sha,
            environment=environment,
            workflow=workflow.name,
            run_id=str(self.payload.get("run_id", "1")),
        )

    def run_job(self, workflow: Path, data: dict[str, Any], job: str, environment: str) -> Record:
        stem = f"{workflow.stem}.{job}"
        path = derive.write(derive.derived(data, job, self.records), self.work / f"{stem}.yml")
        record_file = self.work / f"{stem}.record.json"
        record_file.unlink(missing_ok=True)
        event_file = self.work / f"{stem}.event.json"
        event_file.write_text(json.dumps(self.payload), encoding="utf-8")
        self.tokens.register(self.claims(workflow, job, environment))
        env = {
            **self.env,
            **self.aws.job_env(),
            **self.tokens.job_env(job),
            **self.artifacts.job_env(str(self.payload.get("run_id", "1")), job),
            derive.RECORD_ENV: str(record_file),
        }
        argv = command.command(
            event=self.event,
            workflow=path,
            job="",
            event_path=event_file,
            var_file=self.aws.var_file(environment),
            cache_dir=self.work / "cache",
            env=env,
            secrets=(),
            act=self.act,
        )
        process = {**act_process_env(), **command.process_env(env, {})}
        started = time.monotonic()
        _say(f"{workflow.name} {job}: starting ({environment or 'no environment'})")
        with command.job_folders_removed():
            code = subprocess.run([*argv, *self.act_args], cwd=self.root, env=process).returncode
        record = derive.read_record(record_file)
        seconds = self.timings[f"{workflow.name} {job}"] = time.monotonic() - started
        _say(f"{workflow.name} {job}: {record['result']} in {seconds:.0f}s (act exited {code})")
        self.records[job] = record
        return record


def push_event(repository: str, sha: str, run_id: str) -> dict[str, Any]:
    """The push event's payload fields the workflows and act read (a push to main)."""
    return {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "run_id": run_id,
            "repository": _repo(repository), "head_commit": {"id": sha}}  # fmt: skip


def dispatch_event(repository: str, inputs: Mapping[str, str], run_id: str) -> dict[str, Any]:
    """A workflow_dispatch on main with ``inputs`` (act reads them from the payload)."""
    return {"ref": "refs/heads/main", "inputs": dict(inputs), "run_id": run_id,
            "repository": _repo(repository)}  # fmt: skip


def _repo(repository: str) -> dict[str, Any]:
    owner, name = repository.split("/", 1)
    return {"full_name": repository, "name": name, "owner": {"login": owner},
            "default_branch": "main"}  # fmt: skip


def dispatches(deployed: Mapping[str, Record]) -> list[tuple[str, dict[str, str]]]:
    """After deploy.yml: redeploy to prod the package it promoted (a first run has no earlier
    one that served prod; without deploy.yml in the run, the workflow's default: the previous
    approved package), then delete the dev stack."""
    package = (deployed.get("train") or {}).get("outputs", {}).get("model-package-arn", "")
    return [
        ("rollback.yml", {"model-package-arn": package}),
        ("teardown.yml", {"stage": "dev", "confirm": ""}),
    ]


def run_against_local_aws(
    root: Path,
    work: Path,
    aws: LocalAws,
    approve: Callable[[str], bool],
    which: tuple[str, ...],
    replayed: Mapping[str, str],
    **act: Any,
) -> dict[str, float]:
    """deploy.yml (as a push), then the dispatches, each of ``which`` (file names); ``act``
    holds WorkflowRun's act, act_args and env. The time each job took."""
    repository = str(aws.data.get("repository") or "example-org/abalone-mlops")
    sha = command.head_sha(root)
    timings: dict[str, float] = {}
    with ArtifactStub(work / "artifacts") as artifacts, JobTokenService(aws.tokens()) as tokens:

        def run(name: str, event: str, payload: dict[str, Any], **kw: Any) -> dict[str, Record]:
            job_run = WorkflowRun(root, work, aws, tokens, artifacts, event, payload, approve,
                                  sha, **act)  # fmt: skip
            try:
                return job_run.run(root / ".github" / "workflows" / name, **kw)
            finally:
                timings.update(job_run.timings)

        deployed: dict[str, Record] = {}
        if "deploy.yml" in which:
            deployed = run(
                "deploy.yml", "push", push_event(repository, sha, "1"), replayed=replayed
            )
        for run_id, (name, inputs) in enumerate(dispatches(deployed), start=2):
            if name in which:
                run(name, "workflow_dispatch", dispatch_event(repository, inputs, str(run_id)))
    return timings


def act_process_env() -> dict[str, str]:
    """act's own environment: this one without AWS credentials, so that no step inherits the
    local AWS's administrator keys (a shell that ran ``eval "$(make local-up)"`` holds them)."""
    drop = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _say(text: str) -> None:
    print(f"workflows: {text}", file=sys.stderr, flush=True)
