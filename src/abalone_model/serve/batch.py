"""SageMaker batch transform, both sides: the container's execution parameters, and the splitting
and joining SageMaker does around it (so a local runtime can run a transform job the same way).

Contract (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-batch-code.html and
https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html): SageMaker asks the container
``GET /execution-parameters`` once; with SplitType Line and BatchStrategy MultiRecord it then posts
mini-batches of whole lines, each at most MaxPayloadInMB (an MB being 1024 * 1024 bytes here, the
larger reading, so a full payload always fits); a CSV header, when the input has one, is only in
the first mini-batch. Each response must hold one line per input data row, in order, so that
AssembleWith Line + JoinSource Input can pair every input row with its prediction.

Environment (set by SageMaker from CreateTransformJob when the user gives them; else the default):
``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`` (default: ``SAGEMAKER_MODEL_SERVER_WORKERS``, else 1),
``SAGEMAKER_BATCH_STRATEGY`` (``MULTI_RECORD``), ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from abalone_model.errors import ModelError

MIB = 1024 * 1024
DEFAULT_PAYLOAD_MB = 6  # SageMaker's default MaxPayloadInMB, and its real-time payload limit
MAX_PAYLOAD_MB = 100  # SageMaker's ceiling; 0 (chunked, unbounded) is not supported here
STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
_STRATEGY = {s.replace("_", ""): s for s in STRATEGIES}  # MultiRecord (the API's form) too
PREDICTION_COLUMN = b"prediction"  # appended to a header line by ``join_input``


def env_int(env: Mapping[str, str], name: str, default: int, high: int) -> int:
    """A whole-number setting from 1 to ``high``; unset or blank -> ``default``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise ModelError(f"{name}={raw!r} is not a whole number from 1 to {high}")
    return int(raw)


def execution_parameters(env: Mapping[str, str]) -> dict[str, int | str]:
    """The ``GET /execution-parameters`` answer; a bad variable is a ModelError naming it."""
    workers = env_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, 512)
    raw = env.get("SAGEMAKER_BATCH_STRATEGY", "").strip() or STRATEGIES[0]
    strategy = _STRATEGY.get(raw.replace("_", "").upper())
    if strategy is None:
        raise ModelError(f"SAGEMAKER_BATCH_STRATEGY={raw!r} is not one of {STRATEGIES}")
    return {
        "MaxConcurrentTransforms": env_int(
            env, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", workers, 1024
        ),
        "BatchStrategy": strategy,
        "MaxPayloadInMB": env_int(
            env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_PAYLOAD_MB, MAX_PAYLOAD_MB
        ),
    }


def split_lines(
    source: str | Path | bytes, max_payload_bytes: int = DEFAULT_PAYLOAD_MB * MIB
) -> Iterator[bytes]:
    """Mini-batches of whole lines, each at most ``max_payload_bytes`` (SplitType Line,
    MultiRecord); a header line therefore travels in the first one only. A batch of nothing but
    blank lines is not sent; a line longer than the payload is a ValueError, as it fails the job.
    """
    if max_payload_bytes < 1:
        raise ValueError(f"max_payload_bytes must be positive, got {max_payload_bytes}")
    if isinstance(source, bytes):
        yield from _batches(io.BytesIO(source), max_payload_bytes)
        return
    with Path(source).open("rb") as stream:
        yield from _batches(stream, max_payload_bytes)


def _batches(stream: io.BufferedIOBase, limit: int) -> Iterator[bytes]:
    """Read a payload's worth, cut after its last newline, carry the rest into the next one."""
    pending, offset = b"", 0
    while True:
        want = limit - len(pending)
        chunk = stream.read(want)
        data = pending + chunk
        if len(chunk) < want:  # the end of the input: what is left fits in one payload
            if data.strip():
                yield data
            return
        cut = data.rfind(b"\n") + 1
        if not cut:
            raise ValueError(f"the line at byte {offset} is longer than {limit} bytes")
        batch, pending = data[:cut], data[cut:]
        offset += cut
        if batch.strip():
            yield batch


def _lines(body: bytes | Iterable[bytes]) -> list[bytes]:
    """Non-blank lines without their line ending (LF or CRLF), as the server counts rows."""
    raw = body.split(b"\n") if isinstance(body, bytes) else body
    return [line.removesuffix(b"\n").removesuffix(b"\r") for line in raw if line.strip()]


def join_input(
    input_lines: bytes | Iterable[bytes],
    output_lines: bytes | Iterable[bytes],
    header: bool = False,
) -> bytes:
    """JoinSource Input: each input data row + "," + its prediction, one LF-ended line each.

    Inputs and outputs are bodies or lists of lines; blank lines are skipped on both sides (the
    server predicts none for them). With ``header`` the first input line is the CSV header and
    gets a ``prediction`` column. Unequal row counts are a ValueError: rows would be mismatched.
    """
    rows, predictions = _lines(input_lines), _lines(output_lines)
    head = [rows.pop(0) + b"," + PREDICTION_COLUMN] if header and rows else []
    if len(rows) != len(predictions):
        raise ValueError(f"{len(rows)} input rows but {len(predictions)} predictions")
    joined = [row + b"," + pred for row, pred in zip(rows, predictions, strict=True)]
    return b"".join(line + b"\n" for line in head + joined)
