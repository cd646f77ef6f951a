"""``[tune]`` of pipeline.toml: the hyperparameter tuning job ``mlops train --tune`` runs.

Validated at start with the rules CreateHyperParameterTuningJob applies, so a bad table stops
before any AWS call with the key to fix instead of a ValidationException an hour into a run:
HyperParameterTuningJobConfig
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperParameterTuningJobConfig.html),
ResourceLimits (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceLimits.html),
ParameterRanges (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ParameterRanges.html),
ContinuousParameterRange / IntegerParameterRange (scaling types), the strategies ("How
hyperparameter tuning with Amazon SageMaker works",
https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-how-it-works.html), the
Hyperband configuration
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperbandStrategyConfig.html) and
the service limits ("Resource Limits for Automatic Model Tuning",
https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-limits.html).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
TYPES = ("continuous", "integer", "categorical")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
EARLY_STOPPING = ("Off", "Auto")
DEFAULT_MAX_JOBS = 4
MAX_TRAINING_JOBS = 750  # per tuning job, every strategy (the limits page)
MAX_PARALLEL_QUOTA = 100  # "Number of parallel training jobs per tuning job": 10, up to 100
MAX_SEARCHED = 30  # hyperparameters searched; and values per categorical range
MAX_RESOURCE = 20000  # HyperbandStrategyConfig.MaxResource
# Hyperband infers MaxResource from these static hyperparameters when it is not given
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")


@dataclass(frozen=True)
class Range:
    """One tuned hyperparameter: numbers as SageMaker takes them (strings)."""

    name: str
    type: str
    min: str = ""
    max: str = ""
    scaling: str = "Auto"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneConfig:
    strategy: str = "Bayesian"
    max_jobs: int | None = None  # None: the grid's size (Grid) or DEFAULT_MAX_JOBS
    max_parallel_jobs: int = 2
    early_stopping: str = "Off"
    random_seed: int | None = None
    min_resource: int | None = None
    max_resource: int | None = None
    ranges: tuple[Range, ...] = ()

    @property
    def tuned(self) -> set[str]:
        return {r.name for r in self.ranges}

    def grid_size(self) -> int:
        return math.prod(len(r.values) for r in self.ranges)

    def trials(self) -> int:
        """How many training jobs the tuning job launches at most."""
        if self.max_jobs is not None:
            return self.max_jobs
        return self.grid_size() if self.strategy == "Grid" else DEFAULT_MAX_JOBS


def _text(r: Any, key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise r._fail(
            key, f"must be a string (SageMaker takes range values as strings), got {value!r}"
        )
    return str(value)


def _number(r: Any, key: str, text: str, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise r._fail(key, f"= {text!r} is not {kind}") from None
    if not math.isfinite(value):
        raise r._fail(key, f"= {text!r} is not a finite number")
    return float(value)


def _range(name: str, r: Any) -> Range:
    kind = r.get("type", str, check=lambda v: v in TYPES, why=f"use one of {', '.join(TYPES)}")
    if kind == "categorical":
        r.reject_unknown({"type", "values"})
        raw = r.get("values", list)
        values = tuple(_text(r, "values", v) for v in raw)
        if not values or len(values) > MAX_SEARCHED or len(set(values)) != len(values):
            raise r._fail(
                "values", f"= {raw!r} is invalid: 1-{MAX_SEARCHED} distinct values (AWS limit)"
            )
        return Range(name, kind, values=values)
    r.reject_unknown({"type", "min", "max", "scaling"})
    integer = kind == "integer"
    low_text, high_text = (
        _text(r, "min", r.get("min", object)),
        _text(r, "max", r.get("max", object)),
    )
    low, high = _number(r, "min", low_text, integer), _number(r, "max", high_text, integer)
    if low >= high:
        raise r._fail("min", f"= {low_text} must be less than max = {high_text}")
    scaling = r.get(
        "scaling",
        str,
        "Auto",
        check=lambda v: v in SCALINGS,
        why=f"use one of {', '.join(SCALINGS)}",
    )
    if scaling == "Logarithmic" and low <= 0:
        raise r._fail("scaling", "Logarithmic works only for ranges of values greater than 0")
    if scaling == "ReverseLogarithmic":
        if integer:
            raise r._fail("scaling", "ReverseLogarithmic is not supported for integer ranges")
        if not (low >= 0 and high < 1):
            raise r._fail("scaling", "ReverseLogarithmic works only for ranges within 0 <= x < 1")
    return Range(name, kind, low_text, high_text, scaling)


def parse(r: Any, hyperparameters: dict[str, str]) -> TuneConfig:
    """``r`` is config's reader of the [tune] table (typed access; errors name the key)."""
    strategy = r.get(
        "strategy", str, "Bayesian", check=lambda v: v in STRATEGIES,
        why=f"use one of {', '.join(STRATEGIES)}",
    )  # fmt: skip
    ranges_table = r.sub("ranges")
    ranges = tuple(_range(name, ranges_table.sub(name)) for name in ranges_table.table)
    if len(ranges) > MAX_SEARCHED:
        raise r._fail("ranges", f"has {len(ranges)} hyperparameters: AWS searches at most 30")
    positive = {"check": lambda v: v > 0, "why": "must be > 0"}
    tune = TuneConfig(
        strategy=strategy,
        max_jobs=r.get(
            "max_jobs", int, None, check=lambda v: 1 <= v <= MAX_TRAINING_JOBS,
            why=f"must be 1-{MAX_TRAINING_JOBS} (MaxNumberOfTrainingJobs; AWS limit)",
        ),
        max_parallel_jobs=r.get(
            "max_parallel_jobs", int, 2, check=lambda v: 1 <= v <= MAX_PARALLEL_QUOTA,
            why="must be 1-100 (MaxParallelTrainingJobs: the quota is 10, raisable to 100)",
        ),
        early_stopping=r.get(
            "early_stopping", str, "Off", check=lambda v: v in EARLY_STOPPING,
            why="use Off or Auto (TrainingJobEarlyStoppingType)",
        ),
        random_seed=r.get("random_seed", int, None, check=lambda v: v >= 0, why="must be >= 0"),
        min_resource=r.get("min_resource", int, None, **positive),
        max_resource=r.get(
            "max_resource", int, None, check=lambda v: 1 <= v <= MAX_RESOURCE,
            why=f"must be 1-{MAX_RESOURCE} (HyperbandStrategyConfig.MaxResource)",
        ),
        ranges=ranges,
    )  # fmt: skip
    r.reject_unknown(
        {"strategy", "max_jobs", "max_parallel_jobs", "early_stopping", "random_seed",
         "min_resource", "max_resource", "ranges"}
    )  # fmt: skip
    _strategy_rules(r, tune, hyperparameters)
    return tune


