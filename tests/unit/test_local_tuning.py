"""The local tuning job (moto_gaps/tuning.py, tuning_rules.py): what it refuses as AWS does, how
it samples, how it picks the best trial. The trials running for real: test_tune_local.py."""

from __future__ import annotations

import copy
import math
import random
from types import SimpleNamespace
from typing import Any

import pytest
from moto.sagemaker.exceptions import ValidationError

from mlops.local.moto_gaps import tuning
from mlops.local.moto_gaps.tuning_rules import ResourceLimitExceeded, check

METRICS = [{"Name": "validation:rmse", "Regex": "validation:rmse=([0-9.]+)"}]
CONFIG = {
    "Strategy": "Random",
    "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
    "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
    "ParameterRanges": {
        "ContinuousParameterRanges": [
            {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"}
        ],
        "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "3", "MaxValue": "8"}],
    },
}
DEFINITION = {"AlgorithmSpecification": {"MetricDefinitions": METRICS}, "StaticHyperParameters": {}}


def config(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(CONFIG)
    out.update(changes)
    return out


def test_a_valid_request_passes():
    check("mlops-tune-1", config(), DEFINITION)


@pytest.mark.parametrize(
    ("name", "cfg", "message"),
    [
        ("x" * 33, config(), "1-32 characters"),
        ("-bad", config(), "1-32 characters"),
        ("ok", config(Strategy="Evolution"), "Strategy 'Evolution'"),
        (
            "ok",
            config(ResourceLimits={"MaxNumberOfTrainingJobs": 2}),
            "MaxParallelTrainingJobs is required",
        ),
        (
            "ok",
            config(ResourceLimits={"MaxParallelTrainingJobs": 1}),
            "MaxNumberOfTrainingJobs None",
        ),
        (
            "ok",
            config(ResourceLimits={"MaxParallelTrainingJobs": 1, "MaxNumberOfTrainingJobs": 751}),
            "1-750",
        ),
        ("ok", config(ParameterRanges={}), "at least one range"),
        (
            "ok",
            config(HyperParameterTuningJobObjective={"MetricName": "auc"}),
            "not one of the MetricDefinitions",
        ),
        ("ok", config(Strategy="Grid"), "Grid search supports only categorical ranges"),
        ("ok", config(StrategyConfig={"HyperbandStrategyConfig": {}}), "Hyperband strategy only"),
        ("ok", config(Strategy="Hyperband"), "cannot infer MaxResource"),
        ("ok", config(Strategy="Hyperband", TrainingJobEarlyStoppingType="Auto"), "must be Off"),
    ],
)
def test_what_aws_refuses_is_refused(name, cfg, message):
    with pytest.raises(ValidationError, match=message):
        check(name, cfg, DEFINITION)


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "ContinuousParameterRanges",
            {"MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"},
            "greater than 0",
        ),
        (
            "ContinuousParameterRanges",
            {"MinValue": "0.5", "MaxValue": "1", "ScalingType": "ReverseLogarithmic"},
            "0 <= x < 1",
        ),
        (
            "IntegerParameterRanges",
            {"MinValue": "1", "MaxValue": "5", "ScalingType": "ReverseLogarithmic"},
            "not supported",
        ),
        ("IntegerParameterRanges", {"MinValue": "1.5", "MaxValue": "5"}, "must be integers"),
        ("IntegerParameterRanges", {"MinValue": "6", "MaxValue": "5"}, "MinValue 6 > MaxValue 5"),
        ("CategoricalParameterRanges", {"Values": []}, "1-30 values"),
    ],
)
def test_range_rules(kind, spec, message):
    cfg = config(ParameterRanges={kind: [{"Name": "h", **spec}]})
    with pytest.raises(ValidationError, match=message):
        check("ok", cfg, DEFINITION)


def test_more_parallel_jobs_than_the_default_quota_is_resource_limit_exceeded():
    cfg = config(ResourceLimits={"MaxParallelTrainingJobs": 11, "MaxNumberOfTrainingJobs": 20})
    with pytest.raises(ResourceLimitExceeded, match="limit of 10") as exc:
        check("ok", cfg, DEFINITION)
    assert exc.value.code == "ResourceLimitExceeded"


