"""The ``act`` command line for one job of a workflow, and the files it reads: built and tested
here, run by no test and not by .ci/run (the actions' code is on no package registry).

Flags of act 0.2.89 (``act --help``): ``-P ubuntu-latest=-self-hosted`` runs the job on this
machine; act's artifact server stays off (no ``--artifact-server-path``: upload-artifact v7 talks
to :mod:`.artifact_stub` instead) and its cache server binds to 127.0.0.1, not to the outbound
address act picks by default. ``--env`` reaches the steps; act reads ACTIONS_RUNTIME_URL and
ACTIONS_RUNTIME_TOKEN from its own environment (:func:`process_env`), and ``--secret NAME``
without a value takes the secret from there too, so no token is on the command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

LOOPBACK = "127.0.0.1"
RUNNER = "ubuntu-latest=-self-hosted"
# act's own environment, not the steps': where upload-artifact's service is (act copies the URL
# into ACTIONS_RESULTS_URL) and the token whose scope names the run and job
PROCESS = ("ACTIONS_RUNTIME_URL", "ACTIONS_RUNTIME_TOKEN")


def command(
    *,
    event: str,
    workflow: Path,
    job: str,
    event_path: Path,
    var_file: Path,
    cache_dir: Path,
    env: Mapping[str, str],
    secrets: tuple[str, ...] = ("GITHUB_TOKEN",),
    act: str = "act",
) -> list[str]:
    """argv for ``act <event> -j <job>`` (every job when ``job`` is empty); ``env`` is what the
    steps see (minus PROCESS)."""
    argv = [act, event, "-W", str(workflow), *(["-j", job] if job else [])]
    argv += ["-e", str(event_path), "-P", RUNNER]
    argv += ["--artifact-server-addr", LOOPBACK]
    argv += ["--cache-server-addr", LOOPBACK, "--cache-server-path", str(cache_dir)]
    argv += ["--var-file", str(var_file)]
    for name in sorted(env):
        if name not in PROCESS:
            argv += ["--env", f"{name}={env[name]}"]
    for name in secrets:
        argv += ["--secret", name]  # the value comes from act's environment
    return argv


def process_env(env: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """What act's own process needs on top of the caller's environment."""
    return {**{k: env[k] for k in PROCESS if k in env}, **secrets}


def head_sha(root: Path) -> str:
    """The checkout's commit: GITHUB_SHA and the tokens' sha claim of the runs."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() or "0" * 40


def write_var_file(path: Path, variables: Mapping[str, str]) -> Path:
    """The repository and environment variables (``vars``) in act's ``--var-file`` format
    (dotenv): one ``NAME='value'`` a line, single-quoted so that nothing in a value expands."""
    lines = []
    for name, value in sorted(variables.items()):
        if not name.replace("_", "").isalnum() or "'" in value or "\n" in value:
            raise ValueError(f"act's var file cannot hold {name}={value!r}")
        lines.append(f"{name}='{value}'\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


# act's cache folder (ActionCacheDir: $XDG_CACHE_HOME/act, else ~/.cache/act) and the folder it
# makes there per host job, <16 hex>/ (act/, hostexecutor/, tmp/: nektos/act
# pkg/runner/run_context.go); the job's end removes only hostexecutor/, and not always all of it
# (a job's .venv stays behind: 0.4-1.5 GB a job, 5.3 GB after a day of runs here).
_JOB_FOLDER = re.compile(r"^[0-9a-f]{16}$")


def act_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "act"


def _job_folders(cache: Path) -> set[Path]:
    if not cache.is_dir():
        return set()
    return {p for p in cache.iterdir() if p.is_dir() and _JOB_FOLDER.match(p.name)}


@contextmanager
def job_folders_removed(cache: Path | None = None) -> Iterator[None]:
    """The job folders act makes while this runs are removed after it; others are left alone."""
    cache = cache or act_cache()
    before = _job_folders(cache)
    try:
        yield
    finally:
        for folder in _job_folders(cache) - before:
            shutil.rmtree(folder, ignore_errors=True)
