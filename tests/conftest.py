"""Hermetic tests: nothing from the developer's shell or the CI runner leaks into a test.

Session scoped (and autouse) so it is in place before any module- or session-scoped fixture runs
(the integration tests run the whole pipeline in module fixtures), and so subprocesses the tests
start inherit the clean environment too. A test that checks GitHub outputs or summaries, or wants
an ``MLOPS_*`` variable, sets it itself with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

# Read by mlops.github (step outputs, job summary): a test must never append to the runner's files;
# and the run id register records in a package's lineage.
GITHUB_FILES = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_RUN_ID")
# MLOPS_LOCAL_FAULTS, MLOPS_MANIFEST, MLOPS_IMAGE_URI, MLOPS_MODEL_PACKAGE_ARN, ... from the shell
MLOPS_PREFIX = "MLOPS_"
# The shell's AWS: a shell that ran `eval "$(make local-up)"` (or holds real keys) must not send the
# tests' in-process moto calls to a server, nor lend them credentials. Not for tests/system against
# an endpoint (`mlops system-test --endpoint-name ...`): they call it with the job's AWS.
AWS_SHELL = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
# `mlops run --local` would join a local AWS the developer left up in .mlops-local/: never here
NO_LOCAL_AWS = os.devnull + "/no-local-aws"


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment(request):
    against_an_endpoint = request.config.getoption("--endpoint-name", default=None)
    aws = () if against_an_endpoint else (*AWS_SHELL, "AWS_ENDPOINT_URL")
    with pytest.MonkeyPatch.context() as mp:
        shell = [n for n in os.environ if n.startswith((MLOPS_PREFIX, *aws))]
        for name in [*GITHUB_FILES, *shell]:
            mp.delenv(name, raising=False)
        mp.setenv("MLOPS_LOCAL_STATE", NO_LOCAL_AWS)
        yield


LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


class OffMachine(OSError):
    """A test tried to reach a host other than this machine: the suite must run offline."""


def _check(address: object) -> None:
    if not isinstance(address, tuple):  # AF_UNIX paths (the Docker socket) stay on the machine
        return
    host = str(address[0])
    try:
        local = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        local = host.lower() in LOOPBACK_NAMES
    if not local:
        raise OffMachine(f"test suite: connection to {host}:{address[1]} refused (offline only)")


def guarded_connect(sock: socket.socket, address: object) -> None:
    _check(address)
    return _connect(sock, address)


def guarded_connect_ex(sock: socket.socket, address: object) -> int:
    _check(address)
    return _connect_ex(sock, address)


@pytest.fixture(scope="session", autouse=True)
def loopback_only():
    """No socket of the test processes leaves 127.0.0.1 (AWS, GitHub, telemetry, metadata)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        yield


# --- scheduling: `make test` runs modules whole on two xdist workers (--dist loadfile) ------------
# xdist hands out modules in collection order, two to each worker at the start. Modules that build
# the whole pipeline in module fixtures (a minute or more of real compute each) go first, largest
# first, so they spread over the workers and the small modules fill the gaps; otherwise a shuffled
# order can put two of them on one worker after everything else (measured: 263 s instead of ~180 s).
# A module declares its rough cost with ``pytestmark = pytest.mark.cost(seconds)``.


def _cost(item: pytest.Item) -> float:
    marker = item.get_closest_marker("cost")
    return float(marker.args[0]) if marker else 0.0


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which a stable sort keeps in ties
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_cost, reverse=True)
