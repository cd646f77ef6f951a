"""Pipeline configuration: ``pipeline.toml`` validated at start, errors naming the key.

Account-specific values never live here: :mod:`mlops.account` reads them from the bootstrap stack.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.config_tune import TuneConfig
from mlops.config_tune import parse as parse_tune
from mlops.errors import ConfigError

DEFAULT_FILE = Path("pipeline.toml")
STAGES = ("dev", "prod")
DEPLOYMENT_TYPES = ("ALL_AT_ONCE", "CANARY", "LINEAR")


@dataclass(frozen=True)
class StageConfig:
    """What differs between dev and prod endpoints."""

    name: str
    instance_type: str
    instance_count: int
    autoscaling: bool
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: int
    capture_sampling_percent: int
    deployment_type: str
    canary_size_percent: int
    wait_interval_seconds: int
    termination_wait_seconds: int
    latency_budget_ms: int
    latency_alarm_microseconds: int


@dataclass(frozen=True)
class Config:
    project: str
    bootstrap_stack: str
    model_package: str
    glue_script: str
    glue_extra_files: tuple[str, ...]
    data: str
    training_code: tuple[str, ...]
    local_entrypoint: tuple[str, ...]
    content_type: str
    etl: dict[str, str]
    train: dict[str, Any]
    hyperparameters: dict[str, str]
    evaluate: dict[str, Any]
    max_rmse: float
    min_improvement_over_baseline: float
    max_regression_vs_prod: float
    stages: dict[str, StageConfig] = field(default_factory=dict)
    source: str = "pipeline.toml"
    inference: dict[str, Any] = field(default_factory=dict)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def stage(self, name: str) -> StageConfig:
        if name not in self.stages:
            raise ConfigError(f"unknown stage {name!r}: use one of {', '.join(STAGES)}")
        return self.stages[name]

    def stack_name(self, stage: str) -> str:
        return f"{self.project}-endpoint-{stage}"

    def endpoint_name(self, stage: str) -> str:
        return f"{self.project}-{stage}"

    def inference_stack_name(self, stage: str) -> str:
        return f"{self.project}-inference-{stage}"

    def monitor_stack_name(self, stage: str) -> str:
        return f"{self.project}-monitor-{stage}"


class _Reader:
    """Typed access to one TOML table; every error names the dotted key and the file."""

    def __init__(self, table: dict[str, Any], prefix: str, source: str) -> None:
        self.table, self.prefix, self.source = table, prefix, source

    def _fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key} {problem}")

    def get(self, key: str, kind: type, default: Any = ..., *, check=None, why: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self._fail(key, "is missing")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._fail(key, f"must be {kind.__name__}, got {value!r}")
        if check is not None and not check(value):
            raise self._fail(key, f"= {value!r} is invalid: {why}")
        return value

    def sub(self, key: str) -> _Reader:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self._fail(key, "must be a table")
        return _Reader(value, f"{self.prefix}{key}.", self.source)

    def reject_unknown(self, known: set[str]) -> None:
        unknown = sorted(set(self.table) - known)
        if unknown:
            raise self._fail(
                unknown[0], f"is not a known setting (known: {', '.join(sorted(known))})"
            )


def _stage(name: str, r: _Reader) -> StageConfig:
    positive = {"check": lambda v: v > 0, "why": "must be > 0"}
    stage = StageConfig(
        name=name,
        instance_type=r.get(
            "instance_type",
            str,
            check=lambda v: v.startswith("ml."),
            why="SageMaker instance types start with 'ml.'",
        ),
        instance_count=r.get("instance_count", int, 1, **positive),
        autoscaling=r.get("autoscaling", bool, False),
        min_capacity=r.get("min_capacity", int, 1, **positive),
        max_capacity=r.get("max_capacity", int, 1, **positive),
        target_invocations_per_instance=r.get(
            "target_invocations_per_instance", int, 750, **positive
        ),
        capture_sampling_percent=r.get(
            "capture_sampling_percent", int, 0, check=lambda v: 0 <= v <= 100, why="must be 0-100"
        ),
        deployment_type=r.get(
            "deployment_type",
            str,
            "ALL_AT_ONCE",
            check=lambda v: v in DEPLOYMENT_TYPES,
            why=f"use one of {', '.join(DEPLOYMENT_TYPES)}",
        ),
        canary_size_percent=r.get(
            "canary_size_percent", int, 50, check=lambda v: 1 <= v <= 50, why="must be 1-50"
        ),
        wait_interval_seconds=r.get(
            "wait_interval_seconds", int, 300, check=lambda v: 0 <= v <= 3600, why="must be 0-3600"
        ),
        termination_wait_seconds=r.get(
            "termination_wait_seconds",
            int,
            120,
            check=lambda v: 0 <= v <= 3600,
            why="must be 0-3600",
        ),
        latency_budget_ms=r.get("latency_budget_ms", int, 500, **positive),
        latency_alarm_microseconds=r.get("latency_alarm_microseconds", int, 200000, **positive),
    )
    r.reject_unknown({f for f in StageConfig.__dataclass_fields__ if f != "name"})
    if stage.autoscaling:
        if stage.min_capacity > stage.max_capacity:
            raise ConfigError(f"{r.source}: {r.prefix}min_capacity > max_capacity")
        if stage.instance_type.startswith("ml.t"):
            raise ConfigError(
                f"{r.source}: {r.prefix}instance_type {stage.instance_type}: "
                "burstable ml.t* instances cannot autoscale"
            )
    if stage.deployment_type == "CANARY" and stage.instance_count < 2:
        raise ConfigError(f"{r.source}: {r.prefix}deployment_type CANARY needs instance_count >= 2")
    return stage


def _job(r: _Reader, ints: dict[str, int], extra: frozenset[str] | set[str] = frozenset()) -> dict:
    """A job's resources: instance type plus positive whole numbers, unknown keys refused."""
    values: dict[str, Any] = {
        "instance_type": r.get(
            "instance_type",
            str,
            "ml.m5.large",
            check=lambda v: v.startswith("ml."),
            why="SageMaker instance types start with 'ml.'",
        ),
    }
    for key, default in ints.items():
        values[key] = r.get(key, int, default, check=lambda v: v > 0, why="must be > 0")
    r.reject_unknown({"instance_type", *ints, *extra})
    return values


