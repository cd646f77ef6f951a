"""Hyperparameter tuning jobs, run for real in the local AWS.

moto (5.2.5) stores CreateHyperParameterTuningJob as a record Completed at once with a fake best
training job, runs no trial and has no ListTrainingJobsForHyperParameterTuningJob. Here the
request is checked as AWS checks it (each rule cites its page), then the job runs on its own
thread (it only waits): each trial is a real training job record in moto's backend, named as
SageMaker names them (``<tuning job>-<NNN>-<8 hex>``), with the static hyperparameters, the tuned
ones and ``_tuning_objective_metric``, and the tuning job's tags; it runs on the runtime's compute
as the job's role (IAM enforced as for any training job), at most MaxParallelTrainingJobs at once.
A trial's objective is its FinalMetricDataList value (the MetricDefinitions regex over its log);
the best is the Completed trial with the lowest (Minimize) or highest (Maximize) one.

Fidelity gap: Random samples the ranges for real (Logarithmic on a log scale, integers as
integers, seeded by RandomSeed or the job name) and Grid enumerates every combination, but
Bayesian and Hyperband are approximated by random sampling: no surrogate model chooses the next
trial and Hyperband stops no trial early. The best trial is chosen exactly as AWS chooses it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import threading
import uuid
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceNotFound

from mlops.local.moto_gaps.tuning_rules import check, search_ranges

POLL_S = 0.2
DONE = ("Completed", "Failed", "Stopped")
_threads: list[threading.Thread] = []
_stop = threading.Event()
_runtime: Any = None


# --- choosing the trials' values -------------------------------------------------------------
def _number(value: float) -> str:
    return f"{value:.6g}"


def sample(ranges: list[tuple[str, dict[str, Any]]], rng: random.Random) -> dict[str, str]:
    """One random point of the search space, each range on its scale."""
    point = {}
    for kind, r in ranges:
        if kind == "CategoricalParameterRanges":
            point[r["Name"]] = rng.choice(list(r["Values"]))
            continue
        low, high, scaling = float(r["MinValue"]), float(r["MaxValue"]), r.get("ScalingType")
        if scaling == "Logarithmic":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif scaling == "ReverseLogarithmic":
            value = 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
        else:
            value = rng.uniform(low, high)
        if kind == "IntegerParameterRanges":
            point[r["Name"]] = str(min(int(high), max(int(low), round(value))))
        else:
            point[r["Name"]] = _number(min(high, max(low, value)))
    return point


def points(name: str, config: dict[str, Any]) -> list[dict[str, str]]:
    """Every trial's tuned values: the grid, or seeded random samples."""
    ranges = search_ranges(config)
    if config["Strategy"] == "Grid":
        axes = [[(r["Name"], v) for v in r["Values"]] for _, r in ranges]
        return [dict(combo) for combo in itertools.product(*axes)]
    seed = config.get("RandomSeed")
    if seed is None:
        seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not a secret
    return [sample(ranges, rng) for _ in range(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])]


