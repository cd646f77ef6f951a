"""Ratios against the issue's targets, the printed table, and the JSON written to runs/bench/."""

from __future__ import annotations

from bench_wrk import WrkResult

ROWS = 1000
TARGET_RPS_RATIO = 3.0  # ours / reference requests/s, single-row CSV
TARGET_P99_MS = 5.0  # ours p99 at half of our max rate
TARGET_PER_ROW_RATIO = 2.0  # ours per-row cost at 1,000 rows / raw predict per row


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def per_row_us(result: WrkResult, rows: int = ROWS) -> float:
    """Server cost per row: median latency of a ``rows``-row request divided by ``rows``."""
    return result.p50_us / rows


def ratios(
    ours: dict[str, WrkResult], ref: dict[str, WrkResult], raw_per_row_s: float
) -> dict[str, dict[str, float | bool | None]]:
    """The four headline comparisons, each with its target and whether it was met."""
    rps_1 = _ratio(ours["one_row_max"].rps, ref["one_row_max"].rps)
    p99 = ours["one_row_half"].p99_us / 1000
    cost = _ratio(per_row_us(ours["rows_1000"]), raw_per_row_s * 1e6)
    rps_1000 = _ratio(ours["rows_1000"].rps, ref["rows_1000"].rps)
    return {
        "one_row_rps_ours_over_ref": {
            "value": rps_1,
            "target_min": TARGET_RPS_RATIO,
            "met": rps_1 is not None and rps_1 >= TARGET_RPS_RATIO,
        },
        "ours_p99_ms_at_half_max": {
            "value": p99,
            "target_max": TARGET_P99_MS,
            "met": p99 <= TARGET_P99_MS,
        },
        "per_row_cost_over_raw_predict": {
            "value": cost,
            "target_max": TARGET_PER_ROW_RATIO,
            "met": cost is not None and cost <= TARGET_PER_ROW_RATIO,
        },
        "rows_1000_rps_ours_over_ref": {"value": rps_1000, "target_min": None, "met": None},
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(ours: dict[str, WrkResult], ref: dict[str, WrkResult], targets: dict[str, float]) -> str:
    """Side-by-side numbers for both servers (targets = the half-rate goals asked of wrk)."""
    rows = [
        ("1-row max req/s", "one_row_max", lambda r: _fmt(r.rps, ".0f")),
        ("1-row max p50 ms", "one_row_max", lambda r: _fmt(r.p50_us / 1000)),
        ("1-row max p99 ms", "one_row_max", lambda r: _fmt(r.p99_us / 1000)),
        ("half-rate achieved req/s", "one_row_half", lambda r: _fmt(r.rps, ".0f")),
        ("half-rate p50 ms", "one_row_half", lambda r: _fmt(r.p50_us / 1000)),
        ("half-rate p99 ms", "one_row_half", lambda r: _fmt(r.p99_us / 1000)),
        ("1000-row req/s", "rows_1000", lambda r: _fmt(r.rps, ".1f")),
        ("1000-row p50 ms", "rows_1000", lambda r: _fmt(r.p50_us / 1000)),
        ("1000-row p99 ms", "rows_1000", lambda r: _fmt(r.p99_us / 1000)),
        ("1000-row per-row us", "rows_1000", lambda r: _fmt(per_row_us(r))),
        ("errors (all runs)", None, None),
    ]
    lines = [f"{'':28}{'ours':>12}{'reference':>12}"]
    lines.append(
        f"{'half-rate target req/s':28}{targets['ours']:>12.0f}{targets['reference']:>12.0f}"
    )
    for label, key, get in rows:
        if key is None:
            errs = [sum(r.error_count for r in side.values()) for side in (ours, ref)]
            lines.append(f"{label:28}{errs[0]:>12}{errs[1]:>12}")
            continue
        assert get is not None
        lines.append(f"{label:28}{get(ours[key]):>12}{get(ref[key]):>12}")
    return "\n".join(lines)


def ratio_lines(summary: dict[str, dict[str, float | bool | None]], raw_per_row_us: float) -> str:
    """One line per headline comparison, with the target and MET/MISSED."""

    def mark(key: str) -> str:
        met = summary[key]["met"]
        return "" if met is None else ("  MET" if met else "  MISSED")

    def val(key: str) -> float | None:
        v = summary[key]["value"]
        return None if v is None or isinstance(v, bool) else float(v)

    return "\n".join(
        [
            f"ours/ref req/s, 1-row CSV:       {_fmt(val('one_row_rps_ours_over_ref'))}x"
            f"  (target >= {TARGET_RPS_RATIO:g}x){mark('one_row_rps_ours_over_ref')}",
            f"ours p99 at half our max rate:   {_fmt(val('ours_p99_ms_at_half_max'))} ms"
            f"  (target <= {TARGET_P99_MS:g} ms){mark('ours_p99_ms_at_half_max')}",
            f"ours per-row cost / raw predict: {_fmt(val('per_row_cost_over_raw_predict'))}x"
            f"  (raw predict {raw_per_row_us:.3f} us/row; target <= {TARGET_PER_ROW_RATIO:g}x)"
            f"{mark('per_row_cost_over_raw_predict')}",
            f"ours/ref req/s, 1,000-row CSV:   {_fmt(val('rows_1000_rps_ours_over_ref'))}x",
        ]
    )
