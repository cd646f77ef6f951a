"""ECR's GetDownloadUrlForLayer, which moto (5.2.5) leaves unimplemented.

A pull asks for each layer's URL: "When an image is pulled, the GetDownloadUrlForLayer API is
called once per image layer that is not already cached", and "you can only get URLs for image
layers that are referenced in an image" (Amazon ECR API Reference, GetDownloadUrlForLayer:
https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetDownloadUrlForLayer.html). So a
layer no image of the repository references is LayersNotFoundException, a missing repository is
RepositoryNotFoundException, and IAM authorises ecr:GetDownloadUrlForLayer on the repository
before any of it (the enforcing hooks run first, as for every call).
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr import responses as ecr_responses


class LayersNotFoundException(ServiceException):
    code = "LayersNotFoundException"


def layer_digests(manifest: str) -> set[str]:
    """The layer (and config) digests an image manifest references."""
    try:
        parsed = json.loads(manifest)
    except ValueError:
        return set()
    found = {layer.get("digest", "") for layer in parsed.get("layers", [])}
    found.add(parsed.get("config", {}).get("digest", ""))
    return found - {""}


def _get_download_url_for_layer(_original: Any) -> Any:
    def get_download_url_for_layer(self: Any) -> ActionResult:
        name, digest = self._get_param("repositoryName"), self._get_param("layerDigest")
        repo = self.ecr_backend._get_repository(name, self._get_param("registryId"))
        if not any(digest in layer_digests(i.image_manifest) for i in repo.images):
            raise LayersNotFoundException(
                f"The layer with digest '{digest}' is not referenced by any image in the "
                f"repository with name '{name}'"
            )
        bucket = f"prod-{self.region}-starport-layer-bucket"  # where ECR's URLs point
        url = f"https://{bucket}.s3.{self.region}.amazonaws.com/{repo.registry_id}/{name}/{digest}"
        return ActionResult({"downloadUrl": url, "layerDigest": digest})

    return get_download_url_for_layer


def install(wrap: Any) -> None:
    wrap(ecr_responses.ECRResponse, "get_download_url_for_layer", _get_download_url_for_layer)
