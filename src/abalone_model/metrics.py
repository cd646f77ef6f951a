"""Drift as CloudWatch metrics, so an alarm (not a person reading drift.json) notices drift.

``monitor --metrics-namespace NS [--metrics-dimension Name=Value ...]`` publishes, after the report
is written:

- ``MaxDriftScore``: the batch's largest feature score (PSI), with the given dimensions;
- per feature, with the given dimensions plus ``Feature=<name>``: ``DriftScore`` (its PSI),
  ``MissingRate`` and ``OutOfRangeRate`` (fractions of the batch's rows, 0..1).

All in unit ``None``; a score that is None, NaN or infinite is left out (CloudWatch rejects NaN
and inf). boto3 is imported only when publishing: without a namespace the monitor needs no AWS.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from typing import Any

from abalone_model.errors import ModelError
from abalone_model.usage import UsageError

FEATURE = "Feature"  # the per-feature dimension, added here: not the user's to set
MAX_DIMENSIONS = 30 - 1  # CloudWatch allows 30 per metric; Feature takes one
MAX_PER_CALL = 1000  # PutMetricData's limit on MetricData items
RATES = {"MissingRate": "missing_rate", "OutOfRangeRate": "out_of_range_rate"}
GRANT = "grant cloudwatch:PutMetricData on namespace {ns} to the processing job's role"


def check_namespace(namespace: str) -> str:
    """CloudWatch's own rules, refused before the batch is read rather than after."""
    if not namespace.strip() or len(namespace) > 255 or namespace.startswith("AWS/"):
        raise UsageError(
            f"--metrics-namespace {namespace!r}: need 1-255 characters, not starting with 'AWS/'"
        )
    return namespace


def parse_dimensions(items: list[str]) -> list[dict[str, str]]:
    """``Name=Value`` arguments as CloudWatch dimensions; one usage line for the first bad one."""
    if len(items) > MAX_DIMENSIONS:
        raise UsageError(
            f"--metrics-dimension: {len(items)} given, at most {MAX_DIMENSIONS} "
            f"(CloudWatch allows 30 per metric and the monitor adds {FEATURE})"
        )
    dims: list[dict[str, str]] = []
    for item in items:
        name, sep, value = (part.strip() for part in item.partition("="))
        if problem := _dimension_problem(name, sep, value, dims):
            raise UsageError(f"--metrics-dimension {item!r}: {problem}")
        dims.append({"Name": name, "Value": value})
    return dims


def _dimension_problem(name: str, sep: str, value: str, dims: list[dict[str, str]]) -> str | None:
    if not sep:
        return "expected Name=Value"
    if not name or not value:
        return "empty name or value (expected Name=Value)"
    if name == FEATURE:
        return f"{FEATURE} is the monitor's own per-feature dimension"
    if not name.isascii() or name.startswith(":"):
        return "a name is ASCII and does not start with ':'"
    if len(name) > 255 or len(value) > 1024:
        return "a name has at most 255 characters, a value at most 1024"
    if any(d["Name"] == name for d in dims):
        return "repeated name"
    return None


def _finite(value: Any) -> float | None:
    """The value as a float when CloudWatch can take it (None, NaN, inf and non-numbers: None)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metric_data(
    result: dict[str, Any], dimensions: list[dict[str, str]], when: datetime | None = None
) -> list[dict[str, Any]]:
    """PutMetricData items for drift.json's ``result``, all at one timestamp."""
    when = when or datetime.now(UTC)

    def datum(name: str, value: float, dims: list[dict[str, str]]) -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dims, "Timestamp": when, "Value": value}

    data = []
    if (top := _finite(result.get("max_score"))) is not None:
        data.append(datum("MaxDriftScore", top, list(dimensions)))
    for feature, record in result.get("features", {}).items():
        dims = [*dimensions, {"Name": FEATURE, "Value": feature}]
        values = {"DriftScore": record.get("psi")}
        values |= {metric: record.get(key) for metric, key in RATES.items() if key in record}
        for metric, raw in values.items():
            if (value := _finite(raw)) is not None:
                data.append(datum(metric, value, dims))
    return [d | {"Unit": "None"} for d in data]


def cloudwatch_client():
    """A CloudWatch client in the job's region (SageMaker sets AWS_REGION; botocore reads only
    AWS_DEFAULT_REGION). Imported here, so the monitor without metrics needs no boto3."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError
    except ImportError as exc:
        raise ModelError(
            f"cannot publish drift metrics: {exc}; build the image with the model extra (boto3)"
        ) from exc
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        return boto3.client("cloudwatch", region_name=region)
    except BotoCoreError as exc:
        raise ModelError(
            f"cannot create a CloudWatch client: {exc}; set AWS_REGION (SageMaker sets it)"
        ) from exc


def publish(
    client, namespace: str, result: dict[str, Any], dimensions: list[dict[str, str]]
) -> int:
    """Put the drift metrics in ``namespace``; how many were published. AWS errors: one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    data = metric_data(result, dimensions)
    try:
        for start in range(0, len(data), MAX_PER_CALL):
            client.put_metric_data(
                Namespace=namespace, MetricData=data[start : start + MAX_PER_CALL]
            )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        raise ModelError(_failed(namespace, f"{code}: {message}")) from exc
    except BotoCoreError as exc:
        raise ModelError(_failed(namespace, f"{type(exc).__name__}: {exc}")) from exc
    return len(data)


def _failed(namespace: str, reason: str) -> str:
    reason = " ".join(reason.split())  # one line for the job's FailureReason
    return (
        f"cannot publish drift metrics to CloudWatch namespace {namespace}: {reason}; "
        f"{GRANT.format(ns=namespace)} (the drift report is written)"
    )


def describe(dimensions: list[dict[str, str]]) -> str:
    """``Name=Value, ...`` for the log line."""
    return ", ".join(f"{d['Name']}={d['Value']}" for d in dimensions) or "none"
