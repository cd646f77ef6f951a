"""Start a server in its own process group on a free loopback port, wait for /ping, always kill it.

Both servers get the same worker count and the same model directory; the caller only sees a
``with serve(...) as url`` block, and the whole process group (gunicorn master and workers, or our
server and its workers) is terminated on exit, error or Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_wrk import BenchError

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def free_port() -> int:
    """An unused TCP port on loopback (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def ours_command(port: int, workers: int, model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """`python -m abalone_model serve` configured as SageMaker would (port, model, workers)."""
    env = {
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
    }
    return [sys.executable, "-m", "abalone_model", "serve"], env


def reference_command(port: int, workers: int, model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The workshop's deployment: gunicorn sync workers running reference_wsgi:app.

    One OpenMP thread per worker (as our model's ``load`` does by default): with workers = cores,
    XGBoost's default of one thread per core oversubscribes the CPU and makes every predict wait on
    descheduled threads, which would handicap the reference rather than measure its design.
    """
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(HERE),
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
        "--no-control-socket",  # no shared ~/.gunicorn socket between concurrent runs
        "reference_wsgi:app",
    ]
    return cmd, {"SM_MODEL_DIR": str(model_dir), "OMP_NUM_THREADS": "1"}


def _ping(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # stray workers of an exited leader
        os.killpg(proc.pid, signal.SIGKILL)


def _log_tail(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


@contextlib.contextmanager
def serve(
    name: str, cmd: list[str], env: dict[str, str], port: int, ready_timeout: float = 60.0
) -> Iterator[str]:
    """Run ``cmd`` until the block ends; yield its base URL once /ping answers 200."""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log") as log:
        log_path = Path(log.name)
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + ready_timeout
            while not _ping(port):
                if proc.poll() is not None:
                    raise BenchError(
                        f"{name} server exited with {proc.returncode} before answering /ping: "
                        f"{_log_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} server did not answer /ping within {ready_timeout} s")
                time.sleep(0.1)
            yield f"http://{HOST}:{port}"
        finally:
            _stop(proc)
