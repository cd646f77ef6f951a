"""The GitHub half of scripts/bootstrap: environments dev and prod, prod reviewers, variables.

Every call goes through a ``Gh`` runner: :func:`run_gh` runs ``gh`` for real, :func:`dry_gh`
prints the argv it would run (``--dry-run``), tests pass a fake. Stdlib only.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable
from typing import Any

from mlops.aws import log
from mlops.errors import ConfigError, PipelineError

Gh = Callable[..., str]
MAX_REVIEWERS = 6  # GitHub's limit for required reviewers of an environment


def run_gh(args: list[str], body: dict | None = None, placeholder: str = "") -> str:
    """Run ``gh ARGS`` (no shell), JSON body on stdin; return stdout or raise one line."""
    del placeholder  # only the dry-run runner answers with placeholders
    try:
        done = subprocess.run(
            ["gh", *args],
            input=None if body is None else json.dumps(body),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError:
        raise PipelineError(
            "gh not found: install gh (cli.github.com) and run gh auth login"
        ) from None
    except subprocess.TimeoutExpired:
        raise PipelineError(f"{shlex.join(['gh', *args])[:100]} timed out after 120 s") from None
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"{shlex.join(['gh', *args])[:100]} failed: {why}")
    return done.stdout.strip()


def dry_gh(args: list[str], body: dict | None = None, placeholder: str = "") -> str:
    """Print the gh call that would run and answer with the caller's placeholder."""
    stdin = "" if body is None else f" <<< '{json.dumps(body, sort_keys=True)}'"
    print(f"gh {shlex.join(args)}{stdin}", flush=True)
    return placeholder


def check_gh(gh: Gh) -> None:
    """Fail before any AWS work when gh cannot act for the user."""
    try:
        gh(["auth", "status"])
    except PipelineError as exc:
        if "not found" in str(exc):
            raise
        raise PipelineError("gh is not authenticated: install gh and run gh auth login") from None


def detect_repo(gh: Gh) -> str:
    """OWNER/NAME of the repository the current directory belongs to."""
    repo = gh(
        ["repo", "view", "--json", "owner,name", "--jq", '.owner.login + "/" + .name'],
        placeholder="OWNER/REPO",
    )
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ConfigError("cannot tell the GitHub repository: pass --repo OWNER/NAME")
    return repo


def resolve_reviewers(gh: Gh, specs: Iterable[str]) -> list[dict[str, Any]]:
    """USER or ORG/TEAM names to the ids GitHub wants; default: the authenticated user."""
    reviewers = []
    for spec in list(specs) or [""]:
        if "/" in spec:
            org, team = spec.split("/", 1)
            found = gh(["api", f"orgs/{org}/teams/{team}", "--jq", ".id"], placeholder="<team-id>")
            kind = "Team"
        else:
            path = f"users/{spec}" if spec else "user"
            found = gh(["api", path, "--jq", ".id"], placeholder="<user-id>")
            kind = "User"
        if not (found.isdigit() or found.startswith("<")):
            raise ConfigError(f"reviewer {spec!r} has no GitHub id: check the USER or ORG/TEAM")
        reviewers.append({"type": kind, "id": int(found) if found.isdigit() else found})
    if len(reviewers) > MAX_REVIEWERS:
        raise ConfigError(
            f"GitHub allows at most {MAX_REVIEWERS} required reviewers: pass fewer --reviewer"
        )
    return reviewers


def create_environments(gh: Gh, repo: str, reviewers: list[dict[str, Any]]) -> None:
    """dev for anyone's branch; prod behind reviewers and protected branches only."""
    gh(["api", "--method", "PUT", f"repos/{repo}/environments/dev"])
    prod = {
        "reviewers": reviewers,
        "deployment_branch_policy": {"protected_branches": True, "custom_branch_policies": False},
    }
    try:
        gh(["api", "--method", "PUT", f"repos/{repo}/environments/prod", "--input", "-"], prod)
    except PipelineError as exc:  # a common case: private repository on GitHub Free
        raise PipelineError(
            f"{exc} (required reviewers need a public repository or a paid GitHub plan)"
        ) from None
    check_reviewers(gh, repo)
    protected = gh(["api", f"repos/{repo}/branches/main", "--jq", ".protected"], placeholder="true")
    if protected != "true":
        log(
            "warning: branch main is not protected, so prod refuses its deployments: add a "
            "branch protection rule for main (Settings > Branches)"
        )


def check_reviewers(gh: Gh, repo: str) -> None:
    """Read prod back: GitHub can accept the environment and still drop its reviewers (required
    reviewers need a public repository or a paid plan: "Deployments and environments", GitHub
    docs). Without them the prod role trusts any job that names the prod environment."""
    rules = gh(
        [
            "api",
            f"repos/{repo}/environments/prod",
            "--jq",
            '[.protection_rules[]?.type] | join(",")',
        ],
        placeholder="required_reviewers",
    )
    if "required_reviewers" not in rules.split(","):
        raise PipelineError(
            f"environment prod of {repo} has no required reviewers (GitHub dropped them: they need "
            "a public repository or a paid plan), so prod would deploy unreviewed: make the "
            "repository public or upgrade the plan, then rerun scripts/bootstrap"
        )


def set_variables(gh: Gh, base: str, values: dict[str, str]) -> None:
    """Upsert variables under ``base`` (repos/O/R/actions or .../environments/E): PATCH or POST."""
    listed = gh(["api", "--paginate", f"{base}/variables", "--jq", ".variables[].name"])
    existing = set(listed.split())
    for name, value in values.items():
        method, path = ("PATCH", f"/{name}") if name in existing else ("POST", "")
        fields = ["-f", f"name={name}", "-f", f"value={value}"]
        gh(["api", "--method", method, f"{base}/variables{path}", *fields])


def configure(
    gh: Gh,
    repo: str,
    reviewers: list[dict[str, Any]],
    outputs: dict[str, str],
    region: str,
    stack: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Environments first (environment variables need them), then every variable the workflows
    read: the region, the build role and ECR repository, the bootstrap stack, each deploy role."""
    create_environments(gh, repo, reviewers)
    set_variables(
        gh,
        f"repos/{repo}/actions",
        {
            "AWS_REGION": region,
            "BUILD_ROLE_ARN": outputs["BuildRoleArn"],
            # the full repository URI: a tag without the registry host would go to Docker Hub
            "ECR_REPOSITORY_URI": outputs["EcrRepositoryUri"],
            "MLOPS_BOOTSTRAP_STACK": stack,
            **(extra or {}),  # <STAGE>_MONITOR_ROLE_ARN: monitor.yml's role (no environment)
        },
    )
    for env in ("dev", "prod"):
        set_variables(
            gh,
            f"repos/{repo}/environments/{env}",
            {
                "DEPLOY_ROLE_ARN": outputs[f"{env.title()}DeployRoleArn"],
                "STACK_ROLE_ARN": outputs[f"{env.title()}StackRoleArn"],
            },
        )
