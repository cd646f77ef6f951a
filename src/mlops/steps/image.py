"""Image: find this commit's image in ECR, and name the image a run uses by its digest.

ECR tags are immutable here and the tag is the commit sha, so a re-run of the build job must reuse
the image pushed before instead of pushing the same tag again (ImageTagAlreadyExistsException,
"Image tag mutability", Amazon ECR User Guide).
"""

from __future__ import annotations

import re

from mlops import github
from mlops.aws import call, log
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError

REPOSITORY_URI = re.compile(
    r"^(?P<host>\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?|127\.0\.0\.1:\d+)/"
    r"(?P<name>[a-z0-9][a-z0-9._/-]*)$"
)
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def repository(uri: str) -> str:
    """The repository name of a full ECR repository URI; a bare name is refused."""
    match = REPOSITORY_URI.match(uri or "")
    if not match:
        raise ConfigError(
            f"{uri!r} is not an ECR repository URI (<account>.dkr.ecr.<region>.amazonaws.com/"
            "<name>): a tag without the registry host goes to Docker Hub; set the repository "
            "variable ECR_REPOSITORY_URI to the bootstrap output EcrRepositoryUri"
        )
    return match["name"]


def find(ctx: Context, uri: str, tag: str) -> str:
    """The digest of ``uri:tag`` if it was pushed already, else ""."""
    ecr = ctx.client("ecr")
    try:
        found = ecr.describe_images(repositoryName=repository(uri), imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return ""
    except ecr.exceptions.ClientError as exc:
        raise PipelineError(f"look up {uri}:{tag}: {exc}") from None
    details = found.get("imageDetails", [])
    return details[0]["imageDigest"] if details else ""


def run(ctx: Context, uri: str, tag: str, digest: str = "") -> dict[str, str]:
    """Without ``digest``: report an existing image. With it: check it is in ECR and pin it."""
    if not digest:
        digest = find(ctx, uri, tag)
        log(f"image: {uri}:{tag} " + (f"exists ({digest}): reusing it" if digest else "is new"))
        github.set_output("digest", digest)
        return {"digest": digest}
    if not DIGEST.match(digest):
        raise ConfigError(f"{digest!r} is not an image digest (sha256:<64 hex>)")
    call(
        f"check {uri}@{digest} in ECR",
        ctx.client("ecr").describe_images,
        repositoryName=repository(uri),
        imageIds=[{"imageDigest": digest}],
    )
    image_uri = f"{uri}@{digest}"
    log(f"image: {image_uri}")
    github.set_output("digest", digest)
    github.set_output("image-uri", image_uri)
    ctx.manifest.update("image", {"uri": image_uri, "digest": digest, "tag": tag})
    return {"digest": digest, "image-uri": image_uri}
