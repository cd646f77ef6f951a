"""Alarm state changes become "CloudWatch Alarm State Change" events, only on a change."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from mlops.local.moto_gaps import alarms

ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mlops-inference-prod-drift"


class Alarm:
    def __init__(self) -> None:
        self.name, self.alarm_arn, self.region_name = "mlops-inference-prod-drift", ARN, "us-east-1"
        self.namespace, self.metric_name, self.period = "mlops/inference", "MaxDriftScore", 86400
        self.statistic, self.extended_statistic, self.description = "Maximum", None, "drift"
        self.dimensions = [SimpleNamespace(name="Pipeline", value="mlops-inference-prod")]
        self.state_value, self.state_reason, self.state_reason_data = "OK", "init", "{}"
        self.state_updated_timestamp = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)

    def update_state(self, reason: str, reason_data: str, state_value: str) -> None:
        self.state_reason, self.state_reason_data, self.state_value = (
            reason,
            reason_data,
            state_value,
        )
        self.state_updated_timestamp = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def test_a_change_is_routed_once_in_cloudwatchs_shape(monkeypatch):
    routed = []
    monkeypatch.setattr(alarms.events, "route", lambda a, r, e: routed.append((a, r, e)))
    update = alarms._update_state(Alarm.update_state)
    alarm = Alarm()
    update(alarm, "drift found", "{}", "ALARM")
    update(alarm, "still", "{}", "ALARM")  # no change: no event
    ((account, region, event),) = routed
    assert (account, region) == ("123456789012", "us-east-1")
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["source"] == "aws.cloudwatch" and event["resources"] == [ARN]
    assert event["time"] == "2026-12-02T15:00:00Z"
    detail = event["detail"]
    assert detail["alarmName"] == "mlops-inference-prod-drift"
    assert detail["state"]["value"] == "ALARM" and detail["state"]["reason"] == "drift found"
    assert detail["previousState"]["value"] == "OK"
    (metric,) = detail["configuration"]["metrics"]
    assert metric["metricStat"]["metric"] == {
        "namespace": "mlops/inference",
        "name": "MaxDriftScore",
        "dimensions": {"Pipeline": "mlops-inference-prod"},
    }
    update(alarm, "back", "{}", "OK")
    assert [e["detail"]["state"]["value"] for *_, e in routed] == ["ALARM", "OK"]
