"""The loopback OIDC token endpoint: getIDToken's request shape, one request token per job, and
the claims GitHub gives each job (verified with the key the local STS uses)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from mlops.local import oidc
from mlops.local.act.token_service import PATH, Job, JobTokenService

REPO = "O/R"


@pytest.fixture
def service():
    with JobTokenService() as running:
        yield running


def fetch(url: str, token: str | None, audience: str | None = "sts.amazonaws.com") -> dict:
    """What actions/core's getIDToken does: <url>&audience=<encoded>, Bearer request token."""
    if audience is not None:
        url = f"{url}&audience={urllib.parse.quote(audience, safe='')}"
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.load(r)


def claims_of(service: JobTokenService, job: Job, audience: str | None = "sts.amazonaws.com"):
    service.register(job)
    env = service.job_env(job.job)
    url, token = env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    return service.tokens.verify(fetch(url, token, audience)["value"])


def test_the_request_url_is_loopback_and_already_has_a_query_string(service):
    service.register(Job("lint", REPO))
    url = urllib.parse.urlsplit(service.job_env("lint")["ACTIONS_ID_TOKEN_REQUEST_URL"])
    assert (url.hostname, url.path, url.query) == ("127.0.0.1", PATH, "api-version=2.0")


def test_a_dev_job_gets_the_environment_subject(service):
    found = claims_of(service, Job("deploy-dev", REPO, environment="dev", workflow="deploy.yml"))
    assert found["sub"] == "repo:O/R:environment:dev"
    assert (found["environment"], found["aud"], found["iss"]) == ("dev", oidc.AUDIENCE, oidc.ISSUER)
    assert found["job_workflow_ref"] == "O/R/.github/workflows/deploy.yml@refs/heads/main"
    assert (found["actor"], found["run_id"], found["repository_owner"]) == ("local", "1", "O")


def test_a_push_job_without_environment_gets_the_ref_subject(service):
    found = claims_of(service, Job("build", REPO, event="push", ref="refs/heads/main"))
    assert found["sub"] == "repo:O/R:ref:refs/heads/main"
    assert "environment" not in found
    assert (found["event_name"], found["ref"]) == ("push", "refs/heads/main")


def test_a_pull_request_job_gets_the_pull_request_subject(service):
    job = Job("pipeline", REPO, event="pull_request", ref="refs/pull/7/merge", sha="a" * 40)
    found = claims_of(service, job)
    assert found["sub"] == "repo:O/R:pull_request"
    assert (found["ref"], found["sha"]) == ("refs/pull/7/merge", "a" * 40)


def test_the_audience_is_honoured_and_defaults_to_the_owner_url(service):
    assert claims_of(service, Job("a", REPO), audience="api://AzureADTokenExchange")["aud"] == (
        "api://AzureADTokenExchange"
    )
    assert claims_of(service, Job("b", REPO), audience=None)["aud"] == "https://github.com/O"
    assert [(i.job, i.aud) for i in service.issued] == [
        ("a", "api://AzureADTokenExchange"),
        ("b", "https://github.com/O"),
    ]


def test_each_job_has_its_own_request_token(service):
    dev, prod = Job("dev", REPO, environment="dev"), Job("prod", REPO, environment="prod")
    service.register(dev)
    service.register(prod)
    url = service.job_env("dev")["ACTIONS_ID_TOKEN_REQUEST_URL"]
    assert (
        service.job_env("dev")["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
        != (service.job_env("prod")["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
    )
    for name, environment in (("dev", "dev"), ("prod", "prod")):
        token = service.job_env(name)["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
        assert service.tokens.verify(fetch(url, token)["value"])["environment"] == environment
    old = service.job_env("dev")["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    service.register(dev)  # registered again: the old request token no longer works
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(url, old)
    assert err.value.code == 401


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_missing_or_wrong_request_token_is_401(service, token):
    service.register(Job("lint", REPO))
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(service.job_env("lint")["ACTIONS_ID_TOKEN_REQUEST_URL"], token)
    assert err.value.code == 401
    assert service.issued == []


def test_an_unknown_path_is_404(service):
    token = service.register(Job("lint", REPO))
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(f"{service.url}/elsewhere?api-version=2.0", token)
    assert err.value.code == 404


def test_a_token_from_another_service_does_not_verify(service):
    service.register(Job("lint", REPO))
    env = service.job_env("lint")
    token = fetch(env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
    with pytest.raises(oidc.TokenError):
        oidc.TokenService().verify(token["value"])


def test_a_saved_key_is_owner_only_and_loads_as_the_same_issuer(tmp_path):
    """The long-lived local AWS saves its key; make workflows loads it to sign job tokens."""
    tokens = oidc.TokenService()
    path = tokens.save(tmp_path / "key.pem")
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = oidc.TokenService.load(path)
    claims = Job("deploy-prod", REPO, environment="prod").claims(oidc.AUDIENCE)
    assert tokens.verify(loaded.issue(claims))["sub"] == f"repo:{REPO}:environment:prod"
    assert loaded.verify(tokens.issue(claims))["environment"] == "prod"


def test_a_file_that_holds_no_rsa_key_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    (tmp_path / "ec.pem").write_bytes(pem)
    with pytest.raises(oidc.TokenError, match="holds no RSA key"):
        oidc.TokenService.load(tmp_path / "ec.pem")
