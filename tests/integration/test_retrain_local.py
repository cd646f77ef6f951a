"""Retraining by itself, offline: scripts/bootstrap's code with --retrain-token-env deploys
retrain.yaml into the local AWS; an object under training/ and a drift alarm going to ALARM each
send GitHub (the local stand-in) one repository dispatch, as the rule target's role, with the
connection's token and headers and the input transformer's body."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlops import config as config_mod
from mlops import retrain_setup
from mlops.context import Context
from mlops.local.moto_gaps import events
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest
from mlops.steps import data_key

pytestmark = pytest.mark.cost(4)  # seconds
ROOT = Path(__file__).resolve().parents[2]
HEADER = (ROOT / "src/abalone_model/data/abalone.csv").read_text().splitlines()[0]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with LocalRuntime(ROOT, tmp_path_factory.mktemp("runs")) as runtime:
        cfg = config_mod.load(ROOT / "pipeline.toml")
        ctx = Context(cfg, runtime.session, Manifest(runtime.run_dir / "manifest.json"), root=ROOT)
        runtime.bootstrap(ctx, push=False, retrain=True)
        yield runtime, ctx


def settle() -> None:
    for thread in list(events._threads):
        thread.join(timeout=10)


def new_calls(runtime, before: int, wait: float = 5.0) -> list:
    deadline = time.monotonic() + wait
    while len(runtime.github_api.calls) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    return runtime.github_api.calls[before:]


def test_the_bootstrap_deploys_retrain_last_with_the_token_in_secrets_manager(local):
    runtime, ctx = local
    project = ctx.config.project
    cfn = runtime.session.client("cloudformation")
    (found,) = cfn.describe_stacks(StackName=retrain_setup.stack_name(project))["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found["Outputs"]}
    assert set(outputs) == set(retrain_setup.OUTPUTS)
    secret = runtime.session.client("secretsmanager").get_secret_value(
        SecretId=retrain_setup.secret_name(project)
    )
    assert json.loads(secret["SecretString"]) == {
        "authorization": f"Bearer {runtime.github_api.token}"
    }
    params = {p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]}
    assert params["TokenSecretVersion"] == secret["VersionId"]


def test_new_training_data_sends_exactly_one_dispatch_naming_it(local):
    runtime, ctx = local
    before = len(runtime.github_api.calls)
    body = f"{HEADER}\nM,0.4,0.3,0.1,0.4,0.2,0.1,0.1,9\n".encode()
    key = "training/2026-12/batch.csv"
    runtime.session.client("s3").put_object(Bucket=ctx.account.DataBucket, Key=key, Body=body)
    calls = new_calls(runtime, before)
    assert [c.status for c in calls] == [204]
    (call,) = calls
    assert call.path == f"/repos/{runtime.github_api.repository}/dispatches"
    assert call.json() == {
        "event_type": "retrain",
        "client_payload": {"reason": "new-data", "data_key": key},
    }
    headers = {k.lower(): v for k, v in call.headers.items()}
    assert headers["authorization"] == f"Bearer {runtime.github_api.token}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"] == "Amazon/EventBridge/ApiDestinations"
    # and what deploy.yml's ETL then checks and trains on
    named = data_key.fetch(ctx, key)
    assert named["data_uri"] == f"s3://{ctx.account.DataBucket}/{key}" and named["rows"] == 1


def test_other_prefixes_send_nothing(local):
    runtime, ctx = local
    before = len(runtime.github_api.calls)
    s3 = runtime.session.client("s3")
    s3.put_object(Bucket=ctx.account.DataBucket, Key="incoming/batch.csv", Body=b"x\n")
    s3.put_object(Bucket=ctx.account.DataBucket, Key="raw/training/x.csv", Body=b"x\n")
    assert new_calls(runtime, before, wait=0.3) == []


@pytest.mark.parametrize("kind", ["inference", "monitor"])
def test_a_drift_alarm_going_to_alarm_sends_a_drift_dispatch(local, kind):
    runtime, ctx = local
    alarm = f"{ctx.config.project}-{kind}-prod-drift"
    cw = runtime.session.client("cloudwatch")
    if kind == "monitor":  # the live-traffic alarm is another stack's: made here by hand
        cw.put_metric_alarm(
            AlarmName=alarm,
            MetricName="MaxDriftScore",
            Namespace=f"{ctx.config.project}/monitor",
            Statistic="Maximum",
            Period=3600,
            EvaluationPeriods=1,
            Threshold=0.25,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    before = len(runtime.github_api.calls)
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="drift test")
    (call,) = new_calls(runtime, before)
    assert call.status == 204
    assert call.json() == {
        "event_type": "retrain",
        "client_payload": {"reason": "drift", "alarm": alarm, "data_key": ""},
    }
    # ALARM again is no state change (no event); OK is not what the rule follows
    before = len(runtime.github_api.calls)
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="still")
    cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="back")
    assert new_calls(runtime, before, wait=0.3) == []


def test_a_role_without_invoke_api_destination_delivers_nothing_and_says_why(local, capsys):
    runtime, ctx = local
    iam, evb = runtime.session.client("iam"), runtime.session.client("events")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="no-invoke", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName="no-invoke",
        PolicyName="p",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )
    rule = f"{ctx.config.project}-retrain-new-data"
    (target,) = evb.list_targets_by_rule(Rule=rule)["Targets"]
    evb.put_targets(Rule=rule, Targets=[{**target, "RoleArn": role["Role"]["Arn"]}])
    try:
        before = len(runtime.github_api.calls)
        body = f"{HEADER}\nF,0.5,0.4,0.1,0.5,0.2,0.1,0.2,11\n".encode()
        response = runtime.session.client("s3").put_object(
            Bucket=ctx.account.DataBucket, Key="training/denied.csv", Body=body
        )
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200  # the upload succeeds
        assert new_calls(runtime, before, wait=0.5) == []
    finally:
        evb.put_targets(Rule=rule, Targets=[target])
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if "could not call API destination" in line
    ]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"  local: EventBridge rule {rule} could not call")
    assert "events:InvokeApiDestination" in lines[0] and "not authorized" in lines[0]


def test_a_wrong_token_is_refused_by_github_and_logged(local, capsys):
    runtime, ctx = local
    right, runtime.github_api.token = runtime.github_api.token, "github_pat_local_revoked"
    try:
        before = len(runtime.github_api.calls)
        body = f"{HEADER}\nI,0.3,0.2,0.1,0.2,0.1,0.1,0.1,6\n".encode()
        runtime.session.client("s3").put_object(
            Bucket=ctx.account.DataBucket, Key="training/revoked.csv", Body=body
        )
        assert [c.status for c in new_calls(runtime, before)] == [401]
    finally:
        runtime.github_api.token = right
    assert "HTTP 401" in capsys.readouterr().err


def test_a_new_token_through_the_bootstrap_reaches_the_connection(local):
    """Running the bootstrap again with another token stores a new secret version, whose id
    changes the stack's parameter, so CloudFormation re-resolves the connection's reference."""
    runtime, ctx = local
    old = runtime.github_api.token
    runtime.github_api.token = "github_pat_local_rotated_0123456789abcdef"
    runtime.bootstrap(ctx, push=False, retrain=True)  # the bootstrap reads the runtime's token
    before = len(runtime.github_api.calls)
    body = f"{HEADER}\nM,0.5,0.4,0.1,0.5,0.2,0.1,0.2,10\n".encode()
    runtime.session.client("s3").put_object(
        Bucket=ctx.account.DataBucket, Key="training/rotated.csv", Body=body
    )
    (call,) = new_calls(runtime, before)
    assert call.status == 204, old
    assert call.headers["Authorization"] == f"Bearer {runtime.github_api.token}"
