"""A plain-HTTP container registry on 127.0.0.1, the offline stand-in for ECR's registry endpoint
(Docker takes 127.0.0.0/8 registries as insecure, plain HTTP, by default). It speaks the part of
the OCI Distribution Spec, grown from the Docker Registry HTTP API V2, that ``docker push`` and
``pull`` use (https://github.com/opencontainers/distribution-spec/blob/main/spec.md): ``GET /v2/``;
``HEAD|GET <name>/blobs/<digest>``; blob uploads (``POST``, ``PATCH`` chunks, ``PUT ?digest=``;
monolithic ``POST ?digest=``; ``?mount=`` is 201 if the blob is here); ``PUT|HEAD|GET
<name>/manifests/<tag or digest>``, kept byte-exact once the blobs and child manifests they name
are here. Errors are the spec's JSON, never a 500 for a client's mistake.

Stored under the folder given, so that a restarted server keeps its images: ``blobs/<alg>/<hex>``
(manifests too; shared by all repositories, being content-addressed), ``uploads/``, and each
repository's tags and manifest types in ``repositories/<name>/_index.json``.

Hooks for the local ECR (image records, IAM, tag immutability) refuse with a message:
``authorize(headers)`` every request, ``/v2/`` too since Docker sends credentials only after that
ping's challenge (401 + ``WWW-Authenticate``); ``on_manifest`` each manifest PUT (403 DENIED).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlops.local.act._server import LoopbackServer, Reply, Request

Authorize = Callable[[Mapping[str, str]], str | None]  # headers -> refusal
OnManifest = Callable[[str, str, bytes, str, str], str | None]  # repo, ref, bytes, type, digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_UPLOAD_ID = re.compile(r"[a-f0-9]{32}")
_ROUTES = (  # (kind, path pattern): uploads before blobs, whose pattern would also match them
    ("upload", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<arg>[^/]*)")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<arg>[^/]+)")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<arg>[^/]+)")),
)


@dataclass
class RegistryError(Exception):
    """A client's mistake, answered with the spec's error code instead of a traceback."""

    status: int
    code: str
    message: str
    detail: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def reply(self) -> Reply:
        error = {"code": self.code, "message": self.message, "detail": self.detail}
        return Reply.json(self.status, {"errors": [error]}, **self.headers)


class OciRegistry(LoopbackServer):
    """The registry on 127.0.0.1 (port 0: any free port), storing under ``root``."""

    def __init__(
        self,
        root: Path,
        port: int = 0,
        *,
        on_manifest: OnManifest | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        super().__init__(port)
        self.root = Path(root)
        self.on_manifest, self.authorize = on_manifest, authorize
        for folder in ("blobs", "uploads", "repositories"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def handle(self, request: Request) -> Reply:
        try:
            reply = self._route(request, request.path)
        except RegistryError as error:
            reply = error.reply()
        reply.headers.update(_API_VERSION)
        return reply

    def _route(self, request: Request, path: str) -> Reply:
        if not path.startswith("/v2/"):
            raise RegistryError(404, "UNSUPPORTED", f"not a registry API path: {path}")
        if self.authorize and (message := self.authorize(request.headers)):
            challenge = {"WWW-Authenticate": f'Basic realm="{self.url}"'}
            raise RegistryError(401, "UNAUTHORIZED", message, headers=challenge)
        if path == "/v2/":
            return Reply.json(200, {})
        for kind, pattern in _ROUTES:
            if match := pattern.fullmatch(path):
                return self._dispatch(kind, request, match["name"], match["arg"])
        raise RegistryError(404, "UNSUPPORTED", f"no such endpoint: {path}")

    def _dispatch(self, kind: str, request: Request, name: str, arg: str) -> Reply:
        """To ``_<method>_<kind>``: ``_patch_upload``, ``_head_blob``..."""
        handler = getattr(self, f"_{request.method.lower()}_{kind}", None)
        if handler is None:
            raise RegistryError(405, "UNSUPPORTED", f"{request.method} is not supported on {kind}s")
        if len(name) > 255 or not _NAME.fullmatch(name):
            raise RegistryError(400, "NAME_INVALID", f"invalid name: {name}", {"name": name})
        return handler(request, name, arg)

    # --- blobs --------------------------------------------------------------------------------
    def _blob_path(self, digest: Any) -> Path:
        algorithm, _, encoded = _digest(digest).partition(":")
        return self.root / "blobs" / algorithm / encoded

    def _get_blob(self, _request: Request, _name: str, digest: str) -> Reply:
        path = self._blob_path(digest)
        if not path.is_file():
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob unknown: {digest}", {"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        return Reply(200, path.read_bytes(), headers)

    _head_blob = _get_blob

    def _upload_path(self, upload_id: str) -> Path:
        path = self.root / "uploads" / upload_id
        if not _UPLOAD_ID.fullmatch(upload_id) or not path.is_file():
            detail = {"uuid": upload_id}
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", f"upload unknown: {upload_id}", detail)
        return path

    def _post_upload(self, request: Request, name: str, _arg: str) -> Reply:
        mount = request.query.get("mount")
        if mount and self._blob_path(mount).is_file():
            return _blob_created(name, mount)
        path = self.root / "uploads" / uuid.uuid4().hex
        if "digest" in request.query:
            return self._commit(request, name, path)
        path.touch()
        return _upload_reply(202, name, path, 0)

    def _patch_upload(self, request: Request, name: str, upload_id: str) -> Reply:
        path = self._upload_path(upload_id)
        return _upload_reply(202, name, path, _append(path, request.body))

    def _get_upload(self, _request: Request, name: str, upload_id: str) -> Reply:
        path = self._upload_path(upload_id)
        return _upload_reply(204, name, path, path.stat().st_size)

    def _put_upload(self, request: Request, name: str, upload_id: str) -> Reply:
        return self._commit(request, name, self._upload_path(upload_id))

    def _commit(self, request: Request, name: str, upload: Path) -> Reply:
        """Appends the request's body (the last chunk) and makes the upload the blob it claims."""
        digest = request.query.get("digest", "")
        target = self._blob_path(digest)
        _append(upload, request.body)
        algorithm = target.parent.name
        with upload.open("rb") as content:
            actual = f"{algorithm}:{hashlib.file_digest(content, algorithm).hexdigest()}"
        if actual != digest:
            upload.unlink()
            detail = {"digest": digest, "actual": actual}
            raise RegistryError(400, "DIGEST_INVALID", "the content's digest differs", detail)
        _place(upload, target)
        return _blob_created(name, digest)

    # --- manifests ----------------------------------------------------------------------------
    def _index_path(self, name: str) -> Path:
        return self.root / "repositories" / name / "_index.json"

    def _index(self, name: str) -> dict[str, dict[str, str]]:
        """``tags``: tag -> digest; ``types``: digest -> media type of each manifest here."""
        path = self._index_path(name)
        return json.loads(path.read_text()) if path.is_file() else {"tags": {}, "types": {}}

    def _get_manifest(self, _request: Request, name: str, reference: str) -> Reply:
        index = self._index(name)
        digest = index["tags"].get(reference, reference)
        if digest not in index["types"]:
            detail = {"name": name, "reference": reference}
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {reference}", detail)
        headers = {"Content-Type": index["types"][digest], "Docker-Content-Digest": digest}
        return Reply(200, self._blob_path(digest).read_bytes(), headers)

    _head_manifest = _get_manifest

    def _put_manifest(self, request: Request, name: str, reference: str) -> Reply:
        body, is_digest = request.body, ":" in reference
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if is_digest and reference != digest:
            detail = {"digest": reference, "actual": digest}
            raise RegistryError(400, "DIGEST_INVALID", "the manifest's digest differs", detail)
        if not is_digest and not _TAG.fullmatch(reference):
            raise RegistryError(400, "MANIFEST_INVALID", f"invalid tag: {reference!r}")
        declared, blobs, children = _references(body)
        media_type = request.headers.get("content-type") or declared or OCI_MANIFEST
        with self.lock:  # the hook and the index update as one step: a tag is checked, then set
            index = self._index(name)
            self._require(blobs, children, index)
            hook = self.on_manifest
            if hook and (refusal := hook(name, reference, body, media_type, digest)):
                raise RegistryError(403, "DENIED", refusal, {"name": name, "reference": reference})
            self._write(self._blob_path(digest), body)
            index["types"][digest] = media_type
            if not is_digest:
                index["tags"][reference] = digest
            self._write(self._index_path(name), json.dumps(index).encode())
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        return Reply(201, headers=headers)

    def _require(self, blobs: list[Any], children: list[Any], index: dict[str, Any]) -> None:
        """Every blob a manifest names and every manifest an index names must be here first."""
        missing = [d for d in blobs if not self._blob_path(d).is_file()]
        missing += [d for d in map(_digest, children) if d not in index["types"]]
        if missing:
            detail = {"digests": missing}
            raise RegistryError(400, "MANIFEST_BLOB_UNKNOWN", f"unknown: {missing[0]}", detail)

    def _write(self, target: Path, data: bytes) -> None:
        """Writes whole or not at all: a reader never sees half a file."""
        scratch = self.root / "uploads" / f"{uuid.uuid4().hex}.part"
        scratch.write_bytes(data)
        _place(scratch, target)


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise RegistryError(400, "DIGEST_INVALID", f"not a sha256/sha512 digest: {value!r}")
    return value


