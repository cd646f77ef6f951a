"""A local stand-in for the ``gh`` calls of the bootstrap's GitHub setup: it keeps the environments
and variables that :mod:`mlops.github_setup` sets, so the local job runner gives each job exactly
the ``vars`` GitHub would (the same code sets them here and on GitHub)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlops.errors import PipelineError


@dataclass
class LocalGitHub:
    repository: str = "example-org/abalone-mlops"
    user_id: int = 1
    reviewers_supported: bool = True  # False: a private repository on GitHub Free
    variables: dict[str, dict[str, str]] = field(default_factory=lambda: {"": {}})
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> the issue

    def __call__(self, args: list[str], body: dict | None = None, placeholder: str = "") -> str:
        """Answer one ``gh`` argv as GitHub's API would."""
        self.calls.append(list(args))
        if args[:2] == ["auth", "status"]:
            return "Logged in to github.com (local)"
        if args[:2] == ["repo", "view"]:
            return self.repository
        if args[0] != "api":
            raise PipelineError(f"local GitHub: no stand-in for gh {' '.join(args[:2])}")
        method = args[args.index("--method") + 1] if "--method" in args else "GET"
        path = next(a for a in args[1:] if "/" in a or a == "user")
        return self._api(method, path, args, body)

    def _api(self, method: str, path: str, args: list[str], body: dict | None) -> str:
        repo = f"repos/{self.repository}"
        if path in ("user",) or path.startswith("users/"):
            return str(self.user_id)
        if path == f"{repo}/branches/main":
            return "true"
        if path.startswith(f"{repo}/environments/") and "/variables" not in path:
            name = path.rsplit("/", 1)[-1]
            if method == "PUT":
                rules = (body or {}).get("reviewers") if self.reviewers_supported else None
                self.environments[name] = {"reviewers": rules or []}
                return "{}"
            found = self.environments.get(name, {})
            return "required_reviewers" if found.get("reviewers") else ""
        if path.endswith("/variables") or "/variables/" in path:
            scope = self._scope(path)
            if method == "GET":
                return "\n".join(sorted(self.variables.get(scope, {})))
            fields = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
            self.variables.setdefault(scope, {})[fields["name"]] = fields["value"]
            return "{}"
        if path == f"{repo}/issues" or path.startswith(f"{repo}/issues/"):
            return self._issues(method, path.removeprefix(f"{repo}/issues").strip("/"), args, body)
        raise PipelineError(f"local GitHub: no stand-in for {method} {path}")

    def _issues(self, method: str, rest: str, args: list[str], body: dict | None) -> str:
        """List (open, by label: the oldest's number, as github_issue's --jq asks), create,
        update and comment, as the REST API's issues endpoints do."""
        if not rest and method == "GET":
            fields = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
            label, state = fields.get("labels", ""), fields.get("state", "open")
            found = [
                n
                for n, i in sorted(self.issues.items())
                if i["state"] == state and (not label or label in i["labels"])
            ]
            return str(found[0]) if found else ""
        if not rest and method == "POST":
            if not (body or {}).get("title"):
                raise PipelineError("local GitHub: 422 an issue needs a title")
            number = max(self.issues, default=0) + 1
            self.issues[number] = {
                "title": body["title"],
                "body": body.get("body", ""),
                "labels": list(body.get("labels", [])),
                "state": "open",
                "comments": [],
            }
            return str(number)
        number, _, sub = rest.partition("/")
        issue = self.issues.get(int(number)) if number.isdigit() else None
        if issue is None:
            raise PipelineError(f"local GitHub: 404 no issue {number}")
        if method == "PATCH" and not sub:
            issue.update({k: v for k, v in (body or {}).items() if k in ("title", "body", "state")})
            return "{}"
        if method == "POST" and sub == "comments":
            issue["comments"].append((body or {}).get("body", ""))
            return "{}"
        raise PipelineError(f"local GitHub: no stand-in for {method} issues/{rest}")

    def _scope(self, path: str) -> str:
        """ "" for repository variables, else the environment's name."""
        if "/environments/" in path:
            return path.split("/environments/", 1)[1].split("/", 1)[0]
        return ""

    def vars_for(self, environment: str = "") -> dict[str, str]:
        """What ``vars`` holds in a job: repository variables, overridden by the environment's."""
        return {**self.variables.get("", {}), **self.variables.get(environment, {})}

    def dump(self) -> str:
        return json.dumps(
            {"variables": self.variables, "environments": self.environments},
            indent=2,
            sort_keys=True,
        )