def _evaluate(r: _Reader) -> dict[str, Any]:
    """[evaluate]: the processing job's shape, and where a reused model is evaluated."""
    values = _job(r, {"max_runtime_seconds": 1800}, extra={"reused_model_on"})
    values["reused_model_on"] = r.get(
        "reused_model_on", str, "runner", check=lambda v: v in ("runner", "processing-job"),
        why='"runner" (docker on the GitHub runner) or "processing-job"',
    )  # fmt: skip
    return values


SCHEDULE_RE = re.compile(r"^(rate|cron)\(.+\)$")


def _inference(r: _Reader) -> dict[str, Any]:
    """[inference]: which stages get a batch pipeline (the bootstrap deploys their stacks), the
    optional schedule (EventBridge Scheduler), the drift alarm's threshold, instance types."""
    stages = r.get("stages", list, ["prod"])
    if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
        raise ConfigError(
            f"{r.source}: {r.prefix}stages = {stages!r} is invalid: "
            f"a non-empty list of distinct stages out of {', '.join(STAGES)}"
        )
    values: dict[str, Any] = {
        "stages": tuple(stages),
        "schedule": r.get(
            "schedule", str, "", check=lambda v: not v or SCHEDULE_RE.match(v),
            why="an EventBridge Scheduler expression: rate(...) or cron(...), or empty",
        ),
        "drift_alarm_threshold": r.get(
            "drift_alarm_threshold", float, 0.25, check=lambda v: v >= 0, why="must be >= 0"
        ),
    }  # fmt: skip
    for job in ("transform", "processing"):
        values[f"{job}_instance_type"] = r.get(
            f"{job}_instance_type", str, "ml.m5.large",
            check=lambda v: v.startswith("ml."), why="SageMaker instance types start with 'ml.'",
        )  # fmt: skip
        values[f"{job}_instance_count"] = r.get(
            f"{job}_instance_count", int, 1, check=lambda v: v > 0, why="must be > 0"
        )
    r.reject_unknown(set(values))
    return values


def parse(raw: dict[str, Any], source: str = "pipeline.toml") -> Config:
    """Validate a loaded TOML document into a :class:`Config`."""
    top = _Reader(raw, "", source)
    top.get("version", int, check=lambda v: v == 1, why="this pipeline reads version 1")
    top.reject_unknown(
        {
            "version",
            "project",
            "model",
            "etl",
            "train",
            "evaluate",
            "gate",
            "stages",
            "inference",
            "tune",
        }
    )
    project, model, gate = top.sub("project"), top.sub("model"), top.sub("gate")
    train, stages = top.sub("train"), top.sub("stages")
    name = project.get(
        "name",
        str,
        check=lambda v: re.fullmatch(r"[a-z][a-z0-9-]{1,30}", v),
        why="lowercase letters, digits and '-', 2-31 characters",
    )
    hyper = train.sub("hyperparameters").table
    for key, value in hyper.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"{source}: train.hyperparameters.{key} must be a string "
                f"(SageMaker passes hyperparameters as strings), got {value!r}"
            )
    missing = [s for s in STAGES if s not in stages.table]
    if missing:
        raise ConfigError(f"{source}: stages.{missing[0]} is missing")
    fraction = {"check": lambda v: 0 <= v < 1, "why": "must be a fraction in [0, 1)"}
    project.reject_unknown({"name", "bootstrap_stack"})
    model.reject_unknown(
        {
            "package",
            "glue_script",
            "glue_extra_files",
            "data",
            "training_code",
            "local_entrypoint",
            "content_type",
        }
    )
    gate.reject_unknown({"max_rmse", "min_improvement_over_baseline", "max_regression_vs_prod"})
    return Config(
        project=name,
        bootstrap_stack=project.get("bootstrap_stack", str, f"{name}-bootstrap"),
        model_package=model.get("package", str),
        glue_script=model.get("glue_script", str),
        glue_extra_files=tuple(model.get("glue_extra_files", list, [])),
        data=model.get("data", str),
        training_code=tuple(model.get("training_code", list, [])),
        local_entrypoint=tuple(model.get("local_entrypoint", list)),
        content_type=model.get("content_type", str, "text/csv"),
        etl={k: str(v) for k, v in top.sub("etl").table.items()},
        train=_job(
            train,
            {"volume_gb": 10, "max_runtime_seconds": 3600, "instance_count": 1},
            extra={"hyperparameters"},
        ),
        hyperparameters=dict(hyper),
        evaluate=_evaluate(top.sub("evaluate")),
        max_rmse=gate.get("max_rmse", float, check=lambda v: v > 0, why="must be > 0"),
        min_improvement_over_baseline=gate.get(
            "min_improvement_over_baseline", float, 0.0, **fraction
        ),
        max_regression_vs_prod=gate.get("max_regression_vs_prod", float, 0.0, **fraction),
        stages={s: _stage(s, stages.sub(s)) for s in STAGES},
        source=source,
        inference=_inference(top.sub("inference")),
        tune=parse_tune(top.sub("tune"), dict(hyper)),
    )


def load(path: str | Path = DEFAULT_FILE) -> Config:
    """Read and validate the configuration file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found (run from the repository root or pass --config)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, str(path))
