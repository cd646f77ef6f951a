"""Batch transform jobs, run for real: the Model's own inference server, fed as SageMaker feeds it.

moto records CreateTransformJob and computes nothing. Here the server starts from the Model's
model data (as an endpoint does, as the Model's execution role), each input object is split and
batched the way SageMaker does, and the outputs land where SageMaker writes them. The splitting
belongs here, not in the model: it is what the service does. SageMaker documentation relied on:

- Custom Inference Code with Batch Transform (the container is run as ``serve``; SAGEMAKER_BATCH,
  SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_BATCH_STRATEGY, SAGEMAKER_MAX_CONCURRENT_TRANSFORMS;
  the optional GET /execution-parameters fills what the job leaves unset):
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-batch-code.html
- CreateTransformJob / TransformInput (SplitType Line splits on newlines; MultiRecord fits as many
  records as MaxPayloadInMB allows, SingleRecord sends one; None sends the whole object;
  MaxPayloadInMB must be at least the largest record; default 6):
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
- TransformOutput (``<S3OutputPath>/<key relative to the input prefix>.out``; an object's output
  is uploaded only when the whole object succeeded; one failed object fails the job):
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
- Associate Prediction Results with Input Records (JoinSource Input on CSV appends each output
  row to its input row): https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform-data-processing.html

Lines are sent as they are: a CSV header stays in the first mini-batch only (the server decides
what a header is). Defaults where neither the job nor the container says: MultiRecord and 6 MB, as
the SDK's local mode uses.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from moto.core.utils import utcnow

from mlops.aws import list_keys, split_s3
from mlops.local.endpoints import Endpoints, extract, free_port

MB = 1024 * 1024
STRATEGY_ENV = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}


class TransformFailed(Exception):
    """The job's FailureReason: one line naming the object and what to change."""


@dataclass
class Settings:
    strategy: str
    payload: int  # bytes
    content_type: str
    accept: str
    split: str
    assemble: str
    join: bool
    timeout: float


def run(runtime: Any, job: Any) -> None:
    """Run one transform job to Completed, or Failed with the reason (whatever happens)."""
    try:
        _run(runtime, job)
        job.transform_job_status = "Completed"
    except Exception as exc:  # every failure is the job's FailureReason, as on AWS
        reason = str(exc) if isinstance(exc, TransformFailed) else f"{type(exc).__name__}: {exc}"
        job.failure_reason = reason[:1024]
        job.transform_job_status = "Failed"
    finally:
        job.transform_end_time = job.last_modified_time = utcnow()


def _run(runtime: Any, job: Any) -> None:
    model = runtime.session.client("sagemaker").describe_model(ModelName=job.model_name)
    session = runtime.role_session(model["ExecutionRoleArn"], "sagemaker")
    s3 = session.client("s3")
    keys = _inputs(s3, job.transform_input)
    with _serving(runtime, job, model, session) as port:
        settings = _settings(job, _execution_parameters(port))
        out_bucket, out_prefix = split_s3(job.transform_output["S3OutputPath"])
        for bucket, key, name in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if job.transform_input.get("CompressionType") == "Gzip":
                body = gzip.decompress(body)
            output = _transform(port, settings, body, f"s3://{bucket}/{key}")
            target = "/".join(filter(None, [out_prefix.rstrip("/"), f"{name}.out"]))
            s3.put_object(Bucket=out_bucket, Key=target, Body=output)


