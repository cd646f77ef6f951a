"""The loopback OCI registry, driven over HTTP with the requests ``docker push``/``pull`` send:
upload blobs (chunked and monolithic), put a manifest, read both back; each error the spec names."""

from __future__ import annotations

import hashlib
import json
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest

from mlops.local.oci_registry import OciRegistry

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG, LAYER = b'{"architecture":"amd64","os":"linux"}', b"layer bytes " * 1000


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def manifest_bytes(config: bytes = CONFIG, layer: bytes = LAYER) -> bytes:
    """Two-space indented, as Docker writes it: the stored bytes must stay these bytes."""
    descriptor = {"mediaType": "application/octet-stream", "size": len(config)}
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {**descriptor, "digest": sha256(config)},
            "layers": [{**descriptor, "size": len(layer), "digest": sha256(layer)}],
        },
        indent=2,
    ).encode()


@pytest.fixture
def registry(tmp_path):
    with OciRegistry(tmp_path / "registry") as running:
        yield running


def http(method: str, url: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, body); http.client adds no Content-Type of its own, unlike urllib."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.netloc, timeout=10)
    try:
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.request(method, target, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def error_code(reply) -> str:
    _, headers, body = reply
    assert headers["Content-Type"] == "application/json"
    (error,) = json.loads(body)["errors"]
    assert set(error) == {"code", "message", "detail"}
    return error["code"]


def monolithic(registry: OciRegistry, name: str, data: bytes):
    return http("POST", f"{registry.url}/v2/{name}/blobs/uploads/?digest={sha256(data)}", data)


def chunked(registry: OciRegistry, name: str, data: bytes, parts: int = 2, digest: str = ""):
    """POST, a PATCH per chunk but the last, the last with the PUT: Docker's push of a layer."""
    status, headers, _ = http("POST", f"{registry.url}/v2/{name}/blobs/uploads/")
    assert status == 202 and headers["Docker-Upload-UUID"] in headers["Location"]
    location, size = registry.url + headers["Location"], len(data) // parts
    for start in range(0, size * (parts - 1), size):
        status, headers, _ = http("PATCH", location, data[start : start + size])
        assert (status, headers["Range"]) == (202, f"0-{start + size - 1}")
        location = registry.url + headers["Location"]
    tail = data[size * (parts - 1) :]
    return http("PUT", f"{location}?digest={digest or sha256(data)}", tail)


def push_manifest(registry: OciRegistry, name: str, tag: str = "1"):
    """The image's blobs (the config monolithic, the layer in 3 chunks), then its manifest."""
    assert monolithic(registry, name, CONFIG)[0] == 201
    assert chunked(registry, name, LAYER, parts=3)[0] == 201
    url, headers = f"{registry.url}/v2/{name}/manifests/{tag}", {"Content-Type": DOCKER_MANIFEST}
    return http("PUT", url, manifest_bytes(), headers)


def push(registry: OciRegistry, name: str, tag: str = "1") -> bytes:
    status, headers, _ = push_manifest(registry, name, tag)
    assert (status, headers["Docker-Content-Digest"]) == (201, sha256(manifest_bytes()))
    return manifest_bytes()


def test_the_version_check_answers_200_with_the_api_version(registry):
    status, headers, _ = http("GET", f"{registry.url}/v2/")
    assert (status, headers["Docker-Distribution-API-Version"]) == (200, "registry/2.0")
    assert registry.url.endswith(f":{registry.port}") and registry.port > 0


def test_a_pushed_image_pulls_back_byte_exact(registry):
    manifest = push(registry, "img")
    for reference in ("1", sha256(manifest)):
        status, headers, body = http("GET", f"{registry.url}/v2/img/manifests/{reference}")
        assert (status, body, headers["Docker-Content-Digest"]) == (200, manifest, sha256(manifest))
        assert headers["Content-Type"] == DOCKER_MANIFEST
    status, headers, body = http("HEAD", f"{registry.url}/v2/img/manifests/1")
    assert (status, headers["Content-Length"], body) == (200, str(len(manifest)), b"")
    status, headers, body = http("HEAD", f"{registry.url}/v2/img/blobs/{sha256(LAYER)}")
    assert (status, headers["Content-Length"], body) == (200, str(len(LAYER)), b"")
    assert headers["Docker-Content-Digest"] == sha256(LAYER)
    assert http("GET", f"{registry.url}/v2/img/blobs/{sha256(LAYER)}")[2] == LAYER
    assert http("GET", f"{registry.url}/v2/img/blobs/{sha256(CONFIG)}")[2] == CONFIG


def test_an_upload_created_answers_where_the_blob_is(registry):
    status, headers, _ = monolithic(registry, "img", CONFIG)
    assert (status, headers["Location"]) == (201, f"/v2/img/blobs/{sha256(CONFIG)}")
    assert headers["Docker-Content-Digest"] == sha256(CONFIG)


def test_an_absent_blob_is_blob_unknown(registry):
    reply = http("GET", f"{registry.url}/v2/img/blobs/{sha256(b'nothing')}")
    assert (reply[0], error_code(reply)) == (404, "BLOB_UNKNOWN")
    assert http("HEAD", f"{registry.url}/v2/img/blobs/{sha256(b'nothing')}")[0] == 404


def test_content_that_is_not_its_digest_is_refused_and_not_stored(registry):
    wrong = sha256(b"something else")
    for reply in (
        http("POST", f"{registry.url}/v2/img/blobs/uploads/?digest={wrong}", LAYER),
        chunked(registry, "img", LAYER, digest=wrong),
    ):
        assert (reply[0], error_code(reply)) == (400, "DIGEST_INVALID")
    assert http("GET", f"{registry.url}/v2/img/blobs/{sha256(LAYER)}")[0] == 404
    assert list((registry.root / "uploads").iterdir()) == []  # nor left as an upload


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64])
def test_a_malformed_digest_is_digest_invalid(registry, digest):
    for reply in (
        http("GET", f"{registry.url}/v2/img/blobs/{digest}"),
        http("POST", f"{registry.url}/v2/img/blobs/uploads/?digest={digest}", CONFIG),
    ):
        assert (reply[0], error_code(reply)) == (400, "DIGEST_INVALID")


