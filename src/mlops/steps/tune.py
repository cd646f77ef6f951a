"""Tune: a SageMaker hyperparameter tuning job whose best trial becomes the run's model.

The trials get the plain training job's definition (steps/train.py: image by digest, metrics,
role, channels, resources), the configured hyperparameters minus the tuned ones as static ones,
and ``[tune]``'s ranges. The best trial (lowest validation:rmse) is then recorded in the manifest
as the train step records its job, so evaluate, gate and register run unchanged; its
hyperparameters (static + tuned) are what the package records. Tuning never reuses a package.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from mlops import github
from mlops.aws import call, console, log, wait_for
from mlops.config_tune import Range, TuneConfig
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.steps import reuse, train

OBJECTIVE = {"Type": "Minimize", "MetricName": "validation:rmse"}
# CreateHyperParameterTuningJob: "The name must have 1 to 32 characters"
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateHyperParameterTuningJob.html)
MAX_NAME = 32
COUNTERS = ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped")


def tuning_job_name(project: str, attempt_name: str) -> str:
    """<project>-tune-<8 hex of this run's attempt>: unique, and under the IAM grant's
    ``hyper-parameter-tuning-job/<project>-*``."""
    name = f"{project}-tune-{hashlib.sha256(attempt_name.encode()).hexdigest()[:8]}"
    if len(name) > MAX_NAME:
        raise ConfigError(
            f"project.name {project!r} is too long for a tuning job name ({name}: {len(name)} "
            f"characters, AWS allows {MAX_NAME}): use a project name of at most "
            f"{MAX_NAME - len(name) + len(project)} characters to tune"
        )
    return name


def parameter_ranges(ranges: tuple[Range, ...]) -> dict[str, list[dict[str, Any]]]:
    """[tune.ranges] in ParameterRanges' shape."""
    out: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for r in ranges:
        if r.type == "categorical":
            out["CategoricalParameterRanges"].append({"Name": r.name, "Values": list(r.values)})
        else:
            key = "IntegerParameterRanges" if r.type == "integer" else "ContinuousParameterRanges"
            out[key].append(
                {"Name": r.name, "MinValue": r.min, "MaxValue": r.max, "ScalingType": r.scaling}
            )
    return {k: v for k, v in out.items() if v}


def static_hyperparameters(configured: dict[str, str], tune: TuneConfig) -> dict[str, str]:
    return {k: v for k, v in configured.items() if k not in tune.tuned}


def tuning_config(tune: TuneConfig) -> dict[str, Any]:
    """HyperParameterTuningJobConfig from [tune] (validated in config_tune)."""
    limits: dict[str, Any] = {"MaxParallelTrainingJobs": tune.max_parallel_jobs}
    if tune.strategy != "Grid" or tune.max_jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = tune.trials()
    result: dict[str, Any] = {
        "Strategy": tune.strategy,
        "HyperParameterTuningJobObjective": dict(OBJECTIVE),
        "ResourceLimits": limits,
        "ParameterRanges": parameter_ranges(tune.ranges),
        "TrainingJobEarlyStoppingType": tune.early_stopping,
    }
    if tune.random_seed is not None:
        result["RandomSeed"] = tune.random_seed
    if tune.strategy == "Hyperband":
        hyperband = {"MinResource": tune.min_resource, "MaxResource": tune.max_resource}
        result["StrategyConfig"] = {
            "HyperbandStrategyConfig": {k: v for k, v in hyperband.items() if v is not None}
        }
    return result


def request(ctx: Context, name: str, image_uri: str, splits: dict[str, str]) -> dict[str, Any]:
    """CreateHyperParameterTuningJob's arguments: the plain training job's definition."""
    cfg = ctx.config
    if not cfg.tune.ranges:
        raise ConfigError(f"{cfg.source}: [tune.ranges] is empty: add a range to tune")
    definition = train.job_definition(ctx, image_uri, splits)
    definition["StaticHyperParameters"] = static_hyperparameters(cfg.hyperparameters, cfg.tune)
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": tuning_config(cfg.tune),
        "TrainingJobDefinition": definition,
        "Tags": [{"Key": "mlops:run", "Value": ctx.run_id}],
    }


def list_trials(sm: Any, name: str) -> list[dict[str, Any]]:
    """Every trial of the tuning job (HyperParameterTrainingJobSummary), by name."""
    trials, token = [], None
    while True:
        page = call(
            "list the tuning job's training jobs",
            sm.list_training_jobs_for_hyper_parameter_tuning_job,
            HyperParameterTuningJobName=name,
            SortBy="Name",
            SortOrder="Ascending",
            MaxResults=100,
            **({"NextToken": token} if token else {}),
        )
        trials += page["TrainingJobSummaries"]
        token = page.get("NextToken")
        if not token:
            return trials


def objective(summary: dict[str, Any]) -> float | None:
    metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return metric.get("Value")


