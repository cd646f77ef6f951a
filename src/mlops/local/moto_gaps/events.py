"""S3 "Object Created" events to EventBridge rules, and rules' SageMaker pipeline targets started.

moto (5.2.5) sends a bucket's events to EventBridge when its notification configuration has an
EventBridgeConfiguration (``notifications.send_event``), but in a shape of its own (``time`` in
epoch seconds, ``eTag``, a fixed sequencer and request id), to every rule of every bus, enabled
or not; a SageMaker pipeline target raises NotImplementedError there, swallowed with the rest of
the delivery. A multipart upload sends a Put event besides the CompleteMultipartUpload one, and
moto's CloudFormation ignores AWS::S3::Bucket NotificationConfiguration.

Here an object created (PutObject, POST, CopyObject, CompleteMultipartUpload) in a bucket with
EventBridge notifications on becomes one event in AWS's shape, matched (moto's EventPattern) by
the enabled rules of the default bus of the bucket's account and region, as S3 sends it. A
pipeline target starts its pipeline on a thread of its own, AS the target's RoleArn assumed by
events.amazonaws.com (trust policy and sagemaker:StartPipelineExecution enforced), with the
target's PipelineParameterList; a failure is one log line (AWS counts it as a failed invocation
and sends the event to the target's DLQ), the upload succeeds. An API destination target is
called by :mod:`api_destinations` the same way (its own thread, as its role, one line on failure);
other services' events (CloudWatch alarms, :mod:`alarms`) go through :func:`route` too. moto
keeps delivering the targets it knows (CloudWatch Logs, SQS, event buses); any other target is
logged once, undelivered.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from typing import Any

from moto.core.utils import unix_time, utcnow
from moto.events.models import events_backends
from moto.s3 import models as s3_models
from moto.s3 import notifications

from mlops.aws import log
from mlops.local.moto_gaps import api_destinations

# reason per event: "Event message detail field", Amazon S3 User Guide, "EventBridge event message
# structure" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)
REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}
# the target services moto's Rule.send_to_targets sends to
MOTO_DELIVERS = ("logs", "sqs", "events")
PIPELINE = re.compile(r"^arn:aws[\w-]*:sagemaker:[^:]*:\d{12}:pipeline/(?P<name>[^/]+)$")
_threads: list[threading.Thread] = []
_undelivered: set[tuple[str, str]] = set()
_runtime: Any = None


def object_created(bucket: Any, event_name: str, key: Any) -> dict[str, Any]:
    """The event S3 sends to EventBridge, as in the "Object created" example of the S3 User
    Guide's "EventBridge event message structure" page (URL above)."""
    obj = {"key": key.name, "size": key.size, "etag": key.etag.strip('"')}
    if key.version_id and key.version_id != "null":  # versioned buckets only
        obj["version-id"] = key.version_id
    obj["sequencer"] = f"{time.time_ns():016x}"  # hex, increasing for a key's events
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": bucket.account_id,
        "time": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": bucket.account_id,
            "source-ip-address": "127.0.0.1",
            "reason": REASONS[event_name],
        },
    }


def _send(original: Any) -> Any:
    """moto's send_event calls this only for a bucket whose stored notification configuration has
    an EventBridgeConfiguration: PutBucketNotificationConfiguration's empty element is stored as
    ``{}``; :func:`_bucket_from_cfn` sets it for CloudFormation."""

    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        if event_name not in REASONS:  # other events: moto's delivery, as before
            return original(account_id, bucket, event_name, key)
        if event_name == "s3:ObjectCreated:Put" and key.multipart is not None:
            return None  # moto's put inside CompleteMultipartUpload: S3 sends that event only
        route(bucket.account_id, bucket.region_name, object_created(bucket, event_name, key))
        return None

    return send


def route(account: str, region: str, event: dict[str, Any]) -> None:
    """An AWS service's event to the enabled rules of the default bus that match it."""
    bus = events_backends[account][region].event_buses.get("default")
    for rule in list(bus.rules.values()) if bus else []:
        if rule.state == "ENABLED" and rule.event_pattern.matches_event(event):
            _deliver(rule, event)


