"""The local AWS as a long-lived server: ``python -m mlops.local.server --state DIR [--port N]``.

The same :class:`LocalRuntime` a run enters (moto, its gap patches, the IAM enforcement, the
compute, the endpoint router), bootstrapped with scripts/bootstrap's own code, then kept up until
SIGTERM or SIGINT, so that any process on this machine (an ``mlops`` step, a boto3 script, the AWS
CLI) uses it with nothing but the environment written to the state folder. The patches live in
this process, next to moto's backends, so they apply to every request moto serves, whoever sent it.

The state folder: ``state.json`` (written last, so "running" there means ready), ``env`` (shell
``export`` lines), ``vars`` and ``vars.<environment>`` (the GitHub variables the bootstrap set, in
act's ``--var-file`` format), ``oidc-key.pem`` (the key the local STS trusts job tokens signed
with, for ``make workflows``'s token service) and ``server.log`` (written by whoever started
this process).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops import config
from mlops.aws import log
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.local.control import (
    ADMIN_KEY,
    ENV_FILE,
    OIDC_KEY,
    STATE_FILE,
    VARS_FILE,
    write_atomic,
)
from mlops.local.github_stub import LocalGitHub
from mlops.local.run_service import RunService
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest

READY = "local AWS ready"
# Data capture is buffered per endpoint (25 records); AWS delivers it within minutes, so a
# long-lived server writes what it holds this often, for a dev loop that reads the capture prefix.
FLUSH_SECONDS = 60.0


def environment(runtime: LocalRuntime) -> dict[str, str]:
    """What a client in another process needs: the endpoints, the admin credentials, the names."""
    return {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.endpoints.url,
        "AWS_ACCESS_KEY_ID": ADMIN_KEY,
        "AWS_SECRET_ACCESS_KEY": ADMIN_KEY,
        "AWS_REGION": runtime.region,
        "AWS_DEFAULT_REGION": runtime.region,
        "MLOPS_BOOTSTRAP_STACK": os.environ["MLOPS_BOOTSTRAP_STACK"],
        "MLOPS_IMAGE_URI": runtime.image_uri,
        "MLOPS_CONTAINER_ENGINE": "local",  # a runner's `docker run` (mlops.container)
    }


def env_text(env: dict[str, str]) -> str:
    """``eval``-able: exports, and the variables the runtime clears (a shell's own profile or
    session token would otherwise go along with the local keys)."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join([*lines, "unset AWS_SESSION_TOKEN AWS_PROFILE"]) + "\n"


def dotenv_text(values: dict[str, str]) -> str:
    """act's ``--var-file`` (dotenv): NAME=value, double-quoted when the value needs it."""
    lines = []
    for name, value in sorted(values.items()):
        if value and all(c.isalnum() or c in "-_./:@=+," for c in value):
            lines.append(f"{name}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def var_files(github: LocalGitHub) -> dict[str, str]:
    """``vars`` (repository variables) and ``vars.<env>`` per environment, as GitHub resolves
    ``vars`` in a job with that environment (the environment's value wins)."""
    environments = sorted({*github.environments, *(s for s in github.variables if s)})
    files = {VARS_FILE: dotenv_text(github.vars_for())}
    for name in environments:
        files[f"{VARS_FILE}.{name}"] = dotenv_text(github.vars_for(name))
    return files


def stacks(runtime: LocalRuntime) -> list[dict[str, str]]:
    found = runtime.session.client("cloudformation").describe_stacks()["Stacks"]
    return [{"name": s["StackName"], "status": s["StackStatus"]} for s in found]


def check_port(port: int, flag: str) -> None:
    """A fixed port must be free (moto's server would wait for it forever otherwise)."""
    if not port:
        return
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(
                f"port {port} on 127.0.0.1 is in use: "
                f"pass another {flag} or stop what listens there"
            ) from None


def write_state(
    state: Path, runtime: LocalRuntime, github: LocalGitHub, control_url: str = ""
) -> dict[str, Any]:
    env = environment(runtime)
    write_atomic(state / ENV_FILE, env_text(env))
    for name, text in var_files(github).items():
        write_atomic(state / name, text)
    runtime.tokens.save(state / OIDC_KEY)
    data = {
        "status": "running",
        "pid": os.getpid(),
        "group": os.getpgrp() == os.getpid(),  # its own process group: `down` may kill it whole
        "moto_url": env["AWS_ENDPOINT_URL"],
        "runtime_url": env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"],
        "region": runtime.region,
        "account": runtime.account,
        "started": time.time(),
        "root": str(runtime.root),
        "image_uri": runtime.image_uri,
        "repository": github.repository,  # the one the bootstrap's trust policies name
        "control_url": control_url,  # `mlops run --local` runs here (mlops.local.run_service)
        "stacks": stacks(runtime),
    }
    write_atomic(state / STATE_FILE, json.dumps(data, indent=2) + "\n")  # last: "ready"
    return data


def mark_stopped(state: Path) -> None:
    """The env and vars files describe a running server: gone with it; the state says stopped."""
    for path in [state / ENV_FILE, state / OIDC_KEY, *state.glob(f"{VARS_FILE}*")]:
        path.unlink(missing_ok=True)
    path = state / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if data.get("pid") == os.getpid():
        data.update(status="stopped", stopped=time.time())
        write_atomic(path, json.dumps(data, indent=2) + "\n")


def runner(
    root: Path, state: Path, cfg: config.Config, runtime: LocalRuntime, github: LocalGitHub
) -> Callable[[bool, bool], None]:
    """What ``mlops run --local`` asks this server for: the whole run in this account."""

    def run(approve: bool, tune: bool) -> None:
        from mlops.cli import approver
        from mlops.local.run import workflow_run
        from mlops.local.scoring import score_batches

        running = (runtime, github)
        with workflow_run(root, state / "runs", cfg, approver(approve), after=score_batches,
                          tune=tune, running=running):  # fmt: skip
            pass

    return run


def serve(state: Path, root: Path, ports: tuple[int, int], stop: threading.Event) -> None:
    check_port(ports[0], "--port")
    check_port(ports[1], "--runtime-port")
    cfg = config.load(root / "pipeline.toml")
    state.mkdir(parents=True, exist_ok=True)
    try:
        with LocalRuntime(root, state / "runs", ports=ports) as runtime:
            manifest = Manifest.load(runtime.run_dir / "manifest.json", create=True)
            ctx = Context(cfg, runtime.session, manifest, root=root)
            github = runtime.bootstrap(ctx, push=True)
            with RunService(runner(root, state, cfg, runtime, github)) as service:
                data = write_state(state, runtime, github, service.url)
                print(
                    f"{READY}: moto {data['moto_url']}, endpoints {data['runtime_url']}, "
                    f"pid {data['pid']}, state {state}",
                    flush=True,
                )
                while not stop.wait(FLUSH_SECONDS):
                    runtime.endpoints.flush_all()
                log("local AWS: stopping (endpoints, compute, moto)")
    finally:
        mark_stopped(state)
    log("local AWS: stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlops.local.server", description=__doc__)
    p.add_argument("--state", required=True, help="the state folder")
    p.add_argument("--root", default=".", help="the project (pipeline.toml, cloudformation/)")
    p.add_argument("--port", type=int, default=0, help="moto's port (default: a free one)")
    p.add_argument("--runtime-port", type=int, default=0, help="the endpoint router's port")
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(
            Path(args.state).resolve(),
            Path(args.root).resolve(),
            (args.port, args.runtime_port),
            stop,
        )
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except Exception as exc:  # the log keeps the traceback; its last line says what failed
        traceback.print_exc()
        print(f"error: local AWS: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
