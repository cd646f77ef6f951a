"""`mlops run --local` handed to a running local AWS (local/run_service.py): one run at a time,
its log followed from where it stood, its exit code and error line handed back. The run itself
is a fake that writes to the log as the server's run does."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request

import pytest

from mlops.errors import EXIT_GATE, GateFailed, PipelineError
from mlops.local import run_service


class FakeRun:
    def __init__(self, log, fail=None):
        self.log, self.fail, self.calls = log, fail, []
        self.release = threading.Event()

    def __call__(self, approve, tune):
        self.calls.append((approve, tune))
        with self.log.open("a") as out:
            out.write("== job train\n")
        self.release.wait(10)
        with self.log.open("a") as out:
            out.write("== job deploy-dev\n")
        if self.fail:
            raise self.fail


def post(url, body):
    request = urllib.request.Request(f"{url}/runs", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return reply.status, json.load(reply)


def test_a_run_is_followed_from_where_the_log_stood_and_returns_its_code(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("earlier lines\n")
    fake = FakeRun(log)
    fake.release.set()
    out = io.StringIO()
    with run_service.RunService(fake) as service:
        assert run_service.follow(service.url, log, True, False, out) == 0
    assert out.getvalue() == "== job train\n== job deploy-dev\n"
    assert fake.calls == [(True, False)]


def test_a_failed_run_gives_back_its_exit_code_and_error_line(tmp_path):
    log = tmp_path / "server.log"
    fake = FakeRun(log, fail=GateFailed("gate: rmse 9.1 > 3.0"))
    fake.release.set()
    with run_service.RunService(fake) as service, pytest.raises(PipelineError) as failed:
        run_service.follow(service.url, log, False, True, io.StringIO())
    assert failed.value.exit_code == EXIT_GATE and str(failed.value) == "gate: rmse 9.1 > 3.0"
    assert fake.calls == [(False, True)]


def test_an_unexpected_error_is_exit_1_with_its_type(tmp_path, capsys):
    log = tmp_path / "server.log"
    fake = FakeRun(log, fail=KeyError("x"))
    fake.release.set()
    with run_service.RunService(fake) as service, pytest.raises(PipelineError) as failed:
        run_service.follow(service.url, log, False, False, io.StringIO())
    assert failed.value.exit_code == 1 and "KeyError" in str(failed.value)
    assert "Traceback" in capsys.readouterr().err  # the server's log keeps it


def test_one_run_at_a_time_and_a_bad_body_or_id_is_a_client_error(tmp_path):
    log = tmp_path / "server.log"
    fake = FakeRun(log)
    with run_service.RunService(fake) as service:
        assert post(service.url, {"approve": True}) == (202, {"id": 1})
        with pytest.raises(urllib.error.HTTPError) as busy:
            post(service.url, {})
        assert busy.value.code == 409 and b"a run is in progress" in busy.value.read()
        fake.release.set()
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(urllib.request.Request(
                f"{service.url}/runs", data=b"[1]", method="POST"), timeout=5)  # fmt: skip
        assert bad.value.code == 400
        for path in ("/runs/9", "/runs/x", "/elsewhere"):
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(f"{service.url}{path}", timeout=5)
            assert missing.value.code == 404
    assert len(fake.calls) == 1


def test_a_server_that_does_not_answer_says_where_to_look(tmp_path):
    (tmp_path / "server.log").write_text("")
    with pytest.raises(PipelineError, match=r"does not answer .*mlops local status"):
        run_service.follow("http://127.0.0.1:9", tmp_path / "server.log", False, False, None)


def test_only_a_loopback_url_is_called(tmp_path):
    (tmp_path / "server.log").write_text("")
    with pytest.raises(PipelineError, match="is not a loopback URL"):
        run_service.follow("file:///etc/passwd", tmp_path / "server.log", False, False, None)


def test_a_run_goes_to_the_local_aws_only_when_one_runs_with_that_state(tmp_path, monkeypatch):
    from mlops.local import control

    assert run_service.in_running(tmp_path, True, False) is False  # nothing there: own runtime
    followed = []
    monkeypatch.setattr(control, "running", lambda state: {"pid": 7, "control_url": "http://x"})
    monkeypatch.setattr(run_service, "follow", lambda *a: followed.append(a[:4]) or 0)
    assert run_service.in_running(tmp_path, True, False) is True
    assert followed == [("http://x", tmp_path.resolve() / control.LOG_FILE, True, False)]
