"""The human side of a drift result: ``report.md`` and the ``drift.png`` it embeds.

Both read only drift.json's content, so a report can be rebuilt from a stored result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from abalone_model.drift import SEVERITY

PLOT_FILE = "drift.png"
PLOT_FEATURES = 4


def markdown(result: dict[str, Any]) -> str:
    """Verdict, thresholds and one row per feature, the most severe first."""
    th, feats = result["thresholds"], result["features"]

    def key(item):
        return -SEVERITY[item[1]["status"]], -(item[1]["psi"] or 0.0)

    def num(v):
        return "n/a" if v is None else f"{v:.4f}"

    drifting = sum(f["status"] == "drift" for f in feats.values())
    lines = [
        "# Drift report",
        "",
        f"**Verdict: {result['verdict']}**: {drifting} of {len(feats)} features drift; "
        f"max PSI {num(result['max_score'])} ({result['max_feature']}). "
        f"Batch rows: {result['rows']}; baseline: {result['baseline']['rows']} rows.",
        "",
        f"PSI >= {th['psi_warn']} warns, >= {th['psi_drift']} drifts; a missing rate above "
        f"{th['missing_max']} or an out-of-range rate above {th['out_of_range_max']} drifts.",
        "",
        "| feature | status | PSI | missing | out of range |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {n} | {f['status']} | {num(f['psi'])} | {f['missing_rate']:.2%} "
            f"| {f['out_of_range_rate']:.2%} |"
            for n, f in sorted(feats.items(), key=key)
        ),
        "",
    ]
    if c := result.get("capture"):
        lines += [
            f"Live traffic: {c['rows']} rows of {c['used']} captured requests between "
            f"{c['since']} and {c['until']} ({c['in_window']} in the window, {c['unusable']} "
            f"unusable, {c['unreadable']} unreadable lines or files).",
            "",
        ]
    p = result["prediction"]
    if p["status"] == "skipped":
        lines.append(f"Predictions: skipped ({p['reason']}).")
    else:
        lines.append(
            f"Predictions: {p['status']}, PSI {p['psi']:.4f} against {p['reference_rows']} "
            f"reference predictions, mean difference {p['mean_difference']:+.4f}."
        )
    image = ["", f"![Most shifted features]({PLOT_FILE})"] if feats else []  # no_data: no plot
    return "\n".join([*lines, *image, ""])


def plot(result: dict[str, Any], path: Path) -> None:
    """Baseline vs batch proportions per bin for the most shifted features."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    feats = sorted(result["features"].items(), key=lambda kv: -(kv[1]["psi"] or 0.0))
    feats = feats[:PLOT_FEATURES]
    fig = Figure(figsize=(4 * len(feats), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, f) in zip(np.atleast_1d(fig.subplots(1, len(feats))), feats, strict=True):
        bins, x = f["bins"], np.arange(len(f["bins"]["labels"]))
        ax.bar(x - 0.2, bins["baseline"], width=0.4, label="baseline")
        ax.bar(x + 0.2, bins["batch"], width=0.4, label="batch")
        ax.set_xticks(x, bins["labels"], rotation=45, ha="right", fontsize=7)
        psi_text = "n/a" if f["psi"] is None else f"{f['psi']:.3f}"
        ax.set(title=f"{name}: PSI {psi_text} ({f['status']})", ylabel="share of rows")
        ax.legend(fontsize=7)
    fig.savefig(path, format="png", metadata={"Software": None})
