"""CloudWatch alarm state changes to EventBridge, as CloudWatch sends them.

"CloudWatch sends events to Amazon EventBridge whenever a CloudWatch alarm is created, updated,
deleted, or changes alarm state" ("Alarm events and EventBridge",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html);
moto (5.2.5) sends none. Here every transition of a moto alarm (SetAlarmState, or any state the
local AWS gives an alarm: all go through ``Alarm.update_state``) that changes its state becomes
one "CloudWatch Alarm State Change" event in that page's single-metric shape, routed to the
default bus's rules like S3's events (:func:`events.route`). Setting the state an alarm already
has changes nothing and sends nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from moto.cloudwatch import models as cw_models

from mlops.local.moto_gaps import events

ISO = "%Y-%m-%dT%H:%M:%S.%f"


def state_change(alarm: Any, previous: dict[str, str]) -> dict[str, Any]:
    """The event for ``alarm``'s new state, after ``previous`` (value, reason, timestamp)."""
    account = alarm.alarm_arn.split(":")[4]
    metric = {
        "metric": {
            "namespace": alarm.namespace,
            "name": alarm.metric_name,
            "dimensions": {d.name: d.value for d in alarm.dimensions},
        },
        "period": alarm.period,
        "stat": alarm.statistic or alarm.extended_statistic,
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account,
        "time": alarm.state_updated_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": alarm.region_name,
        "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "state": {
                "value": alarm.state_value,
                "reason": alarm.state_reason,
                "reasonData": alarm.state_reason_data,
                "timestamp": alarm.state_updated_timestamp.strftime(ISO)[:-3] + "+0000",
            },
            "previousState": previous,
            "configuration": {
                "description": alarm.description or "",
                "metrics": [{"id": str(uuid.uuid4()), "metricStat": metric, "returnData": True}],
            },
        },
    }


def _update_state(original: Any) -> Any:
    def update_state(self: Any, reason: str, reason_data: str, state_value: str) -> None:
        before = {
            "value": self.state_value,
            "reason": self.state_reason,
            "timestamp": self.state_updated_timestamp.strftime(ISO)[:-3] + "+0000",
        }
        original(self, reason, reason_data, state_value)
        if before["value"] != self.state_value:
            event = state_change(self, before)
            events.route(event["account"], event["region"], event)

    return update_state


def install(wrap: Any) -> None:
    wrap(cw_models.Alarm, "update_state", _update_state)