@pytest.mark.parametrize("upload", ["0" * 32, "not-an-upload", "..%2F..%2Fblobs"])
def test_an_unknown_upload_is_blob_upload_unknown(registry, upload):
    location = f"{registry.url}/v2/img/blobs/uploads/{upload}"
    for reply in (
        http("PATCH", location, b"chunk"),
        http("PUT", f"{location}?digest={sha256(b'chunk')}", b"chunk"),
    ):
        assert (reply[0], error_code(reply)) == (404, "BLOB_UPLOAD_UNKNOWN")


def test_a_stray_file_among_the_uploads_is_not_an_upload(registry):
    (registry.root / "uploads" / "interrupted.part").write_bytes(b"half a manifest")
    reply = http("PATCH", f"{registry.url}/v2/img/blobs/uploads/interrupted.part", b"chunk")
    assert (reply[0], error_code(reply)) == (404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("name", ["Upper", "a//b", "a/../b", "-a", "a_", "x" * 256])
def test_a_bad_name_is_name_invalid(registry, name):
    reply = http("POST", f"{registry.url}/v2/{name}/blobs/uploads/")
    assert (reply[0], error_code(reply)) == (400, "NAME_INVALID")


def test_a_manifest_naming_an_absent_blob_is_refused_and_not_stored(registry):
    assert monolithic(registry, "img", CONFIG)[0] == 201  # the layer is missing
    reply = http("PUT", f"{registry.url}/v2/img/manifests/1", manifest_bytes())
    assert (reply[0], error_code(reply)) == (400, "MANIFEST_BLOB_UNKNOWN")
    reply = http("GET", f"{registry.url}/v2/img/manifests/1")
    assert (reply[0], error_code(reply)) == (404, "MANIFEST_UNKNOWN")


def test_an_index_needs_its_child_manifests_in_the_repository(registry):
    child = push(registry, "img", "child")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": sha256(child)}]}
    body = json.dumps(index).encode()
    reply = http("PUT", f"{registry.url}/v2/other/manifests/1", body)
    assert (reply[0], error_code(reply)) == (400, "MANIFEST_BLOB_UNKNOWN")
    status, headers, _ = http("PUT", f"{registry.url}/v2/img/manifests/1", body)
    assert (status, headers["Location"]) == (201, f"/v2/img/manifests/{sha256(body)}")
    assert http("GET", f"{registry.url}/v2/img/manifests/1")[1]["Content-Type"] == OCI_INDEX


def test_a_manifest_s_type_is_the_header_s_else_the_declared_one_else_oci_s(registry):
    for headers, declared, expected in [
        ({"Content-Type": OCI_INDEX}, DOCKER_MANIFEST, OCI_INDEX),
        ({}, DOCKER_MANIFEST, DOCKER_MANIFEST),
        ({}, None, "application/vnd.oci.image.manifest.v1+json"),
    ]:
        body = json.dumps({"schemaVersion": 2, "mediaType": declared}).encode()
        assert http("PUT", f"{registry.url}/v2/img/manifests/t", body, headers)[0] == 201
        assert http("HEAD", f"{registry.url}/v2/img/manifests/t")[1]["Content-Type"] == expected


@pytest.mark.parametrize(
    ("reference", "body", "code"),
    [
        (sha256(b"other"), manifest_bytes(), "DIGEST_INVALID"),
        ("-bad-tag", manifest_bytes(), "MANIFEST_INVALID"),
        ("1", b"not json", "MANIFEST_INVALID"),
        ("1", b'{"layers": [{"size": 1}]}', "MANIFEST_INVALID"),
        ("1", b'{"layers": [{"digest": 7}]}', "DIGEST_INVALID"),
        ("1", b'{"manifests": [{"digest": ["x"]}]}', "DIGEST_INVALID"),
    ],
)
def test_a_manifest_put_that_is_not_well_formed_is_a_400(registry, reference, body, code):
    reply = http("PUT", f"{registry.url}/v2/img/manifests/{reference}", body)
    assert (reply[0], error_code(reply)) == (400, code)


def test_an_absent_manifest_is_manifest_unknown(registry):
    for reference in ("latest", sha256(b"x"), "not:a:digest"):
        reply = http("GET", f"{registry.url}/v2/img/manifests/{reference}")
        assert (reply[0], error_code(reply)) == (404, "MANIFEST_UNKNOWN")


def test_the_manifest_hook_sees_the_put_and_its_refusal_is_denied(tmp_path):
    seen = []

    def refuse(repo, reference, manifest, media_type, digest):
        seen.append((repo, reference, manifest, media_type, digest))
        return "tag 1 is immutable"

    with OciRegistry(tmp_path, on_manifest=refuse) as registry:
        reply = push_manifest(registry, "team/img")
        assert (reply[0], error_code(reply)) == (403, "DENIED")
        manifest = manifest_bytes()
        assert seen == [("team/img", "1", manifest, DOCKER_MANIFEST, sha256(manifest))]
        assert json.loads(reply[2])["errors"][0]["message"] == "tag 1 is immutable"
        assert http("GET", f"{registry.url}/v2/team/img/manifests/1")[0] == 404


def test_an_authorize_refusal_is_unauthorized_with_a_basic_challenge(tmp_path):
    def authorize(headers):
        return None if headers.get("authorization") == "Basic b2s=" else "no credentials"

    with OciRegistry(tmp_path, authorize=authorize) as registry:
        for path in ("/v2/", "/v2/img/blobs/uploads/", f"/v2/img/blobs/{sha256(b'x')}"):
            reply = http("POST" if "uploads" in path else "GET", registry.url + path)
            assert (reply[0], error_code(reply)) == (401, "UNAUTHORIZED")
            assert reply[1]["WWW-Authenticate"] == f'Basic realm="{registry.url}"'
            assert json.loads(reply[2])["errors"][0]["message"] == "no credentials"
        assert http("GET", f"{registry.url}/v2/", headers={"Authorization": "Basic b2s="})[0] == 200


def test_names_with_slashes_are_repositories_of_their_own(registry):
    manifest = push(registry, "team/project/img")
    assert http("GET", f"{registry.url}/v2/team/project/img/manifests/1")[2] == manifest
    assert http("GET", f"{registry.url}/v2/team/project/manifests/1")[0] == 404
    assert http("GET", f"{registry.url}/v2/img/manifests/1")[0] == 404


def test_a_mount_of_a_blob_here_is_created_else_a_plain_upload(registry):
    push(registry, "img")
    mount = f"{registry.url}/v2/other/blobs/uploads/?from=img&mount="
    status, headers, _ = http("POST", mount + sha256(LAYER))
    assert (status, headers["Location"]) == (201, f"/v2/other/blobs/{sha256(LAYER)}")
    status, headers, _ = http("POST", mount + sha256(b"absent"))
    assert (status, headers["Range"]) == (202, "0-0")
    status, headers, _ = http("GET", registry.url + headers["Location"])
    assert (status, headers["Range"]) == (204, "0-0")


def test_a_restarted_server_on_the_same_folder_keeps_the_image(tmp_path):
    with OciRegistry(tmp_path) as first:
        manifest = push(first, "team/img")
    with OciRegistry(tmp_path) as second:
        status, headers, body = http("GET", f"{second.url}/v2/team/img/manifests/1")
        assert (status, body, headers["Content-Type"]) == (200, manifest, DOCKER_MANIFEST)
        assert http("GET", f"{second.url}/v2/team/img/blobs/{sha256(LAYER)}")[2] == LAYER


def test_no_route_or_method_is_a_json_error_not_a_500(registry):
    for method, path, status in [
        ("GET", "/v1/", 404),
        ("GET", "/v2/img/tags/list", 404),
        ("DELETE", f"/v2/img/blobs/{sha256(b'x')}", 405),
        ("POST", "/v2/img/manifests/1", 405),
    ]:
        reply = http(method, registry.url + path)
        assert (reply[0], error_code(reply)) == (status, "UNSUPPORTED")
