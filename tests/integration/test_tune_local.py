"""`mlops train --tune` against the local AWS: a real tuning job of real trials, end to end.

The splits are written straight to the data bucket (as the ETL writes them) so the module pays for
the trials, not for Spark: three trials, two at a time, each a real training subprocess as the
SageMaker execution role; the step itself acts as the build role (its grant is what the test needs).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import tarfile
from pathlib import Path
from typing import Any

import pytest

from abalone_model.schema import DATA_FILE, Schema
from mlops import config as config_mod
from mlops.aws import new_session, s3_uri
from mlops.config_tune import Range
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.local import oidc
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest
from mlops.steps import tune

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cost(6)  # seconds: three real trials


def _splits(ctx) -> dict[str, str]:
    """The ETL's output layout (header + encoded columns), a seeded 70/15/15 split."""
    schema = Schema.load()
    sexes = schema.column("sex").categories
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    encoded = [
        [r["rings"], *(str(int(r["sex"] == s)) for s in sexes),
         *(r[c] for c in [schema.target.name, *schema.encoded_names][1 + len(sexes):])]
        for r in rows
    ]  # fmt: skip
    random.Random(7).shuffle(encoded)
    cut = int(0.7 * len(encoded))
    parts = {"train": encoded[:cut], "validation": encoded[cut : cut + len(encoded) // 7]}
    s3, bucket = ctx.client("s3"), ctx.account.DataBucket
    prefix = s3_uri(bucket, "runs", ctx.run_id, "etl") + "/"
    for name, body in parts.items():
        text = io.StringIO()
        csv.writer(text).writerows([[schema.target.name, *schema.encoded_names], *body])
        s3.put_object(Bucket=bucket, Key=f"runs/{ctx.run_id}/etl/{name}/part-00000.csv",
                      Body=text.getvalue().encode())  # fmt: skip
    return {name: f"{prefix}{name}/" for name in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A local AWS of its own (the build role's credentials need the GitHub stand-in)."""
    with LocalRuntime(ROOT, tmp_path_factory.mktemp("runs")) as runtime:
        cfg = config_mod.load(ROOT / "pipeline.toml")
        admin = Context(cfg, runtime.session, Manifest(runtime.run_dir / "m.json"), root=ROOT)
        github = runtime.bootstrap(admin)
        yield runtime, admin, github


def build_role_session(runtime: LocalRuntime, github) -> Any:
    """The train job's credentials: deploy.yml's BUILD_ROLE_ARN through a main-branch token."""
    token = runtime.tokens.issue(oidc.claims(github.repository))
    creds = runtime.anonymous_client("sts").assume_role_with_web_identity(
        RoleArn=github.vars_for()["BUILD_ROLE_ARN"],
        RoleSessionName="GitHubActions",
        WebIdentityToken=token,
    )["Credentials"]
    return new_session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=runtime.region,
    )


@pytest.fixture(scope="module")
def tuned_ctx(world):
    """Three trials, two at a time, run by the build role (IAM enforced: its grant is tested)."""
    runtime, admin, github = world
    small = dataclasses.replace(
        admin.config.tune,
        strategy="Random",
        max_jobs=3,
        max_parallel_jobs=2,
        random_seed=11,
        ranges=(
            Range("eta", "continuous", "0.1", "0.4", "Logarithmic"),
            Range("max_depth", "integer", "2", "5"),
        ),
    )
    cfg = dataclasses.replace(
        admin.config, tune=small, hyperparameters={"num_round": "200", "max_depth": "9"}
    )
    session = build_role_session(runtime, github)
    ctx = Context(cfg, session, admin.manifest, root=ROOT)
    ctx.manifest.update("etl", {"splits": _splits(admin)})
    return runtime, ctx


@pytest.fixture(scope="module")
def result(tuned_ctx, monkeypatch_module, tmp_path_factory):
    runtime, ctx = tuned_ctx
    summary = tmp_path_factory.mktemp("gh") / "summary.md"
    monkeypatch_module.setenv("GITHUB_STEP_SUMMARY", str(summary))
    values = tune.run(ctx, runtime.image_uri)
    return values, summary.read_text()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_trials_ran_for_real_with_different_hyperparameters(tuned_ctx, result):
    _, ctx = tuned_ctx
    values, _ = result
    sm = ctx.client("sagemaker")
    trials = values["trials"]
    assert len(trials) == 3 and all(t["status"] == "Completed" for t in trials)
    assert len({json.dumps(t["tuned"], sort_keys=True) for t in trials}) == 3
    for t in trials:
        assert t["name"].startswith(values["tuning_job"] + "-")
        job = sm.describe_training_job(TrainingJobName=t["name"])
        hyper = job["HyperParameters"]
        assert {k: hyper[k] for k in t["tuned"]} == t["tuned"]
        assert hyper["num_round"] == "200" and "max_depth" in t["tuned"]  # tuned wins
        assert hyper["_tuning_objective_metric"] == "validation:rmse"
        final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
        assert final["validation:rmse"] == pytest.approx(t["validation_rmse"])
    assert len({t["validation_rmse"] for t in trials}) == 3


def test_the_manifest_carries_the_best_trials_model_and_hyperparameters(tuned_ctx, result):
    _, ctx = tuned_ctx
    values, _ = result
    best = min(values["trials"], key=lambda t: t["validation_rmse"])
    assert values["job_name"] == best["name"] and best["best"]
    assert sum(t["best"] for t in values["trials"]) == 1
    assert values["hyperparameters"] == {"num_round": "200", **best["tuned"]}
    assert values["objective"]["Value"] == pytest.approx(best["validation_rmse"])
    assert ctx.manifest.get("train") == values
    job = ctx.client("sagemaker").describe_training_job(TrainingJobName=best["name"])
    assert values["model_data"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = values["model_data"].removeprefix("s3://").split("/", 1)
    body = ctx.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames()  # the best trial's own model, written by its training run
    assert ctx.manifest.get("reuse.reason").startswith("tuning was asked for")


def test_the_summary_tables_the_trials_with_the_best_marked(result):
    values, summary = result
    assert f"tuning job `{values['tuning_job']}`" in summary
    assert summary.count("**best**") == 1 and f"`{values['job_name']}` **best**" in summary
    assert summary.count("| Completed |") == 3


def test_a_tuning_job_the_local_aws_refuses_is_one_line_naming_the_rule(tuned_ctx, capsys):
    runtime, ctx = tuned_ctx
    too_many = dataclasses.replace(ctx.config.tune, max_parallel_jobs=11)
    bad = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, tune=too_many))
    with pytest.raises(PipelineError, match="ResourceLimitExceeded: MaxParallelTrainingJobs 11"):
        tune.run(bad, runtime.image_uri)


def test_failed_trials_fail_the_step_with_the_trials_reason(tuned_ctx, monkeypatch, tmp_path):
    runtime, ctx = tuned_ctx
    broken = dataclasses.replace(
        ctx.config.tune,
        max_jobs=1,
        max_parallel_jobs=1,
        ranges=(Range("etaa", "continuous", "0.1", "0.2"),),
    )
    bad = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, tune=broken))
    with pytest.raises(PipelineError, match=r"Failed: .*unknown hyperparameter\(s\): etaa"):
        tune.run(bad, runtime.image_uri)
