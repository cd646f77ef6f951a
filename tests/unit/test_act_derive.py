"""One job of a workflow as its own act run (local/act/derive.py): the job exactly as written, the
jobs it needs replayed with the outputs they really produced, a record job after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.local.act import derive

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
TEARDOWN = ROOT / ".github" / "workflows" / "teardown.yml"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/1"
DONE = {
    "train": {"result": "success", "outputs": {"model-package-arn": ARN}},
    "deploy-dev": {"result": "success", "outputs": {"endpoint-name": "mlops-dev"}},
}


def test_the_on_key_survives_loading_where_yaml_1_1_reads_it_as_true():
    data = derive.load(DEPLOY)
    assert True not in data
    assert set(data["on"]) == {"push", "workflow_dispatch", "repository_dispatch"}


def test_a_file_without_jobs_is_refused(tmp_path):
    (tmp_path / "x.yml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="is not a workflow"):
        derive.load(tmp_path / "x.yml")


def test_the_job_is_as_written_and_its_needs_hand_on_their_real_outputs():
    data = derive.load(DEPLOY)
    got = derive.derived(data, "deploy-prod", DONE)
    assert list(got["jobs"]) == ["train", "deploy-dev", "deploy-prod", derive.RECORD]
    assert got["jobs"]["deploy-prod"] == data["jobs"]["deploy-prod"]
    assert {k: v for k, v in got.items() if k != "jobs"} == {
        k: v for k, v in data.items() if k != "jobs"
    }
    train = got["jobs"]["train"]
    assert train["outputs"] == {"model-package-arn": ARN}
    assert "needs" not in train and "environment" not in train
    assert train["name"] == "Train, evaluate, gate, register (replayed)"
    assert [list(s) for s in train["steps"]] == [["run"]]  # nothing but an echo runs


def test_the_record_job_runs_whatever_happened_and_writes_result_and_outputs():
    record = derive.derived(derive.load(DEPLOY), "train", {"test": {}, "build-and-push": {}})
    job = record["jobs"][derive.RECORD]
    assert job["needs"] == ["train"] and job["if"] == "always()"
    assert job["steps"][0]["env"] == {"RECORDED": "${{ toJSON(needs.train) }}"}
    assert f'> "${derive.RECORD_ENV}"' in job["steps"][0]["run"]


def test_a_job_whose_needs_have_not_run_is_refused():
    with pytest.raises(ConfigError, match="deploy-prod needs deploy-dev, which has not run"):
        derive.derived(derive.load(DEPLOY), "deploy-prod", {"train": DONE["train"]})
    with pytest.raises(ConfigError, match=r"no job 'nope' \(jobs: test, build-and-push"):
        derive.derived(derive.load(DEPLOY), "nope", {})


def test_a_replayed_output_is_never_an_expression():
    with pytest.raises(ConfigError, match="train's output x holds an expression"):
        derive.replay("train", {}, {"x": "${{ secrets.T }}"})


def test_the_written_file_reads_back_as_the_same_workflow(tmp_path):
    got = derive.derived(derive.load(DEPLOY), "deploy-dev", DONE)
    assert derive.load(derive.write(got, tmp_path / "w.yml")) == got


@pytest.mark.parametrize(
    ("spec", "inputs", "expected"),
    [
        ({}, {}, ""),
        ({"environment": "prod"}, {}, "prod"),
        ({"environment": {"name": "dev", "url": "u"}}, {}, "dev"),
        ({"environment": "${{ inputs.stage }}"}, {"stage": "prod"}, "prod"),
    ],
)
def test_the_environment_is_resolved_before_the_job_runs(spec, inputs, expected):
    assert derive.environment(spec, inputs) == expected


def test_teardown_s_environment_comes_from_its_stage_input():
    job = derive.load(TEARDOWN)["jobs"]["teardown"]
    assert derive.environment(job, {"stage": "dev"}) == "dev"
    with pytest.raises(ConfigError, match="only"):
        derive.environment(job, {})
    with pytest.raises(ConfigError, match="only"):
        derive.environment({"environment": "${{ github.ref_name }}"}, {})


def test_a_record_is_read_and_a_missing_one_is_a_failure(tmp_path):
    assert derive.read_record(tmp_path / "none.json") == {"result": "failure", "outputs": {}}
    (tmp_path / "r.json").write_text(json.dumps({"result": "skipped", "outputs": None}))
    assert derive.read_record(tmp_path / "r.json") == {"result": "skipped", "outputs": {}}
    (tmp_path / "r.json").write_text(json.dumps({"result": "success", "outputs": {"a": "1"}}))
    assert derive.read_record(tmp_path / "r.json") == {"result": "success", "outputs": {"a": "1"}}
