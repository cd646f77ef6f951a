"""A local stand-in for GitHub's OIDC token issuer: tokens with the claims GitHub gives a job.

The claims follow "About security hardening with OpenID Connect" (GitHub docs): ``sub`` is
``repo:OWNER/REPO:environment:NAME`` for a job with an environment, ``repo:OWNER/REPO:pull_request``
for a pull request, else ``repo:OWNER/REPO:ref:<ref>``. Tokens are RS256 JWTs signed by a key made
per run; the local STS verifies them before it evaluates the role's trust policy on their claims.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://token.actions.githubusercontent.com"
HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"  # what configure-aws-credentials asks for


class TokenError(Exception):
    """A token the local STS refuses (AWS: InvalidIdentityToken)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def subject(repository: str, *, event: str, ref: str, environment: str = "") -> str:
    if environment:
        return f"repo:{repository}:environment:{environment}"
    if event == "pull_request":
        return f"repo:{repository}:pull_request"
    return f"repo:{repository}:ref:{ref}"


def claims(
    repository: str,
    *,
    event: str = "push",
    ref: str = "refs/heads/main",
    sha: str = "0" * 40,
    environment: str = "",
    workflow: str = "deploy.yml",
    audience: str = AUDIENCE,
    actor: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """The claims GitHub puts in a job's token (the subset trust policies can test); ``actor`` and
    ``run_id`` are added when given."""
    owner = repository.split("/")[0]
    now = int(time.time())
    found = {
        "iss": ISSUER,
        "aud": audience,
        "sub": subject(repository, event=event, ref=ref, environment=environment),
        "ref": ref,
        "ref_type": "branch",
        "sha": sha,
        "repository": repository,
        "repository_owner": owner,
        "event_name": event,
        "workflow": workflow,
        "job_workflow_ref": f"{repository}/.github/workflows/{workflow}@{ref}",
        "runner_environment": "github-hosted",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    if environment:
        found["environment"] = environment
    if actor:
        found["actor"] = actor
    if run_id:
        found["run_id"] = run_id
    return found


class TokenService:
    """Signs job tokens and verifies them for the local STS."""

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def save(self, path: Path) -> Path:
        """The signing key for another process on this machine (the long-lived local AWS's
        ``make workflows`` issues job tokens its STS accepts); owner-only, as a key file is."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return path

    @classmethod
    def load(cls, path: Path) -> TokenService:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TokenError(f"{path} holds no RSA key")
        return cls(key)

    def issue(self, token_claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "local"}).encode())
        body = _b64(json.dumps(token_claims, sort_keys=True).encode())
        signature = self._key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this service signed, unexpired; TokenError otherwise."""
        try:
            header, body, signature = token.split(".")
            self._key.public_key().verify(
                _unb64(signature), f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            found = json.loads(_unb64(body))
        except (ValueError, InvalidSignature) as exc:
            raise TokenError(
                f"the web identity token is not valid ({type(exc).__name__})"
            ) from None
        if found.get("iss") != ISSUER:
            raise TokenError(f"the token's issuer is {found.get('iss')!r}, not {ISSUER}")
        if found.get("exp", 0) < time.time():
            raise TokenError("the web identity token has expired")
        return found


def condition_context(token_claims: dict[str, Any]) -> dict[str, Any]:
    """The condition keys IAM offers for a GitHub token: <host>:<claim>."""
    keys = (
        "sub",
        "aud",
        "ref",
        "repository",
        "repository_owner",
        "environment",
        "job_workflow_ref",
        "event_name",
        "actor",
        "workflow",
    )
    return {f"{HOST}:{k}": token_claims[k] for k in keys if k in token_claims}
