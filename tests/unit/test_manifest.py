"""The run manifest: a clear error naming the step to run, atomic saves, readable files."""

from __future__ import annotations

import json

import pytest

from mlops import manifest as manifest_mod
from mlops.errors import EXIT_CONFIG, ConfigError
from mlops.manifest import Manifest


def test_require_returns_nested_values(tmp_path):
    m = Manifest(tmp_path / "run.json", {"etl": {"splits": {"train": "s3://b/t"}}})
    assert m.require("etl.splits", "etl") == {"train": "s3://b/t"}
    assert m.require("etl.splits.train", "etl") == "s3://b/t"


@pytest.mark.parametrize(
    "data", [{}, {"evaluate": {}}, {"evaluate": {"metrics": None}}, {"evaluate": "not a table"}]
)
def test_require_names_the_key_and_the_step_to_run(tmp_path, data):
    path = tmp_path / "run.json"
    m = Manifest(path, data)
    key = "evaluate.metrics.rmse"
    with pytest.raises(ConfigError) as exc:
        m.require(key, "evaluate")
    assert str(exc.value) == f"run manifest {path} has no {key}: run `mlops evaluate` first"
    assert exc.value.exit_code == EXIT_CONFIG


def test_get_falls_back_to_the_default(tmp_path):
    m = Manifest(tmp_path / "run.json", {"run": {"id": "r1"}})
    assert m.get("run.id") == "r1"
    assert m.get("run.git_sha") is None
    assert m.get("gate.passed", False) is False


def test_update_saves_and_a_fresh_load_round_trips(tmp_path):
    path = tmp_path / "nested" / "dir" / "run.json"
    m = Manifest.load(path, create=True)
    assert not path.exists(), "create=True must not write a file until something is saved"
    m.update("etl", {"rows": 4177, "splits": {"train": "s3://b/train"}})
    m.update("etl", {"seed": "42"})
    m.update("gate", {"passed": True, "checks": [{"metric": "rmse", "value": 2.0}]})
    again = Manifest.load(path)
    assert again.data == m.data
    assert again.require("etl.rows", "etl") == 4177
    assert again.require("etl.seed", "etl") == "42"
    assert json.loads(path.read_text(encoding="utf-8")) == m.data
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"], "temp file left behind"


def test_values_json_cannot_hold_are_saved_as_strings(tmp_path):
    path = tmp_path / "run.json"
    Manifest(path).update("train", {"model_data": tmp_path})
    assert Manifest.load(path).require("train.model_data", "train") == str(tmp_path)


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    m = Manifest(path)
    m.update("etl", {"rows": 1})
    before = path.read_text(encoding="utf-8")

    def broken_dump(data, fh, **_kwargs):
        fh.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        m.update("train", {"job": "x"})
    assert path.read_text(encoding="utf-8") == before


def test_load_of_a_missing_file_says_to_run_the_previous_step(tmp_path):
    path = tmp_path / "run.json"
    with pytest.raises(ConfigError) as exc:
        Manifest.load(path)
    assert str(exc.value) == f"run manifest {path} not found (run the previous step first)"


def test_load_of_invalid_json_is_one_line(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"etl": ', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        Manifest.load(path)
    assert str(exc.value) == f"run manifest {path} is not valid JSON"
    assert exc.value.__suppress_context__
