"""`mlops monitor` against the local AWS: prod's real data capture judged by the capture pipeline.

The package fixtures of conftest.py give a package serving prod (capture 100 %) whose system
tests already sent traffic; the bootstrap deployed cloudformation/monitor.yaml as
mlops-monitor-prod and `mlops inference upsert` created the capture pipeline beside the batch
one. Heavier abalone (weights x1.6) sent to the endpoint then drift, and the drift issue is
opened once and updated after.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from abalone_model.schema import DATA_FILE, Schema
from mlops import stack
from mlops.aws import new_session
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.local import jobs, oidc
from mlops.local.github_stub import LocalGitHub
from mlops.manifest import Manifest
from mlops.steps import inference, monitor

pytestmark = pytest.mark.cost(50)  # seconds on two workers: scheduled early

ROOT = Path(__file__).resolve().parents[2]
NAMES = list(Schema.load().raw_names)
WEIGHTS = [n for n in NAMES if n.endswith("weight")]


@pytest.fixture(scope="module")
def upserted(local, in_prod) -> dict:
    """The pipelines on prod's package; the system tests' traffic delivered to the capture."""
    runtime, ctx = local
    runtime.endpoints.flush_all()
    return inference.upsert(ctx, "prod")


@pytest.fixture(scope="module")
def calm(local, upserted) -> tuple[str, dict]:
    """(since, result): traffic like the training data, sent and judged once."""
    runtime, ctx = local
    since = _now()
    _send(ctx, _rows())
    runtime.endpoints.flush_all()
    return since, monitor.run(ctx, "prod", monitor.window(since))


def _send(ctx, rows: list[dict], per_call: int = 100) -> None:
    runtime = ctx.client("sagemaker-runtime")
    for start in range(0, len(rows), per_call):
        lines = [",".join(r[n] for n in NAMES) for r in rows[start : start + per_call]]
        runtime.invoke_endpoint(
            EndpointName="mlops-prod", ContentType="text/csv", Body="\n".join(lines).encode()
        )


def _rows(scale: float = 1.0) -> list[dict]:
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:1200]
    return [r | {w: str(float(r[w]) * scale) for w in WEIGHTS} for r in rows]


def _now() -> str:
    time.sleep(1.05)  # capture times have whole seconds: nothing earlier shares this one
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"


def test_upsert_creates_the_capture_pipeline_on_the_serving_package(local, upserted):
    _, ctx = local
    sm = ctx.client("sagemaker")
    described = sm.describe_pipeline(PipelineName="mlops-monitor-prod")
    definition = json.loads(described["PipelineDefinition"])
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    bucket = ctx.account.CaptureBucket
    assert defaults["CaptureUri"] == f"s3://{bucket}/capture/prod/mlops-prod/"
    assert defaults["ModelDataUri"] == upserted["parameters"]["ModelDataUri"]
    assert defaults["WindowHours"] == "24" and defaults["Since"] == defaults["Until"] == ""
    found = stack.describe(ctx.client("cloudformation"), "mlops-inference-prod")
    assert described["RoleArn"] == stack.outputs(found)["InferencePipelineRoleArn"]


def test_live_traffic_like_the_training_data_does_not_drift(local, calm):
    _, ctx = local
    _, found = calm
    assert found["verdict"] == "no_drift", found
    assert found["rows"] == 1200 and found["window"]["used"] == 12
    prefix = f"s3://{ctx.account.ArtifactBucket}/inference/prod/monitor/"
    assert found["report_uri"].startswith(prefix)
    assert "Live traffic: 1200 rows of 12 captured requests" in found["report"]


def test_heavier_abalone_drift_and_open_then_update_one_issue(local, upserted):
    runtime, ctx = local
    github = LocalGitHub()
    since = _now()
    _send(ctx, _rows(1.6))
    runtime.endpoints.flush_all()
    found = monitor.run(ctx, "prod", monitor.window(since), github, github.repository)
    assert found["verdict"] == "drift" and found["max_feature"] in WEIGHTS
    assert found["issue"] == {"action": "opened", "number": 1}
    (issue,) = github.issues.values()
    assert issue["labels"] == ["drift"] and issue["title"].startswith("Drift on live traffic")
    assert found["report_uri"] in issue["body"] and "**Verdict: drift**" in issue["body"]
    again = monitor.run(ctx, "prod", monitor.window(since), github, github.repository)
    assert again["issue"] == {"action": "updated", "number": 1}
    assert len(github.issues) == 1 and len(github.issues[1]["comments"]) == 1
    assert again["report_uri"] in github.issues[1]["body"]  # the body is the latest report


def test_metrics_go_to_the_dimension_the_alarm_watches(local, calm):
    _, ctx = local
    cw = ctx.client("cloudwatch")
    listed = cw.list_metrics(Namespace="mlops/inference", MetricName="MaxDriftScore")["Metrics"]
    dims = [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in listed]
    assert {"Pipeline": "mlops-monitor-prod"} in dims
    found = stack.describe(ctx.client("cloudformation"), "mlops-monitor-prod")
    assert stack.outputs(found)["DriftAlarmName"] == "mlops-monitor-prod-drift"
    schedule = ctx.client("scheduler").get_schedule(Name="mlops-monitor-prod")
    assert schedule["ScheduleExpression"] == "rate(1 day)"
    target = schedule["Target"]
    assert target["Arn"].endswith(":pipeline/mlops-monitor-prod")
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": "WindowHours", "Value": "24"}
    ]
    role = target["RoleArn"].rsplit("/", 1)[-1]
    trust = ctx.client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_a_stage_without_capture_is_one_line_naming_the_setting(local, upserted):
    _, ctx = local
    with pytest.raises(ConfigError, match=r"dev captures no data \(capture_sampling_percent = 0"):
        monitor.run(ctx, "dev", monitor.window())


def _as_monitor_workflow(
    runtime, ctx, tmp_path, event: str = "schedule", ref: str = "refs/heads/main"
):
    """A Context with the credentials monitor.yml's configure-aws-credentials step would get."""
    found = stack.describe(ctx.client("cloudformation"), "mlops-monitor-prod")
    role = stack.outputs(found)["MonitorWorkflowRoleArn"]
    claims = oidc.claims(LocalGitHub().repository, event=event, ref=ref, workflow="monitor.yml")
    creds = runtime.anonymous_client("sts").assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="GitHubActions", WebIdentityToken=runtime.tokens.issue(claims)
    )["Credentials"]
    session = new_session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=runtime.region,
    )
    return Context(ctx.config, session, Manifest(tmp_path / "run.json"), root=ctx.root)


