"""Drift metrics of a raw batch against the ETL baseline: pure numpy, no I/O.

- Numeric features: PSI on the baseline's quantile bins (-inf, p01, p05, ..., p99, +inf), whose
  baseline proportions are the quantile levels (0.01, 0.04, 0.20, 0.25, 0.25, 0.20, 0.04, 0.01).
  A value equal to an edge counts half in each neighbouring bin, and equal quantiles (a point
  mass) merge into one edge at the mean of their levels: measured values are rounded, so ties at
  the edges are common and would otherwise bias the PSI of an unchanged distribution.
- Categories: PSI against the baseline frequencies (same formula and thresholds as numbers).
- PSI = sum((batch - base) * ln(batch / base)); an empty bin counts as ``EPSILON`` (1e-4), the
  usual convention, so one empty bin adds at most about p * 9.2 instead of infinity.
- Missing values (empty, NA, NaN, null, none) and out-of-range values (schema bounds, not finite,
  not a number, unknown category) are counted, never rejected: the PSI uses the finite values.
- Predictions: PSI of the batch's predictions on the reference predictions' quantile bins and
  the mean difference.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from abalone_model.schema import Column
from abalone_model.usage import UsageError

LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # the ETL's QUANTILES, p01..p99
EPSILON = 1e-4
MISSING = ("", "na", "nan", "null", "none")
SEVERITY = {"ok": 0, "warn": 1, "drift": 2}
BOUNDS = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}


@dataclass(frozen=True)
class Thresholds:
    """When a feature warns or drifts; passed by the pipeline config."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    missing_max: float = 0.05
    out_of_range_max: float = 0.01

    def check(self) -> None:
        if not 0 < self.psi_warn <= self.psi_drift:
            raise UsageError("thresholds: need 0 < --psi-warn <= --psi-drift")
        if not (0 <= self.missing_max <= 1 and 0 <= self.out_of_range_max <= 1):
            raise UsageError("thresholds: --missing-max and --out-of-range-max are rates in [0, 1]")

    def judge(self, psi: float | None, missing: float = 0.0, bad: float = 0.0) -> dict[str, Any]:
        """Status (ok | warn | drift) and the reasons for it."""
        drift, warn = [], []
        if psi is not None and psi >= self.psi_warn:
            limit = self.psi_drift if psi >= self.psi_drift else self.psi_warn
            (drift if psi >= self.psi_drift else warn).append(f"psi {psi:.3f} >= {limit}")
        if missing > self.missing_max:
            drift.append(f"missing_rate {missing:.4f} > {self.missing_max}")
        if bad > self.out_of_range_max:
            drift.append(f"out_of_range_rate {bad:.4f} > {self.out_of_range_max}")
        status = "drift" if drift else "warn" if warn else "ok"
        return {"status": status, "reasons": drift + warn}


