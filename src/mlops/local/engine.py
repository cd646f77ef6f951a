"""The local runtime's container engine (``MLOPS_CONTAINER_ENGINE=local``): Docker's part of a
processing request run on the runner (mlops.container), done against the local AWS.

``pull`` asks ECR what ``docker pull`` asks, as the caller and through the local AWS's IAM:
GetAuthorizationToken, BatchGetImage for the manifest, then GetDownloadUrlForLayer for each layer
(Amazon ECR API Reference, GetDownloadUrlForLayer: "called once per image layer" when an image is
pulled). So a role without ecr:GetDownloadUrlForLayer fails here as its first real pull would.
``run`` is the model package's entrypoint from this checkout ([model] local_entrypoint, as the
local compute runs every job's container), with the container paths in the arguments mapped to
the staged folders; the runtime's injected faults apply as they do to processing jobs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from mlops.aws import call
from mlops.container import TIMEOUT, Mount
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.local.compute import shift_labels
from mlops.local.moto_gaps.ecr import layer_digests

RUNTIME_FAULTS: Any = (
    None  # the in-process LocalRuntime's Faults while it runs (mlops.local.runtime)
)
IMAGE = re.compile(
    r"^[^/]+/(?P<repo>[a-z0-9._/-]+?)(?:@(?P<digest>sha256:[0-9a-f]{64})|:(?P<tag>[\w.-]+))$"
)
MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
]


class LocalEngine:
    def pull(self, ctx: Context, image: str) -> None:
        match = IMAGE.match(image)
        if not match:
            raise PipelineError(f"docker pull failed: invalid reference format: {image}")
        ecr, repo = ctx.client("ecr"), match["repo"]
        call("get an ECR login token", ecr.get_authorization_token)
        wanted = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"]}
        found = call(
            f"docker pull {image}",
            ecr.batch_get_image,
            repositoryName=repo,
            imageIds=[wanted],
            acceptedMediaTypes=MEDIA_TYPES,
        )
        if not found.get("images"):
            raise PipelineError(f"docker pull failed: {image}: manifest unknown")
        for digest in sorted(layer_digests(found["images"][0]["imageManifest"])):
            call(
                f"docker pull {image}: layer {digest[:19]}",
                ecr.get_download_url_for_layer,
                repositoryName=repo,
                layerDigest=digest,
            )

    def run(
        self, ctx: Context, image: str, args: list[str], mounts: list[Mount], env: dict[str, str]
    ) -> tuple[int, str]:
        entrypoint = list(ctx.config.local_entrypoint)
        if entrypoint and entrypoint[0] == "python":
            entrypoint[0] = sys.executable
        if RUNTIME_FAULTS is not None:
            _inject(mounts)
        argv = [*entrypoint, *(_host_path(a, mounts) for a in args)]
        child = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no role
        proc = subprocess.run(
            argv,
            env={**child, **env},
            cwd=ctx.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr


def _host_path(arg: str, mounts: list[Mount]) -> str:
    """A container path under a mount's LocalPath, as the folder staged for it."""
    for mount in sorted(mounts, key=lambda m: -len(m.container)):
        base = mount.container.rstrip("/")
        if arg == base or arg.startswith(base + "/"):
            return str(mount.host) + arg[len(base) :]
    return arg


def _inject(mounts: list[Mount]) -> None:
    """The evaluation fault empties the test input; the gate fault shifts its labels."""
    for mount in mounts:
        if mount.name != "test":
            continue
        if RUNTIME_FAULTS.take("evaluation"):
            for path in mount.host.rglob("*"):
                if path.is_file():
                    path.unlink()
        if RUNTIME_FAULTS.take("gate"):
            shift_labels(mount.host)
