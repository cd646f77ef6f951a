"""`make bench`: our server against the seeds' design (Flask + pandas under gunicorn), same model.

One run, same cores, same worker count (= cores), everything on 127.0.0.1, measured with wrk:
1. max throughput for a single-row CSV request (closed loop, keep-alive where the server allows);
2. p50/p99 latency at HALF of each server's own max rate (paced by post.lua);
3. 1,000-row CSV requests: req/s, p50/p99, and per-row cost against the raw in-process
   ``TrainedModel.predict`` time per row on the already-encoded matrix (best of N).
Both servers stay up for the whole run and every step alternates between them, so a change in
the machine's background load does not favour one. Prints a table and the ratios, and writes
runs/bench/serving.json. The numbers are only as quiet as the machine: on a shared one, re-run
before drawing conclusions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_model
import bench_report
import bench_servers
import numpy as np
from bench_wrk import BenchError, WrkResult, run_wrk, wrk_path

from abalone_model.errors import ModelError
from abalone_model.model import available_cores, load

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "runs" / "bench" / "serving.json"
ONE_ROW_CONNECTIONS = 32
HALF_RATE_CONNECTIONS = 16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = available_cores()
    parser = argparse.ArgumentParser(prog="serving.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="reuse this model dir instead of training")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run")
    parser.add_argument("--workers", type=int, default=cores, help="workers per server (= cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.workers < 1:
        parser.error("--seconds and --workers must be at least 1")
    return args


SIDES = ("ours", "reference")


def measure(
    urls: dict[str, str], bodies: dict[str, Path], args: argparse.Namespace
) -> tuple[dict[str, dict[str, WrkResult]], dict[str, float]]:
    """The three wrk runs, alternating between the servers step by step so that a change in the
    machine's background load hits both alike; returns results and half-rate targets per side."""
    one, many, secs = bodies["one"], bodies["many"], args.seconds
    ends = {side: f"{url}/invocations" for side, url in urls.items()}
    results: dict[str, dict[str, WrkResult]] = {side: {} for side in urls}
    half: dict[str, float] = {}
    for side in urls:
        print(f"[{side}] warm-up (2 s)", flush=True)
        run_wrk(ends[side], one, connections=ONE_ROW_CONNECTIONS, seconds=2)
    for side in urls:
        print(f"[{side}] 1-row max rate ({secs:g} s)", flush=True)
        res = run_wrk(ends[side], one, connections=ONE_ROW_CONNECTIONS, seconds=secs)
        results[side]["one_row_max"], half[side] = res, res.rps / 2
    for side in urls:
        print(f"[{side}] 1-row paced at {half[side]:.0f} req/s ({secs:g} s)", flush=True)
        results[side]["one_row_half"] = run_wrk(
            ends[side], one, connections=HALF_RATE_CONNECTIONS, seconds=secs, rate=half[side]
        )
    for side in urls:
        print(f"[{side}] {bench_report.ROWS}-row requests ({secs:g} s)", flush=True)
        # One connection: each request's latency is its service time, not time queued behind
        # another request on the same 2 cores, so p50 / 1,000 is the per-row cost.
        results[side]["rows_1000"] = run_wrk(ends[side], many, connections=1, seconds=secs)
    return results, half


def check_server(name: str, url: str, bodies: dict[str, Path], workers: int) -> list[float]:
    """Send real requests first (lazy imports stay out of wrk); return the 1,000-row answer."""
    single: list[float] = []
    for _ in range(2 * workers):
        single = bench_model.post_csv(url, bodies["one"].read_bytes())
    batch = bench_model.post_csv(url, bodies["many"].read_bytes())
    if len(single) != 1 or len(batch) != bench_report.ROWS:
        raise BenchError(
            f"{name} server answered {len(single)} and {len(batch)} predictions for 1 and "
            f"{bench_report.ROWS} rows; fix the server before benchmarking it"
        )
    return batch


