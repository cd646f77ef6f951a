"""One command from an empty AWS account + GitHub repository to a working setup (scripts/bootstrap).

Deploys cloudformation/bootstrap.yaml as ``<project>-bootstrap``, then
cloudformation/github-access.yaml (which imports its exports) as ``<project>-github-access``, then
cloudformation/inference.yaml (which imports both) as ``<project>-inference-<stage>`` for each of
pipeline.toml's ``[inference] stages``, then, only with ``--retrain-token-env``,
cloudformation/retrain.yaml as ``<project>-retrain`` (:mod:`mlops.retrain_setup`), each with
:func:`mlops.stack.deploy`, checks their outputs, then sets up GitHub with
:mod:`mlops.github_setup`. ``--dry-run`` prints every AWS and
gh call instead of making it. Needs admin AWS credentials and an authenticated ``gh``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from mlops import aws, bootstrap_dry, config, github_setup, retrain_setup, stack
from mlops.errors import EXIT_USAGE, ConfigError, PipelineError
from mlops.github_setup import Gh

TEMPLATES = Path(__file__).resolve().parents[2] / "cloudformation"
BOOTSTRAP_TEMPLATE, ACCESS_TEMPLATE = "bootstrap.yaml", "github-access.yaml"
INFERENCE_TEMPLATE, MONITOR_TEMPLATE = "inference.yaml", "monitor.yaml"
OIDC_HOST = "token.actions.githubusercontent.com"
BOOTSTRAP_OUTPUTS = (
    "DataBucket",
    "ArtifactBucket",
    "CaptureBucket",
    "KmsKeyArn",
    "SageMakerExecutionRoleArn",
    "GlueRoleArn",
    "GlueJobName",
    "EcrRepositoryName",
    "EcrRepositoryUri",
    "ModelPackageGroupName",
)
ACCESS_OUTPUTS = (
    "BuildRoleArn",
    "DevDeployRoleArn",
    "ProdDeployRoleArn",
    "DevStackRoleArn",
    "ProdStackRoleArn",
    "OidcProviderArn",
)
INFERENCE_OUTPUTS = ("InferencePipelineRoleArn", "InferencePipelineArn", "DriftAlarmName")
MONITOR_OUTPUTS = ("MonitorWorkflowRoleArn", "MonitorPipelineName")
OUTPUTS = BOOTSTRAP_OUTPUTS + ACCESS_OUTPUTS + INFERENCE_OUTPUTS + MONITOR_OUTPUTS
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
MAX_TEMPLATE_BODY = 51_200  # CloudFormation's limit for an inline TemplateBody
CAPABILITIES = ("CAPABILITY_NAMED_IAM",)


def dry_clients(inference_stacks: int = 1, retrain: bool = False) -> dict[str, Any]:
    """--dry-run's clients: every stack's outputs as placeholders (mlops.bootstrap_dry)."""
    keys = OUTPUTS + retrain_setup.OUTPUTS
    return bootstrap_dry.clients(keys, inference_stacks, retrain)


# --- AWS: the bootstrap and github-access stacks ---------------------------------------------


def oidc_parameters(iam: Any, current: dict | None) -> dict[str, str]:
    """Create the GitHub OIDC provider unless the account has one this stack (github-access)
    does not own."""
    previous = {
        p["ParameterKey"]: p.get("ParameterValue") for p in (current or {}).get("Parameters", [])
    }
    if previous.get("CreateOidcProvider") == "true":  # ours: switching to false would delete it
        return {"CreateOidcProvider": "true", "ExistingOidcProviderArn": ""}
    listed = aws.call("list OIDC providers", iam.list_open_id_connect_providers)
    arns = [p["Arn"] for p in listed.get("OpenIDConnectProviderList", [])]
    found = [arn for arn in arns if arn.endswith(f"/{OIDC_HOST}")]
    if found:
        return {"CreateOidcProvider": "false", "ExistingOidcProviderArn": found[0]}
    return {"CreateOidcProvider": "true", "ExistingOidcProviderArn": ""}


def check_outputs(
    outputs: dict[str, str], name: str, keys: Iterable[str], template: str
) -> dict[str, str]:
    """The stack outputs the next steps need; a missing one means the template is stale."""
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise PipelineError(
            f"stack {name} lacks outputs {', '.join(missing)}: update cloudformation/{template}"
        )
    return outputs


def read_template(folder: Path, name: str) -> Path:
    """One template, refused early when unreadable or too large to send inline."""
    path = folder / name
    try:
        size = len(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read template {path}: {exc.strerror}") from None
    if size > MAX_TEMPLATE_BODY:
        raise ConfigError(f"{path} is over {MAX_TEMPLATE_BODY} bytes: shorten it")
    return path


# --- the command -----------------------------------------------------------------------------


def parse_args(argv: list[str], templates: Path = TEMPLATES) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="scripts/bootstrap", description=__doc__.split("\n")[0])
    cli.add_argument("--region", help="AWS region (default: your AWS configuration)")
    cli.add_argument(
        "--config",
        type=Path,
        default=templates.parent / "pipeline.toml",
        help="pipeline configuration: [project] name and bootstrap_stack name every resource "
        "(default: pipeline.toml)",
    )
    cli.add_argument("--repo", help="OWNER/NAME (default: the repository of this directory)")
    cli.add_argument(
        "--reviewer",
        action="append",
        default=[],
        metavar="USER|ORG/TEAM",
        help="required prod reviewer, repeatable (default: you)",
    )
    cli.add_argument("--glue-workers", type=int, default=2, help="Glue workers, >= 2")
    cli.add_argument("--glue-worker-type", default="G.1X", help="Glue worker type (G.1X)")
    cli.add_argument("--flex", action="store_true", help="Glue Flex execution (cheaper, slower)")
    cli.add_argument(
        "--templates",
        type=Path,
        default=templates,
        metavar="DIR",
        help=f"where {BOOTSTRAP_TEMPLATE}, {ACCESS_TEMPLATE} and {INFERENCE_TEMPLATE} are "
        "(default: cloudformation/)",
    )
    cli.add_argument("--retrain-token-env", metavar="NAME", help=retrain_setup.HELP)
    cli.add_argument("--dry-run", action="store_true", help="print every call, make none")
    return cli.parse_args(argv)


def monitored_stages(cfg: config.Config) -> list[str]:
    """The [inference] stages whose endpoint captures data: they get live drift (monitor.yaml)."""
    return [s for s in cfg.inference["stages"] if cfg.stage(s).capture_sampling_percent > 0]


def project_name(name: str) -> str:
    """The project name from pipeline.toml, which the CLI uses for every job, stack and endpoint:
    the IAM grants are scoped by it, so the bootstrap must use the very same one."""
    if not PROJECT_RE.fullmatch(name):
        raise ConfigError(
            f"bad project name {name!r}: use 3-32 of a-z, 0-9 and '-', starting with a letter "
            "(set [project] name in pipeline.toml)"
        )
    return name


def bootstrap(args: argparse.Namespace, clients: dict[str, Any], gh: Gh) -> int:
    """The whole flow; clients and the gh runner come in so tests can pass moto or fakes."""
    cfg = config.load(args.config)
    project = project_name(cfg.project)  # a bad name fails before any call
    if args.glue_workers < 2:
        raise ConfigError("--glue-workers must be at least 2 (Glue's minimum)")
    boot_template = read_template(args.templates, BOOTSTRAP_TEMPLATE)
    access_template = read_template(args.templates, ACCESS_TEMPLATE)
    inference_template = read_template(args.templates, INFERENCE_TEMPLATE)
    monitor_template = read_template(args.templates, MONITOR_TEMPLATE)
    retrain_template, token = None, ""
    if args.retrain_token_env:  # opt-in; the token is read (and checked) before any call
        retrain_template = read_template(args.templates, retrain_setup.TEMPLATE)
        token = retrain_setup.read_token(args.retrain_token_env)
    if args.dry_run:
        aws.log("bootstrap: dry run: printing every call, making none")
    github_setup.check_gh(gh)
    repo = args.repo or github_setup.detect_repo(gh)
    reviewers = github_setup.resolve_reviewers(gh, args.reviewer)
    account = clients["sts"].get_caller_identity()["Account"]
    boot, access = cfg.bootstrap_stack, f"{project}-github-access"
    cfn = clients["cloudformation"]
    aws.log(
        f"bootstrap: account {account}, region {args.region}, "
        f"stacks {boot}, {access} and "
        f"{', '.join(cfg.inference_stack_name(s) for s in cfg.inference['stages'])}"
        f"{''.join(', ' + cfg.monitor_stack_name(s) for s in monitored_stages(cfg))}, repo {repo}"
    )
    deploy = {"region": args.region, "capabilities": CAPABILITIES, "tags": {"project": project}}
    boot_params = {
        "ProjectName": project,
        "GlueWorkerType": args.glue_worker_type,
        "GlueNumberOfWorkers": str(args.glue_workers),
        "GlueExecutionClass": "FLEX" if args.flex else "STANDARD",
        "ModelPackageGroupName": f"{project}-models",
    }
    found = stack.deploy(cfn, boot, boot_template, boot_params, **deploy)
    outputs = check_outputs(found, boot, BOOTSTRAP_OUTPUTS, BOOTSTRAP_TEMPLATE)
    # Second: its roles import the bootstrap exports, so that stack must be complete first.
    owner, name_of_repo = repo.split("/")
    access_params = {
        "GitHubOrg": owner,
        "GitHubRepo": name_of_repo,
        **oidc_parameters(clients["iam"], stack.describe(cfn, access)),
        "ProjectName": project,
        "BootstrapStackName": boot,
    }
    found = stack.deploy(cfn, access, access_template, access_params, **deploy)
    outputs |= check_outputs(found, access, ACCESS_OUTPUTS, ACCESS_TEMPLATE)
    # Third: the batch inference's roles, trigger and alarm; they import both stacks' exports.
    for stage in cfg.inference["stages"]:
        params = {
            "ProjectName": project,
            "Stage": stage,
            "BootstrapStackName": boot,
            "AccessStackName": access,
            "ScheduleExpression": cfg.inference["schedule"],
            "DriftAlarmThreshold": str(cfg.inference["drift_alarm_threshold"]),
        }
        name = cfg.inference_stack_name(stage)
        found = stack.deploy(cfn, name, inference_template, params, **deploy)
        check_outputs(found, name, INFERENCE_OUTPUTS, INFERENCE_TEMPLATE)
    # Fourth: live drift where the stage captures data (schedule, alarm, monitor.yml's role).
    monitor_roles = {}
    for stage in monitored_stages(cfg):
        params = {"ProjectName": project, "Stage": stage, "BootstrapStackName": boot}
        params |= {"AccessStackName": access, "GitHubOrg": owner, "GitHubRepo": name_of_repo}
        params["DriftAlarmThreshold"] = str(cfg.inference["drift_alarm_threshold"])
        name = cfg.monitor_stack_name(stage)
        found = stack.deploy(cfn, name, monitor_template, params, **deploy)
        role = check_outputs(found, name, MONITOR_OUTPUTS, MONITOR_TEMPLATE)[
            "MonitorWorkflowRoleArn"
        ]
        monitor_roles[f"{stage.upper()}_MONITOR_ROLE_ARN"] = role
    if retrain_template:  # last: its rules follow the data bucket and the drift alarms
        secret = retrain_setup.secret_name(project)
        version = retrain_setup.put_token(clients["secretsmanager"], secret, token)
        params = retrain_setup.parameters(project, boot, repo, version)
        name = retrain_setup.stack_name(project)
        found = stack.deploy(cfn, name, retrain_template, params, **deploy)
        check_outputs(found, name, retrain_setup.OUTPUTS, retrain_setup.TEMPLATE)
    github_setup.configure(gh, repo, reviewers, outputs, args.region, boot, monitor_roles)
    aws.log(f"bootstrap: done. Push to main to run the deploy workflow of {repo}.")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:
        import boto3

        args.region = args.region or boto3.Session().region_name or "<region>"
        cfg = config.load(args.config)
        stacks = len(cfg.inference["stages"]) + len(monitored_stages(cfg))
        clients = dry_clients(stacks, bool(args.retrain_token_env))
        return bootstrap(args, clients, github_setup.dry_gh)
    session = aws.session(args.region)
    args.region = session.region_name
    clients = {s: session.client(s) for s in ("sts", "iam", "cloudformation", "secretsmanager")}
    return bootstrap(args, clients, github_setup.run_gh)


def main(argv: list[str] | None = None, templates: Path = TEMPLATES) -> int:
    """The error boundary: every failure is one line on stderr and a non-zero exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv, templates)
    try:
        return _run(args)
    except PipelineError as exc:
        return _fail(str(exc), exc.exit_code)
    except NoCredentialsError:
        return _fail("no AWS credentials: run aws configure / aws sso login")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        hint = "run aws sso login" if "Token" in error.get("Code", "") else "check your AWS access"
        return _fail(
            f"AWS {exc.operation_name} failed: {error.get('Code')}: {error.get('Message')} ({hint})"
        )
    except BotoCoreError as exc:
        return _fail(f"AWS: {exc} (run aws configure / aws sso login)")
    except KeyboardInterrupt:
        print("bootstrap: interrupted", file=sys.stderr)
        return EXIT_USAGE + 66  # 130, as shells report SIGINT


def _fail(message: str, code: int = 1) -> int:
    print(f"bootstrap: error: {message}", file=sys.stderr)
    return code