def trial_rows(trials: list[dict[str, Any]], best: str) -> list[dict[str, Any]]:
    """What the manifest keeps of each trial."""
    return [
        {
            "name": t["TrainingJobName"],
            "status": t["TrainingJobStatus"],
            "tuned": dict(t.get("TunedHyperParameters", {})),
            "validation_rmse": objective(t),
            "best": t["TrainingJobName"] == best,
            **({"failure_reason": t["FailureReason"]} if t.get("FailureReason") else {}),
        }
        for t in trials
    ]


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The trials as a markdown table for the job summary; the best one marked."""
    body = [
        [
            f"`{r['name']}`" + (" **best**" if r["best"] else ""),
            r["status"],
            ", ".join(f"{k}={v}" for k, v in sorted(r["tuned"].items())),
            "" if r["validation_rmse"] is None else f"{r['validation_rmse']:.4f}",
        ]
        for r in rows
    ]
    return github.table(["trial", "status", "tuned hyperparameters", "validation:rmse"], body)


class Progress:
    """One line each time the trial counts change (completed / in progress / failed)."""

    def __init__(self, what: str, clock: Any = time.monotonic) -> None:
        self.what, self.clock, self.start, self.last = what, clock, clock(), None

    def __call__(self, desc: dict[str, Any]) -> None:
        c = desc.get("TrainingJobStatusCounters", {})
        counts = (
            c.get("Completed", 0),
            c.get("InProgress", 0),
            c.get("RetryableError", 0) + c.get("NonRetryableError", 0),
            c.get("Stopped", 0),
        )
        if counts != self.last:
            self.last = counts
            log(
                f"  {self.what}: trials {counts[0]} completed, {counts[1]} in progress, "
                f"{counts[2]} failed, {counts[3]} stopped after {self.clock() - self.start:.1f}s"
            )


def _failure(sm: Any, name: str) -> Any:
    """The tuning job's reason, and the first failed trial's (where its own reason is)."""

    def reason(desc: dict[str, Any]) -> str:
        text = desc.get("FailureReason") or "no reason given"
        try:
            failed = [t for t in list_trials(sm, name) if t.get("FailureReason")]
        except PipelineError:
            failed = []
        if failed:
            text += f"; trial {failed[0]['TrainingJobName']}: {failed[0]['FailureReason']}"
        return text

    return reason


def run(ctx: Context, image_uri: str) -> dict[str, Any]:
    """The tuning job, waited for; the best trial recorded as the run's training."""
    train.parse_image(image_uri)  # refuse a tag before any AWS call
    cfg, sm = ctx.config, ctx.client("sagemaker")
    digest = train.check_image(ctx.client("ecr"), image_uri)
    splits = ctx.manifest.require("etl.splits", "etl")
    name = tuning_job_name(cfg.project, ctx.job_name("tune"))
    args = request(ctx, name, image_uri, splits)
    reason = "tuning was asked for (--tune): a tuning job trains anew"
    ctx.manifest.update("reuse", {"from": "", "reason": reason})
    log(f"reuse: {reason}")
    call("create the hyperparameter tuning job", sm.create_hyper_parameter_tuning_job, **args)
    tune = cfg.tune
    log(
        f"train: tuning job {name} ({tune.strategy}, {tune.trials()} trials, "
        f"{tune.max_parallel_jobs} at a time)"
    )
    link = console(ctx.region, f"sagemaker/home?region={ctx.region}#/hyper-tuning-jobs/{name}")
    desc = wait_for(
        f"tuning job {name}",
        lambda: call(
            "describe the tuning job",
            sm.describe_hyper_parameter_tuning_job,
            HyperParameterTuningJobName=name,
        ),
        lambda d: d["HyperParameterTuningJobStatus"],
        done={"Completed"},
        failed={"Failed", "Stopped"},
        link=link,
        on_poll=Progress(f"tuning job {name}"),
        reason_of=_failure(sm, name),
    ).description
    best = desc.get("BestTrainingJob")
    if not best:
        raise PipelineError(
            f"tuning job {name} completed without a best training job: no trial reported "
            f"{OBJECTIVE['MetricName']} (see {link})"
        )
    job = call(
        "describe the best training job",
        sm.describe_training_job,
        TrainingJobName=best["TrainingJobName"],
    )
    hyper = {
        **args["TrainingJobDefinition"]["StaticHyperParameters"],
        **best["TunedHyperParameters"],
    }
    rows = trial_rows(list_trials(sm, name), best["TrainingJobName"])
    values = {
        "job_name": best["TrainingJobName"],
        "image_uri": image_uri,
        "image_digest": digest,
        "model_data": job["ModelArtifacts"]["S3ModelArtifacts"],
        "hyperparameters": hyper,
        "tuning_job": name,
        "objective": {**OBJECTIVE, "Value": objective(best)},
        "trials": rows,
    }
    ctx.manifest.update("train", values)
    # a later run configured with these very hyperparameters may reuse this model
    ctx.manifest.update(
        "reuse",
        reuse.training_key(ctx, ctx.manifest.get("reuse.data_sha256") or "", hyperparameters=hyper),
    )
    log(f"train: best trial {values['job_name']} ({OBJECTIVE['MetricName']} {objective(best)})")
    github.summary(
        f"### Training (tuning job `{name}`, {tune.strategy})\n{summary_table(rows)}\n\n"
        f"Best: `{values['job_name']}` → `{values['model_data']}`"
    )
    return values
