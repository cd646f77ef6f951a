"""Run a processing-job request on this machine: the job's image (by digest), container
arguments, inputs and outputs, with no instance to start.

A reused model's evaluation runs here ([evaluate] reused_model_on = "runner"): the model was
evaluated by a processing job when it was trained, and this run only checks what its new image
predicts with it, which takes seconds once the image is pulled, against minutes of instance
start-up for a processing job. The contract is the processing job's: each input is staged from S3
into a folder mounted at its LocalPath, the image runs with the job's ContainerArguments and
Environment, and each output folder goes to its S3Uri encrypted with the job's KMS key.

The engine is Docker, as on GitHub's runners. The local runtime (``MLOPS_CONTAINER_ENGINE=local``,
which ``mlops local up`` and ``make pipeline`` set) has its own in mlops.local.engine: the pull is
ECR's API as the caller, the container is the model package's entrypoint.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlops.aws import call, download_prefix, log, split_s3, upload_file
from mlops.context import Context
from mlops.errors import PipelineError

TIMEOUT = 3600
TAIL = 40  # lines of the container's output shown when it fails


@dataclass(frozen=True)
class Mount:
    name: str  # the InputName or OutputName
    host: Path
    container: str  # the LocalPath


class Engine(Protocol):
    def pull(self, ctx: Context, image: str) -> None: ...

    def run(
        self, ctx: Context, image: str, args: list[str], mounts: list[Mount], env: dict[str, str]
    ) -> tuple[int, str]: ...


class Docker:
    """The runner's Docker: log in to ECR with this job's role, pull by digest, run."""

    def pull(self, ctx: Context, image: str) -> None:
        token = call("get an ECR login token", ctx.client("ecr").get_authorization_token)
        user, password = (
            base64.b64decode(token["authorizationData"][0]["authorizationToken"])
            .decode()
            .split(":", 1)
        )
        registry = image.split("/", 1)[0]
        _docker(["login", "--username", user, "--password-stdin", registry], stdin=password)
        _docker(["pull", "--quiet", image])

    def run(
        self, ctx: Context, image: str, args: list[str], mounts: list[Mount], env: dict[str, str]
    ) -> tuple[int, str]:
        argv = ["docker", "run", "--rm", f"--user={os.getuid()}:{os.getgid()}"]
        for mount in mounts:
            argv += ["--volume", f"{mount.host}:{mount.container}"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        proc = _subprocess([*argv, image, *args])
        return proc.returncode, proc.stdout + proc.stderr


def _subprocess(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise PipelineError(
            f"{argv[0]} is not installed on this machine",
            hint="GitHub's ubuntu runners have Docker; or set [evaluate] reused_model_on = "
            '"processing-job" in pipeline.toml',
        ) from None
    except subprocess.TimeoutExpired:
        raise PipelineError(f"`{' '.join(argv[:3])}` took over {TIMEOUT} s") from None


def _docker(args: list[str], stdin: str | None = None) -> None:
    proc = _subprocess(["docker", *args], stdin)
    if proc.returncode:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        raise PipelineError(f"docker {args[0]} failed: {lines[-1]}")


def engine() -> Engine:
    """Docker, or the local runtime's engine when the environment points at the local AWS."""
    if os.environ.get("MLOPS_CONTAINER_ENGINE") == "local":
        from mlops.local.engine import LocalEngine

        return LocalEngine()
    return Docker()


def run_processing(ctx: Context, request: dict[str, Any], runner: Engine | None = None) -> None:
    """Run a CreateProcessingJob request here; PipelineError when the container fails."""
    runner = runner or engine()
    name, spec = request["ProcessingJobName"], request["AppSpecification"]
    s3 = ctx.client("s3")
    with tempfile.TemporaryDirectory(prefix="mlops-job-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        inputs = [
            Mount(i["InputName"], root / f"input-{n}", i["S3Input"]["LocalPath"])
            for n, i in enumerate(request.get("ProcessingInputs", []))
        ]
        for mount, item in zip(inputs, request.get("ProcessingInputs", []), strict=True):
            download_prefix(s3, item["S3Input"]["S3Uri"], mount.host)
        config = request.get("ProcessingOutputConfig", {})
        outputs = [
            (Mount(o["OutputName"], root / f"output-{n}", o["S3Output"]["LocalPath"]),
             o["S3Output"]["S3Uri"])
            for n, o in enumerate(config.get("Outputs", []))
        ]  # fmt: skip
        for mount, _uri in outputs:
            mount.host.mkdir(parents=True)
        runner.pull(ctx, spec["ImageUri"])
        code, output = runner.run(
            ctx,
            spec["ImageUri"],
            [str(a) for a in spec.get("ContainerArguments", [])],
            inputs + [m for m, _ in outputs],
            dict(request.get("Environment", {})),
        )
        if code:
            for line in output.strip().splitlines()[-TAIL:]:
                log(f"  | {line}")
            last = (output.strip().splitlines() or [f"exit code {code}"])[-1]
            raise PipelineError(
                f"{name} failed on this runner (exit {code}): {last[:500]}",
                hint="the container's output is above",
            )
        for mount, uri in outputs:
            _upload(s3, mount.host, uri, config.get("KmsKeyId", ""))


def _upload(s3: Any, folder: Path, uri: str, kms_key: str) -> None:
    """Every file under ``folder`` to ``uri``, as a processing job's output (SSE-KMS with the
    job's key when it names one)."""
    bucket, prefix = split_s3(uri)
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(folder).as_posix()]))
        upload_file(s3, path, f"s3://{bucket}/{key}", extra)
