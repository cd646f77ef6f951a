"""GitHub's OIDC token request endpoint on loopback: each job gets its own request token, and the
ID tokens it fetches carry that job's claims, signed by :class:`mlops.local.oidc.TokenService` (so
the local STS verifies them as it verifies the in-process runner's tokens).

The protocol, as actions/core's ``getIDToken`` speaks it (actions/toolkit,
packages/core/src/oidc-utils.ts, https://github.com/actions/toolkit/blob/main/packages/core/src/oidc-utils.ts):
the runner gives the job ``ACTIONS_ID_TOKEN_REQUEST_URL`` (a URL that already has a query string)
and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; the client GETs ``<url>&audience=<url-encoded audience>``
(no ``audience`` parameter when none is asked for) with ``Authorization: Bearer <request token>``
and reads the JWT from the JSON body's ``value``. configure-aws-credentials asks for
``sts.amazonaws.com``. Without an audience GitHub's ``aud`` is the URL of the repository owner.

The claims follow GitHub's "OpenID Connect reference" (https://docs.github.com/en/actions/reference/security/oidc,
formerly "About security hardening with OpenID Connect"): ``sub`` is
``repo:OWNER/REPO:environment:NAME`` for a job with an environment, else
``repo:OWNER/REPO:pull_request`` for a pull_request event, else ``repo:OWNER/REPO:ref:<ref>``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from mlops.local import oidc
from mlops.local.act._server import LoopbackServer, Reply, Request

PATH = "/_apis/actionsidtoken/token"  # the path is ours; the query string is as GitHub's
API_VERSION = "2.0"


@dataclass(frozen=True)
class Job:
    """What a job's token says: the run's context and the job's environment."""

    job: str
    repository: str
    event: str = "push"
    ref: str = "refs/heads/main"
    sha: str = "0" * 40
    environment: str = ""
    workflow: str = "ci.yml"
    actor: str = "local"
    run_id: str = "1"

    def claims(self, audience: str) -> dict[str, Any]:
        return oidc.claims(
            self.repository,
            event=self.event,
            ref=self.ref,
            sha=self.sha,
            environment=self.environment,
            workflow=self.workflow,
            audience=audience,
            actor=self.actor,
            run_id=self.run_id,
        )


@dataclass
class Issued:
    job: str
    sub: str
    aud: str


@dataclass
class JobTokenService(LoopbackServer):
    """Hands each registered job GitHub-shaped ID tokens; ``issued`` records what it signed."""

    tokens: oidc.TokenService = field(default_factory=oidc.TokenService)
    port: int = 0
    issued: list[Issued] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.port)
        self._jobs: dict[str, Job] = {}  # request token -> job
        self._by_name: dict[str, str] = {}  # job name -> request token

    def register(self, job: Job) -> str:
        """A new request token for ``job`` (one per job: registering a job again replaces it)."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            old = self._by_name.pop(job.job, None)
            self._jobs.pop(old or "", None)
            self._jobs[token] = job
            self._by_name[job.job] = token
        return token

    def job_env(self, job: str) -> dict[str, str]:
        """The variables the runner gives a job with ``permissions: id-token: write``."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}{PATH}?api-version={API_VERSION}",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self._by_name[job],
        }

    def handle(self, request: Request) -> Reply:
        if request.path != PATH:
            return Reply.json(404, {"message": f"no token endpoint at {request.path}"})
        if request.method != "GET":
            return Reply.json(405, {"message": "the token endpoint takes GET"})
        with self.lock:
            job = self._jobs.get(request.bearer())
        if job is None:
            return Reply.json(401, {"message": "the request token is missing or unknown"})
        owner = job.repository.split("/")[0]
        audience = request.query.get("audience") or f"https://github.com/{owner}"
        claims = job.claims(audience)
        with self.lock:
            self.issued.append(Issued(job.job, claims["sub"], audience))
        return Reply.json(200, {"count": len(self.issued), "value": self.tokens.issue(claims)})
