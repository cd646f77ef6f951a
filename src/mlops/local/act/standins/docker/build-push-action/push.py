"""The build-push stand-in's one step: ``docker build`` when a daemon answers, then the push as
the ECR API sees one, made with the job's credentials (those configure-aws-credentials exported):
:func:`mlops.local.registry.push_image`, the push of the in-process runner's stand-in too (the
config blob as a layer, then PutImage, each action authorised as the job's role). A tag whose host
is not the account's registry (a tag without a host goes to Docker Hub) is refused as buildx
refuses it. It runs on ``$MLOPS_ACT_PYTHON``, the virtualenv that runs ``make workflows``.
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


def tags(text: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,\n]", text) if t.strip()]


def built_config(context: str, tag: str) -> tuple[bytes, str]:
    """The image's config blob and id: ``docker build``'s, or (no daemon) one made from the
    build context's files and the time, so that each build differs as real builds do."""
    if _docker_answers():
        subprocess.run(["docker", "build", "-t", tag, context], check=True)
        out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .}}", tag],
                             capture_output=True, check=True)  # fmt: skip
        return out.stdout.strip(), json.loads(out.stdout)["Id"]
    print("build-push stand-in: no Docker daemon, so no image is built (make container-test "
          "builds and runs it); the pushed record stands for this context", flush=True)  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted(_files(context)):
        digest.update(path.encode())
        with open(path, "rb") as handle:  # noqa: PTH123
            digest.update(handle.read())
    blob = json.dumps({"context": digest.hexdigest(), "built": time.time_ns()}).encode()
    return blob, "sha256:" + hashlib.sha256(blob).hexdigest()


def _docker_answers() -> bool:
    if os.environ.get("MLOPS_ACT_DOCKER_BUILD", "1") == "0" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def _files(context: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", context], capture_output=True, check=False)
    names = [n for n in listed.stdout.decode().split("\0") if n]
    return [n for n in names if os.path.isfile(n)]  # noqa: PTH113


def main() -> int:
    import boto3

    from mlops.local.registry import PushRefused, push_image

    wanted = tags(os.environ.get("INPUT_TAGS", ""))
    if not wanted:
        raise SystemExit("::error::buildx failed with: ERROR: tag is needed when pushing")
    config, image_id = built_config(os.environ.get("INPUT_CONTEXT") or ".", wanted[0])
    digest = ""
    if os.environ.get("INPUT_PUSH", "false") == "true":
        session = boto3.Session()
        account = session.client("sts").get_caller_identity()["Account"]
        registry = f"{account}.dkr.ecr.{session.region_name}.amazonaws.com"
        for tag in wanted:
            try:
                digest = push_image(session.client("ecr"), registry, tag, config)
            except PushRefused as exc:
                raise SystemExit(f"::error::buildx failed with: ERROR: failed to push {tag}: "
                                 f"{exc}") from None  # fmt: skip
            print(f"pushed {tag} ({digest})", flush=True)
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:  # noqa: PTH123
        out.write(f"digest={digest}\nimageid={image_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
