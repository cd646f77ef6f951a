"""CreateHyperParameterTuningJob's rules, as AWS applies them, for the local tuning job
(:mod:`mlops.local.moto_gaps.tuning`); each cites its page. moto checks none of them."""

from __future__ import annotations

import math
import re
from typing import Any

from moto.sagemaker.exceptions import SagemakerClientError, ValidationError

from mlops.local.moto_gaps import rules

# CreateHyperParameterTuningJob, HyperParameterTuningJobName: 1-32 characters, this pattern
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateHyperParameterTuningJob.html)
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
# "Resource Limits for Automatic Model Tuning" (defaults of a new account):
# https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-limits.html
MAX_PARALLEL, MAX_JOBS, MAX_SEARCHED, MAX_METRICS = 10, 750, 30, 20
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")


class ResourceLimitExceeded(SagemakerClientError):
    code = "ResourceLimitExceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message)


def search_ranges(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ranges = config.get("ParameterRanges") or {}
    kinds = ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")
    return [(kind, r) for kind in kinds for r in ranges.get(kind) or []]


def check(name: str, config: dict[str, Any], definition: dict[str, Any] | None) -> None:
    """Raise what CreateHyperParameterTuningJob answers for a request AWS refuses."""
    if not NAME.match(name or ""):
        raise ValidationError(
            f"HyperParameterTuningJobName {name!r}: 1-32 characters matching "
            "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}"
        )
    if not definition:
        raise ValidationError(
            "TrainingJobDefinition is required (TrainingJobDefinitions: not run here)"
        )
    strategy = config.get("Strategy")
    if strategy not in STRATEGIES:  # HyperParameterTuningJobConfig.Strategy's valid values
        raise ValidationError(f"Strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    limits = config.get("ResourceLimits") or {}
    parallel, total = limits.get("MaxParallelTrainingJobs"), limits.get("MaxNumberOfTrainingJobs")
    if not isinstance(parallel, int) or parallel < 1:  # ResourceLimits: required, minimum 1
        raise ValidationError("ResourceLimits.MaxParallelTrainingJobs is required (minimum 1)")
    if parallel > MAX_PARALLEL:
        raise ResourceLimitExceeded(
            f"MaxParallelTrainingJobs {parallel} exceeds the account's limit of {MAX_PARALLEL} "
            "parallel training jobs per tuning job"
        )
    ranges = search_ranges(config)
    if not ranges:
        raise ValidationError("ParameterRanges: give at least one range to tune")
    if len(ranges) > MAX_SEARCHED:  # ParameterRanges: the sum over all ranges, at most 30
        raise ValidationError(f"{len(ranges)} hyperparameters to search: at most {MAX_SEARCHED}")
    names = [r["Name"] for _, r in ranges]
    static = definition.get("StaticHyperParameters") or {}
    for kind, r in ranges:
        _check_range(kind, r)
    if len(set(names)) != len(names):
        raise ValidationError(f"a hyperparameter is given more than one range: {names}")
    if strategy == "Grid":
        _check_grid(ranges, total)
    elif not isinstance(total, int) or not 1 <= total <= MAX_JOBS:
        raise ValidationError(
            f"ResourceLimits.MaxNumberOfTrainingJobs {total!r}: 1-{MAX_JOBS} with {strategy}"
        )
    _check_strategy(config, strategy, static)
    metrics = (definition.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    objective = (config.get("HyperParameterTuningJobObjective") or {}).get("MetricName")
    if len(metrics) > MAX_METRICS:
        raise ValidationError(f"{len(metrics)} MetricDefinitions: at most {MAX_METRICS}")
    if objective not in {m.get("Name") for m in metrics}:
        raise ValidationError(
            f"the objective metric {objective!r} is not one of the MetricDefinitions"
        )
    rules.check_image(
        (definition.get("AlgorithmSpecification") or {}).get("TrainingImage", ""),
        f"CreateHyperParameterTuningJob {name}",
    )


def _check_range(kind: str, r: dict[str, Any]) -> None:
    """ContinuousParameterRange / IntegerParameterRange ScalingType rules
    (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ContinuousParameterRange.html,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_IntegerParameterRange.html)."""
    name = r.get("Name")
    if kind == "CategoricalParameterRanges":
        if not 1 <= len(r.get("Values") or []) <= MAX_SEARCHED:
            raise ValidationError(f"categorical {name}: 1-{MAX_SEARCHED} values")
        return
    try:
        low, high = float(r["MinValue"]), float(r["MaxValue"])
    except (KeyError, ValueError):
        raise ValidationError(f"{name}: MinValue and MaxValue must be numbers") from None
    if kind == "IntegerParameterRanges" and not (low.is_integer() and high.is_integer()):
        raise ValidationError(f"integer {name}: MinValue and MaxValue must be integers")
    if low > high:
        raise ValidationError(f"{name}: MinValue {r['MinValue']} > MaxValue {r['MaxValue']}")
    scaling = r.get("ScalingType", "Auto")
    if scaling == "Logarithmic" and low <= 0:
        raise ValidationError(f"{name}: Logarithmic scaling works only for values greater than 0")
    if scaling == "ReverseLogarithmic":
        if kind == "IntegerParameterRanges":
            raise ValidationError(f"{name}: ReverseLogarithmic is not supported for integers")
        if not (low >= 0 and high < 1):
            raise ValidationError(f"{name}: ReverseLogarithmic works only within 0 <= x < 1")


def _check_grid(ranges: list[tuple[str, dict[str, Any]]], total: Any) -> None:
    """ "Only categorical parameters are supported when using the grid search strategy ... If
    specified, the value of MaxNumberOfTrainingJobs should equal the total number of distinct
    categorical combinations possible" (How hyperparameter tuning with Amazon SageMaker works,
    https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-how-it-works.html)."""
    numeric = [r["Name"] for kind, r in ranges if kind != "CategoricalParameterRanges"]
    if numeric:
        raise ValidationError(f"Grid search supports only categorical ranges: {numeric[0]} is not")
    size = math.prod(len(r["Values"]) for _, r in ranges)
    if total is not None and total != size:
        raise ValidationError(
            f"MaxNumberOfTrainingJobs {total} must equal the {size} combinations of a Grid search"
        )
    if size > MAX_JOBS:
        raise ValidationError(f"Grid search of {size} combinations: at most {MAX_JOBS} jobs")


def _check_strategy(config: dict[str, Any], strategy: str, static: dict[str, str]) -> None:
    """Hyperband's rules: early stopping Off, a MaxResource given or inferable, at most 20000
    (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperbandStrategyConfig.html,
    TrainingJobEarlyStoppingType in API_HyperParameterTuningJobConfig.html)."""
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig")
    if strategy != "Hyperband":
        if hyperband is not None:
            raise ValidationError("StrategyConfig is for the Hyperband strategy only")
        return
    if config.get("TrainingJobEarlyStoppingType", "Off") != "Off":
        raise ValidationError("TrainingJobEarlyStoppingType must be Off to use Hyperband")
    most = (hyperband or {}).get("MaxResource")
    if most is None and not any(k in static for k in EPOCH_KEYS):
        raise ValidationError("Hyperband cannot infer MaxResource: set it in StrategyConfig")
    if most is not None and not 1 <= most <= 20000:
        raise ValidationError(f"MaxResource {most}: at most 20000")
