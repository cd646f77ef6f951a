"""A stand-in for ``docker build`` + ``docker push`` to ECR in the build job, under the job's role.

No image is built here (the container test builds the real one); what a push does to ECR is done
for real, through the ECR API the registry itself is authorised by: the tag must name the
account's registry (a tag without a host goes to Docker Hub and is denied), the image's config
blob goes up as a layer (BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart,
CompleteLayerUpload) and the manifest with PutImage, each as the caller: the actions "IAM
permissions for pushing an image to an Amazon ECR private repository" lists
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html), so a role without
one is refused as a push would be. An immutable repository refuses a tag it already holds
(ImageTagAlreadyExistsException, "Image tag mutability", Amazon ECR User Guide). Each build has
a new digest, as real builds do.

:func:`push_image` is also the push of ``make workflows``' build-push stand-in
(local/act/standins/docker/build-push-action/push.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.aws import log, new_session

TAG = re.compile(r"^(?P<host>[^/]+\.[^/]+|[^/]+:\d+)/(?P<repo>[a-z0-9._/-]+):(?P<tag>[\w.-]+)$")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class PushRefused(Exception):
    """What buildx would print after ``failed to push <tag>:``."""


def image_manifest(config: str) -> str:
    """A single-platform Docker v2 manifest (what SageMaker pulls) with ``config`` as its config
    and only layer: ECR's (and moto's) image digest follows the layers, one per build."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 1, "digest": config}],
    })  # fmt: skip


def upload_blob(ecr: Any, repository: str, blob: bytes) -> str:
    """One blob as docker push sends it (unless ECR holds it already); its digest."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    found = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
    if any(layer.get("layerAvailability") == "AVAILABLE" for layer in found.get("layers", [])):
        return digest
    upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    ecr.upload_layer_part(repositoryName=repository, uploadId=upload, partFirstByte=0,
                          partLastByte=len(blob) - 1, layerPartBlob=blob)  # fmt: skip
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest])
    return digest


def push_image(ecr: Any, registry: str, tag: str, config: bytes) -> str:
    """Push ``tag`` (config blob, then manifest) with the caller's ECR client; the image digest.
    PushRefused names what refused it: the tag's host, or ECR's error."""
    match = TAG.match(tag)
    if not match or match["host"] != registry:
        where = match["host"] if match else "docker.io"
        raise PushRefused(
            f"denied: requested access to the resource is denied ({where}: a tag without the "
            f"account's registry host {registry} does not go to ECR; set ECR_REPOSITORY_URI to "
            "EcrRepositoryUri)"
        )
    try:
        digest = upload_blob(ecr, match["repo"], config)
        pushed = ecr.put_image(
            repositoryName=match["repo"],
            imageManifest=image_manifest(digest),
            imageTag=match["tag"],
            imageManifestMediaType=MANIFEST_TYPE,
        )
    except ClientError as exc:
        error = exc.response["Error"]
        raise PushRefused(f"{error.get('Code')}: {error.get('Message')}") from None
    return pushed["image"]["imageId"]["imageDigest"]


class LocalRegistry:
    def __init__(self, runtime: Any, source: Path) -> None:
        self.rt, self.source = runtime, source

    def _client(self, creds: dict[str, str]) -> Any:
        return new_session(
            aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID", "local"),
            aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY", "local"),
            aws_session_token=creds.get("AWS_SESSION_TOKEN"),
            region_name=self.rt.region,
        ).client("ecr")

    def login(self, creds: dict[str, str]) -> int:
        """amazon-ecr-login: GetAuthorizationToken as the job's role."""
        try:
            self._client(creds).get_authorization_token()
        except ClientError as exc:
            log(f"error: amazon-ecr-login: {exc.response['Error'].get('Message', exc)}")
            return 1
        return 0

    def config_of_code(self) -> bytes:
        """What the image holds: the model package's code (a new build nonce on top)."""
        digest = hashlib.sha256()
        for path in sorted(self.source.rglob("*.py")) + sorted(self.source.rglob("*.json")):
            digest.update(path.read_bytes())
        return json.dumps({"code": digest.hexdigest(), "built": time.time_ns()}).encode()

    def push(self, creds: dict[str, str], tag: str) -> str:
        """Push one tag; the pushed digest, or "" after printing why it was refused."""
        registry = f"{self.rt.account}.dkr.ecr.{self.rt.region}.amazonaws.com"
        try:
            digest = push_image(self._client(creds), registry, tag, self.config_of_code())
        except PushRefused as exc:
            log(f"error: buildx failed with: ERROR: failed to push {tag}: {exc}")
            return ""
        log(f"  pushed {tag} ({digest})")
        return digest

    def build_and_push(self, creds: dict[str, str], inputs: dict[str, str]) -> str:
        """docker/build-push-action: every tag of ``tags`` pushed when ``push`` is true."""
        tags = [t.strip() for t in re.split(r"[,\n]", inputs.get("tags", "")) if t.strip()]
        if not tags or inputs.get("push", "false") != "true":
            log("error: build-push-action: nothing to push (tags empty or push not true)")
            return ""
        digest = ""
        for tag in tags:
            digest = self.push(creds, tag)
            if not digest:
                return ""
        return digest
