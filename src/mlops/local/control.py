"""``mlops local up | status | down``: the long-lived local AWS (:mod:`mlops.local.server`) as a
detached process, found again through its state folder (default ``.mlops-local/``).

One server per state folder: ``up`` reuses a running one, a state whose process is gone is stale
and cleaned, ``down`` asks politely (SIGTERM: endpoints and compute stopped) before it insists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops.aws import log, new_session
from mlops.errors import PipelineError

# The state folder's layout (the server writes it; this module reads it without importing moto).
DEFAULT_STATE = ".mlops-local"
STATE_FILE = "state.json"
ENV_FILE = "env"
VARS_FILE = "vars"
OIDC_KEY = "oidc-key.pem"  # the local GitHub OIDC issuer's signing key (make workflows)
LOG_FILE = "server.log"
ADMIN_KEY = "local"  # the runtime's administrator credentials (moto's, not a secret)
SERVER = [sys.executable, "-m", "mlops.local.server"]
READY_TIMEOUT = 180.0  # bootstrap takes seconds; a cold machine's first imports take longer
STOP_TIMEOUT = 30.0  # compute in flight is waited for; then SIGKILL to the whole group


def write_atomic(path: Path, text: str) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_state(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """The server process exists and is not a zombie (a child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is the answer
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_server(pid: int) -> bool:
    """Alive and still the server (not another process that got its pid since)."""
    if not alive(pid):
        return False
    try:
        return b"mlops.local.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def running(state: Path) -> dict[str, Any] | None:
    """The state of a live server, or None; a stale "running" state is cleaned and said so."""
    data = read_state(state)
    if not data or data.get("status") != "running":
        return None
    if is_server(int(data["pid"])):
        return data
    for path in [state / ENV_FILE, *state.glob(f"{VARS_FILE}*")]:
        path.unlink(missing_ok=True)
    data.update(status="stale", stopped=time.time())
    write_atomic(state / STATE_FILE, json.dumps(data, indent=2) + "\n")
    log(f"local AWS: stale state in {state} (pid {data['pid']} is gone): cleaned")
    return None


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def _env(state: Path, data: dict[str, Any]) -> str:
    text = (state / ENV_FILE).read_text()
    return text + f"# local AWS: pid {data['pid']}, state {state} (mlops local status | down)\n"


def up(
    state: Path, root: Path, *, ports: tuple[int, int] = (0, 0), timeout: float = READY_TIMEOUT
) -> str:
    """Start the server detached (unless one runs) and wait until it is ready; its env text."""
    state = state.resolve()
    found = running(state)
    if found:
        log(f"local AWS: already running (pid {found['pid']}, moto {found['moto_url']})")
        return _env(state, found)
    state.mkdir(parents=True, exist_ok=True)
    (state / STATE_FILE).unlink(missing_ok=True)
    logfile = state / LOG_FILE
    argv = [*SERVER, "--state", str(state), "--root", str(root)]
    argv += ["--port", str(ports[0]), "--runtime-port", str(ports[1])]
    started = time.monotonic()
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: outlives this shell, and `down` kills it whole
        )
    log(f"local AWS: starting (pid {proc.pid}, log {logfile})")
    while True:
        data = read_state(state)
        if data and data.get("pid") == proc.pid and data.get("status") == "running":
            break
        if proc.poll() is not None:
            raise PipelineError(
                f"local AWS did not start: {last_line(logfile)}", hint=f"see {logfile}"
            )
        if time.monotonic() - started > timeout:
            _kill_group(proc.pid)
            proc.wait()
            raise PipelineError(
                f"local AWS not ready after {timeout:.0f}s: {last_line(logfile)}",
                hint=f"see {logfile}",
            )
        time.sleep(0.1)
    log(f"local AWS: ready in {time.monotonic() - started:.1f}s: moto {data['moto_url']}")
    return _env(state, data)


def _kill_group(pid: int) -> None:
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            return
        except (ProcessLookupError, PermissionError):
            continue


def down(state: Path, *, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the server: SIGTERM, wait, then SIGKILL to its group; what happened, one line."""
    state = state.resolve()
    data = running(state)
    if not data:
        return f"local AWS: not running (state {state})"
    pid, started = int(data["pid"]), time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while alive(pid) and time.monotonic() - started < timeout:
        time.sleep(0.1)
    forced = alive(pid)
    if data.get("group"):
        _kill_group(pid)  # the leader gone or not: no endpoint or job process stays behind
    elif forced:
        os.kill(pid, signal.SIGKILL)
    if forced:
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:  # SIGKILL is delivered, not awaited
            time.sleep(0.05)
        running(state)  # it could not mark itself stopped: clean the state now
    how = f"killed after {timeout:.0f}s" if forced else "stopped"
    return f"local AWS: {how} (pid {pid}, {time.monotonic() - started:.1f}s)"


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def status(state: Path) -> tuple[bool, list[str]]:
    """Running or not, and what runs, asked of the server itself (boto3): stacks, endpoints."""
    state = state.resolve()
    data = running(state)
    if not data:
        return False, [f"local AWS: stopped (state {state}; start it with `mlops local up`)"]
    session = new_session(
        aws_access_key_id=ADMIN_KEY,
        aws_secret_access_key=ADMIN_KEY,
        region_name=data["region"],
    )
    url = data["moto_url"]
    try:
        found = session.client("cloudformation", endpoint_url=url).describe_stacks()["Stacks"]
        endpoints = session.client("sagemaker", endpoint_url=url).list_endpoints()["Endpoints"]
    except (BotoCoreError, ClientError) as exc:
        raise PipelineError(
            f"local AWS (pid {data['pid']}) does not answer at {url}: {exc}",
            hint=f"see {state / LOG_FILE}; `mlops local down` stops it",
        ) from None
    lines = [
        f"local AWS: running (pid {data['pid']}, up {_uptime(time.time() - data['started'])})",
        f"  moto:      {url}",
        f"  endpoints: {data['runtime_url']}",
        f"  state:     {state}",
    ]
    lines += [f"  stack {s['StackName']}: {s['StackStatus']}" for s in found]
    lines += [f"  endpoint {e['EndpointName']}: {e['EndpointStatus']}" for e in endpoints]
    if not endpoints:
        lines.append("  no endpoints")
    return True, lines