# --- the running job ---------------------------------------------------------------------------
class Tuning:
    """The local state of one tuning job, kept on its moto record as ``record.local``."""

    def __init__(self, backend: Any, record: Any, tags: list[dict[str, str]] | None) -> None:
        self.backend, self.record, self.tags = backend, record, tags or []
        self.config = record.hyper_parameter_tuning_job_config
        self.definition = record.training_job_definition
        self.objective = self.config.get("HyperParameterTuningJobObjective") or {}
        self.trials: list[tuple[Any, dict[str, str]]] = []  # (training job, tuned values)
        self.ended: dict[str, Any] = {}
        self.status, self.reason, self.end_time = "InProgress", "", None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # the job fails with why, as any local job does
            self.reason = f"local runtime: {type(exc).__name__}: {exc}"
        best = self.best()
        self.status = "Completed" if best and not self.reason else "Failed"
        if self.status == "Failed" and not self.reason:
            failed = [getattr(j, "failure_reason", "") for j, _ in self.trials]
            failed = [f for f in failed if f]
            self.reason = "No training job completed with the objective metric " + (
                f"{self.objective.get('MetricName')}" + (f": {failed[0]}" if failed else "")
            )
        self.end_time = self.record.last_modified_time = utcnow()

    def _run(self) -> None:
        todo = list(enumerate(points(self.record.hyper_parameter_tuning_job_name, self.config), 1))
        parallel = self.config["ResourceLimits"]["MaxParallelTrainingJobs"]
        while (todo or self.active()) and not _stop.is_set():
            while todo and len(self.active()) < parallel:
                self._start(*todo.pop(0))
            _stop.wait(POLL_S)
            for job, _ in self.trials:
                if job.training_job_status in DONE and job.training_job_name not in self.ended:
                    self.ended[job.training_job_name] = utcnow()

    def active(self) -> list[Any]:
        return [j for j, _ in self.trials if j.training_job_status not in DONE]

    def _start(self, number: int, tuned: dict[str, str]) -> None:
        d, name = self.definition, self.record.hyper_parameter_tuning_job_name
        hyper = {
            **(d.get("StaticHyperParameters") or {}),
            **tuned,
            "_tuning_objective_metric": self.objective.get("MetricName", ""),
        }
        job = self.backend.create_training_job(
            training_job_name=f"{name}-{number:03d}-{uuid.uuid4().hex[:8]}",
            hyper_parameters=hyper,
            algorithm_specification=dict(d["AlgorithmSpecification"]),
            role_arn=d["RoleArn"],
            input_data_config=d.get("InputDataConfig") or [],
            output_data_config=d["OutputDataConfig"],
            resource_config=d.get("ResourceConfig") or {},
            vpc_config=d.get("VpcConfig"),
            stopping_condition=d["StoppingCondition"],
            tags=list(self.tags),  # the tuning job's tags go to every training job it launches
            enable_network_isolation=d.get("EnableNetworkIsolation", False),
            enable_inter_container_traffic_encryption=False,
            enable_managed_spot_training=False,
            checkpoint_config=None,
            debug_hook_config=None,
            debug_rule_configurations=None,
            tensor_board_output_config=None,
            experiment_config=None,
        )
        job.tuning_job_arn = self.record.arn  # DescribeTrainingJob's TuningJobArn
        self.trials.append((job, tuned))

    def value(self, job: Any) -> float | None:
        for metric in getattr(job, "final_metric_data_list", None) or []:
            if metric.get("MetricName") == self.objective.get("MetricName"):
                return float(metric["Value"])
        return None

    def best(self) -> dict[str, Any] | None:
        """The Completed trial with the best objective value (the first of equals)."""
        scored = [
            (self.value(j), i) for i, (j, _) in enumerate(self.trials)
            if j.training_job_status == "Completed" and self.value(j) is not None
        ]  # fmt: skip
        if not scored:
            return None
        sign = -1 if self.objective.get("Type") == "Maximize" else 1
        _, index = min(scored, key=lambda s: (sign * s[0], s[1]))
        return self.summary(*self.trials[index])

    def summary(self, job: Any, tuned: dict[str, str]) -> dict[str, Any]:
        """HyperParameterTrainingJobSummary of one trial."""
        status, value = job.training_job_status, self.value(job)
        out: dict[str, Any] = {
            "TrainingJobName": job.training_job_name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.record.hyper_parameter_tuning_job_name,
            "CreationTime": job.creation_time,
            "TrainingStartTime": job.training_start_time,
            "TrainingJobStatus": status,
            "TunedHyperParameters": dict(tuned),
            "ObjectiveStatus": "Pending" if status not in DONE else "Failed",
        }
        if job.training_job_name in self.ended:
            out["TrainingEndTime"] = self.ended[job.training_job_name]
        if getattr(job, "failure_reason", ""):
            out["FailureReason"] = job.failure_reason
        if status == "Completed" and value is not None:
            out["ObjectiveStatus"] = "Succeeded"
            out["FinalHyperParameterTuningJobObjectiveMetric"] = {**self.objective, "Value": value}
        return out

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        statuses = [j.training_job_status for j, _ in self.trials]
        summaries = [self.summary(j, t)["ObjectiveStatus"] for j, t in self.trials]
        return (
            {
                "Completed": statuses.count("Completed"),
                "InProgress": sum(s not in DONE for s in statuses),
                "RetryableError": 0,
                "NonRetryableError": statuses.count("Failed"),
                "Stopped": statuses.count("Stopped"),
            },
            {k: summaries.count(k) for k in ("Succeeded", "Pending", "Failed")},
        )

    def describe(self, moto: dict[str, Any]) -> dict[str, Any]:
        """DescribeHyperParameterTuningJob of the running job (moto's fakes left out)."""
        keep = ("HyperParameterTuningJobName", "HyperParameterTuningJobArn",
                "HyperParameterTuningJobConfig", "TrainingJobDefinition", "CreationTime",
                "LastModifiedTime")  # fmt: skip
        out = {k: moto[k] for k in keep if moto.get(k) is not None}
        trials, objectives = self.counters()
        out.update(
            HyperParameterTuningJobStatus=self.status,
            TrainingJobStatusCounters=trials,
            ObjectiveStatusCounters=objectives,
        )
        best = self.best()
        if best:
            out["BestTrainingJob"] = best
        if self.end_time:
            out["HyperParameterTuningEndTime"] = self.end_time
        if self.reason:
            out["FailureReason"] = self.reason
        return out


