"""The loopback artifact service: driven with plain HTTP requests shaped as @actions/artifact
sends them (Twirp JSON with proto field names, Azure block upload to the signed URL)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPConnection

import pytest

from mlops.local.act.artifact_stub import SERVICE, ArtifactStub

RUN, JOB = "ce7f54c7-run", "ca395085-job"


@pytest.fixture
def stub(tmp_path):
    with ArtifactStub(tmp_path / "artifacts") as running:
        yield running


def http(method: str, url: str, body: bytes = b"", headers: dict | None = None):
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def twirp(stub: ArtifactStub, method: str, body: dict, token: str | None = None):
    """ArtifactHttpClient.request: POST /twirp/<service>/<method> on the results URL's origin."""
    env = stub.job_env(RUN, JOB)
    origin = urllib.parse.urlsplit(env["ACTIONS_RESULTS_URL"])
    url = f"{origin.scheme}://{origin.netloc}{SERVICE}{method}"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token or env['ACTIONS_RUNTIME_TOKEN']}",
    }
    status, _, raw = http("POST", url, json.dumps(body).encode(), headers)
    return status, json.loads(raw)


def ids(**more) -> dict:
    return {"workflow_run_backend_id": RUN, "workflow_job_run_backend_id": JOB, **more}


def a_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(signed_url: str, data: bytes, chunk: int = 7) -> list[int]:
    """BlockBlobClient.uploadStream: stage each chunk as a block, then commit the block list."""
    prefix, block_ids, statuses = "b0f1e2d3", [], []
    for n, start in enumerate(range(0, len(data), chunk)):
        block_id = base64.b64encode(f"{prefix}{n:06d}".encode()).decode()
        block_ids.append(block_id)
        url = f"{signed_url}&comp=block&blockid={urllib.parse.quote(block_id, safe='')}"
        statuses.append(http("PUT", url, data[start : start + chunk])[0])
    xml = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>'
    xml += "".join(f"<Latest>{b}</Latest>" for b in block_ids) + "</BlockList>"
    headers = {"x-ms-blob-content-type": "application/zip", "Content-Type": "application/xml"}
    statuses.append(http("PUT", f"{signed_url}&comp=blocklist", xml.encode(), headers)[0])
    return statuses


def publish(stub: ArtifactStub, name: str, data: bytes) -> str:
    status, created = twirp(
        stub, "CreateArtifact", ids(name=name, version=7, mime_type="application/zip")
    )
    assert (status, created["ok"]) == (200, True)
    assert set(upload(created["signed_upload_url"], data)) == {201}
    digest = hashlib.sha256(data).hexdigest()
    body = ids(name=name, size=str(len(data)), hash=f"sha256:{digest}")
    status, done = twirp(stub, "FinalizeArtifact", body)
    assert (status, done["ok"]) == (200, True)
    return done["artifact_id"]


def test_create_upload_finalize_list_download(stub, tmp_path):
    data = a_zip({"runs/r1/evaluation.json": b'{"rmse": 2.1}', "runs/r1/report.md": b"# r" * 10})
    status, created = twirp(stub, "CreateArtifact", ids(name="pipeline-run", version=7))
    url = urllib.parse.urlsplit(created["signed_upload_url"])
    assert (status, url.hostname) == (200, "127.0.0.1")
    assert url.path.startswith("/blob/artifacts/")  # /<account>/<container>/<blob>, IP style
    assert set(upload(created["signed_upload_url"], data)) == {201}
    digest = hashlib.sha256(data).hexdigest()
    body = ids(name="pipeline-run", size=str(len(data)), hash=f"sha256:{digest}")
    status, done = twirp(stub, "FinalizeArtifact", body)
    assert status == 200 and done["ok"] and int(done["artifact_id"]) >= 1

    stored = tmp_path / "artifacts" / RUN / "pipeline-run.zip"
    assert stored.read_bytes() == data
    assert zipfile.ZipFile(stored).read("runs/r1/evaluation.json") == b'{"rmse": 2.1}'

    status, listed = twirp(stub, "ListArtifacts", ids(id_filter=done["artifact_id"]))
    (row,) = listed["artifacts"]
    assert (row["name"], row["database_id"], row["size"]) == (
        "pipeline-run",
        done["artifact_id"],
        str(len(data)),
    )
    assert row["digest"] == f"sha256:{digest}" and row["created_at"].endswith("Z")

    status, signed = twirp(stub, "GetSignedArtifactURL", ids(name="pipeline-run"))
    status, headers, got = http("GET", signed["signed_url"])
    assert (status, got, headers["Content-Type"]) == (200, data, "application/zip")
    assert [op for op, _ in stub.log if op.startswith(("Put", "Get", "Create", "Final"))][:2] == [
        "CreateArtifact",
        "PutBlock",
    ]


