"""What every step gets: configuration, a boto3 session, the run manifest and the account names."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from mlops import account as account_mod
from mlops.config import Config
from mlops.manifest import Manifest


@dataclass
class Context:
    config: Config
    session: boto3.Session
    manifest: Manifest
    root: Path = field(default_factory=Path.cwd)
    _clients: dict[str, Any] = field(default_factory=dict)
    _account: account_mod.Account | None = None

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        """One client per service, created on first use from the session (never at import)."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    @property
    def account(self) -> account_mod.Account:
        if self._account is None:
            stack = os.environ.get("MLOPS_BOOTSTRAP_STACK") or self.config.bootstrap_stack
            self._account = account_mod.read(self.client("cloudformation"), stack, self.region)
        return self._account

    @property
    def run_id(self) -> str:
        """Set once per run: a timestamp and the git sha, short enough for SageMaker job names."""
        run_id = self.manifest.get("run.id")
        if not run_id:
            sha = git_sha(self.root)
            run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{sha[:7]}"
            self.manifest.update("run", {"id": run_id, "git_sha": sha})
        return run_id

    def job_name(self, step: str) -> str:
        """Unique per attempt: SageMaker refuses a second job with the same name (a retry)."""
        attempt = int(self.manifest.get(f"attempts.{step}", 0)) + 1
        self.manifest.update("attempts", {step: attempt})
        suffix = "" if attempt == 1 else f"-{attempt}"
        return f"{self.config.project}-{step}-{self.run_id}"[: 63 - len(suffix)] + suffix


def git_sha(root: Path) -> str:
    """The commit being run (GITHUB_SHA in Actions); 'unknown' outside a git checkout."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
