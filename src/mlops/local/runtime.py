"""The local runtime: moto on 127.0.0.1 keeps the records, the compute runs here for real.

Entering it points boto3 at the moto server (``AWS_ENDPOINT_URL``) and at the local endpoint router
(``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``); the step code then runs unchanged.
"""

from __future__ import annotations

import hashlib
import json
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
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from mlops import stack
from mlops.aws import log
from mlops.errors import ConfigError
from mlops.local import moto_gaps
from mlops.local.compute import Compute
from mlops.local.endpoints import Endpoints

REGION = "us-east-1"
FAULTS = (
    "glue",
    "training",
    "evaluation",
    "stack-create",
    "stack-update",
    "system-test",
    "prod-deploy",
)


class Faults:
    """Fault injection for tests and demos: MLOPS_LOCAL_FAULTS=training,... or runtime.faults."""

    def __init__(self, names: set[str]) -> None:
        unknown = names - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown fault {sorted(unknown)[0]!r}: use {', '.join(FAULTS)}")
        self.names = names

    def take(self, name: str) -> bool:
        """True once for an injected fault (the next matching job fails)."""
        if name in self.names:
            self.names.discard(name)
            return True
        return False

    def active(self, name: str) -> bool:
        return name in self.names

    def stack_failure(self, _resource: Any) -> str:
        for name in ("stack-create", "stack-update"):
            if self.take(name):
                return (
                    f"injected {name} fault: Could not find model data: the endpoint failed "
                    "to start (see the endpoint's CloudWatch logs)"
                )
        return ""

    def endpoint_failure(self, endpoint: str) -> str:
        if "-prod" in endpoint and self.take("prod-deploy"):
            return (
                "injected prod-deploy fault: The primary container for production variant "
                "AllTraffic did not pass the ping health check"
            )
        return ""


class LocalRuntime:
    def __init__(self, root: Path, runs_dir: Path, faults: set[str] | None = None) -> None:
        self.root = root
        env_faults = {f for f in os.environ.get("MLOPS_LOCAL_FAULTS", "").split(",") if f}
        self.faults = Faults(set(faults or ()) | env_faults)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 1000:03d}"
        self.run_dir = (runs_dir / stamp).resolve()
        self.runs_dir = runs_dir
        self.entrypoint = [sys.executable, "-m"]  # completed with the model package in bootstrap
        self._saved_env: dict[str, str | None] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LocalRuntime:
        self.run_dir.mkdir(parents=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-local-")
        self.work_dir = Path(self._tmp.name)
        self.child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        moto_api_backend.reset()  # every local run starts from an empty account
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="local-compute")
        moto_gaps.install(self)
        self.endpoints = Endpoints(self)
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
            }
        )
        self.session = boto3.Session(region_name=REGION)
        log(f"local: moto on http://{host}:{port}, endpoints on {self.endpoints.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.endpoints.stop_all()
            self.executor.shutdown(wait=True, cancel_futures=True)
        finally:
            moto_gaps.uninstall()
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

    # --- what AWS would already have ------------------------------------------------------------
    def bootstrap(self, ctx: Any) -> None:
        """Deploy bootstrap.yaml into moto (as scripts/bootstrap does on AWS) and push the image."""
        cfg = ctx.config
        self.entrypoint = list(cfg.local_entrypoint)
        if self.entrypoint and self.entrypoint[0] == "python":
            self.entrypoint[0] = sys.executable
        os.environ["MLOPS_BOOTSTRAP_STACK"] = cfg.bootstrap_stack
        self._saved_env.setdefault("MLOPS_BOOTSTRAP_STACK", None)
        log("\n== bootstrap (local)")
        outputs = stack.deploy(
            ctx.client("cloudformation"),
            cfg.bootstrap_stack,
            ctx.root / "cloudformation" / "bootstrap.yaml",
            {"ProjectName": cfg.project, "ModelPackageGroupName": f"{cfg.project}-models"},
            region=REGION,
            capabilities=("CAPABILITY_NAMED_IAM",),
        )
        self.image_uri = self.push_image(
            ctx, outputs["EcrRepositoryName"], outputs["EcrRepositoryUri"]
        )
        log(f"local: image {self.image_uri}")

    def push_image(self, ctx: Any, repository: str, uri: str) -> str:
        """Record an image in (moto's) ECR whose digest names the model code it stands for."""
        digest = hashlib.sha256()
        package = ctx.root / "src" / ctx.config.model_package
        for path in sorted(package.rglob("*.py")) + sorted(package.rglob("*.json")):
            digest.update(path.read_bytes())
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "config": {"digest": f"sha256:{digest.hexdigest()}"},
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            }
        )
        ecr = ctx.client("ecr")
        pushed = ecr.put_image(
            repositoryName=repository, imageManifest=manifest, imageTag=ctx.run_id
        )["image"]["imageId"]["imageDigest"]
        return f"{uri}@{pushed}"

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
