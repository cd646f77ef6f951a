"""Evaluation report artefacts: the predicted-vs-actual/residual plot and a short markdown page.

Uses matplotlib's object API (``Figure`` with the Agg canvas), never pyplot: no GUI backend and no
global state, so it runs headless in a Processing container and in parallel tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot(
    actual: np.ndarray, predicted: np.ndarray, path: str | Path, target: str = "rings"
) -> Path:
    """Write one PNG with two panels: predicted vs actual, and residuals vs predicted."""
    out = Path(path)
    residual = predicted - actual
    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    left.scatter(actual, predicted, s=8, alpha=0.4)
    left.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    left.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual")
    left.legend(loc="upper left")
    right.scatter(predicted, residual, s=8, alpha=0.4)
    right.axhline(0.0, color="black", linewidth=1)
    right.set(
        xlabel=f"predicted {target}", ylabel="residual (predicted - actual)", title="Residuals"
    )
    fig.savefig(out, format="png", metadata={"Software": None})
    return out


def markdown(
    evaluation: dict[str, Any],
    plot_name: str,
    importance: dict[str, float] | None = None,
    importance_plot: str | None = None,
) -> str:
    """A short human-readable summary of ``evaluation.json`` (and the global importance)."""
    metrics = evaluation["regression_metrics"]
    baseline = evaluation["baseline"]
    model_metrics = evaluation.get("model", {}).get("metrics", {})

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        "# Model evaluation",
        "",
        f"Test rows: {evaluation['n_rows']}. Standard deviations from "
        f"{evaluation['bootstrap']['resamples']} bootstrap resamples "
        f"(seed {evaluation['bootstrap']['seed']}).",
        "",
        "| metric | value | std. dev. |",
        "|---|---:|---:|",
        *(
            f"| {name} | {cell(m['value'])} | {cell(m['standard_deviation'])} |"
            for name, m in metrics.items()
        ),
        f"| baseline rmse (mean predictor) | {cell(baseline['mean_predictor_rmse'])} | |",
        "",
        f"Baseline: always predict {baseline['mean']:.4f} ({baseline['mean_source']}).",
    ]
    if model_metrics:
        lines += [
            "",
            f"Training: best iteration {model_metrics.get('best_iteration')}, "
            f"train rmse {cell(model_metrics.get('train_rmse'))}, "
            f"validation rmse {cell(model_metrics.get('validation_rmse'))}.",
        ]
    lines += ["", f"![Predicted vs actual and residuals]({plot_name})", ""]
    if importance:
        lines += [
            "## Global feature importance",
            "",
            "Mean |TreeSHAP contribution| per raw feature on the test set, in predicted units "
            "(one-hot columns summed back to their feature).",
            "",
            "| feature | mean abs. contribution |",
            "|---|---:|",
            *(f"| {name} | {value:.4f} |" for name, value in importance.items()),
            "",
        ]
        if importance_plot:
            lines += [f"![Global feature importance]({importance_plot})", ""]
    return "\n".join(lines)
