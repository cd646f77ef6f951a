"""``mlops``: a thin shell over the step functions; one error boundary, one line, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops import aws, config
from mlops.context import Context
from mlops.errors import EXIT_USAGE, PipelineError
from mlops.manifest import Manifest

STAGES = ("dev", "prod")
# Steps that need nothing from an earlier step's manifest (they start a run or a fresh job).
CREATES_MANIFEST = {
    "image",
    "etl",
    "deploy",
    "system-test",
    "promote",
    "rollback",
    "teardown",
    "inference",
    "monitor",
}


HELP = {
    "etl": "validate, split and encode the data (Glue job), unless a package can be reused",
    "evaluate": "score the candidate and prod's model on the test set (processing job, or runner)",
    "gate": "fail when the candidate is worse than the thresholds or prod",
    "register": "register the candidate as an Approved model package",
}


def _tune() -> dict[str, Any]:
    """--tune, defaulting to MLOPS_TUNE (deploy.yml's ``tune`` input) as read at parse time."""
    return {
        "action": "store_true",
        "default": os.environ.get("MLOPS_TUNE", "").lower() == "true",
        "help": "run a tuning job ([tune] in pipeline.toml); its best trial is the model",
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlops",
        description="The pipeline's steps, as the workflows run them (offline: mlops run --local).",
    )
    p.add_argument("--config", default="pipeline.toml", help="pipeline configuration file")
    p.add_argument(
        "--manifest",
        default=os.environ.get("MLOPS_MANIFEST", "run.json"),
        help="the run manifest each step reads and extends",
    )
    p.add_argument("--region", default=None, help="AWS region (default: AWS_REGION)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in HELP.items():
        sub.add_parser(name, help=text)
    sub.choices["etl"].add_argument(
        "--retrain",
        action="store_true",
        default=os.environ.get("MLOPS_RETRAIN", "").lower() == "true",
        help="run ETL and training even when a package was trained on the same inputs",
    )
    sub.choices["etl"].add_argument(
        "--data-key",
        default=os.environ.get("MLOPS_DATA_KEY", ""),
        metavar="KEY",
        help="train on this object under training/ of the data bucket (a repository dispatch "
        "names it) instead of [model] data",
    )
    sub.choices["etl"].add_argument(
        "--reason",
        default=os.environ.get("MLOPS_RETRAIN_REASON", ""),
        choices=("", "new-data", "drift"),
        help="why a repository dispatch asked to retrain (printed)",
    )
    s = sub.add_parser("image", help="find this commit's image in ECR; pin it by digest")
    s.add_argument("--repository-uri", required=True, help="the ECR repository URI")
    s.add_argument("--tag", required=True, help="the image tag (the commit sha)")
    s.add_argument("--digest", default="", help="check this digest and print the image URI")
    s = sub.add_parser("train", help="train the model (SageMaker training job)")
    s.add_argument("--image-uri", default=os.environ.get("MLOPS_IMAGE_URI"))
    s.add_argument("--tune", **_tune())
    arn = {"default": os.environ.get("MLOPS_MODEL_PACKAGE_ARN"), "help": "exact model package ARN"}
    for name, text in (
        ("deploy", "deploy the endpoint stack of a stage with an Approved package"),
        ("system-test", "run tests/system against a stage's endpoint"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--stage", choices=STAGES, required=True)
        s.add_argument("--model-package-arn", **arn)
    s = sub.add_parser("promote", help="mark the package InService in prod, retire the previous")
    s.add_argument("--model-package-arn", **arn)
    s = sub.add_parser("rollback", help="redeploy the package that served prod before")
    s.add_argument("--stage", choices=STAGES, default="prod")
    s.add_argument("--model-package-arn", **arn)
    s = sub.add_parser("teardown", help="delete a stage's endpoint stack")
    s.add_argument("--stage", choices=STAGES, required=True)
    s.add_argument("--confirm", default="", help="must be 'prod' to delete prod")
    s = sub.add_parser("inference", help="the batch-inference pipeline of a stage")
    act = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = act.add_parser("upsert", help="create or update it for the package the stage serves")
    s.add_argument("--stage", choices=STAGES, default="prod")
    s.add_argument("--model-package-arn", help="exact model package ARN (default: the stage's)")
    s = act.add_parser("run", help="run it on a CSV batch (a file or s3://) and wait")
    s.add_argument("--input", required=True, help="a local CSV file or an s3:// object or prefix")
    s.add_argument("--stage", choices=STAGES, default="prod")
    s = sub.add_parser("monitor", help="drift on a stage's live traffic (data capture), reported")
    s.add_argument("--stage", choices=STAGES, default="prod")
    s.add_argument("--since", default="24h", help="24h / 90m / 2d back from --until, or ISO 8601")
    s.add_argument("--until", default="", help="ISO 8601 end of the window (default: now)")
    s.add_argument(
        "--issue", action="store_true", help="open or update the GitHub issue labelled drift (gh)"
    )
    _local_parser(sub)
    s = sub.add_parser("run", help="every step in order")
    s.add_argument("--local", action="store_true", help="offline: moto + local compute")
    s.add_argument("--approve", action="store_true", help="approve the prod deployment")
    s.add_argument("--tune", **_tune())
    s.add_argument("--image-uri", default=os.environ.get("MLOPS_IMAGE_URI"))
    s.add_argument("--runs-dir", default="runs", help="where --local keeps each run's files")
    s.add_argument(
        "--state",
        default="",
        help="--local: a running local AWS's state folder, where the run then goes "
        "(default: $MLOPS_LOCAL_STATE or .mlops-local/)",
    )
    return p


def _local_parser(sub: Any) -> None:
    s = sub.add_parser("local", help="a long-lived local AWS for a dev loop: up, status, down")
    act = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ups = act.add_parser("up", help='start it (unless running) and print its env: eval "$(...)"')
    ups.add_argument("--port", type=int, default=0, help="moto's port (default: a free one)")
    ups.add_argument("--runtime-port", type=int, default=0, help="the endpoint router's port")
    ups.add_argument("--timeout", type=float, default=180.0, help="seconds to wait until ready")
    act.add_parser("status", help="running or not (exit 1), its URLs, stacks and endpoints")
    act.add_parser("down", help="stop it: endpoints and compute stopped, state marked stopped")
    for parser in act.choices.values():
        parser.add_argument("--state", default="", help="state folder (default: .mlops-local/)")


def local(args: argparse.Namespace) -> int:
    """The control commands: the project is the folder of --config, the state inside it."""
    from mlops.local import control

    root = Path(args.config).resolve().parent
    state = Path(args.state) if args.state else root / control.DEFAULT_STATE
    if args.action == "up":
        ports = (args.port, args.runtime_port)
        print(control.up(state, root, ports=ports, timeout=args.timeout), end="", flush=True)
        return 0
    if args.action == "status":
        up, lines = control.status(state)
        print("\n".join(lines))
        return 0 if up else 1
    print(control.down(state))
    return 0


def _require(value: str | None, flag: str) -> str:
    if not value:
        raise config.ConfigError(f"{flag} is required (or set its MLOPS_* environment variable)")
    return value


def approver(auto: bool) -> Callable[[str], bool]:
    """The prod environment's reviewers, offline: --approve, or a yes at the terminal."""

    def approve(what: str) -> bool:
        if auto:
            aws.log(f"\nprod approval: granted by --approve for {what}")
            return True
        if sys.stdin.isatty():
            return input(f"\nApprove {what} for prod? [y/N] ").strip().lower() in {"y", "yes"}
        aws.log("\nprod approval: not given (no --approve and no terminal to ask)")
        return False

    return approve


def dispatch(args: argparse.Namespace, ctx: Context) -> Any:
    from mlops.steps import (
        deploy,
        etl,
        evaluate,
        gate,
        image,
        inference,
        promote,
        register,
        rollback,
        system_test,
        teardown,
        train,
        tune,
    )

    arn = getattr(args, "model_package_arn", None)
    match args.command:
        case "image":
            return image.run(ctx, args.repository_uri, args.tag, args.digest)
        case "etl":
            return etl.run(ctx, args.retrain, args.data_key, args.reason)
        case "train":
            step = tune.run if args.tune else train.run
            return step(ctx, _require(args.image_uri, "--image-uri"))
        case "evaluate":
            return evaluate.run(ctx)
        case "gate":
            return gate.run(ctx)
        case "register":
            return register.run(ctx)
        case "deploy":
            return deploy.run(ctx, args.stage, _require(arn, "--model-package-arn"))
        case "system-test":
            return system_test.run(ctx, args.stage, _require(arn, "--model-package-arn"))
        case "promote":
            return promote.run(ctx, _require(arn, "--model-package-arn"))
        case "rollback":
            return rollback.run(ctx, args.stage, arn)
        case "teardown":
            return teardown.run(ctx, args.stage, args.confirm)
        case "inference":
            if args.action == "upsert":
                return inference.upsert(ctx, args.stage, arn)
            return inference.run(ctx, args.stage, args.input)
        case "monitor":
            return _monitor(args, ctx)
    raise AssertionError(args.command)


def _monitor(args: argparse.Namespace, ctx: Context) -> Any:
    from mlops import github_setup
    from mlops.steps import monitor

    span = monitor.window(args.since, args.until)
    if not args.issue:
        return monitor.run(ctx, args.stage, span)
    gh = github_setup.run_gh
    repo = os.environ.get("GITHUB_REPOSITORY") or github_setup.detect_repo(gh)
    return monitor.run(ctx, args.stage, span, gh, repo)


def run_pipeline(args: argparse.Namespace, cfg: config.Config) -> None:
    from mlops.steps import run as run_step

    if not args.local:
        ctx = Context(cfg, aws.session(args.region), Manifest.load(args.manifest, create=True))
        run_step.run(
            ctx, _require(args.image_uri, "--image-uri"), approver(args.approve), tune=args.tune
        )
        return
    from mlops.local import control, run_service
    from mlops.local.run import workflow_run
    from mlops.local.scoring import score_batches

    state = Path(args.state or os.environ.get("MLOPS_LOCAL_STATE") or control.DEFAULT_STATE)
    if run_service.in_running(state, args.approve, args.tune):
        return
    with workflow_run(
        Path.cwd(),
        Path(args.runs_dir),
        cfg,
        approver(args.approve),
        after=score_batches,
        tune=args.tune,
    ):
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "local":
            return local(args)
        cfg = config.load(args.config)
        if args.command == "run":
            run_pipeline(args, cfg)
        else:
            ctx = Context(
                cfg,
                aws.session(args.region),
                Manifest.load(args.manifest, create=args.command in CREATES_MANIFEST),
            )
            dispatch(args, ctx)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_USAGE + 66  # 130, as shells report SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
