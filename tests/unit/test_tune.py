"""The tune step (steps/tune.py): the request from [tune], waiting, the best trial, the summary.

AWS is a stub here (what the step sends and reads, exactly); the real tuning job runs offline in
tests/integration/test_tune_local.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlops import config
from mlops.account import Account
from mlops.config_tune import Range
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.manifest import Manifest
from mlops.steps import register, tune

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "a" * 64
ROLE = "arn:aws:iam::123456789012:role/sm"
SPLITS = {n: f"s3://data/runs/r/etl/{n}/" for n in ("train", "validation", "test")}


def trial(n: int, status: str, rmse: float | None, **tuned: str) -> dict[str, Any]:
    summary = {
        "TrainingJobName": f"mlops-tune-x-{n:03d}-0000000{n}",
        "TrainingJobStatus": status,
        "TunedHyperParameters": tuned,
    }
    if rmse is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "MetricName": "validation:rmse",
            "Value": rmse,
        }
    if status == "Failed":
        summary["FailureReason"] = "AlgorithmError: boom"
    return summary


class FakeSageMaker:
    """Answers as SageMaker does: InProgress, then the given final description."""

    def __init__(self, final: dict[str, Any], trials: list[dict[str, Any]]) -> None:
        self.final, self.trials, self.calls, self.polls = final, trials, [], 0

    def create_hyper_parameter_tuning_job(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"HyperParameterTuningJobArn": "arn"}

    def describe_hyper_parameter_tuning_job(self, **_: Any) -> dict[str, Any]:
        self.polls += 1
        if self.polls == 1:
            counters = {"Completed": 1, "InProgress": 1}
            return {
                "HyperParameterTuningJobStatus": "InProgress",
                "TrainingJobStatusCounters": counters,
            }
        return self.final

    def list_training_jobs_for_hyper_parameter_tuning_job(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["SortBy"] == "Name" and kwargs["MaxResults"] == 100
        start = int(kwargs.get("NextToken", 0))
        page = {"TrainingJobSummaries": self.trials[start : start + 2]}
        if start + 2 < len(self.trials):
            page["NextToken"] = str(start + 2)  # the step pages through every trial
        return page

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        return {"ModelArtifacts": {"S3ModelArtifacts": f"s3://art/{TrainingJobName}/model.tar.gz"}}


class FakeEcr:
    def describe_images(self, **_: Any) -> dict[str, Any]:
        return {"imageDetails": [{}]}


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> Context:
    cfg = config.load(ROOT / "pipeline.toml")
    cfg = dataclasses.replace(cfg, hyperparameters={"num_round": "300", "eta": "0.1"})
    account = Account(
        "us-east-1",
        {"SageMakerExecutionRoleArn": ROLE, "ArtifactBucket": "art", "KmsKeyArn": "kms"},
    )
    manifest = Manifest(tmp_path / "run.json", {"run": {"id": "20260101-000000-abcdef0"}})
    manifest.update("etl", {"splits": SPLITS})
    session = SimpleNamespace(region_name="us-east-1")  # every client is a stub below
    context = Context(cfg, session, manifest, root=ROOT, _account=account)  # type: ignore[arg-type]
    context._clients["ecr"] = FakeEcr()
    return context


def stub(ctx: Context, final: dict[str, Any], trials: list[dict[str, Any]]) -> FakeSageMaker:
    fake = FakeSageMaker(final, trials)
    ctx._clients["sagemaker"] = fake
    return fake


TRIALS = [
    trial(1, "Completed", 2.3, eta="0.1", max_depth="4", min_child_weight="2"),
    trial(2, "Completed", 2.1, eta="0.2", max_depth="5", min_child_weight="3"),
    trial(3, "Failed", None, eta="0.05", max_depth="3", min_child_weight="9"),
]


def completed(best: dict[str, Any]) -> dict[str, Any]:
    return {"HyperParameterTuningJobStatus": "Completed", "BestTrainingJob": best}


def test_the_request_is_the_training_jobs_definition_with_configs_ranges(ctx):
    fake = stub(ctx, completed(TRIALS[1]), TRIALS)
    tune.run(ctx, IMAGE)
    (sent,) = fake.calls
    name = sent["HyperParameterTuningJobName"]
    assert name.startswith("mlops-tune-") and len(name) == len("mlops-tune-") + 8
    assert sent["HyperParameterTuningJobConfig"] == {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
        "ResourceLimits": {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4},
        "ParameterRanges": {
            "IntegerParameterRanges": [
                {"Name": "max_depth", "MinValue": "3", "MaxValue": "6", "ScalingType": "Auto"}
            ],
            "ContinuousParameterRanges": [
                {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.3",
                 "ScalingType": "Logarithmic"},
                {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "16",
                 "ScalingType": "Logarithmic"},
            ],
        },
        "TrainingJobEarlyStoppingType": "Off",
    }  # fmt: skip
    definition = sent["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"num_round": "300"}  # eta is tuned
    spec = definition["AlgorithmSpecification"]
    assert spec["TrainingImage"] == IMAGE and spec["TrainingInputMode"] == "File"
    assert {"Name": "validation:rmse", "Regex": r"validation:rmse=([0-9.]+)"} in spec[
        "MetricDefinitions"
    ]
    assert definition["RoleArn"] == ROLE
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in definition["InputDataConfig"]
    }
    assert channels == {"train": SPLITS["train"], "validation": SPLITS["validation"]}
    assert definition["OutputDataConfig"] == {
        "S3OutputPath": "s3://art/runs/20260101-000000-abcdef0/training",
        "KmsKeyId": "kms",
    }
    assert definition["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert sent["Tags"] == [{"Key": "mlops:run", "Value": "20260101-000000-abcdef0"}]


def test_the_best_trial_is_the_runs_model_with_the_hyperparameters_it_was_trained_with(ctx):
    stub(ctx, completed(TRIALS[1]), TRIALS)
    values = tune.run(ctx, IMAGE)
    assert values["job_name"] == TRIALS[1]["TrainingJobName"]
    assert values["model_data"] == f"s3://art/{TRIALS[1]['TrainingJobName']}/model.tar.gz"
    assert values["hyperparameters"] == {
        "num_round": "300", "eta": "0.2", "max_depth": "5", "min_child_weight": "3"
    }  # fmt: skip
    assert values["image_uri"] == IMAGE and values["image_digest"] == "sha256:" + "a" * 64
    assert values["objective"] == {
        "Type": "Minimize",
        "MetricName": "validation:rmse",
        "Value": 2.1,
    }
    assert [(t["name"][-2:], t["best"], t["validation_rmse"]) for t in values["trials"]] == [
        ("01", False, 2.3), ("02", True, 2.1), ("03", False, None),
    ]  # fmt: skip
    assert values["trials"][2]["failure_reason"] == "AlgorithmError: boom"
    assert ctx.manifest.get("train") == values
    # the package is registered under the key of what it was trained with, never reused by --tune
    assert ctx.manifest.get("reuse.reason").startswith("tuning was asked for (--tune)")
    assert ctx.manifest.get("reuse.from") == ""
    from mlops.steps import reuse

    assert (
        ctx.manifest.get("reuse.training_key")
        == reuse.training_key(ctx, hyperparameters=values["hyperparameters"])["training_key"]
    )
    assert ctx.manifest.get("reuse.training_key") != reuse.training_key(ctx)["training_key"]


def test_the_registered_package_records_the_tuned_hyperparameters():
    assert register._hyperparameters({"eta": "0.2", "num_round": "300"}) == (
        '{"eta":"0.2","num_round":"300"}'
    )
    assert register._hyperparameters({}) == ""
    assert register._hyperparameters({f"h{i}": "x" * 20 for i in range(20)}) == ""  # > 256


def test_waiting_prints_a_line_per_trial_count_change(ctx, capsys):
    stub(ctx, completed(TRIALS[1]), TRIALS)
    tune.run(ctx, IMAGE)
    err = capsys.readouterr().err
    assert "trials 1 completed, 1 in progress, 0 failed, 0 stopped after" in err
    assert "InProgress after" in err and "Completed after" in err
    assert "#/hyper-tuning-jobs/mlops-tune-" in err  # the console link


def test_the_summary_tables_every_trial_and_marks_the_best(ctx, monkeypatch, tmp_path):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    stub(ctx, completed(TRIALS[1]), TRIALS)
    tune.run(ctx, IMAGE)
    text = summary.read_text()
    assert "| trial | status | tuned hyperparameters | validation:rmse |" in text
    assert (
        f"| `{TRIALS[1]['TrainingJobName']}` **best** | Completed | "
        "eta=0.2, max_depth=5, min_child_weight=3 | 2.1000 |"
    ) in text
    failed = f"| `{TRIALS[2]['TrainingJobName']}` | Failed |"
    assert f"{failed} eta=0.05, max_depth=3, min_child_weight=9 |  |" in text
    assert text.count("**best**") == 1


def test_a_failed_tuning_job_says_why_naming_the_first_failed_trial_and_where(ctx):
    final = {"HyperParameterTuningJobStatus": "Failed", "FailureReason": "All training jobs failed"}
    stub(ctx, final, [TRIALS[2]])
    with pytest.raises(PipelineError) as exc:
        tune.run(ctx, IMAGE)
    text = str(exc.value)
    assert (
        "Failed: All training jobs failed; trial mlops-tune-x-003-00000003: AlgorithmError: boom"
        in text
    )
    assert "console.aws.amazon.com/sagemaker/home?region=us-east-1#/hyper-tuning-jobs/" in text


def test_completed_without_a_best_trial_is_an_error(ctx):
    stub(ctx, {"HyperParameterTuningJobStatus": "Completed"}, [TRIALS[2]])
    with pytest.raises(PipelineError, match="without a best training job: no trial reported"):
        tune.run(ctx, IMAGE)


def test_a_refused_request_is_one_line_with_awss_reason(ctx):
    fake = stub(ctx, completed(TRIALS[1]), TRIALS)

    def refuse(**_: Any) -> None:
        error = {"Error": {"Code": "ResourceLimitExceeded", "Message": "too many"}}
        raise ClientError(error, "CreateHyperParameterTuningJob")

    fake.create_hyper_parameter_tuning_job = refuse
    with pytest.raises(
        PipelineError, match="create the hyperparameter tuning job: ResourceLimitExceeded: too many"
    ):
        tune.run(ctx, IMAGE)


def test_a_tag_is_refused_before_any_call(ctx):
    fake = stub(ctx, completed(TRIALS[1]), TRIALS)
    with pytest.raises(ConfigError, match="not pinned by digest"):
        tune.run(ctx, IMAGE.split("@")[0] + ":latest")
    assert fake.calls == []


def test_nothing_to_tune_is_a_config_error(ctx):
    fake = stub(ctx, completed(TRIALS[1]), TRIALS)
    empty = dataclasses.replace(ctx.config, tune=dataclasses.replace(ctx.config.tune, ranges=()))
    with pytest.raises(ConfigError, match=r"\[tune.ranges\] is empty"):
        tune.run(dataclasses.replace(ctx, config=empty), IMAGE)
    assert fake.calls == []


def test_the_tuning_job_name_fits_awss_32_characters_or_says_what_to_shorten():
    assert tune.tuning_job_name("mlops", "mlops-tune-r") == tune.tuning_job_name(
        "mlops", "mlops-tune-r"
    )
    assert tune.tuning_job_name("mlops", "a") != tune.tuning_job_name("mlops", "a-2")  # a retry
    assert len(tune.tuning_job_name("p" * 18, "x")) == 32
    with pytest.raises(ConfigError, match=r"project.name 'p{19}' is too long .* at most 18"):
        tune.tuning_job_name("p" * 19, "x")


def test_grid_leaves_the_job_count_to_aws_and_hyperband_sends_its_resources():
    grid = config.TuneConfig(
        strategy="Grid", ranges=(Range("max_depth", "categorical", values=("3", "4", "5")),)
    )
    sent = tune.tuning_config(grid)
    assert sent["ResourceLimits"] == {"MaxParallelTrainingJobs": 2}
    assert sent["ParameterRanges"] == {
        "CategoricalParameterRanges": [{"Name": "max_depth", "Values": ["3", "4", "5"]}]
    }
    band = config.TuneConfig(
        strategy="Hyperband", max_resource=500, random_seed=3, ranges=grid.ranges
    )
    sent = tune.tuning_config(band)
    assert sent["StrategyConfig"] == {"HyperbandStrategyConfig": {"MaxResource": 500}}
    assert sent["RandomSeed"] == 3 and sent["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 4
    assert "StrategyConfig" not in tune.tuning_config(config.TuneConfig(ranges=grid.ranges))
