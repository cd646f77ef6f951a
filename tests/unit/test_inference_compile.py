"""The definition compile: a subprocess in the SDK's venv, its result reused by config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mlops.errors import ConfigError, PipelineError
from mlops.steps import inference_compile as ic

ROLE = "arn:aws:iam::123456789012:role/mlops-bootstrap-SageMakerExecutionRole-ABC"
OTHER = "arn:aws:iam::210987654321:role/another-account-role"
# A stand-in for the SDK venv's python: writes a definition naming the role and region it was
# given (python -m mlops.inference_definition --config CFG --out DEF), and counts its runs.
FAKE = """#!{python}
import json, sys
with open({runs!r}, "a") as log:
    log.write("run\\n")
configs = json.load(open(sys.argv[4]))
steps = [{{"RoleArn": c["role_arn"], "Region": c["region"], "Kind": c.get("pipeline")}}
         for c in configs]
json.dump([json.dumps({{"Steps": [step]}}) for step in steps], open(sys.argv[6], "w"))
"""


@pytest.fixture
def venv(tmp_path, monkeypatch) -> Path:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE.format(python=sys.executable, runs=str(tmp_path / "runs.txt")))
    python.chmod(0o755)
    monkeypatch.setenv(ic.PYTHON_ENV, str(python))
    return tmp_path


def runs(venv: Path) -> int:
    path = venv / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_definition_is_compiled_once_and_reused_for_any_role(venv):
    first, cached = ic.compile_definition(venv, {"role_arn": ROLE, "region": "us-east-1"})
    assert not cached and runs(venv) == 1
    assert json.loads(first)["Steps"][0]["RoleArn"] == ROLE
    again, cached = ic.compile_definition(venv, {"role_arn": OTHER, "region": "us-east-1"})
    assert cached and runs(venv) == 1  # no second subprocess
    assert json.loads(again)["Steps"][0]["RoleArn"] == OTHER  # the placeholder replaced
    assert ic.ROLE_PLACEHOLDER not in again


def test_another_config_compiler_or_lock_compiles_again(venv, monkeypatch, tmp_path):
    ic.compile_definition(venv, {"role_arn": ROLE, "region": "us-east-1"})
    _, cached = ic.compile_definition(venv, {"role_arn": ROLE, "region": "eu-west-1"})
    assert not cached and runs(venv) == 2
    lock = venv / "requirements" / "inference.txt"
    lock.parent.mkdir()
    lock.write_text("sagemaker-mlops==1.27.0\n")
    _, cached = ic.compile_definition(venv, {"role_arn": ROLE, "region": "eu-west-1"})
    assert not cached and runs(venv) == 3
    originals = ic.COMPILERS
    for n, original in enumerate(originals):  # either compiler's source
        compiler = tmp_path / original.name
        compiler.write_text(original.read_text() + "\n# changed\n")
        monkeypatch.setattr(
            ic, "COMPILERS", tuple(compiler if c == original else c for c in originals)
        )
        _, cached = ic.compile_definition(venv, {"role_arn": ROLE, "region": "eu-west-1"})
        assert not cached and runs(venv) == 4 + n


def test_several_definitions_compile_in_one_run_and_come_back_in_order(venv):
    cfgs = [{"role_arn": ROLE, "region": "us-east-1", "pipeline": k} for k in ("batch", "capture")]
    texts, cached = ic.compile_definitions(venv, cfgs)
    assert cached == 0 and runs(venv) == 1
    assert [json.loads(t)["Steps"][0]["Kind"] for t in texts] == ["batch", "capture"]
    cfgs.append({"role_arn": OTHER, "region": "eu-west-1", "pipeline": "capture"})
    texts, cached = ic.compile_definitions(venv, cfgs)
    assert cached == 2 and runs(venv) == 2  # only the new one compiled
    assert json.loads(texts[2])["Steps"][0] == {
        "RoleArn": OTHER,
        "Region": "eu-west-1",
        "Kind": "capture",
    }


def test_a_cache_that_cannot_be_written_compiles_every_time(venv):
    (venv / "venv" / "definitions").write_text("a file where the cache folder would be")
    for expected in (1, 2):
        text, cached = ic.compile_definition(venv, {"role_arn": ROLE, "region": "us-east-1"})
        assert not cached and runs(venv) == expected
        assert ROLE in text


def test_a_failed_compile_is_its_last_stderr_line_and_caches_nothing(venv):
    python = venv / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\necho loading >&2\necho 'error: the SDK broke' >&2\nexit 4\n")
    with pytest.raises(PipelineError, match=r"^compile the inference .*: error: the SDK broke$"):
        ic.compile_definition(venv, {"role_arn": ROLE, "region": "us-east-1"})
    assert not list((venv / "venv").glob("definitions/*.json"))


def test_a_missing_venv_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setenv(ic.PYTHON_ENV, str(tmp_path / "none" / "python"))
    with pytest.raises(ConfigError, match="run make inference-venv"):
        ic.compile_definition(tmp_path, {"role_arn": ROLE})
