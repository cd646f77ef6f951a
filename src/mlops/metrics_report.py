"""The metrics table a pull request shows: this run's evaluation against main's last one.

CI renders it into the job summary and one sticky PR comment. main's evaluation may be missing
(first run, expired cache, fork) or unreadable: the table then says so instead of failing the PR,
because a missing reference is not a problem with the change under review.

    python -m mlops.metrics_report --evaluation runs/latest/evaluation/evaluation.json \
        [--baseline main/evaluation.json] [--output metrics.md] [--artifact-url URL] [--copy-to P]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops import github
from mlops.errors import ConfigError, PipelineError

TITLE = "### Model evaluation"
# Metrics shown first, in this order; any other regression metric follows alphabetically.
ORDER = ("rmse", "mae", "mse", "r2")
# Error metrics go down when the model improves; these go up.
HIGHER_IS_BETTER = frozenset({"r2", "explained_variance"})


@dataclass(frozen=True)
class Row:
    """One metric of this run, with main's value when there is one."""

    name: str
    value: float
    std: float | None
    main: float | None

    @property
    def delta(self) -> float | None:
        return None if self.main is None else self.value - self.main


def load_evaluation(path: str | Path) -> dict[str, Any]:
    """Read an evaluation.json (SageMaker model-quality format) or raise one clear error."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"evaluation file {file} not found", hint="run `make pipeline` first"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"evaluation file {file} is not readable JSON: {exc}") from None
    metrics = data.get("regression_metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError(
            f"evaluation file {file} has no regression_metrics",
            hint="expected SageMaker's model-quality format written by the evaluate step",
        )
    return data


def load_main(path: str | Path | None) -> tuple[dict[str, Any] | None, str]:
    """main's evaluation and a note for the reader; never fails the report."""
    if path is None:
        return None, "No evaluation from main to compare with yet."
    file = Path(path)
    if not file.is_file():
        return None, "No evaluation from main to compare with yet (none cached for main)."
    try:
        return load_evaluation(file), "Delta = this change minus main's last run."
    except PipelineError as exc:
        return None, f"main's evaluation was ignored: {exc}."


def _number(entry: Any) -> tuple[float | None, float | None]:
    """(value, standard deviation) of one metric entry; None for what is missing or not finite."""
    if not isinstance(entry, dict):
        return None, None

    def finite(key: str) -> float | None:
        raw = entry.get(key)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        return float(raw) if math.isfinite(raw) else None

    return finite("value"), finite("standard_deviation")


def metric_rows(evaluation: dict[str, Any], main: dict[str, Any] | None = None) -> list[Row]:
    """Rows in display order; metrics without a numeric value are left out."""
    ours = evaluation["regression_metrics"]
    theirs = (main or {}).get("regression_metrics", {})
    names = [n for n in ORDER if n in ours] + sorted(set(ours) - set(ORDER))
    rows = []
    for name in names:
        value, std = _number(ours[name])
        if value is not None:
            rows.append(Row(name, value, std, _number(theirs.get(name))[0]))
    return rows


def verdict(row: Row) -> str:
    """Better/worse in words, and whether the change is within one standard deviation (noise)."""
    delta = row.delta
    if delta is None:
        return ""
    if delta == 0:
        return "same"
    improved = (delta > 0) == (row.name in HIGHER_IS_BETTER)
    word = "better" if improved else "worse"
    if row.std is not None and abs(delta) <= row.std:
        return f"{word}, within ±1 std"
    return word


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def render(
    evaluation: dict[str, Any],
    main: dict[str, Any] | None = None,
    note: str = "",
    artifact_url: str = "",
) -> str:
    """The markdown block: table, mean-predictor reference, where to find the plot."""
    lines = [
        TITLE,
        "",
        "| metric | value | ± std | main | delta |",
        "|---|---:|---:|---:|---|",
    ]
    for row in metric_rows(evaluation, main):
        delta = _cell(row.delta, signed=True)
        if row.delta is not None:
            delta = f"{delta} ({verdict(row)})"
        lines.append(
            f"| {row.name} | {_cell(row.value)} | {_cell(row.std)} | {_cell(row.main)} | {delta} |"
        )
    lines.append("")
    facts = []
    if isinstance(evaluation.get("n_rows"), int):
        facts.append(f"Test rows: {evaluation['n_rows']}.")
    mean_rmse = _number({"value": evaluation.get("baseline", {}).get("mean_predictor_rmse")})[0]
    if mean_rmse is not None:
        facts.append(f"Mean-predictor RMSE: {mean_rmse:.4f}.")
    if note:
        facts.append(note)
    lines.append(" ".join(facts))
    if artifact_url:
        lines += ["", f"Plot, report and run folder: [run artifact]({artifact_url})."]
    return "\n".join(lines).rstrip() + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.metrics_report",
        description="Render the evaluation metrics table, with deltas against main's last run.",
    )
    parser.add_argument("--evaluation", required=True, help="this run's evaluation.json")
    parser.add_argument("--baseline", help="main's last evaluation.json (may be missing)")
    parser.add_argument("--output", help="write the markdown here (default: stdout)")
    parser.add_argument("--artifact-url", default="", help="link to the uploaded run folder")
    parser.add_argument("--copy-to", help="also copy the evaluation here (main's next baseline)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Render, then write to --output/stdout, the job summary and the step output `report`."""
    args = _parser().parse_args(argv)
    try:
        evaluation = load_evaluation(args.evaluation)
        main_eval, note = load_main(args.baseline)
        markdown = render(evaluation, main_eval, note, args.artifact_url)
        if args.output:
            Path(args.output).write_text(markdown, encoding="utf-8")
        else:
            sys.stdout.write(markdown)
        if args.copy_to:
            Path(args.copy_to).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.evaluation, args.copy_to)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return ConfigError.exit_code
    github.summary(markdown)
    github.set_output("report", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
