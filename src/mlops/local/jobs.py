"""Run a workflow's jobs locally, each with only what it gets on GitHub.

The jobs, their order (``needs``), steps, ``if`` conditions, ``env`` and ``outputs`` are read from
the workflow file itself, so the local run cannot drift from deploy.yml. Each job gets the
repository and environment variables the bootstrap's GitHub setup set, the outputs of the jobs it
needs, its own workspace, and credentials from AssumeRoleWithWebIdentity with a token carrying the
claims GitHub gives that job. ``run`` steps call the ``mlops`` CLI in-process; the few actions
used have stand-ins here (an action without one is an error).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops.aws import log
from mlops.errors import ConfigError, PipelineError
from mlops.local import expressions as expr
from mlops.local import oidc

Approve = Callable[[str], bool]


class JobFailed(PipelineError):
    def __init__(self, job: str, step: str, code: int) -> None:
        super().__init__(f"job {job} failed at step '{step}' (exit {code}); later jobs did not run")
        self.exit_code = code or 1


class NotApproved(PipelineError):
    """The environment's reviewers did not approve the job."""


@dataclass
class Job:
    name: str
    spec: dict[str, Any]
    workspace: Path
    env: dict[str, str] = field(default_factory=dict)
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    status: str = "success"
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    credentials: dict[str, str] = field(default_factory=dict)  # from configure-aws-credentials
    failed_code: int = 0

    @property
    def environment(self) -> str:
        env = self.spec.get("environment", "")
        return env.get("name", "") if isinstance(env, dict) else str(env or "")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def order(jobs: Mapping[str, Any]) -> list[str]:
    """Jobs in ``needs`` order (GitHub runs independent jobs in parallel; here one at a time)."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise ConfigError(f"workflow: jobs {' -> '.join((*path, name))} form a cycle")
        needs = jobs[name].get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            visit(need, (*path, name))
        done.append(name)

    for name in jobs:
        visit(name, ())
    return done


class Runner:
    """One workflow run: ``event`` push/workflow_dispatch on ``ref``, variables from ``github``."""

    def __init__(
        self,
        runtime: Any,
        workflow: Path,
        github: Any,
        approve: Approve,
        *,
        sha: str,
        ref: str = "refs/heads/main",
        event: str = "push",
        inputs: dict[str, str] | None = None,
    ) -> None:
        self.rt, self.workflow, self.github, self.approve = runtime, workflow, github, approve
        self.sha, self.ref, self.event, self.inputs = sha, ref, event, inputs or {}
        self.spec = load(workflow)
        self.jobs: dict[str, Job] = {}
        self.folder = runtime.run_dir / "jobs"

    def contexts(self, job: Job) -> dict[str, Any]:
        needs = self.spec["jobs"][job.name].get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        return {
            "vars": self.github.vars_for(job.environment),
            "github": {
                "sha": self.sha,
                "ref": self.ref,
                "event_name": self.event,
                "repository": self.github.repository,
                "workspace": str(job.workspace),
            },
            "inputs": self.inputs,
            "needs": {
                n: {"outputs": self.jobs[n].outputs, "result": self.jobs[n].status}
                for n in needs
                if n in self.jobs
            },
            "steps": job.steps,
            "env": job.env,
            "secrets": {},
        }

    def run(
        self, only: list[str] | None = None, done: dict[str, Job] | None = None
    ) -> dict[str, Job]:
        """Every job in order; or ``only`` some, given the jobs they need ``done`` already."""
        self.jobs.update(done or {})
        for name in order(self.spec["jobs"]):
            if only is not None and name not in only:
                continue
            spec = self.spec["jobs"][name]
            workspace, attempt = self.folder / name, 1
            while workspace.exists():  # a re-run gets a fresh workspace, as on GitHub
                attempt += 1
                workspace = self.folder / f"{name}-{attempt}"
            job = Job(name, spec, workspace)
            self.jobs[name] = job
            if "uses" in spec:  # a reusable workflow: ci.yml is `make test`, run apart
                job.status = "skipped"
                log(f"\n== job {name}: {spec['uses']} is not run here (make test runs it)")
                continue
            self.run_job(job)
        return self.jobs

    def run_job(self, job: Job) -> None:
        start = time.monotonic()
        log(
            f"\n== job {job.name}"
            + (f" (environment {job.environment})" if job.environment else "")
        )
        if job.environment == "prod" and not self.approve(f"job {job.name} (environment prod)"):
            job.status = "skipped"
            raise NotApproved(
                f"environment prod: job {job.name} was not approved; dev keeps serving"
            )
        job.workspace.mkdir(parents=True, exist_ok=True)
        base = {**self.spec.get("env", {}), **job.spec.get("env", {})}
        job.env = expr.render_map(base, self.contexts(job))
        failed_step = ""
        for index, step in enumerate(job.spec.get("steps", [])):
            name = step.get("name") or step.get("uses") or step.get("run", "")[:40]
            if not expr.condition(step.get("if"), self.contexts(job), job.status):
                continue
            code = self.run_step(job, step, index)
            if code:
                job.status, failed_step = "failure", failed_step or name
                job.failed_code = code
        job.outputs = expr.render_map(job.spec.get("outputs", {}), self.contexts(job))
        job.seconds = round(time.monotonic() - start, 2)
        if job.status == "failure":
            raise JobFailed(job.name, failed_step, job.failed_code or 1)

    def run_step(self, job: Job, step: dict[str, Any], index: int) -> int:
        contexts = self.contexts(job)
        env = {
            **job.env,
            **expr.render_map(step.get("env", {}), contexts),
        }
        outputs: dict[str, str] = {}
        if "uses" in step:
            action = step["uses"].split("@", 1)[0]
            handler = STAND_INS.get(action)
            if handler is None:
                raise ConfigError(
                    f"local: no stand-in for uses: {action} (job {job.name}): "
                    "add one in src/mlops/local/jobs.py"
                )
            inputs = expr.render_map(step.get("with", {}), contexts)
            code = handler(self, job, inputs, outputs)
        else:
            code = self.run_command(job, expr.render(step["run"], contexts), env, outputs, index)
        if step.get("id"):
            job.steps[step["id"]] = {
                "outputs": outputs,
                "outcome": "failure" if code else "success",
            }
        return code

    def run_command(
        self, job: Job, command: str, env: dict[str, str], outputs: dict[str, str], index: int
    ) -> int:
        argv = shlex.split(command.strip())
        if argv == ["make", "venv"]:
            return 0  # the CLI is installed already: this process is it
        if argv == ["make", "inference-venv"]:  # for real: a no-op when it is up to date
            outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # not `make pipeline`'s jobserver
            env = {k: v for k, v in os.environ.items() if k not in outer}
            return subprocess.run(argv, cwd=self.rt.root, env=env, check=False).returncode
        if not argv or argv[0] != ".venv/bin/mlops":
            raise ConfigError(
                f"local: job {job.name} runs {command!r}: only `make venv`, "
                "`make inference-venv` and `.venv/bin/mlops ...` steps run locally"
            )
        argv = argv[1:]
        from mlops import cli

        output_file = job.workspace / f"step-{index}.output"
        output_file.write_text("")
        with self.environ(job, env, output_file):
            argv = [os.path.expandvars(a) for a in argv]
            code = cli.main(argv)
        outputs.update(parse_outputs(output_file.read_text()))
        return code

    @contextmanager
    def environ(self, job: Job, env: dict[str, str], output_file: Path) -> Iterator[None]:
        """The step's environment, as the runner sets it; restored afterwards."""
        manifest = job.workspace / env.get("MLOPS_MANIFEST", "run.json")
        values = {
            **env,
            **job.credentials,
            "GITHUB_OUTPUT": str(output_file),
            "GITHUB_STEP_SUMMARY": str(job.workspace / "summary.md"),
            "GITHUB_SHA": self.sha,
            "GITHUB_REF": self.ref,
            "GITHUB_REPOSITORY": self.github.repository,
            "MLOPS_MANIFEST": str(manifest),
        }
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        from mlops import github_setup

        gh, github_setup.run_gh = github_setup.run_gh, self.github  # the runner's gh CLI
        try:
            yield
        finally:
            github_setup.run_gh = gh
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT: ``name=value`` lines and ``name<<DELIM`` blocks."""
    out, lines = {}, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    return out


# --- stand-ins for the actions the workflows use --------------------------------------------
def _nothing(_runner: Runner, _job: Job, _inputs: dict[str, str], _out: dict[str, str]) -> int:
    return 0  # checkout / setup-python / setup-buildx: this machine already is the runner


def _credentials(runner: Runner, job: Job, inputs: dict[str, str], _out: dict[str, str]) -> int:
    """configure-aws-credentials: a GitHub-shaped OIDC token for this job, exchanged at STS."""
    claims = oidc.claims(
        runner.github.repository,
        event=runner.event,
        ref=runner.ref,
        sha=runner.sha,
        environment=job.environment,
        workflow=runner.workflow.name,
    )
    token = runner.rt.tokens.issue(claims)
    sts = runner.rt.anonymous_client("sts")
    try:
        creds = sts.assume_role_with_web_identity(
            RoleArn=inputs.get("role-to-assume", ""),
            RoleSessionName="GitHubActions",
            WebIdentityToken=token,
            DurationSeconds=int(inputs.get("role-duration-seconds") or 3600),
        )["Credentials"]
    except Exception as exc:  # botocore ClientError: AWS's message, as the action prints it
        log(
            "error: configure-aws-credentials: "
            + str(getattr(exc, "response", {}).get("Error", {}).get("Message", exc))
        )
        return 1
    region = inputs.get("aws-region", runner.rt.region)
    job.credentials = {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    log(f"  assumed {inputs.get('role-to-assume')} as {claims['sub']}")
    return 0


def _ecr_login(runner: Runner, job: Job, _inputs: dict[str, str], _out: dict[str, str]) -> int:
    return runner.rt.registry.login(job.credentials)


def _build_push(runner: Runner, job: Job, inputs: dict[str, str], out: dict[str, str]) -> int:
    digest = runner.rt.registry.build_and_push(job.credentials, inputs)
    if not digest:
        return 1
    out.update({"digest": digest, "imageid": digest})
    return 0


def _upload_artifact(runner: Runner, job: Job, inputs: dict[str, str], _out: dict[str, str]) -> int:
    source = job.workspace / inputs.get("path", "")
    target = runner.rt.run_dir / "artifacts" / inputs.get("name", "artifact")
    if source.is_file():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    elif inputs.get("if-no-files-found") == "error":
        return 1
    return 0


STAND_INS: dict[str, Callable[[Runner, Job, dict[str, str], dict[str, str]], int]] = {
    "actions/checkout": _nothing,
    "actions/setup-python": _nothing,
    "docker/setup-buildx-action": _nothing,
    "aws-actions/configure-aws-credentials": _credentials,
    "aws-actions/amazon-ecr-login": _ecr_login,
    "docker/build-push-action": _build_push,
    "actions/upload-artifact": _upload_artifact,
}
