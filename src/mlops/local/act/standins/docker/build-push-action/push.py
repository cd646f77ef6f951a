"""The build-push stand-in's one step: ``docker build`` when a daemon answers, then the push as
the ECR API sees one, made with the job's credentials (those configure-aws-credentials exported).

A real push to ECR authenticates with the registry token and uploads layers the registry checks
against ``ecr:BatchCheckLayerAvailability``, ``ecr:InitiateLayerUpload``, ``ecr:UploadLayerPart``,
``ecr:CompleteLayerUpload`` and ``ecr:PutImage`` ("Amazon ECR repository policies" and "Pushing an
image", Amazon ECR User Guide). Here the layer check and PutImage go to the local ECR as the
job's role, so a role without them is refused as a push would be. A tag whose host is not the
account's registry (a tag without a host goes to Docker Hub) is refused as buildx refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

TAG = re.compile(r"^(?P<host>[^/]+)/(?P<repo>[a-z0-9._/-]+):(?P<tag>[\w.-]+)$")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def tags(text: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,\n]", text) if t.strip()]


def built_config(context: str, tag: str) -> str:
    """The image's config digest: ``docker build``'s image id, or (no daemon) one made from the
    build context's files and the time, so that each build differs as real builds do."""
    if _docker_answers():
        subprocess.run(["docker", "build", "-t", tag, context], check=True)
        out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip()
    print("build-push stand-in: no Docker daemon, so no image is built (make container-test "
          "builds and runs it); the pushed record stands for this context", flush=True)  # fmt: skip
    digest = hashlib.sha256(str(time.time_ns()).encode())
    for path in sorted(p for p in _files(context)):
        digest.update(path.encode())
        with open(path, "rb") as handle:  # noqa: PTH123
            digest.update(handle.read())
    return f"sha256:{digest.hexdigest()}"


def _docker_answers() -> bool:
    if os.environ.get("MLOPS_ACT_DOCKER_BUILD", "1") == "0" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _files(context: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", context], capture_output=True, check=False)
    names = [n for n in listed.stdout.decode().split("\0") if n]
    return [n for n in names if os.path.isfile(n)]  # noqa: PTH113


def manifest(config: str) -> str:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 1, "digest": config}],
    })  # fmt: skip


def push(ecr: object, registry: str, tag: str, body: str) -> str:
    """One tag to the local ECR; its digest, or an error naming what refused it."""
    from botocore.exceptions import ClientError

    match = TAG.match(tag)
    if not match or match["host"] != registry:
        host = match["host"] if match else "docker.io"
        raise SystemExit(f"::error::buildx failed with: ERROR: failed to push {tag}: denied: "
                         f"requested access to the resource is denied ({host} is not the "
                         f"account's registry {registry}: set ECR_REPOSITORY_URI to the "
                         "bootstrap's EcrRepositoryUri)")  # fmt: skip
    config = json.loads(body)["config"]["digest"]
    try:
        ecr.batch_check_layer_availability(repositoryName=match["repo"], layerDigests=[config])
        pushed = ecr.put_image(
            repositoryName=match["repo"],
            imageManifest=body,
            imageTag=match["tag"],
            imageManifestMediaType=MANIFEST_TYPE,
        )
    except ClientError as exc:
        error = exc.response["Error"]
        raise SystemExit(f"::error::buildx failed with: ERROR: failed to push {tag}: "
                         f"{error.get('Code')}: {error.get('Message')}") from None  # fmt: skip
    return pushed["image"]["imageId"]["imageDigest"]


def main() -> int:
    import boto3

    wanted = tags(os.environ.get("INPUT_TAGS", ""))
    if not wanted:
        raise SystemExit("::error::buildx failed with: ERROR: tag is needed when pushing")
    config = built_config(os.environ.get("INPUT_CONTEXT") or ".", wanted[0])
    digest = ""
    if os.environ.get("INPUT_PUSH", "false") == "true":
        session = boto3.Session()
        account = session.client("sts").get_caller_identity()["Account"]
        registry = f"{account}.dkr.ecr.{session.region_name}.amazonaws.com"
        body = manifest(config)
        for tag in wanted:
            digest = push(session.client("ecr"), registry, tag, body)
            print(f"pushed {tag} ({digest})", flush=True)
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:  # noqa: PTH123
        out.write(f"digest={digest}\nimageid={config}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
