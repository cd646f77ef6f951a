"""The bootstrap's opt-in for retraining by itself (``scripts/bootstrap --retrain-token-env NAME``).

Reads a GitHub token from an environment variable (or stdin with ``-``; never from the command
line, where it would land in the shell history and the process list), keeps it in Secrets
Manager as ``<project>-github-dispatch`` (created, or a new version of it) and deploys
cloudformation/retrain.yaml as ``<project>-retrain`` with that version, so the EventBridge
connection takes the new token (CloudFormation resolves a secret's dynamic reference only when
the resource holding it changes: "Get a secret or secret value from Secrets Manager",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html).

The token needs one permission on the repository: a fine-grained personal access token with
"Contents" repository permissions (write), which "Create a repository dispatch event" requires
(https://docs.github.com/en/rest/repos/repos#create-a-repository-dispatch-event).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import IO, Any

from mlops import aws
from mlops.errors import ConfigError, PipelineError

TEMPLATE = "retrain.yaml"
OUTPUTS = (
    "RetrainConnectionArn",
    "RetrainApiDestinationArn",
    "RetrainRoleArn",
    "NewDataRuleArn",
    "DriftRuleArn",
)
PERMISSION = 'a fine-grained GitHub token on this repository with "Contents: Read and write"'
HELP = (
    "turn on retraining by itself (cloudformation/retrain.yaml): read the GitHub token from "
    f"environment variable NAME ('-': from stdin), {PERMISSION} (what a repository dispatch "
    "event needs); it is kept in Secrets Manager as <project>-github-dispatch"
)
TOKEN_RE = re.compile(r"^[\x21-\x7e]{20,255}$")  # printable, no spaces: one HTTP header value


def secret_name(project: str) -> str:
    return f"{project}-github-dispatch"


def stack_name(project: str) -> str:
    return f"{project}-retrain"


def read_token(source: str, stdin: IO[str] | None = None) -> str:
    """The token from environment variable ``source``, or from stdin when it is ``-``."""
    if source == "-":
        token = (stdin or sys.stdin).readline().strip()
        where = "stdin"
    else:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source):
            raise ConfigError(
                f"--retrain-token-env takes the NAME of an environment variable, not {len(source)} "
                "characters of something else (never pass the token itself on the command line)"
            )
        token = os.environ.get(source, "").strip()
        where = f"environment variable {source}"
    if not token:
        raise ConfigError(f"no GitHub token in {where}: set it to {PERMISSION}")
    if not TOKEN_RE.fullmatch(token):
        raise ConfigError(f"the GitHub token in {where} has spaces or control characters")
    return token


def put_token(secrets: Any, name: str, token: str) -> str:
    """Create the secret or add a version to it; returns that version's id."""
    value = json.dumps({"authorization": f"Bearer {token}"})
    try:
        aws.call("describe the token secret", secrets.describe_secret, SecretId=name)
    except PipelineError as exc:  # the secret does not exist yet: create it
        if "ResourceNotFoundException" not in str(exc):
            raise
        created = aws.call(
            "create the token secret",
            secrets.create_secret,
            Name=name,
            Description="GitHub token for repository dispatch events (retrain.yaml's connection)",
            SecretString=value,
        )
        return created["VersionId"]
    return aws.call(
        "store the new token", secrets.put_secret_value, SecretId=name, SecretString=value
    )["VersionId"]


def parameters(project: str, boot_stack: str, repo: str, version: str) -> dict[str, str]:
    owner, name = repo.split("/")
    return {
        "ProjectName": project,
        "BootstrapStackName": boot_stack,
        "GitHubOwner": owner,
        "GitHubRepo": name,
        "TokenSecretName": secret_name(project),
        "TokenSecretVersion": version,
    }
