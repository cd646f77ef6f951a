"""One change-set deploy for every stack: create or update, events as they happen, clear errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.aws import call, console, log, wait_for
from mlops.errors import PipelineError

NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
GONE_OR_FAILED_CREATE = {"ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"}


def describe(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise PipelineError(f"describe stack {name}: {exc}") from None


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy(
    cfn: Any,
    name: str,
    template: Path,
    parameters: dict[str, str],
    *,
    region: str,
    capabilities: tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    role_arn: str = "",
) -> dict[str, str]:
    """Create or update ``name`` through a change set; "no changes" is success. Returns outputs.

    With ``role_arn`` CloudFormation acts as that service role instead of the caller's session, so a
    long update does not depend on the caller's (1-2 h) credentials ("AWS CloudFormation service
    role", CloudFormation User Guide).
    """
    current = describe(cfn, name)
    status = current["StackStatus"] if current else ""
    if status.endswith("_IN_PROGRESS") and status not in GONE_OR_FAILED_CREATE:
        raise PipelineError(f"stack {name} is busy ({status}): wait for it to finish, then rerun")
    if status in GONE_OR_FAILED_CREATE:
        log(f"  stack {name} is {status} from a failed create: deleting it first")
        _delete(cfn, name, region)  # a CREATE change set needs the name free
        current = None
    change_type = "UPDATE" if current else "CREATE"
    change_set = f"deploy-{time.strftime('%Y%m%d%H%M%S')}-{time.monotonic_ns() % 10**6}"
    since = _latest_event_time(cfn, name) if current else None
    try:
        cfn.create_change_set(
            StackName=name,
            ChangeSetName=change_set,
            ChangeSetType=change_type,
            TemplateBody=template.read_text(encoding="utf-8"),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()
            ],
            Capabilities=list(capabilities),
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
            **({"RoleARN": role_arn} if role_arn else {}),
        )
    except ClientError as exc:
        if any(text in str(exc) for text in NO_CHANGES):  # some implementations refuse up front
            log(f"  stack {name}: no changes")
            return outputs(describe(cfn, name) or {})
        raise PipelineError(f"create change set for {name}: {exc}") from None
    link = console(region, f"cloudformation/home?region={region}#/stacks?filteringText={name}")
    cs = _wait_change_set(cfn, name, change_set)
    if cs is None:
        log(f"  stack {name}: no changes")
        return outputs(describe(cfn, name) or {})
    log(f"  stack {name}: {change_type.lower()} with {len(cs.get('Changes', []))} change(s)")
    call(
        f"execute change set on {name}",
        cfn.execute_change_set,
        StackName=name,
        ChangeSetName=change_set,
    )
    seen: set[str] = set()
    result = wait_for(
        f"stack {name}",
        lambda: describe(cfn, name) or {"StackStatus": "DELETE_COMPLETE"},
        lambda d: d["StackStatus"],
        done={"CREATE_COMPLETE", "UPDATE_COMPLETE"},
        failed={
            "CREATE_FAILED",
            "ROLLBACK_COMPLETE",
            "ROLLBACK_FAILED",
            "UPDATE_ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_FAILED",
            "UPDATE_FAILED",
            "DELETE_COMPLETE",
        },
        link=link,
        on_poll=lambda _d: _print_events(cfn, name, since, seen),
        reason_of=lambda _d: _failure(cfn, name, since),
    )
    return outputs(result.description)


def _wait_change_set(cfn: Any, name: str, change_set: str) -> dict[str, Any] | None:
    """Wait for the change set; None means it holds no changes (then it is deleted)."""
    desc = wait_for(
        f"change set {change_set}",
        lambda: call(
            "describe change set", cfn.describe_change_set, StackName=name, ChangeSetName=change_set
        ),
        lambda d: d["Status"],
        done={"CREATE_COMPLETE", "FAILED"},  # FAILED may just mean "no changes": decided below
        failed=set(),
        timeout=300,
    ).description
    if desc["Status"] == "CREATE_COMPLETE":
        return desc
    reason = desc.get("StatusReason", "")
    if not any(text in reason for text in NO_CHANGES):
        raise PipelineError(f"change set for {name} failed: {reason}")
    call("delete empty change set", cfn.delete_change_set, StackName=name, ChangeSetName=change_set)
    return None


def _events(cfn: Any, name: str) -> list[dict[str, Any]]:
    try:
        return cfn.describe_stack_events(StackName=name)["StackEvents"]
    except ClientError:
        return []


def _latest_event_time(cfn: Any, name: str) -> Any:
    events = _events(cfn, name)
    return max((e["Timestamp"] for e in events), default=None)


def _new_events(cfn: Any, name: str, since: Any) -> list[dict[str, Any]]:
    events = [e for e in _events(cfn, name) if since is None or e["Timestamp"] > since]
    return sorted(events, key=lambda e: e["Timestamp"])


def _print_events(cfn: Any, name: str, since: Any, seen: set[str]) -> None:
    for event in _new_events(cfn, name, since):
        if event["EventId"] in seen:
            continue
        seen.add(event["EventId"])
        reason = f": {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
        log(
            f"    {event['LogicalResourceId']} ({event['ResourceType']}) "
            f"{event['ResourceStatus']}{reason}"
        )


def _failure(cfn: Any, name: str, since: Any) -> str:
    """The first failing resource and its reason: what a user needs to fix."""
    for event in _new_events(cfn, name, since):
        if event["ResourceStatus"].endswith("FAILED") and event.get("ResourceStatusReason"):
            return (
                f"{event['LogicalResourceId']} ({event['ResourceType']}) "
                f"{event['ResourceStatus']}: {event['ResourceStatusReason']}"
            )
    return "no failing resource reported"


def delete(cfn: Any, name: str, *, region: str) -> None:
    """Delete a stack and wait; a stack that does not exist is already deleted."""
    if describe(cfn, name) is None:
        log(f"  stack {name}: does not exist, nothing to delete")
        return
    _delete(cfn, name, region)


def _delete(cfn: Any, name: str, region: str) -> None:
    call(f"delete stack {name}", cfn.delete_stack, StackName=name)
    wait_for(
        f"stack {name}",
        lambda: describe(cfn, name) or {"StackStatus": "DELETE_COMPLETE"},
        lambda d: d["StackStatus"],
        done={"DELETE_COMPLETE"},
        failed={"DELETE_FAILED"},
        link=console(region, f"cloudformation/home?region={region}"),
    )