def test_grid_enumerates_every_combination_and_its_count_must_match():
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "a", "Values": ["1", "2"]},
            {"Name": "b", "Values": ["x", "y", "z"]},
        ]
    }
    grid = config(
        Strategy="Grid", ParameterRanges=ranges, ResourceLimits={"MaxParallelTrainingJobs": 2}
    )
    check("ok", grid, DEFINITION)
    points = tuning.points("ok", grid)
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    wrong = config(
        Strategy="Grid",
        ParameterRanges=ranges,
        ResourceLimits={"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4},
    )
    with pytest.raises(ValidationError, match="must equal the 6 combinations"):
        check("ok", wrong, DEFINITION)


def test_random_samples_in_range_on_their_scale_and_seeded():
    cfg = config(ResourceLimits={"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 400})
    points = tuning.points("job-a", cfg)
    assert points == tuning.points("job-a", cfg)  # the same job name: the same trials
    assert points != tuning.points("job-b", cfg)
    assert tuning.points("a", {**cfg, "RandomSeed": 5}) == tuning.points(
        "b", {**cfg, "RandomSeed": 5}
    )
    etas = [float(p["eta"]) for p in points]
    depths = [p["max_depth"] for p in points]
    assert all(0.01 <= e <= 0.3 for e in etas)
    assert set(depths) == {str(d) for d in range(3, 9)}  # integers, every one reachable
    # Logarithmic: about half the samples below the geometric mean (linear would put ~6 % there)
    below = sum(e < math.sqrt(0.01 * 0.3) for e in etas) / len(etas)
    assert 0.4 < below < 0.6


def test_reverse_logarithmic_stays_in_range():
    rng = random.Random(1)
    ranges = [
        (
            "ContinuousParameterRanges",
            {
                "Name": "m",
                "MinValue": "0.9",
                "MaxValue": "0.999",
                "ScalingType": "ReverseLogarithmic",
            },
        )
    ]
    values = [float(tuning.sample(ranges, rng)["m"]) for _ in range(200)]
    assert all(0.9 <= v <= 0.999 for v in values)


def fake_job(name: str, status: str, rmse: float | None) -> SimpleNamespace:
    metrics = [] if rmse is None else [{"MetricName": "validation:rmse", "Value": rmse}]
    return SimpleNamespace(
        training_job_name=name,
        training_job_status=status,
        final_metric_data_list=metrics,
        arn=f"arn:{name}",
        creation_time=0,
        training_start_time=0,
        failure_reason="",
    )


def state(objective_type: str = "Minimize") -> tuning.Tuning:
    cfg = config(
        HyperParameterTuningJobObjective={"Type": objective_type, "MetricName": "validation:rmse"}
    )
    record = SimpleNamespace(
        hyper_parameter_tuning_job_config=cfg,
        training_job_definition=DEFINITION,
        hyper_parameter_tuning_job_name="t",
        arn="arn:t",
    )
    job = tuning.Tuning(None, record, None)
    job.trials = [
        (fake_job("t-001", "Completed", 2.4), {"eta": "0.1"}),
        (fake_job("t-002", "Failed", 1.0), {"eta": "0.2"}),  # failed: never the best
        (fake_job("t-003", "Completed", 2.2), {"eta": "0.3"}),
        (fake_job("t-004", "InProgress", None), {"eta": "0.4"}),
    ]
    return job


def test_the_best_is_the_completed_trial_with_the_best_objective():
    assert state().best()["TrainingJobName"] == "t-003"
    assert state("Maximize").best()["TrainingJobName"] == "t-001"
    best = state().best()
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Minimize",
        "MetricName": "validation:rmse",
        "Value": 2.2,
    }
    assert best["ObjectiveStatus"] == "Succeeded" and best["TunedHyperParameters"] == {"eta": "0.3"}


def test_counters_are_awss():
    trials, objectives = state().counters()
    assert trials == {
        "Completed": 2,
        "InProgress": 1,
        "RetryableError": 0,
        "NonRetryableError": 1,
        "Stopped": 0,
    }
    assert objectives == {"Succeeded": 2, "Pending": 1, "Failed": 1}


def test_final_metrics_are_each_definitions_last_match_in_the_log():
    from mlops.local.compute import final_metrics

    log = "validation:rmse=2.5\ntrain:rmse=1.9\nvalidation:rmse=2.25\nvalidation:rmse=oops\n"
    defs = [*METRICS, {"Name": "train:rmse", "Regex": "train:rmse=([0-9.]+)"},
            {"Name": "auc", "Regex": "auc=([0-9.]+)"}]  # fmt: skip
    found = {m["MetricName"]: m["Value"] for m in final_metrics(defs, log)}
    assert found == {"validation:rmse": 2.25, "train:rmse": 1.9}  # no match, no metric
