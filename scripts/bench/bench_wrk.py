"""Run wrk against one URL and parse the result line that post.lua prints.

wrk has no rate control, so post.lua paces requests itself when ``rate`` is given (an absolute
per-thread schedule through wrk's ``delay()``); the achieved rate is what we report, not the target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("post.lua")
RESULT_PREFIX = "BENCH_RESULT "


class BenchError(Exception):
    """A benchmark step that failed; the message says what and what to do."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: counts, duration and latency percentiles (microseconds)."""

    requests: int
    duration_us: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_us / 1e6, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_us / 1000, 3),
            "p90_ms": round(self.p90_us / 1000, 3),
            "p99_ms": round(self.p99_us / 1000, 3),
            "max_ms": round(self.max_us / 1000, 3),
            "mean_ms": round(self.mean_us / 1000, 3),
            "errors": dict(self.errors),
        }


def parse_output(stdout: str) -> WrkResult:
    """The WrkResult from wrk's output (the BENCH_RESULT line post.lua's done() writes)."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                raw = json.loads(line[len(RESULT_PREFIX) :])
                return WrkResult(
                    requests=int(raw["requests"]),
                    duration_us=int(raw["duration_us"]),
                    p50_us=int(raw["p50_us"]),
                    p90_us=int(raw["p90_us"]),
                    p99_us=int(raw["p99_us"]),
                    max_us=int(raw["max_us"]),
                    mean_us=float(raw["mean_us"]),
                    errors={k: int(v) for k, v in raw.get("errors", {}).items()},
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise BenchError(f"unreadable wrk result line {line!r}: {exc}") from exc
    tail = " | ".join(stdout.strip().splitlines()[-3:]) or "no output"
    raise BenchError(f"wrk printed no {RESULT_PREFIX.strip()} line ({tail}); is post.lua intact?")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    url: str,
    body_file: Path,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One bounded wrk run (one thread): closed loop, or paced to ``rate`` requests/s."""
    exe = wrk_path()
    if exe is None:
        raise BenchError("wrk is not installed: run `apt-get install wrk` and retry")
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
    env.pop("BENCH_RATE", None)
    if rate is not None:
        env["BENCH_RATE"] = f"{rate:.3f}"
    cmd = [
        exe,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + 30:.0f} s against {url}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BenchError(f"wrk failed against {url}: {detail[-1] if detail else proc.returncode}")
    return parse_output(proc.stdout)
