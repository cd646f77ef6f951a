"""`mlops inference upsert` and `run` against the local AWS: the SDK-compiled definition, executed.

The package fixtures of conftest.py (shared with test_pipeline_local) give a package serving
prod; the bootstrap deployed cloudformation/inference.yaml as mlops-inference-prod, whose
pipeline role upsert reads from the stack's outputs, so the executions act with exactly its
grants. Runs: the held-out raw test split (by s3://: no drift) and a shifted local copy (weights
x1.6, every sex 'I': drift).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from abalone_model.schema import Schema
from mlops import stack
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.local import scoring
from mlops.steps import inference, inference_compile, register
from mlops.steps import run as run_step

ROOT = Path(__file__).resolve().parents[2]
FEATURES = list(Schema.load().raw_names)
WEIGHTS = ("whole_weight", "shucked_weight", "viscera_weight", "shell_weight")


pytestmark = pytest.mark.cost(45)  # seconds on two workers: scheduled first


@pytest.fixture(scope="module")
def role(local) -> str:
    """The pipeline role of the mlops-inference-prod stack the bootstrap deployed."""
    _, ctx = local
    found = stack.describe(ctx.client("cloudformation"), "mlops-inference-prod")
    return stack.outputs(found)["InferencePipelineRoleArn"]


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv(inference.ROLE_ENV, raising=False)
    monkeypatch.delenv(inference_compile.PYTHON_ENV, raising=False)


@pytest.fixture(scope="module")
def upserted(local, in_prod) -> dict:
    """Upserted from what the prod stack serves then (another module may later replace it)."""
    _, ctx = local
    found = stack.describe(ctx.client("cloudformation"), "mlops-endpoint-prod")
    serving = {p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]}
    return {**inference.upsert(ctx, "prod"), "serving": serving["ModelPackageArn"]}


def _read(ctx: Context, uri: str) -> list[str]:
    """Every non-empty line of every object under an s3:// prefix."""
    s3 = ctx.client("s3")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    keys = [o["Key"] for o in listed if o["Key"].endswith((".csv", ".out"))]
    assert keys, f"no CSV under {uri}: {[o['Key'] for o in listed]}"
    text = "".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys)
    return [line for line in text.splitlines() if line.strip()]


