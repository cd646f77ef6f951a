"""The GitHub API calls of ci.yml's ``comment`` job on loopback, with a log of each call.

The job runs marocchino/sticky-pull-request-comment v3.0.5 (src/comment.ts and src/main.ts at
https://github.com/marocchino/sticky-pull-request-comment/tree/v3.0.5) with ``header`` and
``message``. Through @actions/github's Octokit (base URL ``GITHUB_API_URL``, GraphQL at
``<base>/graphql``, ``Authorization: token <GITHUB_TOKEN>``; ``bearer`` for a JWT) it calls:

1. GraphQL ``query { viewer { login } repository(name, owner) { pullRequest(number) {
   comments(first: 100, after) { nodes { id author { login } isMinimized body }
   pageInfo { endCursor hasNextPage } } } } }``: finds the comment whose body has
   ``<!-- Sticky Pull Request Comment<header> -->``, written by the viewer (``[bot]`` removed);
2. then either REST ``POST /repos/{owner}/{repo}/issues/{number}/comments`` ``{"body"}`` (none
   yet: 201 with the comment) or GraphQL ``mutation updateIssueComment(input: {id, body})``.

Its other modes (hide, delete, recreate) use the GraphQL mutations ``minimizeComment`` and
``deleteIssueComment``: answered too. GraphQL variables come in ``{"query", "variables"}``
(@octokit/graphql). A wrong or missing token is 401 "Bad credentials", as GitHub answers.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from mlops.local.act._server import LoopbackServer, Reply, Request

BOT = "github-actions"  # GITHUB_TOKEN's author login in GraphQL; REST and `viewer` add "[bot]"


@dataclass
class Comment:
    id: int
    number: int  # the pull request's
    body: str
    minimized: bool = False
    created_at: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )

    @property
    def node_id(self) -> str:
        return f"IC_local{self.id}"


@dataclass
class GitHubRest(LoopbackServer):
    repository: str
    token: str
    port: int = 0
    comments: dict[int, Comment] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path or GraphQL operation)

    def __post_init__(self) -> None:
        super().__init__(self.port)

    def job_env(self) -> dict[str, str]:
        return {"GITHUB_API_URL": self.url, "GITHUB_GRAPHQL_URL": f"{self.url}/graphql"}

    def on(self, number: int) -> list[Comment]:
        """The pull request's comments, oldest first."""
        return [c for c in self.comments.values() if c.number == number]

    def handle(self, request: Request) -> Reply:
        if request.bearer() != self.token:
            return Reply.json(401, {"message": "Bad credentials", "status": "401"})
        with self.lock:
            if request.path == "/graphql" and request.method == "POST":
                body = request.json()
                query, variables = body.get("query", ""), body.get("variables") or {}
                operation = _operation(query)
                self.log.append(("POST", f"graphql {operation}"))
                return Reply.json(200, self._graphql(operation, variables))
            self.log.append((request.method, request.path))
            return self._rest(request)

    # --- REST ---------------------------------------------------------------------------------
    def _rest(self, request: Request) -> Reply:
        repo = f"/repos/{self.repository}/issues/"
        rest = request.path.removeprefix(repo) if request.path.startswith(repo) else ""
        if m := re.fullmatch(r"(\d+)/comments", rest):
            number = int(m[1])
            if request.method == "GET":
                return Reply.json(200, [self._rest_comment(c) for c in self.on(number)])
            if request.method == "POST":
                return self._create(number, request.json().get("body", ""))
        if (m := re.fullmatch(r"comments/(\d+)", rest)) and int(m[1]) in self.comments:
            comment = self.comments[int(m[1])]
            if request.method == "PATCH":
                comment.body = request.json().get("body", comment.body)
                return Reply.json(200, self._rest_comment(comment))
            if request.method == "GET":
                return Reply.json(200, self._rest_comment(comment))
        return Reply.json(404, {"message": "Not Found", "status": "404"})

    def _create(self, number: int, body: str) -> Reply:
        if not body:
            return Reply.json(422, {"message": "Validation Failed", "status": "422"})
        comment = Comment(max(self.comments, default=0) + 1, number, body)
        self.comments[comment.id] = comment
        return Reply.json(201, self._rest_comment(comment))

    def _rest_comment(self, c: Comment) -> dict[str, Any]:
        return {
            "id": c.id,
            "node_id": c.node_id,
            "body": c.body,
            "user": {"login": f"{BOT}[bot]", "type": "Bot"},
            "html_url": f"https://github.com/{self.repository}/pull/{c.number}#issuecomment-{c.id}",
            "created_at": c.created_at,
            "updated_at": c.created_at,
        }

    # --- GraphQL ------------------------------------------------------------------------------
    def _graphql(self, operation: str, v: dict[str, Any]) -> dict[str, Any]:
        if operation == "pullRequest":
            if f"{v.get('owner')}/{v.get('repo')}" != self.repository:
                return _error(
                    "NOT_FOUND", "Could not resolve to a Repository", {"repository": None}
                )
            nodes = self.on(int(v.get("number", 0)))
            start = int(v.get("after") or 0)
            page = nodes[start : start + 100]
            return {"data": {
                "viewer": {"login": f"{BOT}[bot]"},
                "repository": {"pullRequest": {"comments": {
                    "nodes": [{"id": c.node_id, "author": {"login": BOT},
                               "isMinimized": c.minimized, "body": c.body} for c in page],
                    "pageInfo": {"endCursor": str(start + len(page)),
                                 "hasNextPage": start + len(page) < len(nodes)},
                }}},
            }}  # fmt: skip
        node_id = (
            (v.get("input") or {}).get("id")
            or (v.get("input") or {}).get("subjectId")
            or v.get("id")
        )
        comment = next((c for c in self.comments.values() if c.node_id == node_id), None)
        if operation not in ("updateIssueComment", "deleteIssueComment", "minimizeComment"):
            return _error(
                "UNKNOWN", f"the local GitHub answers no {operation or 'such'} query", None
            )
        if comment is None:
            return _error(
                "NOT_FOUND",
                f"Could not resolve to a node with the global id of '{node_id}'",
                {operation: None},
            )
        if operation == "updateIssueComment":
            comment.body = v["input"]["body"]
            return {
                "data": {operation: {"issueComment": {"id": comment.node_id, "body": comment.body}}}
            }
        if operation == "deleteIssueComment":
            del self.comments[comment.id]
        else:
            comment.minimized = True
        return {"data": {operation: {"clientMutationId": None}}}


def _operation(query: str) -> str:
    """The one field the action's query or mutation is about (no GraphQL parser: five shapes)."""
    for name in ("updateIssueComment", "deleteIssueComment", "minimizeComment", "pullRequest"):
        if re.search(rf"\b{name}\s*\(", query):
            return name
    return ""


def _error(kind: str, message: str, data: dict[str, Any] | None) -> dict[str, Any]:
    return {"data": data, "errors": [{"type": kind, "message": message}]}
