"""Reading an endpoint's data capture: the requests and predictions of a time window.

SageMaker writes capture as JSON Lines, one object per invocation, under
``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``: ``captureData.endpointInput``
and ``endpointOutput`` each hold ``observedContentType``, ``mode``, ``data`` and ``encoding``
(CSV, JSON or BASE64) and ``eventMetadata.inferenceTime`` the time of the call ("Capture data
from real-time endpoint", https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html).

Capture is what clients really sent, so a record that cannot be used (a body the server refused,
a line cut short) is counted and skipped, never the whole job's failure: the report says how
many. The rows come out as raw text cells in the schema's order, the predictions as numbers,
one per row, so ``monitor`` judges live traffic exactly as it judges a batch.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from abalone_model.batch_csv import in_schema_order
from abalone_model.errors import InputDataError, ModelError
from abalone_model.schema import Schema


@dataclass
class Window:
    """[since, until): ``until`` defaults to now, ``since`` to ``hours`` before ``until``."""

    since: datetime
    until: datetime

    @classmethod
    def parse(cls, since: str = "", until: str = "", hours: float = 24.0) -> Window:
        if hours <= 0:
            raise ModelError(f"--window-hours {hours:g} must be positive")
        end = parse_time(until, "--until") if until else datetime.now(UTC)
        start = parse_time(since, "--since") if since else end - timedelta(hours=hours)
        if start >= end:
            raise ModelError(
                f"the window is empty: --since {start:%FT%TZ} is not before {end:%FT%TZ}"
            )
        return cls(start, end)

    def __contains__(self, moment: datetime) -> bool:
        return self.since <= moment < self.until

    def to_dict(self) -> dict[str, str]:
        return {
            "since": f"{self.since:%Y-%m-%dT%H:%M:%SZ}",
            "until": f"{self.until:%Y-%m-%dT%H:%M:%SZ}",
        }


def parse_time(text: str, what: str) -> datetime:
    """ISO 8601 (``2026-12-01T06:00:00Z``, a date, an offset); naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ModelError(
            f"{what} {text!r} is not an ISO 8601 time, e.g. 2026-12-01T06:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class Captured:
    rows: list[list[str]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("files", "records", "in_window", "used", "unreadable", "unusable"), 0
        )
    )

    def summary(self, window: Window) -> dict[str, Any]:
        return {**window.to_dict(), **self.counts, "rows": len(self.rows)}


def read_capture(path: Path, schema: Schema, window: Window) -> Captured:
    """Every usable record of the window under ``path`` (a .jsonl file or a folder of them)."""
    if not path.exists():
        raise InputDataError(f"capture {path} not found: pass the endpoint's capture folder")
    files = [path] if path.is_file() else sorted(path.rglob("*.jsonl"))
    found = Captured()
    found.counts["files"] = len(files)
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            found.counts["unreadable"] += 1
            continue
        for line in text.splitlines():
            if line.strip():
                _record(found, line, schema, window)
    return found


def _record(found: Captured, line: str, schema: Schema, window: Window) -> None:
    found.counts["records"] += 1
    try:
        record = json.loads(line)
        data = record["captureData"]
        moment = parse_time(record["eventMetadata"]["inferenceTime"], "inferenceTime")
    except (ValueError, KeyError, TypeError, AttributeError, ModelError):
        found.counts["unreadable"] += 1
        return
    if moment not in window:
        return
    found.counts["in_window"] += 1
    try:
        rows = request_rows(data["endpointInput"], schema)
        predictions = response_numbers(data["endpointOutput"])
    except (ValueError, KeyError, TypeError, AttributeError, InputDataError):
        found.counts["unusable"] += 1
        return
    if not rows or len(rows) != len(predictions):
        found.counts["unusable"] += 1
        return
    found.counts["used"] += 1
    found.rows += rows
    found.predictions += predictions


def _text(payload: dict[str, Any]) -> tuple[str, str]:
    """(media type, body text) of a captured payload, whatever its encoding."""
    kind = str(payload.get("observedContentType", "")).split(";")[0].strip().lower()
    data, encoding = payload["data"], str(payload.get("encoding", "")).upper()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"undecodable BASE64 body: {exc}") from None
    if not isinstance(data, str):
        raise TypeError("captured data is not text")
    return kind, data


def request_rows(payload: dict[str, Any], schema: Schema) -> list[list[str]]:
    """A captured request as raw cells in schema order (CSV with or without header, or JSON)."""
    kind, text = _text(payload)
    if kind == "application/json":
        return _json_rows(json.loads(text), schema)
    lines = list(csv.reader(io.StringIO(text, newline="")))
    rows, _ = in_schema_order("captured request", lines, schema)
    return rows


def _json_rows(doc: Any, schema: Schema) -> list[list[str]]:
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list):
        raise ValueError('not {"instances": [...]}')
    names = schema.raw_names
    rows = []
    for item in instances:
        if isinstance(item, dict):
            rows.append(["" if item.get(n) is None else str(item.get(n)) for n in names])
        elif isinstance(item, list) and len(item) == len(names):
            rows.append(["" if v is None else str(v) for v in item])
        else:
            raise ValueError("an instance is neither a record nor a full list of features")
    return rows


def response_numbers(payload: dict[str, Any]) -> list[float]:
    """The predictions of a captured response (one per line, or JSON ``{"predictions": []}``)."""
    kind, text = _text(payload)
    if kind == "application/json":
        values = json.loads(text)["predictions"]
    else:
        values = [t for t in text.replace(",", "\n").split() if t]
    return [float(v) for v in values]