def _write_csv(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FEATURES, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _raw_test(ctx: Context, arn: str) -> tuple[str, list[dict]]:
    """The package's raw test split, its features only, as clients send them, in one s3:// object
    (Spark's folder also holds .crc files; the label is no input)."""
    lines = _read(ctx, register.describe(ctx, arn)["CustomerMetadataProperties"]["test_data_uri"])
    header = lines[0]
    rows = list(
        csv.DictReader(io.StringIO("\n".join([header, *(x for x in lines if x != header)])))
    )
    bucket = ctx.account.DataBucket
    ctx.client("s3").put_object(
        Bucket=bucket, Key="batches/test.csv", Body=_write_csv(rows).encode()
    )
    return f"s3://{bucket}/batches/test.csv", rows


def _predictions(ctx: Context, result: dict) -> list[float]:
    return [float(v) for v in _read(ctx, result["predictions"])]


def test_upsert_records_the_serving_package_and_its_parameters(local, upserted):
    _, ctx = local
    params = upserted["parameters"]
    arn = upserted["serving"]
    package = register.describe(ctx, arn)
    container = package["InferenceSpecification"]["Containers"][0]
    etl_output = package["CustomerMetadataProperties"]["etl_output"]
    assert upserted["model_package_arn"] == arn  # the stack's ModelPackageArn, not "latest"
    assert params == {
        "ModelName": f"mlops-batch-v{arn.rsplit('/', 1)[-1]}",
        "ModelDataUri": container["ModelDataUrl"],
        "ImageUri": container["Image"],
        "BaselineUri": etl_output + "baseline/",
        "TestDataUri": etl_output + "test/",
        "OutputPrefix": f"s3://{ctx.account.ArtifactBucket}/inference/prod/runs",
    }
    stored = json.loads(
        ctx.client("s3")
        .get_object(Bucket=ctx.account.ArtifactBucket, Key="inference/prod/parameters.json")["Body"]
        .read()
    )
    assert stored == params
    model = ctx.client("sagemaker").describe_model(ModelName=params["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn
    assert ctx.manifest.get("inference.pipeline_arn") == upserted["pipeline_arn"]
    definition = json.loads(
        ctx.client("sagemaker").describe_pipeline(PipelineName="mlops-inference-prod")[
            "PipelineDefinition"
        ]
    )
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert defaults == {**params, "InputDataUri": None}  # the rule names only its input


def test_upsert_twice_updates_the_one_pipeline(local, upserted, env):
    _, ctx = local
    sm = ctx.client("sagemaker")
    stale = json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []})
    sm.update_pipeline(PipelineName="mlops-inference-prod", PipelineDefinition=stale)
    again = inference.upsert(ctx, "prod")
    after = sm.describe_pipeline(PipelineName="mlops-inference-prod")
    names = [p["PipelineName"] for p in sm.list_pipelines()["PipelineSummaries"]]
    assert sorted(names) == ["mlops-inference-prod", "mlops-monitor-prod"]  # + live drift
    assert again["pipeline_arn"] == upserted["pipeline_arn"]
    definition = json.loads(after["PipelineDefinition"])
    assert [s["Name"] for s in definition["Steps"]] == [
        "Predict",
        "Monitor",
        "Explain",
        "DriftFound",
    ]


def test_the_held_out_test_split_runs_without_drift(local, upserted, env):
    _, ctx = local
    uri, rows = _raw_test(ctx, upserted["serving"])
    result = inference.run(ctx, "prod", uri)
    assert result["input"] == uri
    assert len(_predictions(ctx, result)) == len(rows) == result["rows"]
    assert result["verdict"] == "no_drift"
    assert len(result["top_features"]) == 3
    assert ctx.manifest.get("inference.run.verdict") == "no_drift"


def test_make_pipelines_scoring_finds_drift_only_in_the_shifted_copy(
    local, upserted, env, tmp_path
):
    _, ctx = local
    found = scoring.score_batches(ctx, tmp_path)
    held, shifted = found["held-out-test"], found["shifted-test"]
    bucket = ctx.account.DataBucket
    assert held["input"] == f"s3://{bucket}/batches/held-out-test.csv"  # uploaded from the file
    assert (held["verdict"], shifted["verdict"]) == ("no_drift", "drift")
    assert held["rows"] == shifted["rows"] == len(_predictions(ctx, shifted))
    live = found.pop(scoring.LIVE)  # prod's capture (the system tests' traffic): a drift report
    report = json.loads(
        (tmp_path / "inference" / scoring.LIVE / "monitor" / "drift.json").read_text()
    )
    assert report["rows"] == live["rows"] > 0 and report["capture"]["used"] > 0
    for name in found:  # predictions, drift report and explanations in the run folder
        folder = tmp_path / "inference" / name
        assert json.loads((folder / "monitor" / "drift.json").read_text())["verdict"]
        assert (folder / "explain" / "explanations.json").is_file()
        assert list((folder / "predictions").glob("*.out"))
    header = (tmp_path / "batches" / "shifted-test.csv").read_text().splitlines()[0]
    assert header.split(",") == FEATURES  # as clients send rows: no label
    assert ctx.manifest.get("batches.shifted-test.verdict") == "drift"
    summary = run_step.summary(ctx, {})
    assert "| held-out-test | " in summary and "| shifted-test | " in summary
    # the Monitor step published the score the DriftAlarm watches, as the execution role
    dims = [{"Name": "Pipeline", "Value": "mlops-inference-prod"}]
    stats = ctx.client("cloudwatch").get_metric_statistics(
        Namespace="mlops/inference",
        MetricName="MaxDriftScore",
        Dimensions=dims,
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(hours=1),
        Period=3600,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert max(d["Maximum"] for d in stats) == pytest.approx(shifted["max_score"])


def test_a_missing_venv_is_one_line_naming_the_make_target(local, upserted, env, monkeypatch):
    _, ctx = local
    monkeypatch.setenv(inference_compile.PYTHON_ENV, "/nonexistent/python")
    with pytest.raises(ConfigError) as err:
        inference.upsert(ctx, "prod")
    assert "\n" not in str(err.value) and "run make inference-venv" in str(err.value)


def test_a_failing_compile_is_its_last_stderr_line(local, upserted, env, monkeypatch, tmp_path):
    _, ctx = local
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'loading' >&2\necho 'error: the SDK broke' >&2\nexit 4\n")
    fake.chmod(0o755)
    monkeypatch.setenv(inference_compile.PYTHON_ENV, str(fake))
    with pytest.raises(
        PipelineError, match=r"^compile the inference pipeline definition: error: the SDK broke$"
    ):
        inference.upsert(ctx, "prod")


def test_an_unapproved_package_is_refused(local, upserted, env):
    _, ctx = local
    rejected = register.run(ctx, "Rejected")
    with pytest.raises(ConfigError, match=r"is Rejected .*only an Approved package"):
        inference.upsert(ctx, "prod", rejected)
    models = [m["ModelName"] for m in ctx.client("sagemaker").list_models()["Models"]]
    assert [m for m in models if "-batch-" in m] == [
        upserted["parameters"]["ModelName"]
    ]  # none for it


def test_a_stage_without_an_inference_stack_names_the_stack_the_setting_and_the_variable(
    local, in_dev, env
):
    _, ctx = local  # [inference] stages = ["prod"]: the bootstrap made no mlops-inference-dev
    with pytest.raises(
        ConfigError,
        match=r"mlops-inference-dev is missing.*\[inference\] stages.*MLOPS_INFERENCE_ROLE_ARN",
    ):
        inference.upsert(ctx, "dev")


def test_the_pipeline_runs_as_the_role_of_its_stack(local, upserted, role):
    _, ctx = local
    described = ctx.client("sagemaker").describe_pipeline(PipelineName="mlops-inference-prod")
    assert described["RoleArn"] == role


def test_a_failed_execution_names_the_failed_step(local, upserted, env):
    _, ctx = local
    bucket = ctx.account.DataBucket
    ctx.client("s3").put_object(Bucket=bucket, Key="bad/batch.csv", Body=b"sex,length\nM,abc\n")
    with pytest.raises(PipelineError, match=r"Failed: .*failed step: Predict"):
        inference.run(ctx, "prod", f"s3://{bucket}/bad/batch.csv")
