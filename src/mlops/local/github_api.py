"""A local stand-in for the one GitHub REST call the local AWS makes: "Create a repository
dispatch event" (POST /repos/{owner}/{repo}/dispatches), which retrain.yaml's API destination
sends. An HTTP server on 127.0.0.1 that answers as GitHub does and records every call.

GitHub's rules kept here (https://docs.github.com/en/rest/repos/repos#create-a-repository-dispatch-event):
204 on success; ``event_type`` required, 1-100 characters; ``client_payload`` an object of at
most 10 top-level properties (422 otherwise, as for a body that is not JSON); a token with
write access to the repository (401 "Bad credentials" without one); a User-Agent on every
request (403 without, "Getting started with the REST API",
https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api#user-agent).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DISPATCHES = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/dispatches$")
MAX_EVENT_TYPE = 100
MAX_PAYLOAD_PROPERTIES = 10
DOCS = "https://docs.github.com/rest/repos/repos#create-a-repository-dispatch-event"


@dataclass
class Call:
    """One request as the stand-in received it, and its answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class GitHubApi:
    repository: str = "example-org/abalone-mlops"
    token: str = field(default_factory=lambda: "github_pat_local_" + secrets.token_hex(16))
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- the decision, apart from HTTP so it is easy to test ---------------------------------
    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
        """(status, JSON body or None) for one request, as GitHub answers it."""
        lower = {k.lower(): v for k, v in headers.items()}
        if not lower.get("user-agent", "").strip():
            return 403, _error(
                "Request forbidden by administrative rules. Please make sure your request "
                "has a User-Agent header"
            )
        found = DISPATCHES.match(path.split("?", 1)[0])
        if method != "POST" or not found:
            return 404, _error("Not Found")
        if lower.get("authorization", "") != f"Bearer {self.token}":
            return 401, _error("Bad credentials")
        if f"{found['owner']}/{found['repo']}".lower() != self.repository.lower():
            return 404, _error("Not Found")  # GitHub hides repositories the token cannot see
        problem = _invalid(body)
        if problem:
            return 422, _error(f"Invalid request.\n\n{problem}")
        return 204, None

    def record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
        status, payload = self.answer(method, path, headers, body)
        with self._lock:
            self.calls.append(Call(method, path, dict(headers), body, status))
        return status, payload

    def dispatches(self) -> list[Call]:
        """The dispatch events GitHub accepted (each one starts deploy.yml there)."""
        with self._lock:
            return [c for c in self.calls if c.status == 204]

    # --- the server ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local GitHub API is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GitHubApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = api.record(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *_args: Any) -> None:  # the local AWS logs deliveries itself
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="github-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _error(message: str) -> dict[str, str]:
    return {"message": message, "documentation_url": DOCS, "status": ""}


def _invalid(body: bytes) -> str:
    """Why GitHub refuses this body, or "" when it takes it."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return "Problems parsing JSON"
    if not isinstance(data, dict):
        return "the body must be a JSON object"
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        return '"event_type" wasn\'t supplied.'
    if len(event_type) > MAX_EVENT_TYPE:
        return f'"event_type" is longer than {MAX_EVENT_TYPE} characters.'
    payload = data.get("client_payload", {})
    if not isinstance(payload, dict):
        return '"client_payload" is not an object.'
    if len(payload) > MAX_PAYLOAD_PROPERTIES:
        return f'"client_payload" has more than {MAX_PAYLOAD_PROPERTIES} top-level properties.'
    return ""