def _references(body: bytes) -> tuple[str | None, list[Any], list[Any]]:
    """A manifest's declared media type, the blobs it names and the manifests it names."""
    try:
        manifest = json.loads(body)
        named = [manifest["config"]] if "config" in manifest else []
        blobs = [d["digest"] for d in [*named, *manifest.get("layers", [])]]
        children = [d["digest"] for d in manifest.get("manifests", [])]
        declared = manifest.get("mediaType")
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise RegistryError(400, "MANIFEST_INVALID", f"not a manifest: {error!r}") from None
    return declared if isinstance(declared, str) else None, blobs, children


def _append(path: Path, chunk: bytes) -> int:
    with path.open("ab") as upload:
        upload.write(chunk)
    return path.stat().st_size


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)


def _upload_reply(status: int, name: str, upload: Path, size: int) -> Reply:
    """Where the upload goes on, and what it holds: ``Range`` is inclusive (``0-0`` when empty)."""
    headers = {
        "Location": f"/v2/{name}/blobs/uploads/{upload.name}",
        "Docker-Upload-UUID": upload.name,
        "Range": f"0-{max(size - 1, 0)}",
    }
    return Reply(status, headers=headers)


def _blob_created(name: str, digest: str) -> Reply:
    headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
    return Reply(201, headers=headers)
