"""The evaluate step (mlops.steps.evaluate): where each model is evaluated, one evaluation when prod
serves the candidate's model data, and processing jobs started together."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops import config
from mlops.account import Account
from mlops.aws import new_session
from mlops.context import Context
from mlops.manifest import Manifest
from mlops.steps import evaluate

ROOT = Path(__file__).resolve().parents[2]
MODEL = "s3://artifacts/train/model.tar.gz"
PROD = ("arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1", MODEL)


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> Context:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    cfg = config.load(ROOT / "pipeline.toml")
    account = Account(
        "us-east-1",
        {"SageMakerExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
         "KmsKeyArn": "k", "ArtifactBucket": "artifacts"},
    )  # fmt: skip
    manifest = Manifest(tmp_path / "m.json")
    manifest.update("run", {"id": "20261202-000000-abcdef0", "git_sha": "a" * 40})
    manifest.update("etl", {"splits": {"test": "s3://data/etl/test/"}})
    session = new_session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return Context(cfg, session, manifest, root=ROOT, _account=account)


@pytest.fixture
def ran(monkeypatch):
    """What execute was asked to run, and each output's evaluation.json (its RMSE by output)."""
    calls = []
    monkeypatch.setattr(evaluate, "execute", lambda _c, jobs, on: calls.append((jobs, on)))
    monkeypatch.setattr(
        evaluate,
        "read_json_object",
        lambda _s3, uri: {"regression_metrics": {"rmse": {"value": 2.0 if "prod" in uri else 1.0}}},
    )
    return calls


def _train(ctx: Context, reused: bool) -> None:
    ctx.manifest.update("train", {"image_uri": "r/i@sha256:" + "b" * 64, "model_data": MODEL,
                                  **({"reused_from": PROD[0]} if reused else {})})  # fmt: skip


def test_a_reused_model_that_prod_serves_is_evaluated_once_on_the_runner(ctx, ran, monkeypatch):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: PROD)
    _train(ctx, reused=True)
    values = evaluate.run(ctx)
    [(jobs, on)] = ran
    assert on == "runner" and len(jobs) == 1
    assert jobs[0]["ProcessingInputs"][0]["S3Input"]["S3Uri"] == MODEL
    assert values["where"] == "runner"
    assert values["prod"] == {"model_package_arn": PROD[0], "metrics": values["metrics"],
                              "same_model": True}  # fmt: skip


def test_a_new_model_and_prods_go_to_processing_jobs_each_with_its_model(ctx, ran, monkeypatch):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: (PROD[0], "s3://a/prod.tar.gz"))
    _train(ctx, reused=False)
    values = evaluate.run(ctx)
    [(jobs, on)] = ran
    assert on == "processing-job"
    assert [j["ProcessingInputs"][0]["S3Input"]["S3Uri"] for j in jobs] == [
        MODEL,
        "s3://a/prod.tar.gz",
    ]
    assert values["metrics"]["regression_metrics"]["rmse"]["value"] == 1.0
    assert values["prod"]["metrics"]["regression_metrics"]["rmse"]["value"] == 2.0
    assert values["prod"]["same_model"] is False


def test_reused_model_on_processing_job_keeps_the_processing_job(ctx, ran, monkeypatch):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: None)
    evaluate_cfg = {**ctx.config.evaluate, "reused_model_on": "processing-job"}
    ctx.config = dataclasses.replace(ctx.config, evaluate=evaluate_cfg)
    _train(ctx, reused=True)
    values = evaluate.run(ctx)
    assert ran[0][1] == "processing-job" and "prod" not in values


def test_processing_jobs_are_all_started_before_the_first_wait(ctx, monkeypatch):
    order = []
    monkeypatch.setattr(evaluate, "start", lambda _c, job: order.append(("start", job["n"])))
    monkeypatch.setattr(evaluate, "wait", lambda _c, name: order.append(("wait", name)))
    jobs = [{"n": 1, "ProcessingJobName": 1}, {"n": 2, "ProcessingJobName": 2}]
    evaluate.execute(ctx, jobs, "processing-job")
    assert order == [("start", 1), ("start", 2), ("wait", 1), ("wait", 2)]


def test_on_the_runner_each_request_runs_there(ctx, monkeypatch):
    done = []
    monkeypatch.setattr(evaluate.container, "run_processing", lambda _c, job: done.append(job))
    jobs = [{"ProcessingJobName": "a"}, {"ProcessingJobName": "b"}]
    evaluate.execute(ctx, jobs, "runner")
    assert done == jobs


def test_a_failed_processing_job_stops_the_ones_still_running(ctx, monkeypatch):
    from mlops.errors import PipelineError

    stopped = []
    monkeypatch.setattr(evaluate, "start", lambda _c, _job: None)

    def wait(_c, name):
        if name == "a":
            raise PipelineError("processing job a: Failed")

    monkeypatch.setattr(evaluate, "wait", wait)
    monkeypatch.setattr(evaluate, "stop", lambda _c, name: stopped.append(name))
    jobs = [{"ProcessingJobName": n} for n in ("a", "b")]
    with pytest.raises(PipelineError, match="processing job a"):
        evaluate.execute(ctx, jobs, "processing-job")
    assert stopped == ["b"]