def _inputs(s3: Any, spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(bucket, key, name relative to the prefix's folder) of every input object."""
    source = spec["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise TransformFailed(
            f"S3DataType {source['S3DataType']} is not run by the local runtime: use S3Prefix"
        )
    uri = source["S3Uri"]
    bucket, prefix = split_s3(uri)
    folder = prefix[: prefix.rfind("/") + 1]  # "in/" and "in/batch" both name the folder "in/"
    keys = [k for k in list_keys(s3, uri) if not k.endswith("/")]
    if not keys:
        raise TransformFailed(f"no S3 objects found under {uri}: upload the batch there first")
    return [(bucket, k, k[len(folder) :]) for k in keys]


@contextlib.contextmanager
def _serving(runtime: Any, job: Any, model: dict[str, Any], session: Any) -> Iterator[int]:
    """The Model's server on a free loopback port, for the job's lifetime."""
    work = runtime.work_dir / f"transform-{job.transform_job_name}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    bucket, key = split_s3(runtime.endpoints.model_data(job.model_name))
    session.client("s3").download_file(bucket, key, str(work / "model.tar.gz"))
    extract(work / "model.tar.gz", work / "model")
    port = free_port()
    env = {
        **runtime.child_env,
        **model.get("PrimaryContainer", {}).get("Environment", {}),
        **(job.environment or {}),
        **_batch_env(job),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(work / "model"),
    }
    proc = subprocess.Popen(
        [*runtime.entrypoint, "serve"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        Endpoints._wait_ready(proc, port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _batch_env(job: Any) -> dict[str, str]:
    """What SageMaker sets in a batch container; unset job values are left to the container."""
    # requests go one at a time here, so one worker and one concurrent transform (as endpoints)
    env = {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }
    if job.max_payload_in_mb:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job.max_payload_in_mb)
    if job.batch_strategy:
        env["SAGEMAKER_BATCH_STRATEGY"] = STRATEGY_ENV.get(job.batch_strategy, job.batch_strategy)
    return env


def _execution_parameters(port: int) -> dict[str, Any]:
    """The container's GET /execution-parameters, or {} when it does not answer 200 with JSON."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/execution-parameters")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else {}
    except (OSError, ValueError):
        return {}


def _settings(job: Any, params: dict[str, Any]) -> Settings:
    spec, output = job.transform_input, job.transform_output
    split = spec.get("SplitType") or "None"
    if split not in ("Line", "None"):
        raise TransformFailed(
            f"SplitType {split} is not run by the local runtime: use Line or None"
        )
    processing = job.data_processing or {}
    for name in ("InputFilter", "OutputFilter"):
        if processing.get(name, "$") != "$":
            raise TransformFailed(f"DataProcessing {name} is not run by the local runtime")
    join = processing.get("JoinSource", "None") == "Input"
    content_type = spec.get("ContentType", "")
    if join and content_type.split(";")[0].strip() != "text/csv":
        raise TransformFailed(
            "JoinSource Input is run for text/csv input only by the local runtime"
        )
    strategy = job.batch_strategy or params.get("BatchStrategy") or "MultiRecord"
    payload_mb = job.max_payload_in_mb or params.get("MaxPayloadInMB") or 6
    client = job.model_client_config or {}
    return Settings(
        strategy=strategy,
        payload=int(payload_mb) * MB,
        content_type=content_type,
        accept=output.get("Accept", ""),
        split=split,
        assemble=output.get("AssembleWith", "None"),
        join=join,
        timeout=float(client.get("InvocationsTimeoutInSeconds", 600)),
    )


def _mini_batches(body: bytes, s: Settings, uri: str) -> Iterator[list[bytes]]:
    """Records (lines, as they are; empty lines are no records) grouped as SageMaker sends them."""
    if s.split == "None":
        if len(body) > s.payload:
            raise TransformFailed(
                f"{uri} is {len(body)} bytes, over MaxPayloadInMB ({s.payload // MB}) with "
                "SplitType None: set SplitType Line or raise MaxPayloadInMB"
            )
        yield [body]
        return
    batch: list[bytes] = []
    size = 0
    for number, line in enumerate(body.split(b"\n"), start=1):
        record = line.rstrip(b"\r")
        if not record:
            continue
        if len(record) + 1 > s.payload:
            raise TransformFailed(
                f"record {number} of {uri} is {len(record)} bytes, over MaxPayloadInMB "
                f"({s.payload // MB}): it must be at least the largest record"
            )
        if batch and (s.strategy == "SingleRecord" or size + len(record) + 1 > s.payload):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += len(record) + 1
    if batch:
        yield batch


def _transform(port: int, s: Settings, body: bytes, uri: str) -> bytes:
    """One input object's assembled output (AssembleWith Line: one newline-ended chunk each)."""
    chunks: list[bytes] = []
    for number, records in enumerate(_mini_batches(body, s, uri), start=1):
        payload = records[0] if s.split == "None" else b"\n".join(records) + b"\n"
        result = _invoke(port, s, payload, f"mini-batch {number} of {uri}")
        if s.join:
            result = _joined(records, result, f"mini-batch {number} of {uri}")
        if s.assemble == "Line" and not result.endswith(b"\n"):
            result += b"\n"
        chunks.append(result)
    return b"".join(chunks)


def _invoke(port: int, s: Settings, payload: bytes, what: str) -> bytes:
    headers = {"Content-Type": s.content_type} if s.content_type else {}
    if s.accept:
        headers["Accept"] = s.accept
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=s.timeout)
    conn.request("POST", "/invocations", body=payload, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        kind = "client" if resp.status < 500 else "server"
        message = body.decode(errors="replace").strip()[:500]
        raise TransformFailed(
            f"ClientError: the model answered {resp.status} ({kind} error) to {what}: {message}"
        )
    return body


def _joined(records: list[bytes], result: bytes, what: str) -> bytes:
    """JoinSource Input on CSV: each input row, a comma, then its output row."""
    rows = [r for r in result.split(b"\n") if r.strip()]
    if len(rows) != len(records):
        raise TransformFailed(
            f"JoinSource Input: {what} has {len(records)} records but the model returned "
            f"{len(rows)} rows (a CSV header line cannot be joined: drop it from the input)"
        )
    return b"".join(r + b"," + o.rstrip(b"\r") + b"\n" for r, o in zip(records, rows, strict=True))
