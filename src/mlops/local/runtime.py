"""The local runtime: moto on 127.0.0.1 keeps the records, the compute runs here for real.

Entering it points boto3 at the moto server (``AWS_ENDPOINT_URL``) and at the local endpoint router
(``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``); the step code then runs unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from mlops.aws import log, new_session
from mlops.local import engine, moto_gaps, oidc
from mlops.local.compute import Compute
from mlops.local.endpoints import Endpoints
from mlops.local.faults import Faults
from mlops.local.github_api import GitHubApi
from mlops.local.github_stub import LocalGitHub
from mlops.local.iam import actions as iam_actions
from mlops.local.iam import hooks as iam_hooks
from mlops.local.iam.enforce import Denied, Enforcer
from mlops.local.registry import LocalRegistry

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def _stamp() -> str:
    """A run folder's name: when, and which process."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 1000:03d}"


class LocalRuntime:
    def __init__(
        self,
        root: Path,
        runs_dir: Path,
        faults: set[str] | None = None,
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        """``ports``: moto's and the endpoint router's (0: a free one, as a run uses)."""
        self.root = root
        self.ports = ports
        env_faults = {f for f in os.environ.get("MLOPS_LOCAL_FAULTS", "").split(",") if f}
        self.faults = Faults(set(faults or ()) | env_faults)
        self.run_dir = (runs_dir / _stamp()).resolve()
        self.runs_dir = runs_dir
        self.entrypoint = [sys.executable, "-m"]  # completed with the model package in bootstrap
        self._saved_env: dict[str, str | None] = {}

    def new_run(self, runs_dir: Path) -> Path:
        """A fresh run folder (and timings) for another run in a long-lived runtime."""
        self.runs_dir, self.run_dir = runs_dir, (runs_dir / _stamp()).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.extra_timings = {}
        return self.run_dir

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LocalRuntime:
        self.run_dir.mkdir(parents=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-local-")
        self.work_dir = Path(self._tmp.name)
        self.child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        moto_api_backend.reset()  # every local run starts from an empty account
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.ports[0], verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="local-compute")
        self.region, self.account = REGION, ACCOUNT
        self.tokens = oidc.TokenService()
        self.enforcer = Enforcer(ACCOUNT, REGION)
        self._role_sessions: dict[tuple[str, str], boto3.Session] = {}
        # HTTPS hosts an API destination may call, each mapped to its local stand-in
        self.github_api = GitHubApi(LocalGitHub().repository).start()
        self.api_hosts = {"api.github.com": self.github_api.url}
        self.extra_timings: dict[str, float] = {}  # what ran after the jobs (batch scoring)
        moto_gaps.install(self)
        iam_hooks.install(self.enforcer, self.tokens, moto_gaps._wrap)
        self.endpoints = Endpoints(self, self.ports[1])
        self.compute = Compute(self)
        self._set_env(
            {
                "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.endpoints.url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": None,
                "AWS_PROFILE": None,
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "MLOPS_CONTAINER_ENGINE": "local",  # a runner's `docker run` (mlops.container)
            }
        )
        engine.RUNTIME_FAULTS = self.faults
        # the administrator's (the bootstrap's) credentials, fixed: job steps set their own in env
        self.session = new_session(
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto's, not a secret
            region_name=REGION,
        )
        log(f"local: moto on http://{host}:{port}, endpoints on {self.endpoints.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.endpoints.stop_all()
            self.executor.shutdown(wait=True, cancel_futures=True)
        finally:
            moto_gaps.uninstall()
            engine.RUNTIME_FAULTS = None
            self.github_api.stop()
            self.server.stop()
            moto_api_backend.reset()
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._tmp.cleanup()

    def _set_env(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def submit(self, fn: Any) -> Future:
        """Run compute off the request thread, so callers see InProgress, then the outcome."""
        return self.executor.submit(fn)

    # --- who acts -------------------------------------------------------------------------------
    def role_session(self, role: str, service: str) -> boto3.Session:
        """A session as ``role`` for compute that ``service`` runs (its trust policy checked)."""
        arn = role if role.startswith("arn:") else f"arn:aws:iam::{ACCOUNT}:role/{role}"
        key = (arn, service)
        if key not in self._role_sessions:
            self.enforcer.service_principal(arn, service)  # Denied: the job fails with why
            creds = self.session.client("sts").assume_role(
                RoleArn=arn, RoleSessionName=service, DurationSeconds=3600
            )["Credentials"]
            self._role_sessions[key] = new_session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=REGION,
            )
        return self._role_sessions[key]

    def authorize_invoke(self, headers: Any, endpoint: str) -> str:
        """sagemaker:InvokeEndpoint for the router: "" when allowed, else AWS's message."""
        try:
            principal = self.enforcer.principal(headers)
            if principal is not None:
                found = iam_actions.accesses(
                    "sagemaker-runtime",
                    "InvokeEndpoint",
                    {"EndpointName": endpoint},
                    region=REGION,
                    account=ACCOUNT,
                )
                self.enforcer.check(principal, found)
        except Denied as exc:
            return str(exc)
        return ""

    def anonymous_client(self, service: str) -> Any:
        """An unsigned client, as configure-aws-credentials calls AssumeRoleWithWebIdentity."""
        return boto3.client(
            service, region_name=REGION, config=BotoConfig(signature_version=UNSIGNED)
        )

    # --- what AWS would already have ------------------------------------------------------------
    def bootstrap(
        self,
        ctx: Any,
        *,
        push: bool = True,
        github: LocalGitHub | None = None,
        retrain: bool = False,
    ) -> LocalGitHub:
        """scripts/bootstrap into the local AWS (the same code: both stacks, the GitHub setup
        into a local stand-in for GitHub), and for step-level tests an image in ECR. ``retrain``:
        also retrain.yaml, with the local GitHub API's token (``--retrain-token-env``)."""
        from mlops import bootstrap as bootstrap_mod

        cfg = ctx.config
        self.entrypoint = list(cfg.local_entrypoint)
        if self.entrypoint and self.entrypoint[0] == "python":
            self.entrypoint[0] = sys.executable
        log("\n== bootstrap (local): scripts/bootstrap's code, admin credentials")
        github = github or LocalGitHub()
        args = bootstrap_mod.parse_args(
            [
                "--region",
                REGION,
                "--repo",
                github.repository,
                "--config",
                str(ctx.root / "pipeline.toml"),
                "--templates",
                str(ctx.root / "cloudformation"),
                *(["--retrain-token-env", "MLOPS_LOCAL_GITHUB_TOKEN"] if retrain else []),
            ]
        )
        self.github_api.repository = github.repository
        self._set_env({"MLOPS_LOCAL_GITHUB_TOKEN": self.github_api.token if retrain else None})
        clients = {
            name: self.session.client(name)
            for name in ("sts", "iam", "cloudformation", "secretsmanager")
        }
        bootstrap_mod.bootstrap(args, clients, github)
        os.environ["MLOPS_BOOTSTRAP_STACK"] = cfg.bootstrap_stack
        self._saved_env.setdefault("MLOPS_BOOTSTRAP_STACK", None)
        self.registry = LocalRegistry(self, ctx.root / "src" / cfg.model_package)
        self.github = github  # what the bootstrap set: variables and environments
        if push:
            uri = github.vars_for()["ECR_REPOSITORY_URI"]
            self.image_uri = f"{uri}@{self.registry.push({}, f'{uri}:{ctx.run_id}')}"
            log(f"local: image {self.image_uri}")
        return github

    # --- keep what the run made -----------------------------------------------------------------
    def export(self, ctx: Any) -> None:
        """Everything in S3 to the run folder, laid out like the buckets; the summary beside it."""
        self.endpoints.flush_all()
        s3 = ctx.client("s3")
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    target = self.run_dir / "s3" / name / obj["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(name, obj["Key"], str(target))
        output = ctx.manifest.get("evaluate.output")
        if output:
            bucket_key = output.removeprefix("s3://")
            shutil.copytree(
                self.run_dir / "s3" / bucket_key, self.run_dir / "evaluation", dirs_exist_ok=True
            )
        ctx.manifest.path = self.run_dir / "manifest.json"
        ctx.manifest.save()
        from mlops.steps.run import summary

        (self.run_dir / "summary.md").write_text(summary(ctx, ctx.manifest.get("timings", {})))
        latest = self.runs_dir / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(self.run_dir.name)
        log(f"\nrun folder: {self.run_dir} (also {latest})")

    def merge_jobs(self, ctx: Any, runner: Any) -> dict[str, float]:
        """Each job's manifest merged into the run's; returns the seconds of each job that ran."""
        import json

        timings = {}
        for name, job in runner.jobs.items():
            path = job.workspace / "run.json"
            if path.exists():
                for section, values in json.loads(path.read_text()).items():
                    if isinstance(values, dict) and section != "timings":
                        ctx.manifest.update(section, values)
            if job.status != "skipped":
                timings[f"job {name}"] = job.seconds
        return timings

    def export_jobs(self, ctx: Any, runner: Any) -> None:
        """After a workflow run: the jobs' manifests merged, the summary, the IAM report (per
        role: decisions, actions used, grants never used), then the run folder."""
        from mlops import github
        from mlops.steps.run import summary

        timings = {**self.merge_jobs(ctx, runner), **self.extra_timings}
        ctx.manifest.update("timings", timings)
        ctx.manifest.update(
            "jobs", {n: {"status": j.status, "outputs": j.outputs} for n, j in runner.jobs.items()}
        )
        report = self.enforcer.report()
        (self.run_dir / "iam.txt").write_text("\n".join(report) + "\n")
        log("\n" + "\n".join(report))
        text = summary(ctx, timings)
        log("\n" + text)
        github.summary(text)
        self.export(ctx)
