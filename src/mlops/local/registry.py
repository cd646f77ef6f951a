"""A stand-in for ``docker build`` + ``docker push`` to ECR in the build job, under the job's role.

No image is built here (the container test builds the real one); what a push does to ECR is done
for real: the tag must name the account's registry (a tag without a host goes to Docker Hub and is
denied), the layer and PutImage actions are authorised as the caller, and an immutable
repository refuses a tag it already holds (ImageTagAlreadyExistsException, "Image tag
mutability", Amazon ECR User Guide). Each build has a new digest, as real builds do.
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
from mlops.local.iam import actions as act
from mlops.local.iam.enforce import Denied

TAG = re.compile(r"^(?P<host>[^/]+\.[^/]+|[^/]+:\d+)/(?P<repo>[a-z0-9._/-]+):(?P<tag>[\w.-]+)$")
PUSH_ACTIONS = (
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
)


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

    def digest_of_code(self) -> str:
        """What the image holds: the model package's code (a new build nonce on top)."""
        digest = hashlib.sha256()
        for path in sorted(self.source.rglob("*.py")) + sorted(self.source.rglob("*.json")):
            digest.update(path.read_bytes())
        digest.update(str(time.time_ns()).encode())
        return f"sha256:{digest.hexdigest()}"

    def push(self, creds: dict[str, str], tag: str) -> str:
        """Push one tag; the pushed digest, or "" after printing why it was refused."""
        match = TAG.match(tag)
        host = match["host"] if match else ""
        expected = f"{self.rt.account}.dkr.ecr.{self.rt.region}.amazonaws.com"
        if not match or host != expected:
            where = host or "docker.io"
            log(
                f"error: buildx failed with: ERROR: failed to push {tag}: denied: requested access "
                f"to the resource is denied ({where}: a tag without the account's registry host "
                f"{expected} does not go to ECR; set ECR_REPOSITORY_URI to EcrRepositoryUri)"
            )
            return ""
        try:
            principal = self.rt.enforcer.principal(
                {"Authorization": f"Credential={creds.get('AWS_ACCESS_KEY_ID', 'local')}/"}
            )
            if principal is not None:
                arn = f"arn:aws:ecr:{self.rt.region}:{self.rt.account}:repository/{match['repo']}"
                self.rt.enforcer.check(
                    principal, [act.Access(f"ecr:{name}", arn, {}) for name in PUSH_ACTIONS]
                )
        except Denied as exc:
            log(f"error: buildx failed with: ERROR: failed to push {tag}: {exc}")
            return ""
        built = self.digest_of_code()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": built,
                },
                # ECR's (and moto's) digest follows the layers: one per build, as real builds differ
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 1,
                        "digest": built,
                    }
                ],
            }
        )
        try:
            pushed = self._client(creds).put_image(
                repositoryName=match["repo"],
                imageManifest=manifest,
                imageTag=match["tag"],
                imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
            )
        except ClientError as exc:
            error = exc.response["Error"]
            log(
                f"error: buildx failed with: ERROR: failed to push {tag}: "
                f"{error.get('Code')}: {error.get('Message')}"
            )
            return ""
        digest = pushed["image"]["imageId"]["imageDigest"]
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
