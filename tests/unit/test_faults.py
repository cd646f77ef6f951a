"""Fault injection of the local runtime: each fault fires once, unknown names are refused."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError
from mlops.local.faults import FAULTS, Faults
from mlops.local.runtime import LocalRuntime


def test_take_fires_once_per_injected_fault():
    faults = Faults({"training", "glue"})
    assert faults.active("training")
    assert faults.take("training") is True
    assert faults.take("training") is False
    assert not faults.active("training")
    assert faults.active("glue"), "taking one fault leaves the others"


def test_a_fault_not_injected_never_fires():
    faults = Faults(set())
    assert all(not faults.active(name) and not faults.take(name) for name in FAULTS)


def test_unknown_fault_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown fault 'trainng'") as exc:
        Faults({"training", "trainng"})
    assert all(name in str(exc.value) for name in FAULTS)


def test_stack_failure_takes_create_then_update():
    faults = Faults({"stack-create", "stack-update"})
    first = faults.stack_failure(object())
    assert first.startswith("injected stack-create fault: ")
    assert faults.stack_failure(object()).startswith("injected stack-update fault: ")
    assert faults.stack_failure(object()) == ""


def test_prod_deploy_fault_hits_only_a_prod_endpoint():
    faults = Faults({"prod-deploy"})
    assert faults.endpoint_failure("mlops-dev") == ""
    assert faults.active("prod-deploy"), "a dev endpoint must not use up the prod fault"
    reason = faults.endpoint_failure("mlops-prod")
    assert reason.startswith("injected prod-deploy fault: ")
    assert "ping health check" in reason
    assert faults.endpoint_failure("mlops-prod") == ""


def test_runtime_merges_faults_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_LOCAL_FAULTS", "glue,,system-test")
    runtime = LocalRuntime(tmp_path, tmp_path / "runs", faults={"training"})
    assert {n for n in FAULTS if runtime.faults.active(n)} == {"glue", "system-test", "training"}
    assert not (tmp_path / "runs").exists(), "nothing is created before the runtime is entered"
