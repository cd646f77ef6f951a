"""A loopback stand-in for the artifact service v4 that actions/upload-artifact v4+ (v7 here) and
download-artifact talk to (act's own server cannot take v7: nektos/act#6022, #6114).

What the client (actions/toolkit, packages/artifact, @actions/artifact 6.x:
https://github.com/actions/toolkit/tree/main/packages/artifact/src/internal) sends:

- Twirp JSON: ``POST <origin of ACTIONS_RESULTS_URL>/twirp/github.actions.results.api.v1.
  ArtifactService/<Method>`` with ``Authorization: Bearer $ACTIONS_RUNTIME_TOKEN`` and the
  protobuf JSON of the request with proto field names (shared/artifact-twirp-client.ts,
  generated/results/api/v1/artifact.twirp-client.ts). The run and job ids come from the runtime
  token, a JWT whose ``scp`` has ``Actions.Results:<run id>:<job id>`` (shared/util.ts).
  CreateArtifact answers ``signed_upload_url``; FinalizeArtifact takes ``size`` and
  ``hash`` ("sha256:<hex>") and answers ``artifact_id``; ListArtifacts filters by
  ``name_filter``/``id_filter``; GetSignedArtifactURL answers ``signed_url``. Errors are Twirp's
  ``{"code", "msg"}``; the client retries only 429 and 5xx.
- The upload (upload/blob-upload.ts) is @azure/storage-blob's ``BlockBlobClient.uploadStream``:
  one ``PUT <signed url>&comp=block&blockid=<base64>`` per chunk, then
  ``PUT <signed url>&comp=blocklist`` with ``<BlockList><Latest>id</Latest>...</BlockList>`` and
  the content type in ``x-ms-blob-content-type``; both answer 201. The download
  (download/download-artifact.ts) is a plain GET of the signed URL.

Artifacts are stored as ``<root>/<run id>/<name>.zip``; the index is in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from mlops.local.act._server import LoopbackServer, Reply, Request

SERVICE = "/twirp/github.actions.results.api.v1.ArtifactService/"
BLOB = "/blob/artifacts/"  # IP-style blob URL: /<account>/<container>/<blob>, as the SDK parses it
_BLOCK = re.compile(rb"<(?:Latest|Committed|Uncommitted)>([^<]*)</")
_STATUS = {"unauthenticated": 401, "permission_denied": 403, "not_found": 404,
           "already_exists": 409, "invalid_argument": 400, "failed_precondition": 412,
           "bad_route": 404}  # fmt: skip


class TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Artifact:
    id: int
    run: str
    job: str
    name: str
    created_at: str
    content_type: str = "application/zip"
    size: int = 0
    digest: str = ""
    uploaded: bool = False
    finalized: bool = False


@dataclass
class ArtifactStub(LoopbackServer):
    root: Path
    port: int = 0
    log: list[tuple[str, str]] = field(default_factory=list)  # (method or blob op, artifact name)

    def __post_init__(self) -> None:
        super().__init__(self.port)
        self._secret = secrets.token_bytes(32)
        self._artifacts: dict[tuple[str, str], Artifact] = {}  # (run, name) -> artifact
        self._blocks: dict[tuple[str, str], dict[str, bytes]] = {}
        self._next_id = 1

    # --- what a job needs ---------------------------------------------------------------------
    def runtime_token(self, run: str, job: str) -> str:
        """A JWT like the runner's ACTIONS_RUNTIME_TOKEN, signed (HS256) by this stub."""
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(
            json.dumps({"scp": f"Actions.Results:{run}:{job}", "iat": int(time.time())}).encode()
        )
        sig = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}"

    def job_env(self, run: str, job: str) -> dict[str, str]:
        """What a job's steps need. act takes ACTIONS_RUNTIME_URL and ACTIONS_RUNTIME_TOKEN from
        its own process environment and gives the steps ACTIONS_RESULTS_URL = ACTIONS_RUNTIME_URL
        (nektos/act pkg/runner/run_context.go, setActionRuntimeVars)."""
        url, token = f"{self.url}/", self.runtime_token(run, job)
        return {
            "ACTIONS_RUNTIME_URL": url,
            "ACTIONS_RESULTS_URL": url,
            "ACTIONS_RUNTIME_TOKEN": token,
        }

    def path(self, run: str, name: str) -> Path:
        return self.root / run / f"{name}.zip"

    # --- the service --------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        if request.path.startswith(SERVICE) and request.method == "POST":
            try:
                scope = self._scope(request.bearer())
                method = request.path.removeprefix(SERVICE)
                body = request.json()
                with self.lock:
                    self.log.append((method, body.get("name", "")))
                    return Reply.json(200, self._twirp(method, scope, body))
            except TwirpError as err:
                return Reply.json(_STATUS.get(err.code, 500), {"code": err.code, "msg": err.msg})
        if request.path.startswith(BLOB):
            return self._blob(request)
        return Reply.json(404, {"code": "bad_route", "msg": f"no route {request.path}"})

    def _scope(self, token: str) -> tuple[str, str]:
        try:
            head, body, sig = token.split(".")
            good = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_b64(good), sig):
                raise ValueError
            scp = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["scp"]
            part = next(p for p in scp.split() if p.startswith("Actions.Results:"))
            _, run, job = part.split(":")
        except (ValueError, KeyError, StopIteration):
            raise TwirpError(
                "unauthenticated", "the runtime token is missing or not valid"
            ) from None
        return run, job

    def _twirp(self, method: str, scope: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        run, job = scope
        if body.get("workflow_run_backend_id", run) != run:
            raise TwirpError("permission_denied", "the run is not the token's run")
        name = body.get("name", "")
        if method == "CreateArtifact":
            if not name or re.search(r'[\\/":<>|*?\r\n]', name):
                raise TwirpError("invalid_argument", f"invalid artifact name {name!r}")
            found = self._artifacts.get((run, name))
            if found and found.finalized:
                raise TwirpError("already_exists", f"an artifact named {name} exists in this run")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            mime = body.get("mime_type") or "application/zip"
            self._artifacts[(run, name)] = Artifact(self._next_id, run, job, name, now, mime)
            self._next_id += 1
            return {"ok": True, "signed_upload_url": self._signed_url(run, name)}
        if method == "ListArtifacts":
            wanted_id = body.get("id_filter")
            rows = [
                a for (r, n), a in self._artifacts.items()
                if r == run and a.finalized and body.get("name_filter", n) == n
                and (wanted_id is None or str(wanted_id) == str(a.id))
            ]  # fmt: skip
            return {"artifacts": [self._row(a) for a in rows]}
        artifact = self._artifacts.get((run, name))
        if artifact is None:
            raise TwirpError("not_found", f"no artifact named {name} in this run")
        if method == "FinalizeArtifact":
            if not artifact.uploaded:
                raise TwirpError("failed_precondition", f"nothing was uploaded for {name}")
            artifact.size, artifact.finalized = int(body.get("size") or 0), True
            artifact.digest = body.get("hash", "")
            return {"ok": True, "artifact_id": str(artifact.id)}
        if not artifact.finalized:
            raise TwirpError("not_found", f"artifact {name} is not finalized")
        if method == "GetSignedArtifactURL":
            return {"signed_url": self._signed_url(run, name)}
        if method == "DeleteArtifact":
            del self._artifacts[(run, name)]
            self.path(run, name).unlink(missing_ok=True)
            return {"ok": True, "artifact_id": str(artifact.id)}
        raise TwirpError("bad_route", f"no method {method}")

    @staticmethod
    def _row(a: Artifact) -> dict[str, Any]:
        row = {"workflow_run_backend_id": a.run, "workflow_job_run_backend_id": a.job,
               "database_id": str(a.id), "name": a.name, "size": str(a.size),
               "created_at": a.created_at}  # fmt: skip
        return {**row, "digest": a.digest} if a.digest else row

    # --- the blob store -----------------------------------------------------------------------
    def _sig(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def _signed_url(self, run: str, name: str) -> str:
        key = f"{run}/{name}"
        return (
            f"{self.url}{BLOB}{quote(run, safe='')}/{quote(name, safe='')}.zip?sig={self._sig(key)}"
        )

    def _blob(self, request: Request) -> Reply:
        run, _, blob = unquote(request.path.removeprefix(BLOB)).partition("/")
        name = blob.removesuffix(".zip")
        if not hmac.compare_digest(request.query.get("sig", ""), self._sig(f"{run}/{name}")):
            return Reply(403, b"<Error><Code>AuthenticationFailed</Code></Error>")
        with self.lock:
            artifact = self._artifacts.get((run, name))
            if artifact is None:
                return Reply(404, b"<Error><Code>BlobNotFound</Code></Error>")
            if request.method == "GET":
                return self._download(artifact)
            if request.method != "PUT" or artifact.finalized:
                return Reply(409, b"<Error><Code>BlobImmutable</Code></Error>")
            blocks = self._blocks.setdefault((run, name), {})
            comp = request.query.get("comp")
            if comp == "block":
                blocks[request.query.get("blockid", "")] = request.body
                self.log.append(("PutBlock", name))
            elif comp == "blocklist":
                ids = [m.decode() for m in _BLOCK.findall(request.body)]
                if any(i not in blocks for i in ids):
                    return Reply(400, b"<Error><Code>InvalidBlockList</Code></Error>")
                target = self.path(run, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"".join(blocks[i] for i in ids))
                del self._blocks[(run, name)]
                artifact.uploaded = True
                artifact.content_type = (
                    request.headers.get("x-ms-blob-content-type") or artifact.content_type
                )
                self.log.append(("PutBlockList", name))
            else:
                return Reply(400, b"<Error><Code>UnsupportedQueryParameter</Code></Error>")
        etag = f'"0x{secrets.token_hex(8).upper()}"'
        return Reply(
            201,
            headers={
                "ETag": etag,
                "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            },
        )

    def _download(self, artifact: Artifact) -> Reply:
        if not artifact.finalized:
            return Reply(404, b"<Error><Code>BlobNotFound</Code></Error>")
        self.log.append(("GetBlob", artifact.name))
        zipped = artifact.content_type == "application/zip"
        filename = f"{artifact.name}.zip" if zipped else artifact.name
        return Reply(200, self.path(artifact.run, artifact.name).read_bytes(), {
            "Content-Type": artifact.content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        })  # fmt: skip
