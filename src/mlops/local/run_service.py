"""``mlops run --local`` against a running local AWS: the run happens in the server, where the
compute and the moto patches live, and the caller follows it.

The server offers, on 127.0.0.1 only, ``POST /runs`` (``{"approve": bool, "tune": bool}``: 202
and the run's id; 409 while another run is in progress: one account, one run at a time, as the
workflows' concurrency groups have it) and ``GET /runs/<id>`` (``running``, or ``done`` with the
exit code and the error line). The run's output is the server's log, which the caller prints from
where it stood when the run began, so the terminal shows what ``make pipeline`` always shows.
The prod approval is the caller's ``--approve``: the server has no terminal to ask at.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.errors import EXIT_FAILED, PipelineError
from mlops.local.act._server import LoopbackServer, Reply, Request

POLL_SECONDS = 0.5
Run = Callable[[bool, bool], None]  # (approve, tune): one whole run; raises PipelineError


class RunService(LoopbackServer):
    """Starts ``run`` in a thread on request; one at a time."""

    def __init__(self, run: Run, port: int = 0) -> None:
        super().__init__(port)
        self._run = run
        self._runs: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/runs":
            return self._start(request)
        if request.method == "GET" and request.path.startswith("/runs/"):
            number = request.path.removeprefix("/runs/")
            with self.lock:
                found = next((r for r in self._runs if str(r["id"]) == number), None)
            if found is None:
                return Reply.json(404, {"message": f"no run {number}"})
            return Reply.json(200, dict(found))
        return Reply.json(404, {"message": f"no {request.method} {request.path} here"})

    def _start(self, request: Request) -> Reply:
        try:
            body = request.json()
            approve, tune = bool(body.get("approve")), bool(body.get("tune"))
        except (ValueError, AttributeError):
            return Reply.json(400, {"message": 'the body is {"approve": bool, "tune": bool}'})
        with self.lock:
            if any(r["status"] == "running" for r in self._runs):
                return Reply.json(409, {"message": "a run is in progress in this local AWS: wait "
                                        "for it (mlops local status)"})  # fmt: skip
            record: dict[str, Any] = {"id": len(self._runs) + 1, "status": "running"}
            self._runs.append(record)
        threading.Thread(target=self._body, args=(record, approve, tune), daemon=True).start()
        return Reply.json(202, {"id": record["id"]})

    def _body(self, record: dict[str, Any], approve: bool, tune: bool) -> None:
        code, message = 0, ""
        try:
            self._run(approve, tune)
        except PipelineError as exc:  # the caller prints it
            code, message = exc.exit_code, str(exc)
        except Exception as exc:  # the log keeps the traceback; the caller gets its last line
            traceback.print_exc()
            code, message = EXIT_FAILED, f"local AWS: {type(exc).__name__}: {exc}"
        with self.lock:
            record.update(status="done", code=code, message=message)


def in_running(state: Path, approve: bool, tune: bool) -> bool:
    """The whole run in the local AWS running with ``state``, if one is: True when it ran."""
    from mlops.aws import log
    from mlops.local import control

    found = control.running(state.resolve())
    if not (found and found.get("control_url")):
        return False
    log(f"local: running in the local AWS that is up (pid {found['pid']}, state {state}; "
        "its account as it is: `mlops local down` first for an empty one)")  # fmt: skip
    follow(found["control_url"], state.resolve() / control.LOG_FILE, approve, tune, sys.stderr)
    return True


def follow(url: str, log: Path, approve: bool, tune: bool, out: Any) -> int:
    """Start a run in the server at ``url``, print its log as it grows; the run's exit code."""
    offset = log.stat().st_size if log.exists() else 0
    started = _call(f"{url}/runs", {"approve": approve, "tune": tune})
    status: dict[str, Any] = {"status": "running"}
    with log.open("ab+") as lines:  # the server may not have written it yet
        lines.seek(offset)
        while status["status"] == "running":
            time.sleep(POLL_SECONDS)
            status = _call(f"{url}/runs/{started['id']}")
            out.write(lines.read().decode(errors="replace"))
            out.flush()
        out.write(lines.read().decode(errors="replace"))
    if status["code"]:
        raise _Failed(status["message"] or "the run failed (see above)", status["code"])
    return 0


class _Failed(PipelineError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def _call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    if not url.startswith("http://127.0.0.1:"):
        raise PipelineError(f"local AWS: {url} is not a loopback URL: check the state folder")
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback only)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("message", str(exc))
        raise PipelineError(f"local AWS: {message}") from None
    except urllib.error.URLError as exc:
        raise PipelineError(f"local AWS at {url} does not answer ({exc.reason}): "
                            "mlops local status") from None  # fmt: skip
