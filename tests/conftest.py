"""Hermetic tests: nothing from the developer's shell or the CI runner leaks into a test.

Session scoped (and autouse) so it is in place before any module- or session-scoped fixture runs
(the integration tests run the whole pipeline in module fixtures), and so subprocesses the tests
start inherit the clean environment too. A test that checks GitHub outputs or summaries, or wants
an ``MLOPS_*`` variable, sets it itself with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os

import pytest

# Read by mlops.github (step outputs, job summary): a test must never append to the runner's files.
GITHUB_FILES = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
# MLOPS_LOCAL_FAULTS, MLOPS_MANIFEST, MLOPS_IMAGE_URI, MLOPS_MODEL_PACKAGE_ARN, ... from the shell
MLOPS_PREFIX = "MLOPS_"


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment():
    with pytest.MonkeyPatch.context() as mp:
        for name in [*GITHUB_FILES, *(n for n in os.environ if n.startswith(MLOPS_PREFIX))]:
            mp.delenv(name, raising=False)
        yield
