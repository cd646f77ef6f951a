"""tests/conftest.py keeps the runner's files and the shell's MLOPS_* variables out of the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import NO_LOCAL_AWS

from mlops import cli, github

ROOT = Path(__file__).resolve().parents[2]
LEAKY = {
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "MLOPS_LOCAL_FAULTS",
    "MLOPS_MANIFEST",
    "MLOPS_IMAGE_URI",
    "MLOPS_MODEL_PACKAGE_ARN",
    "MLOPS_BOOTSTRAP_STACK",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
}


def leaked() -> set[str]:
    """The shell's variables a test could see; the one conftest sets itself is not one."""
    ours = {"MLOPS_LOCAL_STATE": NO_LOCAL_AWS}
    return {
        n
        for n in os.environ
        if (n in LEAKY or n.startswith(("MLOPS_", "AWS_ENDPOINT_URL")))
        and os.environ[n] != ours.get(n)
    }


@pytest.fixture(scope="module")
def module_env() -> set[str]:
    """What a module-scoped fixture (the integration runs) sees: set up before function fixtures."""
    return leaked()


def test_module_fixtures_and_tests_see_none_of_them(module_env):
    assert module_env == set()
    assert leaked() == set()


def test_no_local_aws_a_developer_left_up_is_joined_by_a_run():
    from mlops.local import control

    assert os.environ["MLOPS_LOCAL_STATE"] == NO_LOCAL_AWS
    assert control.running(Path(NO_LOCAL_AWS)) is None


def test_github_outputs_and_summary_are_no_ops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    github.set_output("model-package-arn", "arn:leak")
    github.summary("### leak")
    assert list(tmp_path.iterdir()) == []


def test_the_local_runtime_takes_no_faults_from_the_shell(tmp_path):
    from mlops.local.faults import FAULTS
    from mlops.local.runtime import LocalRuntime

    runtime = LocalRuntime(tmp_path, tmp_path / "runs")
    assert [n for n in FAULTS if runtime.faults.active(n)] == []


def test_cli_defaults_come_from_no_shell_variable():
    args = cli._parser().parse_args(["deploy", "--stage", "dev"])
    assert (args.manifest, args.model_package_arn) == ("run.json", None)
    assert cli._parser().parse_args(["train"]).image_uri is None


def test_a_leaky_shell_changes_nothing(tmp_path):
    """The proof: run this module's checks under a shell that sets every variable."""
    output, summary = tmp_path / "output", tmp_path / "summary"
    output.touch()
    summary.touch()
    env = {
        **os.environ,
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "MLOPS_LOCAL_FAULTS": "training",
        "MLOPS_MANIFEST": str(tmp_path / "shell.json"),
        "MLOPS_IMAGE_URI": "shell/image@sha256:" + "0" * 64,
        "MLOPS_MODEL_PACKAGE_ARN": "arn:aws:sagemaker:us-east-1:1:model-package/shell/1",
        "MLOPS_BOOTSTRAP_STACK": "shell-stack",
        "MLOPS_LOCAL_STATE": str(tmp_path / "a-local-aws-left-up"),
        # what `eval "$(make local-up)"` leaves in a shell
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PYTEST_ADDOPTS": "",
    }
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    argv += [__file__, "-k", "not leaky_shell and not socket and not loopback"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
    assert output.read_text() == "" and summary.read_text() == ""
    assert not (tmp_path / "shell.json").exists()


@pytest.mark.parametrize(
    "address", [("203.0.113.7", 443), ("169.254.169.254", 80), ("example.com", 443)]
)
def test_no_socket_leaves_the_machine(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError, match="refused \\(offline only\\)"):
            sock.connect(address)
        with pytest.raises(OSError, match="refused \\(offline only\\)"):
            sock.connect_ex(address)
    finally:
        sock.close()


def test_loopback_connections_still_work():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        for host in ("127.0.0.1", "localhost"):
            client = socket.create_connection((host, server.getsockname()[1]), timeout=5)
            client.close()
    finally:
        server.close()


def test_modules_with_a_cost_are_scheduled_first_largest_first_the_rest_kept_in_order():
    import importlib.util

    spec = importlib.util.spec_from_file_location("suite_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    class Item:
        def __init__(self, name: str, cost: float | None) -> None:
            self.name, self.cost = name, cost

        def get_closest_marker(self, name: str):
            assert name == "cost"
            return None if self.cost is None else pytest.mark.cost(self.cost).mark

    items = [Item("a1", None), Item("w1", 85), Item("b1", None), Item("w2", 85), Item("e1", 30)]
    conftest.pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["w1", "w2", "e1", "a1", "b1"]
