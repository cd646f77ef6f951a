"""What a deployed endpoint must do, checked through sagemaker-runtime as clients call it."""

from __future__ import annotations

import json
import math
import time

import boto3
import pytest
from botocore.exceptions import ClientError


def invoke(
    runtime, endpoint: str, body: str, content_type: str = "text/csv", accept: str = "text/csv"
) -> str:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body.encode(), ContentType=content_type, Accept=accept
    )
    return response["Body"].read().decode()


def csv_body(rows: list[list[str]], header: list[str] | None = None) -> str:
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def floats(text: str) -> list[float]:
    return [float(line) for line in text.strip().splitlines()]


def test_one_csv_row_gives_one_prediction(runtime, endpoint, held_out):
    _, rows, _ = held_out
    predictions = floats(invoke(runtime, endpoint, csv_body(rows[:1])))
    assert len(predictions) == 1 and math.isfinite(predictions[0])


def test_many_rows_with_and_without_header_agree(runtime, endpoint, held_out):
    header, rows, _ = held_out
    plain = floats(invoke(runtime, endpoint, csv_body(rows[:50])))
    with_header = floats(invoke(runtime, endpoint, csv_body(rows[:50], header)))
    assert len(plain) == 50 and plain == with_header


def test_json_records_and_lists_match_csv(runtime, endpoint, held_out):
    header, rows, _ = held_out
    sample = rows[:20]
    expected = floats(invoke(runtime, endpoint, csv_body(sample)))

    def typed(value: str):
        try:
            return float(value)
        except ValueError:
            return value

    records = {"instances": [{h: typed(v) for h, v in zip(header, r, strict=True)} for r in sample]}
    lists = {"instances": [[typed(v) for v in r] for r in sample]}
    for payload in (records, lists):
        answer = json.loads(
            invoke(runtime, endpoint, json.dumps(payload), "application/json", "application/json")
        )
        assert answer["predictions"] == pytest.approx(expected, rel=1e-6)


def test_replay_of_held_out_set_matches_offline_evaluation(
    runtime, endpoint, held_out, pytestconfig
):
    header, rows, targets = held_out
    predictions: list[float] = []
    for start in range(0, len(rows), 500):
        predictions += floats(
            invoke(runtime, endpoint, csv_body(rows[start : start + 500], header))
        )
    assert len(predictions) == len(targets)
    rmse = math.sqrt(
        sum((p - t) ** 2 for p, t in zip(predictions, targets, strict=True)) / len(targets)
    )
    expected = pytestconfig.getoption("expected_rmse")
    if expected is not None:
        tolerance = pytestconfig.getoption("rmse_tolerance")
        assert rmse == pytest.approx(expected, rel=tolerance), (rmse, expected)


def test_latency_budget(runtime, endpoint, held_out, pytestconfig):
    _, rows, _ = held_out
    body = csv_body(rows[:1])
    invoke(runtime, endpoint, body)  # warm the connection
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        invoke(runtime, endpoint, body)
        samples.append((time.perf_counter() - start) * 1000)
    p95 = sorted(samples)[int(len(samples) * 0.95) - 1]
    assert p95 <= pytestconfig.getoption("latency_budget_ms"), f"p95 {p95:.1f} ms"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("M,abc,0.3,0.1,0.5,0.2,0.1,0.15\n", "text/csv"),  # non-numeric
        ("M,0.4,0.3\n", "text/csv"),  # wrong column count
        ("Q,0.4,0.3,0.1,0.5,0.2,0.1,0.15\n", "text/csv"),  # unknown category
        ("M,nan,0.3,0.1,0.5,0.2,0.1,0.15\n", "text/csv"),  # NaN
        ('{"instances": 3}', "application/json"),  # wrong JSON shape
        ("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15\n", "application/x-unknown"),  # unsupported type
    ],
)
def test_bad_input_is_a_client_error(runtime, endpoint, body, content_type):
    with pytest.raises(ClientError) as info:
        invoke(runtime, endpoint, body, content_type)
    response = info.value.response
    status = response.get("OriginalStatusCode") or response["ResponseMetadata"]["HTTPStatusCode"]
    assert 400 <= int(status) < 500, response


def test_capture_matches_the_stage(runtime, endpoint, held_out, pytestconfig):
    """With --capture-uri, captured records must appear there; without it, capture must be off."""
    uri = pytestconfig.getoption("capture_uri")
    region = pytestconfig.getoption("region")
    described = (
        boto3.Session(region_name=region)
        .client("sagemaker")
        .describe_endpoint(EndpointName=endpoint)
    )
    enabled = described.get("DataCaptureConfig", {}).get("EnableCapture", False)
    assert enabled == (uri is not None), described.get("DataCaptureConfig")
    if uri is None:
        return
    _, rows, _ = held_out
    for row in rows[:30]:  # enough to fill a capture buffer
        invoke(runtime, endpoint, csv_body([row]))
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.Session(region_name=pytestconfig.getoption("region")).client("s3")
    # Delivery to S3 is asynchronous and AWS documents no bound ("Data capture", SageMaker guide):
    # poll up to --capture-wait-seconds, backing off, instead of a fixed minute.
    wait = pytestconfig.getoption("capture_wait_seconds")
    keys: list[str] = []
    deadline, delay = time.monotonic() + wait, 1.0
    while True:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".jsonl")]
        if keys or time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 30.0)
    assert keys, f"no capture objects under {uri} after {wait:.0f} s"
    first = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read().decode().splitlines()[0]
    record = json.loads(first)
    assert record["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert record["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert record["eventVersion"] == "0"