def _deliver(rule: Any, event: dict[str, Any]) -> None:
    known = []
    for target in rule.targets:
        arn = target.get("Arn", "")
        pipeline = PIPELINE.match(arn)
        if pipeline:
            _thread(rule, _start, (rule.name, target, pipeline["name"], event))
        elif api_destinations.API_DESTINATION.match(arn):
            _thread(rule, api_destinations.deliver, (rule, target, copy.deepcopy(event)))
        elif arn.split(":")[2:3] and arn.split(":")[2] in MOTO_DELIVERS:
            known.append(target)
        elif (rule.name, arn) not in _undelivered:
            _undelivered.add((rule.name, arn))
            log(f"  local: EventBridge rule {rule.name}: the local AWS does not deliver to {arn}")
    if known:  # moto's own delivery, with the epoch time its senders convert
        only = copy.copy(rule)
        only.targets = known
        try:
            only.send_to_targets({**copy.deepcopy(event), "time": unix_time()}, False)
        except Exception as exc:  # asynchronous on AWS: the upload succeeds whatever happens here
            log(f"  local: EventBridge rule {rule.name} could not deliver: {exc}")


def _thread(rule: Any, fn: Any, args: tuple) -> None:
    thread = threading.Thread(target=fn, args=args, name=f"events-{rule.name}", daemon=True)
    _threads.append(thread)
    thread.start()


def _start(rule: str, target: dict[str, Any], name: str, event: dict[str, Any]) -> None:
    """StartPipelineExecution as the target's role, as EventBridge invokes a pipeline target."""
    try:
        if not target.get("RoleArn"):
            raise ValueError("the target has no RoleArn (a SageMaker pipeline target needs one)")
        session = _runtime.role_session(target["RoleArn"], "events")
        given = target.get("SageMakerPipelineParameters", {}).get("PipelineParameterList", [])
        arn = session.client("sagemaker").start_pipeline_execution(
            PipelineName=name, PipelineParameters=list(given)
        )["PipelineExecutionArn"]
        detail = event["detail"]
        log(
            f"  local: EventBridge rule {rule} started pipeline {name} "
            f"({arn.rsplit('/', 1)[-1]}) for s3://{detail['bucket']['name']}/"
            f"{detail['object']['key']}"
        )
    except Exception as exc:  # a failed invocation on AWS (metrics, DLQ): never the upload's
        reason = str(exc).replace("\n", " ")
        log(f"  local: EventBridge rule {rule} could not start pipeline {name}: {reason}")


def _bucket_from_cfn(original: Any) -> Any:
    """AWS::S3::Bucket NotificationConfiguration.EventBridgeConfiguration, which moto ignores,
    applied to the bucket (the other notification types stay ignored)."""

    def apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
        bucket = original.__func__(cls, *args, **kwargs)
        template = kwargs.get("cloudformation_json") or (args[1] if len(args) > 1 else {})
        notification = template.get("Properties", {}).get("NotificationConfiguration", {})
        flag = notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled")
        if str(flag).lower() == "true":
            if bucket.notification_configuration is None:
                bucket.notification_configuration = s3_models.NotificationConfiguration()
            bucket.notification_configuration.event_bridge = {}
            log(f"  local: moto ignores {bucket.name}'s NotificationConfiguration: EventBridge on")
        elif bucket.notification_configuration is not None:  # an update that removed it
            bucket.notification_configuration.event_bridge = None
        return bucket

    return classmethod(apply)


def install(runtime: Any, wrap: Any) -> None:
    """Deliver S3 events as AWS does (``wrap`` is moto_gaps' patch recorder; uninstall restores)."""
    global _runtime
    _runtime = runtime
    _undelivered.clear()
    wrap(notifications, "_send_event_bridge_message", _send)
    wrap(s3_models.FakeBucket, "create_from_cloudformation_json", _bucket_from_cfn)
    wrap(s3_models.FakeBucket, "update_from_cloudformation_json", _bucket_from_cfn)


def uninstall() -> None:
    """Let started deliveries finish (before the moto server stops)."""
    global _runtime
    while _threads:
        _threads.pop().join(timeout=10)
    _runtime = None
