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
        raise PipelineError(f"local GitHub: no stand-in for {method} {path}")

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