def test_the_monitor_workflow_role_runs_it_and_nothing_else(local, upserted, tmp_path):
    runtime, ctx = local
    as_workflow = _as_monitor_workflow(runtime, ctx, tmp_path)
    found = monitor.run(as_workflow, "prod", monitor.window("1h"))
    assert found["verdict"] in ("drift", "no_drift") and found["rows"] > 0
    with pytest.raises(ClientError, match="AccessDenied"):  # the batch pipeline is not its own
        as_workflow.client("sagemaker").start_pipeline_execution(
            PipelineName="mlops-inference-prod"
        )


def test_a_pull_request_token_cannot_assume_the_monitor_role(local, upserted, tmp_path):
    runtime, ctx = local
    with pytest.raises(ClientError, match=r"AccessDenied|Not authorized"):
        _as_monitor_workflow(runtime, ctx, tmp_path, event="pull_request", ref="refs/pull/7/merge")


def test_monitor_yml_runs_as_a_scheduled_job_and_reports_drift_to_the_issue(local, upserted):
    """The workflow file itself, as GitHub would run it on its schedule: the repository
    variable for the role, a token for main without an environment, `gh` for the issue."""
    runtime, ctx = local
    since = _now()
    _send(ctx, _rows(1.6))
    runtime.endpoints.flush_all()
    flow = ROOT / ".github" / "workflows" / "monitor.yml"
    runner = jobs.Runner(
        runtime,
        flow,
        runtime.github,
        lambda _what: False,
        sha="1" * 40,
        event="schedule",
        inputs={"since": since},
    )
    done = runner.run()
    assert done["monitor"].status == "success"
    issues = [i for i in runtime.github.issues.values() if "drift" in i["labels"]]
    assert len(issues) == 1 and "**Verdict: drift**" in issues[0]["body"]
    summary = (done["monitor"].workspace / "summary.md").read_text()
    assert summary.startswith("### Live drift (prod)")
