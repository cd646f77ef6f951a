"""Change-set deploys (moto, plus a fake client for states moto cannot reach) and the endpoint
stack's parameters built from the configuration and the account's names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlops import aws, config, stack
from mlops.account import Account
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.manifest import Manifest
from mlops.steps import deploy

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = """
Parameters:
  Suffix: {Type: String}
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "unit-stack-${Suffix}"
Outputs:
  BucketName:
    Value: !Ref Bucket
"""


@pytest.fixture
def template(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_endless_waits(monkeypatch):
    """Waits poll without sleeping, and one that would poll on for ever fails the test at once
    (a wait whose done or failed states are wrong never ends)."""
    real = stack.wait_for

    def wait_for(*args, **kwargs):
        polls = []

        def sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) > 5:
                raise AssertionError(f"{args[0]}: still polling after {len(polls)} polls")

        return real(*args, sleep=sleep, **kwargs)

    monkeypatch.setattr(stack, "wait_for", wait_for)


@pytest.fixture
def cfn():
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def parameters_of(cfn, name: str) -> dict[str, str]:
    current = stack.describe(cfn, name)
    assert current is not None
    return {p["ParameterKey"]: p["ParameterValue"] for p in current["Parameters"]}


def test_create_then_update_through_change_sets(cfn, template, capsys):
    out = stack.deploy(
        cfn, "tiny", template, {"Suffix": "a"}, region=REGION, tags={"mlops:stage": "dev"}
    )
    current = stack.describe(cfn, "tiny")
    assert current["StackStatus"] == "CREATE_COMPLETE"
    assert current["Tags"] == [{"Key": "mlops:stage", "Value": "dev"}]
    assert parameters_of(cfn, "tiny") == {"Suffix": "a"}
    buckets = [b["Name"] for b in boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]]
    assert buckets == ["unit-stack-a"]
    # moto 5.2.5 does not fill a stack's Outputs after a change set (the local runtime patches
    # that); deploy() must still return exactly what describe_stacks reports.
    assert out == stack.outputs(current)
    err = capsys.readouterr().err
    assert "stack tiny: create with 1 change(s)" in err
    assert "stack tiny: CREATE_COMPLETE after" in err
    assert "Bucket (AWS::S3::Bucket)" in err or "tiny (AWS::CloudFormation::Stack)" in err

    out = stack.deploy(cfn, "tiny", template, {"Suffix": "b"}, region=REGION)
    current = stack.describe(cfn, "tiny")
    assert current["StackStatus"] == "UPDATE_COMPLETE"
    assert parameters_of(cfn, "tiny") == {"Suffix": "b"}
    assert out == stack.outputs(current)
    assert "stack tiny: update with" in capsys.readouterr().err


def test_a_second_identical_deploy_is_no_changes(cfn, template, capsys):
    # BUG (stack.py deploy, the create_change_set call): moto -- and so the local runtime --
    # refuses a change set without changes at creation with ValidationError "No updates are to be
    # performed."; deploy() only recognises NO_CHANGES in the change set's StatusReason (AWS's
    # way), so an identical second deploy raises PipelineError instead of returning the outputs.
    first = stack.deploy(cfn, "tiny", template, {"Suffix": "a"}, region=REGION)
    capsys.readouterr()
    again = stack.deploy(cfn, "tiny", template, {"Suffix": "a"}, region=REGION)
    assert again == first
    assert stack.describe(cfn, "tiny")["StackStatus"] == "CREATE_COMPLETE"
    assert "stack tiny: no changes" in capsys.readouterr().err


def test_delete_waits_and_a_missing_stack_is_fine(cfn, template, capsys):
    stack.deploy(cfn, "tiny", template, {"Suffix": "a"}, region=REGION)
    stack.delete(cfn, "tiny", region=REGION)
    assert stack.describe(cfn, "tiny") is None
    assert "stack tiny: DELETE_COMPLETE after" in capsys.readouterr().err
    stack.delete(cfn, "tiny", region=REGION)
    stack.delete(cfn, "never-created", region=REGION)
    assert "stack never-created: does not exist, nothing to delete" in capsys.readouterr().err


class FakeCfn:
    """The CloudFormation calls deploy() makes, with AWS's answers for states moto cannot reach.

    Every call must name stack ``name``; ``requests`` records each call with its arguments;
    ``errors`` maps a call to the ClientError it raises.
    """

    name = "s"

    def __init__(
        self,
        stacks: list[dict[str, Any] | None],
        change_set: dict[str, Any] | list[dict[str, Any]],
        events: list[dict[str, Any]] | None = None,
        events_after: list[dict[str, Any]] | None = None,
        errors: dict[str, ClientError] | None = None,
    ) -> None:
        """``events`` until the change set is executed, ``events_after`` from then on;
        ``change_set``: one answer, or the answers in turn (the last one repeats)."""
        self.stacks = stacks
        self.change_sets = change_set if isinstance(change_set, list) else [change_set]
        self.events = events or []
        self.events_after = self.events if events_after is None else events_after
        self.errors = errors or {}
        self.calls: list[str] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def _called(self, name: str, kwargs: dict[str, Any]) -> None:
        assert kwargs.get("StackName") == self.name, (name, kwargs)
        self.calls.append(name)
        self.requests.append((name, kwargs))
        if name in self.errors:
            raise self.errors[name]

    def describe_stacks(self, **kwargs: Any) -> dict[str, Any]:  # boto3 names
        self._called("describe_stacks", kwargs)
        current = self.stacks[0] if len(self.stacks) == 1 else self.stacks.pop(0)
        if current is None:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationError",
                        "Message": f"Stack with id {kwargs['StackName']} does not exist",
                    }
                },
                "DescribeStacks",
            )
        return {"Stacks": [current]}

    def describe_stack_events(self, **kwargs: Any) -> dict[str, Any]:
        executed = "execute_change_set" in self.calls
        self._called("describe_stack_events", kwargs)
        return {"StackEvents": self.events_after if executed else self.events}

    def __getattr__(self, name: str):
        def record(**kwargs: Any) -> Any:
            self._called(name, kwargs)
            if name == "create_change_set":
                self.change_set_type = kwargs["ChangeSetType"]
            if name != "describe_change_set":
                return {}
            return self.change_sets[0] if len(self.change_sets) == 1 else self.change_sets.pop(0)

        return record

    def sent(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.requests if call == name]


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


EARLIER = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
LATER = EARLIER + dt.timedelta(minutes=1)
OUTPUTS = [{"OutputKey": "EndpointName", "OutputValue": "mlops-dev"}]


def test_a_failed_empty_change_set_means_no_changes(template, capsys):
    # AWS's own "no changes" answer: the change set FAILS with this reason and is deleted.
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE", "Outputs": OUTPUTS}],
        {
            "Status": "FAILED",
            "StatusReason": "The submitted information didn't contain "
            "changes. Submit different information to create a change set.",
        },
    )
    assert stack.deploy(cfn, "s", template, {}, region=REGION) == {"EndpointName": "mlops-dev"}
    assert "delete_change_set" in cfn.calls
    assert "execute_change_set" not in cfn.calls
    assert "stack s: no changes" in capsys.readouterr().err


def test_a_failed_change_set_is_one_line_with_its_reason(template):
    cfn = FakeCfn([None], {"Status": "FAILED", "StatusReason": "Template format error: bad"})
    with pytest.raises(PipelineError, match=r"^change set for s failed: Template format error"):
        stack.deploy(cfn, "s", template, {}, region=REGION)


def test_a_stack_left_by_a_failed_create_is_deleted_first(template):
    cfn = FakeCfn(
        [
            {"StackStatus": "ROLLBACK_COMPLETE"},
            None,  # deleted: the name is free again
            {"StackStatus": "CREATE_COMPLETE", "Outputs": OUTPUTS},
        ],
        {"Status": "CREATE_COMPLETE", "Changes": [{}]},
    )
    assert stack.deploy(cfn, "s", template, {}, region=REGION) == {"EndpointName": "mlops-dev"}
    assert cfn.calls.index("delete_stack") < cfn.calls.index("create_change_set")
    assert cfn.change_set_type == "CREATE"


def test_the_delete_of_a_failed_create_is_waited_for(template):
    # A CREATE change set on a name still DELETE_IN_PROGRESS fails on AWS: wait until it is gone.
    cfn = FakeCfn(
        [
            {"StackStatus": "ROLLBACK_COMPLETE"},
            {"StackStatus": "DELETE_IN_PROGRESS"},
            None,
            {"StackStatus": "CREATE_COMPLETE", "Outputs": OUTPUTS},
        ],
        {"Status": "CREATE_COMPLETE", "Changes": [{}]},
    )
    stack.deploy(cfn, "s", template, {}, region=REGION)
    start = cfn.calls.index("delete_stack")
    assert cfn.calls[start : cfn.calls.index("create_change_set")] == [
        "delete_stack",
        "describe_stacks",  # DELETE_IN_PROGRESS
        "describe_stacks",  # gone
    ]
    failed = FakeCfn(
        [{"StackStatus": "ROLLBACK_COMPLETE"}, {"StackStatus": "DELETE_FAILED"}],
        {"Status": "CREATE_COMPLETE"},
    )
    with pytest.raises(PipelineError, match=r"^stack s DELETE_FAILED"):
        stack.deploy(failed, "s", template, {}, region=REGION)
    assert "create_change_set" not in failed.calls


@pytest.mark.parametrize(
    "status", ["CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"]
)
def test_a_busy_stack_is_refused_before_any_change(template, status):
    cfn = FakeCfn(
        [{"StackStatus": status}, {"StackStatus": "UPDATE_COMPLETE"}],  # settled: too late
        {"Status": "CREATE_COMPLETE"},
    )
    with pytest.raises(PipelineError, match=rf"^stack s is busy \({status}\): wait for it"):
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert cfn.calls == ["describe_stacks"]


def test_a_failed_update_names_the_failing_resource(template, capsys):
    events = [
        {
            "EventId": "old",
            "Timestamp": EARLIER,
            "LogicalResourceId": "Endpoint",
            "ResourceType": "AWS::SageMaker::Endpoint",
            "ResourceStatus": "CREATE_FAILED",
            "ResourceStatusReason": "an earlier failure",
        },
        {
            "EventId": "new",
            "Timestamp": LATER,
            "LogicalResourceId": "Endpoint",
            "ResourceType": "AWS::SageMaker::Endpoint",
            "ResourceStatus": "UPDATE_FAILED",
            "ResourceStatusReason": "Ping health check failed",
        },
    ]
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE"}, {"StackStatus": "UPDATE_ROLLBACK_COMPLETE"}],
        {"Status": "CREATE_COMPLETE", "Changes": [{}]},
        events[:1],
        events,
    )
    with pytest.raises(PipelineError) as exc:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    message = str(exc.value)
    assert message.startswith(
        "stack s UPDATE_ROLLBACK_COMPLETE: Endpoint "
        "(AWS::SageMaker::Endpoint) UPDATE_FAILED: Ping health check failed"
    )
    assert "an earlier failure" not in message
    assert "(see https://us-east-1.console.aws.amazon.com/cloudformation" in message
    err = capsys.readouterr().err
    assert (
        "    Endpoint (AWS::SageMaker::Endpoint) UPDATE_FAILED: Ping health check failed\n" in err
    )
    assert "an earlier failure" not in err


CFN_LINK = "https://us-east-1.console.aws.amazon.com/cloudformation/home?region=us-east-1"
STACK_LINK = f"{CFN_LINK}#/stacks?filteringText=s"


def err_lines(capsys) -> list[str]:
    """stderr, with the elapsed seconds of wait lines made 0.0 (they vary)."""
    err = capsys.readouterr().err
    return re.sub(r" after \d+\.\ds$", " after 0.0s", err, flags=re.M).splitlines()


def event(event_id: str, status: str, reason: str = "", at: dt.datetime = LATER) -> dict:
    found = {
        "EventId": event_id,
        "Timestamp": at,
        "LogicalResourceId": "Endpoint",
        "ResourceType": "AWS::SageMaker::Endpoint",
        "ResourceStatus": status,
    }
    return {**found, "ResourceStatusReason": reason} if reason else found


def test_an_update_says_what_it_does_step_by_step(template, capsys):
    cfn = FakeCfn(
        [
            {"StackStatus": "UPDATE_COMPLETE"},
            {"StackStatus": "UPDATE_IN_PROGRESS"},
            {"StackStatus": "UPDATE_COMPLETE", "Outputs": OUTPUTS},
        ],
        [{"Status": "CREATE_PENDING"}, {"Status": "CREATE_COMPLETE", "Changes": [{}, {}]}],
        [event("old", "UPDATE_COMPLETE", at=EARLIER)],
        [event("old", "UPDATE_COMPLETE", at=EARLIER), event("e1", "UPDATE_IN_PROGRESS")],
    )
    out = stack.deploy(cfn, "s", template, {"A": "1"}, region=REGION, role_arn="arn:role/cfn")
    assert out == {"EndpointName": "mlops-dev"}
    (created,) = cfn.sent("create_change_set")
    change_set = created["ChangeSetName"]
    assert re.fullmatch(r"deploy-\d{14}-\d{1,6}", change_set), change_set
    assert created == {
        "StackName": "s",
        "ChangeSetName": change_set,
        "ChangeSetType": "UPDATE",
        "TemplateBody": TEMPLATE,
        "Parameters": [{"ParameterKey": "A", "ParameterValue": "1"}],
        "Capabilities": [],
        "Tags": [],
        "RoleARN": "arn:role/cfn",
    }
    assert cfn.sent("describe_change_set") == [{"StackName": "s", "ChangeSetName": change_set}] * 2
    assert cfn.sent("execute_change_set") == [{"StackName": "s", "ChangeSetName": change_set}]
    assert err_lines(capsys) == [
        f"  change set {change_set}: CREATE_PENDING after 0.0s",
        f"  change set {change_set}: CREATE_COMPLETE after 0.0s",
        "  stack s: update with 2 change(s)",
        f"  stack s: {STACK_LINK}",
        "    Endpoint (AWS::SageMaker::Endpoint) UPDATE_IN_PROGRESS",
        "  stack s: UPDATE_IN_PROGRESS after 0.0s",
        "  stack s: UPDATE_COMPLETE after 0.0s",
    ]


def test_a_create_reads_no_events_and_takes_no_role_unless_given(template):
    cfn = FakeCfn(
        [None, {"StackStatus": "CREATE_COMPLETE", "Outputs": OUTPUTS}],
        {"Status": "CREATE_COMPLETE", "Changes": [{}]},
    )
    stack.deploy(cfn, "s", template, {}, region=REGION, capabilities=("CAPABILITY_IAM",))
    (created,) = cfn.sent("create_change_set")
    assert created["ChangeSetType"] == "CREATE"
    assert created["Capabilities"] == ["CAPABILITY_IAM"]
    assert "RoleARN" not in created
    # a new stack has no earlier events to skip: every event from now on is its own
    assert cfn.calls[: cfn.calls.index("execute_change_set")] == [
        "describe_stacks",
        "create_change_set",
        "describe_change_set",
    ]


def test_a_change_set_refused_up_front_as_no_changes_returns_the_outputs(template, capsys):
    no_updates = client_error(
        "ValidationError", "No updates are to be performed.", "CreateChangeSet"
    )
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE", "Outputs": OUTPUTS}],
        {"Status": "CREATE_COMPLETE"},
        errors={"create_change_set": no_updates},
    )
    assert stack.deploy(cfn, "s", template, {}, region=REGION) == {"EndpointName": "mlops-dev"}
    assert "execute_change_set" not in cfn.calls
    assert err_lines(capsys) == ["  stack s: no changes"]


def test_a_refused_change_set_is_one_line_with_aws_s_reason(template):
    refused = client_error("ValidationError", "Template format error: bad", "CreateChangeSet")
    cfn = FakeCfn([None], {"Status": "CREATE_COMPLETE"}, errors={"create_change_set": refused})
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == (
        "create change set for s: An error occurred (ValidationError) when calling the "
        "CreateChangeSet operation: Template format error: bad"
    )


def test_a_failed_execute_is_one_line_naming_it(template):
    refused = client_error("InsufficientCapabilitiesException", "Requires CAPABILITY_IAM", "X")
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE"}],
        {"Status": "CREATE_COMPLETE"},
        errors={"execute_change_set": refused},
    )
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == (
        "execute change set on s: InsufficientCapabilitiesException: Requires CAPABILITY_IAM"
    )


def test_an_empty_change_set_is_deleted_by_name(template, capsys):
    empty = {"Status": "FAILED", "StatusReason": "No updates are to be performed."}
    cfn = FakeCfn([{"StackStatus": "UPDATE_COMPLETE", "Outputs": OUTPUTS}], empty)
    stack.deploy(cfn, "s", template, {}, region=REGION)
    (created,) = cfn.sent("create_change_set")
    assert cfn.sent("delete_change_set") == [
        {"StackName": "s", "ChangeSetName": created["ChangeSetName"]}
    ]
    refused = client_error("AccessDenied", "not allowed", "DeleteChangeSet")
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE"}], empty, errors={"delete_change_set": refused}
    )
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == "delete empty change set: AccessDenied: not allowed"


def test_a_failed_change_set_without_a_reason_says_so_in_one_line(template):
    cfn = FakeCfn([None], {"Status": "FAILED"})
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == "change set for s failed: "


def test_a_change_set_that_cannot_be_described_is_one_line(template):
    refused = client_error("ChangeSetNotFound", "ChangeSet deploy-1 does not exist", "X")
    cfn = FakeCfn([None], {}, errors={"describe_change_set": refused})
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == (
        "describe change set: ChangeSetNotFound: ChangeSet deploy-1 does not exist"
    )


@pytest.mark.parametrize(
    "status",
    [
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
        "UPDATE_FAILED",
    ],
)
def test_every_failed_stack_state_ends_the_wait_in_one_line(template, status):
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE"}, {"StackStatus": status}],
        {"Status": "CREATE_COMPLETE"},
    )
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == f"stack s {status}: no failing resource reported (see {STACK_LINK})"


def test_a_stack_deleted_while_deploying_is_a_failure(template):
    cfn = FakeCfn([{"StackStatus": "UPDATE_COMPLETE"}, None], {"Status": "CREATE_COMPLETE"})
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert str(caught.value) == (
        f"stack s DELETE_COMPLETE: no failing resource reported (see {STACK_LINK})"
    )


def test_a_create_is_seen_complete(template, capsys):
    cfn = FakeCfn(
        [None, {"StackStatus": "CREATE_IN_PROGRESS"}, {"StackStatus": "CREATE_COMPLETE"}],
        {"Status": "CREATE_COMPLETE"},
    )
    assert stack.deploy(cfn, "s", template, {}, region=REGION) == {}
    assert err_lines(capsys)[-2:] == [
        "  stack s: CREATE_IN_PROGRESS after 0.0s",
        "  stack s: CREATE_COMPLETE after 0.0s",
    ]


def test_the_failed_create_is_deleted_with_progress_lines(template, capsys):
    cfn = FakeCfn(
        [
            {"StackStatus": "ROLLBACK_COMPLETE"},
            {"StackStatus": "DELETE_IN_PROGRESS"},
            None,
            {"StackStatus": "CREATE_COMPLETE"},
        ],
        {"Status": "CREATE_COMPLETE"},
    )
    stack.deploy(cfn, "s", template, {}, region=REGION)
    assert cfn.sent("delete_stack") == [{"StackName": "s"}]
    assert err_lines(capsys)[:4] == [
        "  stack s is ROLLBACK_COMPLETE from a failed create: deleting it first",
        f"  stack s: {CFN_LINK}",
        "  stack s: DELETE_IN_PROGRESS after 0.0s",
        "  stack s: DELETE_COMPLETE after 0.0s",
    ]


def test_delete_of_an_existing_stack_waits_for_it_to_go(template, capsys):
    cfn = FakeCfn(
        [{"StackStatus": "UPDATE_COMPLETE"}, {"StackStatus": "DELETE_IN_PROGRESS"}, None], {}
    )
    stack.delete(cfn, "s", region=REGION)
    assert cfn.calls == ["describe_stacks", "delete_stack", "describe_stacks", "describe_stacks"]
    assert err_lines(capsys) == [
        f"  stack s: {CFN_LINK}",
        "  stack s: DELETE_IN_PROGRESS after 0.0s",
        "  stack s: DELETE_COMPLETE after 0.0s",
    ]


def test_a_failed_or_refused_delete_is_one_line(template):
    cfn = FakeCfn([{"StackStatus": "UPDATE_COMPLETE"}, {"StackStatus": "DELETE_FAILED"}], {})
    with pytest.raises(PipelineError) as caught:
        stack.delete(cfn, "s", region=REGION)
    assert str(caught.value) == f"stack s DELETE_FAILED: no reason given (see {CFN_LINK})"
    refused = client_error("AccessDenied", "no cloudformation:DeleteStack", "DeleteStack")
    cfn = FakeCfn([{"StackStatus": "UPDATE_COMPLETE"}], {}, errors={"delete_stack": refused})
    with pytest.raises(PipelineError) as caught:
        stack.delete(cfn, "s", region=REGION)
    assert str(caught.value) == "delete stack s: AccessDenied: no cloudformation:DeleteStack"


def test_delete_of_a_missing_stack_says_so_and_deletes_nothing(capsys):
    cfn = FakeCfn([None], {})
    stack.delete(cfn, "s", region=REGION)
    assert cfn.calls == ["describe_stacks"]
    assert err_lines(capsys) == ["  stack s: does not exist, nothing to delete"]


def test_events_are_printed_once_each_in_time_order_with_their_reason(capsys):
    cfn = FakeCfn([{}], {})
    seen: set[str] = set()
    cfn.events = [event("a", "UPDATE_IN_PROGRESS"), event("old", "CREATE_FAILED", "x", EARLIER)]
    stack._print_events(cfn, "s", EARLIER, seen)
    cfn.events = [
        event("b", "UPDATE_FAILED", "Ping health check failed", LATER + dt.timedelta(seconds=2)),
        event("a", "UPDATE_IN_PROGRESS"),
    ]
    stack._print_events(cfn, "s", EARLIER, seen)
    assert err_lines(capsys) == [
        "    Endpoint (AWS::SageMaker::Endpoint) UPDATE_IN_PROGRESS",
        "    Endpoint (AWS::SageMaker::Endpoint) UPDATE_FAILED: Ping health check failed",
    ]
    assert seen == {"a", "b"}


def test_the_failure_is_the_first_failed_resource_with_a_reason():
    cfn = FakeCfn([{}], {})
    cfn.events = [
        event("c", "UPDATE_FAILED", "the second failure", LATER + dt.timedelta(seconds=3)),
        event("a", "UPDATE_IN_PROGRESS", "Resource creation Initiated"),
        event("b", "UPDATE_FAILED", at=LATER + dt.timedelta(seconds=1)),  # no reason: skipped
        event("d", "UPDATE_FAILED", "the first failure", LATER + dt.timedelta(seconds=2)),
        event("old", "CREATE_FAILED", "before this deploy", EARLIER),
    ]
    assert stack._failure(cfn, "s", EARLIER) == (
        "Endpoint (AWS::SageMaker::Endpoint) UPDATE_FAILED: the first failure"
    )
    assert stack._failure(cfn, "s", LATER + dt.timedelta(seconds=2)) == (
        "Endpoint (AWS::SageMaker::Endpoint) UPDATE_FAILED: the second failure"
    )
    cfn.events = [event("a", "UPDATE_IN_PROGRESS", "Resource creation Initiated")]
    assert stack._failure(cfn, "s", None) == "no failing resource reported"


# --- the endpoint stack's parameters (steps/deploy.py) -------------------------------------------

ACCOUNT = Account(
    REGION,
    {
        "SageMakerExecutionRoleArn": "arn:aws:iam::1:role/exec",
        "CaptureBucket": "capture-bucket",
        "KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k",
    },
)
ARN = "arn:aws:sagemaker:us-east-1:1:model-package/mlops-models/7"


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(ROOT / "pipeline.toml")


@pytest.fixture
def ctx(cfg, tmp_path) -> Context:
    return Context(
        cfg,
        SimpleNamespace(region_name=REGION),
        Manifest(tmp_path / "run.json"),
        root=tmp_path,
        _account=ACCOUNT,
    )


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_parameters_carry_the_stage_and_the_account(ctx, cfg, stage):
    s = cfg.stage(stage)
    params = deploy.parameters(ctx, stage, ARN)
    deploy_id = params.pop("DeployId")
    assert re.fullmatch(r"v7-[0-9a-f]{12}", deploy_id), deploy_id
    assert params == {
        "Stage": stage,
        "EndpointName": f"{cfg.project}-{stage}",
        "ModelPackageArn": ARN,
        "ExecutionRoleArn": "arn:aws:iam::1:role/exec",
        "InstanceType": s.instance_type,
        "InitialInstanceCount": str(s.instance_count),
        "EnableAutoscaling": "true" if s.autoscaling else "false",
        "MinCapacity": str(s.min_capacity),
        "MaxCapacity": str(s.max_capacity),
        "TargetInvocationsPerInstance": str(s.target_invocations_per_instance),
        "EnableDataCapture": "true" if s.capture_sampling_percent else "false",
        "CaptureSamplingPercentage": str(s.capture_sampling_percent),
        "CaptureS3Uri": f"s3://capture-bucket/capture/{stage}",
        "KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k",
        "DeploymentType": s.deployment_type,
        "CanarySizePercent": str(s.canary_size_percent),
        "WaitIntervalInSeconds": str(s.wait_interval_seconds),
        "TerminationWaitInSeconds": str(s.termination_wait_seconds),
        "LatencyAlarmThresholdMicroseconds": str(s.latency_alarm_microseconds),
    }
    assert all(isinstance(v, str) for v in params.values())


def test_deploy_id_changes_exactly_when_what_is_served_changes(ctx, cfg):
    first = deploy.parameters(ctx, "dev", ARN)["DeployId"]
    assert deploy.parameters(ctx, "dev", ARN)["DeployId"] == first, "same inputs: no changes"
    other_package = ARN.replace("/7", "/8")
    assert deploy.parameters(ctx, "dev", other_package)["DeployId"].startswith("v8-")
    assert deploy.parameters(ctx, "prod", ARN)["DeployId"] != first
    bigger = dataclasses.replace(cfg.stage("dev"), instance_type="ml.c5.xlarge")
    ctx.config = dataclasses.replace(cfg, stages={**cfg.stages, "dev": bigger})
    changed = deploy.parameters(ctx, "dev", ARN)["DeployId"]
    assert changed != first
    assert changed.startswith("v7-")


def test_parameters_match_the_endpoint_template(ctx):
    text = (ROOT / deploy.TEMPLATE).read_text(encoding="utf-8")
    section = text.split("\nParameters:", 1)[1].split("\nResources:", 1)[0]
    declared = set(re.findall(r"^  (\w+):", section, flags=re.MULTILINE))
    assert set(deploy.parameters(ctx, "dev", ARN)) <= declared


def test_parameters_for_an_unknown_stage_are_refused(ctx):
    with pytest.raises(PipelineError, match="unknown stage 'qa'"):
        deploy.parameters(ctx, "qa", ARN)


@pytest.mark.parametrize(("percent", "capture"), [(0, "false"), (1, "true"), (100, "true")])
def test_data_capture_is_on_from_one_percent(ctx, cfg, percent, capture):
    stage = dataclasses.replace(cfg.stage("dev"), capture_sampling_percent=percent)
    ctx.config = dataclasses.replace(cfg, stages={**cfg.stages, "dev": stage})
    params = deploy.parameters(ctx, "dev", ARN)
    assert (params["EnableDataCapture"], params["CaptureSamplingPercentage"]) == (
        capture,
        str(percent),
    )


def test_deploy_id_is_the_version_and_a_digest_of_the_sorted_parameters(ctx):
    params = deploy.parameters(ctx, "dev", ARN)
    deploy_id = params.pop("DeployId")
    digest = hashlib.sha256(json.dumps(dict(sorted(params.items()))).encode()).hexdigest()
    assert deploy_id == f"v7-{digest[:12]}"


def test_a_stack_that_cannot_be_described_is_one_line():
    refused = client_error("AccessDenied", "no cloudformation:DescribeStacks", "DescribeStacks")
    cfn = FakeCfn([{}], {}, errors={"describe_stacks": refused})
    with pytest.raises(PipelineError) as caught:
        stack.describe(cfn, "s")
    assert str(caught.value) == (
        "describe stack s: An error occurred (AccessDenied) when calling the DescribeStacks "
        "operation: no cloudformation:DescribeStacks"
    )


def test_a_change_set_still_pending_after_five_minutes_is_given_up(template, monkeypatch):
    real, polls = aws.wait_for, []
    clock = iter(range(0, 10**6, 100))  # every look at the clock is 100 s later

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) > 10:
            raise AssertionError("still waiting for the change set after 1000 s")

    def wait_for(*args, **kwargs):
        return real(*args, clock=lambda: next(clock), sleep=sleep, **kwargs)

    monkeypatch.setattr(stack, "wait_for", wait_for)
    cfn = FakeCfn([None], {"Status": "CREATE_PENDING"})
    with pytest.raises(PipelineError) as caught:
        stack.deploy(cfn, "s", template, {}, region=REGION)
    assert re.fullmatch(
        r"change set deploy-\d{14}-\d+: still CREATE_PENDING after 400s; gave up waiting",
        str(caught.value),
    )
    assert "execute_change_set" not in cfn.calls


def test_change_sets_made_in_the_same_second_have_different_names(template, monkeypatch):
    ticks = iter([7_000_010, 7_000_020])
    clock = SimpleNamespace(strftime=lambda _f: "20260101000000", monotonic_ns=lambda: next(ticks))
    monkeypatch.setattr(stack, "time", clock)
    names = []
    for _ in range(2):
        cfn = FakeCfn([{"StackStatus": "UPDATE_COMPLETE"}], {"Status": "FAILED"})
        with pytest.raises(PipelineError):
            stack.deploy(cfn, "s", template, {}, region=REGION)
        (created,) = cfn.sent("create_change_set")
        names.append(created["ChangeSetName"])
    assert names[0] != names[1]
    assert all(name.startswith("deploy-20260101000000-") for name in names)


READ_TEMPLATE = """
import sys
from pathlib import Path

from mlops import stack


class Cfn:
    def describe_stacks(self, **_kwargs):
        return {"Stacks": [{"StackStatus": "UPDATE_COMPLETE"}]}

    def describe_stack_events(self, **_kwargs):
        return {"StackEvents": []}

    def create_change_set(self, **kwargs):
        self.body = kwargs["TemplateBody"]

    def describe_change_set(self, **_kwargs):
        return {"Status": "FAILED", "StatusReason": "No updates are to be performed."}

    def delete_change_set(self, **_kwargs):
        return {}


cfn = Cfn()
stack.deploy(cfn, "s", Path(sys.argv[1]), {}, region="us-east-1")
sys.stdout.buffer.write(cfn.body.encode("utf-8"))
"""


def test_a_template_is_read_as_utf8_whatever_the_locale(tmp_path):
    text = "Description: Größe und Café \u2014 a non-ASCII template\nResources: {}\n"
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    env = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", READ_TEMPLATE, str(path)],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert done.stdout.decode("utf-8") == text