# --- PSI ----------------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two bin-proportion vectors (empty bins -> EPSILON)."""
    e = np.clip(np.asarray(expected, np.float64), EPSILON, None)
    a = np.clip(np.asarray(actual, np.float64), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: list[float], levels=LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """(unique edges, cumulative level at each): equal quantiles merge at their mean level."""
    edges, inverse = np.unique(np.asarray(values, np.float64), return_inverse=True)
    mids = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return edges, mids


def proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` per bin between ``edges`` (a value on an edge counts half each side)."""
    if not len(values):
        return np.zeros(len(edges) + 1)
    s = np.sort(values)
    below = (np.searchsorted(s, edges, "left") + np.searchsorted(s, edges, "right")) / 2
    return np.diff(np.concatenate([[0.0], below, [len(s)]])) / len(s)


# --- per-feature metrics ------------------------------------------------------------------------


def _in_range(col: Column, values: np.ndarray) -> np.ndarray:
    """Element-wise twin of ``Column.problem`` for finite values: True where acceptable."""
    ok = np.floor(values) == values if col.type == "int" else np.ones(len(values), dtype=bool)
    for key, test in BOUNDS.items():
        if getattr(col, key) is not None:
            ok &= test(values, getattr(col, key))
    return ok


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def numeric_cells(col: Column, cells: list[str]) -> tuple[np.ndarray, int, int]:
    """(finite values, missing count, out-of-range count) of one numeric column's cells."""
    n = len(cells)
    try:  # fast route: every cell parses as a float ("nan" then means missing)
        values = np.fromiter(map(float, cells), np.float64, n)
        missing = np.isnan(values)
    except ValueError:  # empty or non-numeric cells: one by one
        text = [c.strip().lower() for c in cells]
        missing = np.fromiter((t in MISSING for t in text), bool, n)
        values = np.fromiter(map(_float, text), np.float64, n)
    finite = np.isfinite(values)
    bad = ~missing & ~(finite & _in_range(col, values))
    return values[finite], int(missing.sum()), int(bad.sum())


def category_counts(col: Column, cells: list[str]) -> tuple[np.ndarray, int, int]:
    """(count per schema category, missing count, out-of-range (unknown) count)."""
    seen = Counter(c.strip() for c in cells)
    counts = np.array([seen.pop(c, 0) for c in col.categories], np.float64)
    missing = sum(v for k, v in seen.items() if k.lower() in MISSING)
    return counts, missing, len(cells) - missing - int(counts.sum())


def feature_drift(
    col: Column, cells: list[str], reference: list[float], th: Thresholds
) -> dict[str, Any]:
    """PSI, missing and out-of-range rates, status and per-bin proportions of one feature."""
    n = len(cells)
    if col.is_category:
        counts, missing, bad = category_counts(col, cells)
        base, labels = np.asarray(reference), list(col.categories)
        batch = counts / max(counts.sum(), 1)
        score = psi(base, batch) if counts.sum() else None
    else:
        values, missing, bad = numeric_cells(col, cells)
        edges, levels = quantile_edges(reference)
        base = np.diff(np.concatenate([[0.0], levels, [1.0]]))
        batch, labels = proportions(values, edges), _bin_labels(edges)
        score = psi(base, batch) if len(values) else None
    out = {"type": col.type, "psi": score, "missing_rate": missing / n}
    out |= {"out_of_range_rate": bad / n, "missing": missing, "out_of_range": bad}
    out |= th.judge(score, missing / n, bad / n)
    out["bins"] = {"labels": labels, "baseline": base.tolist(), "batch": batch.tolist()}
    return out


def _bin_labels(edges: np.ndarray) -> list[str]:
    e = [f"{v:.4g}" for v in edges]
    return [f"<={e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f">{e[-1]}"]


def prediction_shift(batch: np.ndarray, reference: np.ndarray, th: Thresholds) -> dict[str, Any]:
    """PSI of the batch's predictions on the reference predictions' quantile bins."""
    edges, _ = quantile_edges(np.quantile(reference, LEVELS, method="inverted_cdf"))
    base, got = proportions(reference, edges), proportions(batch, edges)
    score = psi(base, got)
    out = {"psi": score, "mean_difference": float(batch.mean() - reference.mean())}
    out |= {"batch_mean": float(batch.mean()), "reference_mean": float(reference.mean())}
    out |= {"rows": len(batch), "reference_rows": len(reference), **th.judge(score)}
    out["bins"] = {"labels": _bin_labels(edges), "baseline": base.tolist(), "batch": got.tolist()}
    return out


def verdict(features: dict[str, dict[str, Any]], prediction: dict[str, Any]) -> dict[str, Any]:
    """The batch's verdict (drift if any feature or the predictions drift) and its largest PSI."""
    scored = [(f["psi"], name) for name, f in features.items() if f["psi"] is not None]
    top = max(scored, default=(None, None))
    statuses = [f["status"] for f in features.values()] + [prediction["status"]]
    return {
        "verdict": "drift" if "drift" in statuses else "no_drift",
        "max_score": top[0],
        "max_feature": top[1],
    }