def test_list_filters_by_name_and_sees_only_finalized_artifacts(stub):
    first = publish(stub, "one", a_zip({"a": b"1"}))
    publish(stub, "two", a_zip({"b": b"2"}))
    twirp(stub, "CreateArtifact", ids(name="pending", version=7))
    _, everything = twirp(stub, "ListArtifacts", ids())
    assert sorted(a["name"] for a in everything["artifacts"]) == ["one", "two"]
    _, named = twirp(stub, "ListArtifacts", ids(name_filter="one"))
    assert [a["database_id"] for a in named["artifacts"]] == [first]


def test_a_name_is_taken_once_per_run_and_delete_frees_it(stub, tmp_path):
    publish(stub, "report", a_zip({"r": b"x"}))
    status, error = twirp(stub, "CreateArtifact", ids(name="report", version=7))
    assert (status, error["code"]) == (409, "already_exists")
    status, deleted = twirp(stub, "DeleteArtifact", ids(name="report"))
    assert status == 200 and deleted["ok"]
    assert not (tmp_path / "artifacts" / RUN / "report.zip").exists()
    publish(stub, "report", a_zip({"r": b"y"}))


def test_a_bad_or_missing_runtime_token_is_unauthenticated(stub):
    forged = stub.runtime_token(RUN, JOB)[:-4] + "AAAA"
    for token in ("not-a-jwt", forged):
        status, error = twirp(stub, "CreateArtifact", ids(name="x", version=7), token=token)
        assert (status, error["code"]) == (401, "unauthenticated")
    other_run = stub.runtime_token("another-run", JOB)
    status, error = twirp(stub, "CreateArtifact", ids(name="x", version=7), token=other_run)
    assert (status, error["code"]) == (403, "permission_denied")


def test_bad_names_unknown_artifacts_and_empty_finalize(stub):
    status, error = twirp(stub, "CreateArtifact", ids(name="a/b", version=7))
    assert (status, error["code"]) == (400, "invalid_argument")
    status, error = twirp(stub, "GetSignedArtifactURL", ids(name="nothing"))
    assert (status, error["code"]) == (404, "not_found")
    twirp(stub, "CreateArtifact", ids(name="empty", version=7))
    status, error = twirp(stub, "FinalizeArtifact", ids(name="empty", size="0"))
    assert (status, error["code"]) == (412, "failed_precondition")


def test_the_blob_url_needs_its_signature(stub):
    _, created = twirp(stub, "CreateArtifact", ids(name="x", version=7))
    tampered = created["signed_upload_url"].split("?")[0] + "?sig=0000"
    assert http("PUT", f"{tampered}&comp=block&blockid=AA", b"data")[0] == 403
    # not downloadable before it is finalized; a block list names staged blocks only
    assert http("GET", created["signed_upload_url"])[0] == 404
    xml = b"<BlockList><Latest>bm9wZQ==</Latest></BlockList>"
    assert http("PUT", f"{created['signed_upload_url']}&comp=blocklist", xml)[0] == 400


def test_an_unknown_route_is_404(stub):
    assert http("GET", f"{stub.url}/_apis/pipelines")[0] == 404


def test_a_chunked_block_and_keep_alive_on_one_connection(stub, tmp_path):
    """Node's HTTP clients keep connections open and may send a body chunked."""
    _, created = twirp(stub, "CreateArtifact", ids(name="chunked", version=7))
    url = urllib.parse.urlsplit(created["signed_upload_url"])
    connection = HTTPConnection(url.hostname, url.port, timeout=10)
    block = base64.b64encode(b"block-000000").decode()
    target = f"{url.path}?{url.query}&comp=block&blockid={urllib.parse.quote(block, safe='')}"
    connection.request("PUT", target, body=iter([b"PK\x03\x04", b"rest"]), encode_chunked=True)
    assert connection.getresponse().read() == b""
    xml = f"<BlockList><Latest>{block}</Latest></BlockList>".encode()
    connection.request("PUT", f"{url.path}?{url.query}&comp=blocklist", body=xml)
    response = connection.getresponse()
    assert response.status == 201 and response.getheader("ETag")
    connection.close()
    assert (tmp_path / "artifacts" / RUN / "chunked.zip").read_bytes() == b"PK\x03\x04rest"
