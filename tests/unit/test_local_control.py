"""`mlops local up | status | down` (local/control.py) with stand-in servers (small scripts that
keep the state folder's contract): ready means state.json says running with the new pid, one server
per state folder, a failed or slow start says why from its log, down escalates, stale state is
cleaned. The real server is tested in tests/integration/test_local_server.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops import cli
from mlops.errors import PipelineError
from mlops.local import control

ROOT = Path(__file__).resolve().parents[2]
# argv[1] is the mode; the file name makes /proc/<pid>/cmdline name the server, as the real one's
FAKE = """
import json, os, signal, sys, time
from pathlib import Path
mode, state = sys.argv[1], Path(sys.argv[sys.argv.index("--state") + 1])
(state / "starts").open("a").write("x")
print("fake: starting", flush=True)
if mode == "fail":
    print("error: port 4566 on 127.0.0.1 is in use: pass another --port", flush=True)
    sys.exit(4)
if mode == "slow":
    print("fake: still bootstrapping", flush=True)
    time.sleep(600)
def stop(*_):
    data = json.loads((state / "state.json").read_text())
    data["status"] = "stopped"
    (state / "state.json").write_text(json.dumps(data))
    (state / "env").unlink()
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stop)
(state / "env").write_text("export AWS_ENDPOINT_URL=http://127.0.0.1:1\\n")
data = {"status": "running", "pid": os.getpid(), "group": os.getpgrp() == os.getpid(),
        "moto_url": "http://127.0.0.1:1", "runtime_url": "http://127.0.0.1:2",
        "region": "us-east-1", "started": time.time()}
(state / "state.json").write_text(json.dumps(data))
while True:
    time.sleep(1)
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Selects the stand-in's behaviour: fake("ready"), fake("fail"), ..."""
    script = tmp_path / "fake-mlops.local.server.py"
    script.write_text(FAKE)

    def use(mode: str) -> None:
        monkeypatch.setattr(control, "SERVER", [sys.executable, str(script), mode])

    return use


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not control.alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_up_waits_for_ready_prints_the_env_and_starts_one_server_per_state(fake, state, capsys):
    fake("ready")
    text = control.up(state, ROOT, timeout=20)
    pid = control.read_state(state)["pid"]
    try:
        assert text.startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:1\n")
        assert f"# local AWS: pid {pid}, state {state.resolve()}" in text  # a comment: eval-safe
        assert os.getpgid(pid) == pid  # its own group: it outlives the shell; down kills it whole
        again = control.up(state, ROOT, timeout=20)
        assert again == text
        assert (state / "starts").read_text() == "x"  # no second server
        assert "already running (pid" in capsys.readouterr().err
    finally:
        said = control.down(state)
    assert said.startswith(f"local AWS: stopped (pid {pid}, ")
    assert _gone(pid)
    assert control.read_state(state)["status"] == "stopped"
    assert control.down(state) == f"local AWS: not running (state {state.resolve()})"


def test_a_server_that_exits_is_reported_with_its_logs_last_line(fake, state):
    fake("fail")
    with pytest.raises(PipelineError) as exc:
        control.up(state, ROOT, timeout=20)
    assert str(exc.value) == (
        "local AWS did not start: error: port 4566 on 127.0.0.1 is in use: pass another --port "
        f"(see {state.resolve() / 'server.log'})"
    )


def test_a_server_not_ready_in_time_is_killed_and_its_last_line_given(fake, state):
    fake("slow")
    with pytest.raises(PipelineError, match=r"not ready after 1s: fake: still bootstrapping"):
        control.up(state, ROOT, timeout=1)
    found = subprocess.run(["pgrep", "-f", f"slow --state {state.resolve()}"], check=False)
    assert found.returncode == 1  # no process left behind


def test_down_kills_a_server_that_ignores_sigterm_and_cleans_its_state(fake, state):
    fake("stubborn")
    control.up(state, ROOT, timeout=20)
    pid = control.read_state(state)["pid"]
    said = control.down(state, timeout=0.5)
    assert said.startswith(f"local AWS: killed after 0s (pid {pid}, ")
    assert _gone(pid)
    assert control.read_state(state)["status"] == "stale"
    assert not (state / "env").exists()


def test_a_stale_state_is_detected_and_cleaned(state, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):  # gone; alive but not the server (a reused pid)
        state.mkdir(exist_ok=True)
        (state / "env").write_text("export AWS_ENDPOINT_URL=http://127.0.0.1:1\n")
        (state / "vars.dev").write_text("A=b\n")
        (state / "state.json").write_text(json.dumps({"status": "running", "pid": pid}))
        assert control.status(state) == (
            False,
            [f"local AWS: stopped (state {state.resolve()}; start it with `mlops local up`)"],
        )
        assert control.read_state(state)["status"] == "stale"
        assert not (state / "env").exists() and not (state / "vars.dev").exists()
        assert f"(pid {pid} is gone): cleaned" in capsys.readouterr().err


def test_a_zombie_is_not_alive():
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not control.alive(child.pid)  # exited, not yet reaped: kill(0) alone says alive
    child.wait()


def test_cli_status_exits_1_when_stopped_and_local_needs_no_aws(state, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing is asked of AWS
    code = cli.main(
        ["--config", str(ROOT / "pipeline.toml"), "local", "status", "--state", str(state)]
    )
    assert code == 1
    assert capsys.readouterr().out.startswith("local AWS: stopped (state ")
    assert cli.main(["local", "down", "--state", str(state)]) == 0
