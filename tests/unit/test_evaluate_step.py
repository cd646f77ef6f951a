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


IMAGE = "r/i@sha256:" + "b" * 64


def test_the_request_is_the_processing_jobs_contract(ctx):
    base = "/opt/ml/processing"
    assert evaluate.request(ctx, "job-1", IMAGE, MODEL, "s3://data/etl/test/", "s3://o/c") == {
        "ProcessingJobName": "job-1",
        "RoleArn": "arn:aws:iam::123456789012:role/x",
        "AppSpecification": {
            "ImageUri": IMAGE,
            "ContainerArguments": [
                "evaluate",
                "--model",
                f"{base}/model",
                "--test",
                f"{base}/test",
                "--output",
                f"{base}/evaluation",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": "model",
                "S3Input": {
                    "S3Uri": MODEL,
                    "LocalPath": f"{base}/model",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "test",
                "S3Input": {
                    "S3Uri": "s3://data/etl/test/",
                    "LocalPath": f"{base}/test",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "KmsKeyId": "k",
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {
                        "S3Uri": "s3://o/c",
                        "LocalPath": f"{base}/evaluation",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.t3.medium",
                "VolumeSizeInGB": 10,
                "VolumeKmsKeyId": "k",
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
        "Tags": [{"Key": "mlops:run", "Value": "20261202-000000-abcdef0"}],
    }


def test_the_request_takes_the_configured_instance_and_runtime(ctx):
    cfg = {**ctx.config.evaluate, "instance_type": "ml.m5.xlarge", "max_runtime_seconds": "600"}
    ctx.config = dataclasses.replace(ctx.config, evaluate=cfg)
    job = evaluate.request(ctx, "j", IMAGE, MODEL, "s3://t/", "s3://o/")
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 600}


def test_the_request_defaults_without_an_instance_or_runtime_configured(ctx):
    cfg = {k: v for k, v in ctx.config.evaluate.items() if k == "reused_model_on"}
    ctx.config = dataclasses.replace(ctx.config, evaluate=cfg)
    job = evaluate.request(ctx, "j", IMAGE, MODEL, "s3://t/", "s3://o/")
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.t3.medium"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}


class SageMaker:
    def __init__(self, status: str = "Completed") -> None:
        self.status, self.created, self.described = status, [], []

    def create_processing_job(self, **job):
        self.created.append(job)

    def describe_processing_job(self, ProcessingJobName):
        self.described.append(ProcessingJobName)
        return {"ProcessingJobStatus": self.status, "FailureReason": "boom"}

    def describe_model_package(self, ModelPackageName):
        url = f"s3://m/{ModelPackageName.rsplit('/', 1)[-1]}.tar.gz"
        return {"InferenceSpecification": {"Containers": [{"ModelDataUrl": url}]}}


def test_start_creates_the_processing_job_from_the_request(ctx, capsys):
    sm = ctx._clients["sagemaker"] = SageMaker()
    evaluate.start(ctx, {"ProcessingJobName": "job-1", "RoleArn": "r"})
    assert sm.created == [{"ProcessingJobName": "job-1", "RoleArn": "r"}]
    assert "evaluate: processing job job-1" in capsys.readouterr().err


def test_wait_returns_when_the_job_completes_and_links_its_console_page(ctx, capsys):
    sm = ctx._clients["sagemaker"] = SageMaker("Completed")
    evaluate.wait(ctx, "job-1")
    assert sm.described == ["job-1"]
    err = capsys.readouterr().err
    assert "processing job job-1: " in err and "region=us-east-1#/processing-jobs/job-1" in err


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_wait_fails_on_a_failed_or_stopped_job(ctx, status):
    from mlops.errors import PipelineError

    ctx._clients["sagemaker"] = SageMaker(status)
    with pytest.raises(PipelineError, match="processing job job-1"):
        evaluate.wait(ctx, "job-1")


def _prod_stack(monkeypatch, stack):
    asked = []
    monkeypatch.setattr(evaluate.stack, "describe", lambda _cfn, name: asked.append(name) or stack)
    return asked


def test_prods_model_data_is_its_stacks_model_package(ctx, monkeypatch):
    params = [{"ParameterKey": "X", "ParameterValue": "x"},
              {"ParameterKey": "ModelPackageArn", "ParameterValue": PROD[0]}]  # fmt: skip
    asked = _prod_stack(monkeypatch, {"StackStatus": "UPDATE_COMPLETE", "Parameters": params})
    ctx._clients["sagemaker"] = SageMaker()
    assert evaluate.prod_model_data(ctx) == (PROD[0], "s3://m/1.tar.gz")
    assert asked == [ctx.config.stack_name("prod")]


@pytest.mark.parametrize(
    "stack",
    [
        None,
        {"StackStatus": "UPDATE_IN_PROGRESS",
         "Parameters": [{"ParameterKey": "ModelPackageArn", "ParameterValue": PROD[0]}]},
        {"StackStatus": "CREATE_COMPLETE"},
        {"StackStatus": "CREATE_COMPLETE",
         "Parameters": [{"ParameterKey": "ModelPackageArn", "ParameterValue": ""}]},
    ],
)  # fmt: skip
def test_no_complete_prod_stack_with_a_package_is_no_prod_model(ctx, monkeypatch, stack):
    _prod_stack(monkeypatch, stack)
    ctx._clients["sagemaker"] = None  # never asked
    assert evaluate.prod_model_data(ctx) is None


def test_the_run_records_the_candidates_evaluation_and_says_where_it_ran(
    ctx, ran, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: None)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary"))
    _train(ctx, reused=False)
    values = evaluate.run(ctx)
    out = "s3://artifacts/runs/20261202-000000-abcdef0/evaluation/candidate"
    assert values == {
        "uri": out + "/evaluation.json",
        "output": out,
        "metrics": {"regression_metrics": {"rmse": {"value": 1.0}}},
        "where": "processing-job",
        "image_uri": IMAGE,
    }
    assert ctx.manifest.get("evaluate") == values
    [(jobs, _on)] = ran
    assert jobs[0]["ProcessingJobName"] == "mlops-evaluate-20261202-000000-abcdef0"
    assert jobs[0]["AppSpecification"]["ImageUri"] == IMAGE
    assert jobs[0]["ProcessingInputs"][1]["S3Input"]["S3Uri"] == "s3://data/etl/test/"
    err = capsys.readouterr().err
    assert "evaluate: on SageMaker processing (a newly trained model)" in err
    summary = (tmp_path / "summary").read_text()
    assert (
        summary == f"### Evaluation\nTest RMSE **1.0000**, by a processing job (`{out}/{EVAL}`)\n\n"
    )


EVAL = "evaluation.json"


def test_the_run_says_a_reused_model_prod_serves_is_evaluated_once_on_the_runner(
    ctx, ran, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: PROD)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary"))
    _train(ctx, reused=True)
    evaluate.run(ctx)
    err = capsys.readouterr().err
    assert (
        "evaluate: on this runner (a reused model: its new image is checked without an instance "
        "start-up); prod serves this model data: one evaluation stands for both"
    ) in err
    assert "Test RMSE **1.0000**, on the runner (`" in (tmp_path / "summary").read_text()


def test_the_run_says_a_reused_model_is_on_a_processing_job_by_configuration(
    ctx, ran, monkeypatch, capsys
):
    monkeypatch.setattr(evaluate, "prod_model_data", lambda _c: (PROD[0], "s3://a/prod.tar.gz"))
    evaluate_cfg = {**ctx.config.evaluate, "reused_model_on": "processing-job"}
    ctx.config = dataclasses.replace(ctx.config, evaluate=evaluate_cfg)
    _train(ctx, reused=True)
    values = evaluate.run(ctx)
    err = capsys.readouterr().err
    assert (
        'evaluate: on SageMaker processing ([evaluate] reused_model_on = "processing-job")\n' in err
    )
    [(jobs, _on)] = ran
    assert jobs[1]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].endswith(
        "/evaluation/prod"
    )
    assert jobs[1]["ProcessingJobName"] != jobs[0]["ProcessingJobName"]
    assert values["prod"]["model_package_arn"] == PROD[0]


def test_the_run_needs_the_train_and_etl_steps_first(ctx, ran, tmp_path):
    from mlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"has no train: run `mlops train` first"):
        evaluate.run(ctx)
    ctx.manifest = Manifest(tmp_path / "other.json")
    _train(ctx, reused=False)
    with pytest.raises(ConfigError, match=r"has no etl.splits.test: run `mlops etl` first"):
        evaluate.run(ctx)


def test_the_prod_job_has_its_own_name_this_runs_image_and_the_same_test_split(ctx, monkeypatch):
    seen = []
    monkeypatch.setattr(evaluate, "prod_model_data", lambda c: seen.append(c) or (*PROD[:1], "p"))
    monkeypatch.setattr(evaluate, "execute", lambda c, jobs, on: seen.append((c, jobs)))
    monkeypatch.setattr(
        evaluate, "read_json_object", lambda s3, uri: seen.append((s3, uri)) or {
            "regression_metrics": {"rmse": {"value": 1.0}}
        }
    )  # fmt: skip
    _train(ctx, reused=False)
    evaluate.run(ctx)
    prod_ctx, (exec_ctx, jobs), (s3, candidate_uri), (s3_again, prod_uri) = seen
    assert prod_ctx is ctx and exec_ctx is ctx and s3 is s3_again is ctx.client("s3")
    out = "s3://artifacts/runs/20261202-000000-abcdef0/evaluation"
    assert (candidate_uri, prod_uri) == (f"{out}/candidate/evaluation.json",
                                         f"{out}/prod/evaluation.json")  # fmt: skip
    prod = jobs[1]
    assert prod["ProcessingJobName"] == "mlops-evaluate-prod-20261202-000000-abcdef0"
    assert prod["AppSpecification"]["ImageUri"] == IMAGE
    assert [i["S3Input"]["S3Uri"] for i in prod["ProcessingInputs"]] == ["p", "s3://data/etl/test/"]


def test_execute_hands_the_context_to_each_job(ctx, monkeypatch):
    given = []
    monkeypatch.setattr(evaluate, "start", lambda c, _job: given.append(c))
    monkeypatch.setattr(evaluate, "wait", lambda c, _name: given.append(c))
    monkeypatch.setattr(evaluate.container, "run_processing", lambda c, _job: given.append(c))
    evaluate.execute(ctx, [{"ProcessingJobName": "a"}], "processing-job")
    evaluate.execute(ctx, [{"ProcessingJobName": "a"}], "runner")
    assert given == [ctx, ctx, ctx]


def test_prods_stack_is_read_through_cloudformation(ctx, monkeypatch):
    asked = []
    monkeypatch.setattr(evaluate.stack, "describe", lambda cfn, _name: asked.append(cfn))
    assert evaluate.prod_model_data(ctx) is None
    assert asked == [ctx.client("cloudformation")]
