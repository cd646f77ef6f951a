"""The local GitHub API answers a repository dispatch as GitHub does, and records it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from mlops.local.github_api import MAX_PAYLOAD_PROPERTIES, GitHubApi

REPO = "example-org/abalone-mlops"
PATH = f"/repos/{REPO}/dispatches"


@pytest.fixture()
def api():
    return GitHubApi(REPO, token="github_pat_test_token_0123456789")


def headers(api, **extra):
    return {
        "User-Agent": "Amazon/EventBridge/ApiDestinations",
        "Authorization": f"Bearer {api.token}",
        **extra,
    }


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_dispatch_is_204_and_recorded(api):
    status, payload = api.record("POST", PATH, headers(api), body(event_type="retrain"))
    assert (status, payload) == (204, None)
    assert [c.json() for c in api.dispatches()] == [{"event_type": "retrain"}]


@pytest.mark.parametrize(
    ("auth", "status"),
    [(None, 401), ("Bearer wrong", 401), ("token github_pat_test_token_0123456789", 401)],
)
def test_a_missing_or_wrong_token_is_401_bad_credentials(api, auth, status):
    given = headers(api)
    given.pop("Authorization")
    if auth:
        given["Authorization"] = auth
    code, payload = api.record("POST", PATH, given, body(event_type="retrain"))
    assert code == status and payload["message"] == "Bad credentials"
    assert api.dispatches() == [] and len(api.calls) == 1


def test_no_user_agent_is_403(api):
    given = {"Authorization": f"Bearer {api.token}"}
    assert api.answer("POST", PATH, given, body(event_type="retrain"))[0] == 403


def test_another_repository_or_path_is_404(api):
    other = "/repos/someone/else/dispatches"
    assert api.answer("POST", other, headers(api), body(event_type="x"))[0] == 404
    assert api.answer("GET", PATH, headers(api), b"")[0] == 404
    assert (
        api.answer("POST", f"/repos/{REPO.upper()}/dispatches", headers(api), body(event_type="x"))[
            0
        ]
        == 204
    )


@pytest.mark.parametrize(
    "sent",
    [
        b"not json",
        b"[]",
        body(),
        body(event_type=""),
        body(event_type=7),
        body(event_type="x" * 101),
        body(event_type="retrain", client_payload="text"),
        body(
            event_type="retrain",
            client_payload={str(i): i for i in range(MAX_PAYLOAD_PROPERTIES + 1)},
        ),
    ],
)
def test_a_body_github_rejects_is_422(api, sent):
    status, payload = api.answer("POST", PATH, headers(api), sent)
    assert status == 422 and payload["message"].startswith("Invalid request.")


def test_the_limits_themselves_pass(api):
    sent = body(
        event_type="x" * 100, client_payload={str(i): i for i in range(MAX_PAYLOAD_PROPERTIES)}
    )
    assert api.answer("POST", PATH, headers(api), sent)[0] == 204


def test_over_http_on_loopback(api):
    api.start()
    try:
        assert api.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            api.url + PATH, data=body(event_type="retrain"), headers=headers(api), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 204
        request = urllib.request.Request(
            api.url + PATH,
            data=body(event_type="retrain"),
            headers=headers(api, Authorization="Bearer no"),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        assert json.loads(refused.value.read())["message"] == "Bad credentials"
    finally:
        api.stop()
    assert [c.status for c in api.calls] == [204, 401]