# --- moto hooks -------------------------------------------------------------------------------
def _create(original: Any) -> Any:
    def create(self: Any, **kwargs: Any) -> Any:
        name = kwargs["hyper_parameter_tuning_job_name"]
        check(name, kwargs["hyper_parameter_tuning_job_config"], kwargs["training_job_definition"])
        arn = original(self, **kwargs)
        record = self.hyper_parameter_tuning_jobs[name]
        record.local = Tuning(self, record, kwargs.get("tags"))
        thread = threading.Thread(target=record.local.run, name=f"tuning-{name}", daemon=True)
        _threads.append(thread)
        thread.start()
        return arn

    return create


def _describe(original: Any) -> Any:
    def describe(self: Any) -> dict[str, Any]:
        result = original(self)
        return self.local.describe(result) if getattr(self, "local", None) else result

    return describe


def _summary(original: Any) -> Any:
    def summary(self: Any) -> dict[str, Any]:
        result = original(self)
        if getattr(self, "local", None):
            trials, objectives = self.local.counters()
            result.update(
                HyperParameterTuningJobStatus=self.local.status,
                TrainingJobStatusCounters=trials,
                ObjectiveStatusCounters=objectives,
                HyperParameterTuningEndTime=self.local.end_time,
            )
        return result

    return summary


def _keep_metric_definitions(original: Any) -> Any:
    """moto replaces a training job's MetricDefinitions with its own; AWS keeps the job's."""

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        spec = kwargs.get("algorithm_specification") or {}
        given = [dict(m) for m in spec.get("MetricDefinitions") or []]
        job = original(self, *args, **kwargs)
        job.algorithm_specification["MetricDefinitions"] = given
        return job

    return create


def _list_trials(self: Any) -> ActionResult:
    """ListTrainingJobsForHyperParameterTuningJob in the real API's shape: SortBy Name by
    default, FinalObjectiveMetricValue lists only trials with an objective, 10 a page."""
    name = self._get_param("HyperParameterTuningJobName")
    record = self.sagemaker_backend.hyper_parameter_tuning_jobs.get(name)
    if record is None:
        raise ResourceNotFound(message=f"Could not find hyper parameter tuning job '{name}'.")
    local = getattr(record, "local", None)
    rows = [local.summary(j, t) for j, t in local.trials] if local else []
    status, sort_by = self._get_param("StatusEquals"), self._get_param("SortBy") or "Name"
    rows = [r for r in rows if not status or r["TrainingJobStatus"] == status]
    key = {
        "Name": lambda r: r["TrainingJobName"],
        "CreationTime": lambda r: r["CreationTime"],
        "Status": lambda r: r["TrainingJobStatus"],
        "FinalObjectiveMetricValue": lambda r: r["FinalHyperParameterTuningJobObjectiveMetric"][
            "Value"
        ],
    }[sort_by]
    if sort_by == "FinalObjectiveMetricValue":
        rows = [r for r in rows if "FinalHyperParameterTuningJobObjectiveMetric" in r]
    rows.sort(key=key, reverse=self._get_param("SortOrder") == "Descending")
    start, size = int(self._get_param("NextToken") or 0), int(self._get_param("MaxResults") or 10)
    page: dict[str, Any] = {"TrainingJobSummaries": rows[start : start + size]}
    if start + size < len(rows):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


def install(runtime: Any, wrap: Any) -> None:
    """Run tuning jobs for real (``wrap`` is moto_gaps' patch recorder; uninstall restores).
    Installed before the training-job hook, so that hook sees the job's own metrics."""
    global _runtime
    _runtime = runtime
    _stop.clear()
    backend = sm_models.SageMakerModelBackend
    wrap(backend, "create_training_job", _keep_metric_definitions)
    wrap(backend, "create_hyper_parameter_tuning_job", _create)
    wrap(sm_models.HyperParameterTuningJob, "describe", _describe)
    wrap(sm_models.HyperParameterTuningJob, "summary", _summary)
    sm_responses.SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = _list_trials


def uninstall() -> None:
    """Stop waiting tuning jobs (before the moto server stops) and remove the added operation."""
    global _runtime
    _stop.set()
    while _threads:
        _threads.pop().join(timeout=10)
    if hasattr(sm_responses.SageMakerResponse, "list_training_jobs_for_hyper_parameter_tuning_job"):
        del sm_responses.SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job
    _runtime = None
