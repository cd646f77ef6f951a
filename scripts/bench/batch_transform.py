"""Batch transform cost per row at full 6 MiB payloads, against the raw model's per-row cost.

A CSV input (the project's data repeated, header first) is cut into mini-batches exactly as
SageMaker does with SplitType Line + MultiRecord (``serve.batch.split_lines``, 6 MiB each); they
are posted in turn over one keep-alive connection to the real server (``python -m abalone_model
serve``, ONE worker, so one core) on loopback, best of a few rounds. The floor is
``TrainedModel.predict`` on the same rows already encoded, timed on one mini-batch's worth (best of
N). Prints per-row costs, their ratio (target: within 2x) and the server's rows/s on one core.
Needs no wrk; about 10 s, plus a few seconds of training unless ``--model-dir`` is given.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import bench_model
import bench_servers
import numpy as np
from bench_wrk import BenchError

from abalone_model.errors import ModelError
from abalone_model.model import TrainedModel, load
from abalone_model.schema import Schema
from abalone_model.serve.batch import DEFAULT_PAYLOAD_MB, MIB, join_input, split_lines

TARGET_RATIO = 2.0  # batch transform per-row cost / raw predict per-row cost


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_transform.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="reuse this model dir instead of training")
    parser.add_argument(
        "--input-mib", type=float, default=11.99, help="CSV input size (default: 2 mini-batches)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="passes over the input (best of)")
    args = parser.parse_args(argv)
    if args.input_mib <= 0 or args.rounds < 1:
        parser.error("--input-mib must be positive and --rounds at least 1")
    return args


def write_input(path: Path, schema: Schema, size: int) -> tuple[list[str], list[list[str]]]:
    """A header, then the data's feature rows over and over while they fit in ``size`` bytes.

    Returns the data file's header and the rows written (target column still on them)."""
    header, rows = bench_model.read_data()
    n = len(schema.raw_names)
    head = (",".join(header[:n]) + "\n").encode()
    lines = bench_model.csv_body(rows, n).splitlines(keepends=True)
    chosen, total = [], len(head)
    for i in itertools.cycle(range(len(lines))):
        if total + len(lines[i]) > size:
            break
        chosen.append(i)
        total += len(lines[i])
    path.write_bytes(head + b"".join(lines[i] for i in chosen))
    return header, [rows[i] for i in chosen]


def _connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=120)


def payload_bytes(url: str) -> int:
    """MaxPayloadInMB from the container's GET /execution-parameters, as SageMaker asks it."""
    conn = _connect(url)
    try:
        conn.request("GET", "/execution-parameters")
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"GET /execution-parameters answered {resp.status}: {answer[:200]!r}")
    return int(json.loads(answer)["MaxPayloadInMB"]) * MIB


def post_all(url: str, batches: list[bytes]) -> tuple[float, list[bytes]]:
    """Post every mini-batch in turn on one connection; wall seconds and the response bodies."""
    conn = _connect(url)
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    outputs = []
    try:
        start = time.perf_counter()
        for body in batches:
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            outputs.append(resp.read())
            if resp.status != 200:
                raise BenchError(f"mini-batch answered {resp.status}: {outputs[-1][:200]!r}")
        return time.perf_counter() - start, outputs
    finally:
        conn.close()


def summary(batch_s: float, rows: int, raw_s: float, raw_rows: int) -> dict[str, float | bool]:
    """Per-row costs (us), their ratio against the target, and batch rows/s."""
    batch_us, raw_us = batch_s / rows * 1e6, raw_s / raw_rows * 1e6
    ratio = batch_us / raw_us
    return {
        "batch_per_row_us": batch_us,
        "raw_per_row_us": raw_us,
        "ratio": ratio,
        "met": ratio <= TARGET_RATIO,
        "batch_rows_per_s": rows / batch_s,
    }


def report(
    result: dict[str, float | bool],
    rows: int,
    batches: int,
    client_us: float,
    payload_mib: int = DEFAULT_PAYLOAD_MB,
) -> str:
    mark = "MET" if result["met"] else "MISSED"
    return "\n".join(
        [
            f"input: {rows:,} rows in {batches} mini-batches of <= {payload_mib} MiB",
            f"batch transform per row:  {result['batch_per_row_us']:.3f} us (1 worker, loopback)",
            f"raw predict per row:      {result['raw_per_row_us']:.3f} us (a mini-batch, encoded)",
            f"batch / raw predict:      {result['ratio']:.2f}x (target <= {TARGET_RATIO:g}x)"
            f" {mark}",
            f"batch rows/s on one core: {result['batch_rows_per_s']:,.0f}",
            f"split + join on the client (not in the above): {client_us:.3f} us/row",
        ]
    )


def _timings(
    url: str, batches: list[bytes], model: TrainedModel, first: np.ndarray, rounds: int
) -> tuple[float, float, list[bytes]]:
    """Passes over all mini-batches, each followed by a raw predict on the first one's rows, so
    a change in the machine's background load hits both; best of each, and the last outputs."""
    posted, raw = [], []
    for _ in range(rounds):
        posted.append(post_all(url, batches))
        start = time.perf_counter()
        model.predict(first)
        raw.append(time.perf_counter() - start)
    return min(t for t, _ in posted), min(raw), posted[-1][1]


def run(args: argparse.Namespace, work: Path) -> dict[str, float | bool]:
    """Train (unless given a model), write the input, split it as the server asks, time both."""
    model_dir = args.model_dir or bench_model.train(work)
    model = load(model_dir)  # one OpenMP thread, like each server worker
    source = work / "input.csv"
    header, rows = write_input(source, model.schema, int(args.input_mib * MIB))
    port = bench_servers.free_port()
    cmd, env = bench_servers.ours_command(port, 1, model_dir)
    with bench_servers.serve("ours", cmd, env, port) as url:
        payload = payload_bytes(url)
        started = time.perf_counter()
        batches = list(split_lines(source, payload))
        split_s = time.perf_counter() - started
        warm = post_all(url, batches[:1])[1][0]  # also warms lazy imports and allocations
        first = bench_model.encode(model.schema, header, rows[: warm.count(b"\n")])
        model.predict(first)  # the in-process warm-up
        batch_s, raw_s, outputs = _timings(url, batches, model, first, args.rounds)
    started = time.perf_counter()
    joined = join_input(source.read_bytes(), b"".join(outputs), header=True)
    client_s = split_s + time.perf_counter() - started
    if joined.count(b"\n") != len(rows) + 1:
        raise BenchError(f"the joined output does not have {len(rows)} rows and a header")
    diff = np.max(np.abs(np.array(outputs[0].split(), dtype=float) - model.predict(first)))
    result = summary(batch_s, len(rows), raw_s, len(first))
    print(report(result, len(rows), len(batches), client_s / len(rows) * 1e6, payload // MIB))
    print(f"max |server - in-process prediction|, first mini-batch: {diff:.2g}")
    return result | {"max_abs_diff": float(diff)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            run(args, Path(tmp))
    except (BenchError, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