def _strategy_rules(r: Any, tune: TuneConfig, hyperparameters: dict[str, str]) -> None:
    if tune.strategy == "Grid":
        numeric = [x.name for x in tune.ranges if x.type != "categorical"]
        if numeric:
            raise r._fail(
                f"ranges.{numeric[0]}",
                "is not categorical: Grid search supports only categorical ranges "
                '(give it type = "categorical" and values, or use another strategy)',
            )
        size = tune.grid_size()
        if tune.max_jobs is not None and tune.max_jobs != size:
            raise r._fail(
                "max_jobs",
                f"= {tune.max_jobs}: with Grid it must equal the number of value combinations "
                f"({size}), or be left out",
            )
        if size > MAX_TRAINING_JOBS:
            raise r._fail("ranges", f"make {size} combinations: Grid runs at most 750 jobs")
    hyperband = tune.strategy == "Hyperband"
    for key in ("min_resource", "max_resource"):
        if getattr(tune, key) is not None and not hyperband:
            raise r._fail(key, "is a Hyperband setting: leave it out or use strategy Hyperband")
    if not hyperband:
        return
    if tune.early_stopping != "Off":
        raise r._fail(
            "early_stopping",
            "must be Off with Hyperband (it has its own early stopping mechanism)",
        )
    if tune.max_resource is None and not any(k in hyperparameters for k in EPOCH_KEYS):
        raise r._fail(
            "max_resource",
            "is missing: Hyperband needs it (or an epochs hyperparameter to infer it from)",
        )
    if tune.min_resource and tune.max_resource and tune.min_resource > tune.max_resource:
        raise r._fail("min_resource", "must be <= max_resource")