def bench_servers_together(
    model_dir: Path, bodies: dict[str, Path], args: argparse.Namespace
) -> tuple[dict[str, dict[str, WrkResult]], dict[str, float], dict[str, list[float]]]:
    """Start both servers (idle ones cost nothing), check and measure them, always stop them."""
    makers = {"ours": bench_servers.ours_command, "reference": bench_servers.reference_command}
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        for side in SIDES:
            port = bench_servers.free_port()
            cmd, env = makers[side](port, args.workers, model_dir)
            urls[side] = stack.enter_context(bench_servers.serve(side, cmd, env, port))
        answers = {side: check_server(side, urls[side], bodies, args.workers) for side in SIDES}
        results, half = measure(urls, bodies, args)
    return results, half, answers


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Path], np.ndarray]:
    """Model dir (trained once unless given), request body files, the encoded 1,000-row matrix."""
    if args.model_dir:
        model_dir = args.model_dir
    else:
        print("training the model with `python -m abalone_model train` ...", flush=True)
        model_dir = bench_model.train(work)
    schema = load(model_dir).schema
    header, rows = bench_model.read_data()
    n_raw = len(schema.raw_names)
    if header[:n_raw] != list(schema.raw_names):
        raise BenchError(f"the data file's columns {header} do not start with {schema.raw_names}")
    if len(rows) < bench_report.ROWS:
        raise BenchError(f"the data file has {len(rows)} rows; the benchmark needs 1,000")
    rows = rows[: bench_report.ROWS]
    bodies = {"one": work / "one_row.csv", "many": work / "rows_1000.csv"}
    bodies["one"].write_bytes(bench_model.csv_body(rows[:1], n_raw).rstrip(b"\n"))
    bodies["many"].write_bytes(bench_model.csv_body(rows, n_raw))
    return model_dir, bodies, bench_model.encode(schema, header, rows)


def max_diff(got: list[float], expected: np.ndarray) -> float:
    """Largest |server prediction - in-process prediction| (the servers must agree)."""
    return float(np.max(np.abs(np.asarray(got) - expected)))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole benchmark; prints the table and ratios and returns the JSON document."""
    started = time.monotonic()
    model_dir, bodies, matrix = prepare(args, work)
    raw_s = bench_model.raw_predict_seconds(model_dir, matrix)
    expected = load(model_dir).predict(matrix)
    results, half, answers = bench_servers_together(model_dir, bodies, args)
    ours, ref = results["ours"], results["reference"]
    diffs = {side: max_diff(answers[side], expected) for side in SIDES}
    raw_per_row = raw_s / bench_report.ROWS
    summary = bench_report.ratios(ours, ref, raw_per_row)
    print()
    print(bench_report.table(ours, ref, half))
    print()
    print(bench_report.ratio_lines(summary, raw_per_row * 1e6))
    print(
        f"max |server - in-process prediction|, 1,000 rows: ours {diffs['ours']:.2g}, "
        f"reference {diffs['reference']:.2g}"
    )
    print("note: one run on this machine; noisy whenever other work shares the cores")
    servers = {
        side: {key: res.as_dict() for key, res in results[side].items()}
        | {"half_rate_target": half[side]}
        for side in SIDES
    }
    return {
        "machine": {
            "cores": available_cores(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "workers_per_server": args.workers,
            "seconds_per_run": args.seconds,
            "one_row_connections": ONE_ROW_CONNECTIONS,
            "half_rate_connections": HALF_RATE_CONNECTIONS,
            "rows_1000_connections": 1,
            "wrk_threads": 1,
        },
        "raw_predict": {
            "rows": bench_report.ROWS,
            "best_seconds": raw_s,
            "per_row_us": raw_per_row * 1e6,
        },
        "servers": servers,
        "prediction_max_abs_diff_vs_in_process": diffs,
        "ratios": summary,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers' process groups are still killed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        print("error: wrk is not installed: run `apt-get install wrk` and retry", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
            result = run(args, Path(tmp))
    except (BenchError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; servers stopped", file=sys.stderr)
        return 130
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results: {os.path.relpath(args.out)}")
    missed = [k for k, v in result["ratios"].items() if v["met"] is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
