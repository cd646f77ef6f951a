"""The PR metrics table: values, deltas against main, and graceful handling of a missing main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import metrics_report as mr


def evaluation(rmse: float = 2.0, r2: float = 0.5, **extra: object) -> dict:
    data = {
        "regression_metrics": {
            "mse": {"value": rmse**2, "standard_deviation": 0.3},
            "r2": {"value": r2, "standard_deviation": 0.02},
            "rmse": {"value": rmse, "standard_deviation": 0.05},
            "mae": {"value": rmse * 0.7, "standard_deviation": 0.04},
        },
        "baseline": {"mean_predictor_rmse": 3.25},
        "n_rows": 627,
    }
    data.update(extra)
    return data


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def table_row(markdown: str, metric: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {metric} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_rows_follow_display_order_and_keep_unknown_metrics():
    data = evaluation()
    data["regression_metrics"]["explained_variance"] = {"value": 0.51}
    names = [row.name for row in mr.metric_rows(data)]
    assert names == ["rmse", "mae", "mse", "r2", "explained_variance"]


def test_rows_skip_entries_without_a_finite_value():
    data = evaluation()
    data["regression_metrics"]["mape"] = {"value": "n/a"}
    data["regression_metrics"]["bad"] = {"value": float("nan")}
    data["regression_metrics"]["flag"] = {"value": True}
    assert [row.name for row in mr.metric_rows(data)] == ["rmse", "mae", "mse", "r2"]


def test_delta_is_this_run_minus_main():
    rows = {r.name: r for r in mr.metric_rows(evaluation(rmse=2.0), evaluation(rmse=2.5))}
    assert rows["rmse"].delta == pytest.approx(-0.5)
    assert rows["rmse"].main == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("name", "value", "main", "std", "expected"),
    [
        ("rmse", 2.0, 2.5, 0.05, "better"),
        ("rmse", 2.5, 2.0, 0.05, "worse"),
        ("r2", 0.6, 0.5, 0.01, "better"),
        ("r2", 0.4, 0.5, 0.01, "worse"),
        ("rmse", 2.01, 2.0, 0.05, "worse, within ±1 std"),
        ("mae", 1.0, 1.0, 0.05, "same"),
        ("mae", 1.0, None, 0.05, ""),
    ],
)
def test_verdict_knows_which_direction_is_better(name, value, main, std, expected):
    assert mr.verdict(mr.Row(name, value, std, main)) == expected


def test_render_with_main_shows_value_std_main_and_delta():
    text = mr.render(evaluation(rmse=2.1), evaluation(rmse=2.2), note="n")
    assert text.startswith(mr.TITLE)
    assert table_row(text, "rmse") == ["rmse", "2.1000", "0.0500", "2.2000", "-0.1000 (better)"]
    assert "Test rows: 627." in text
    assert "Mean-predictor RMSE: 3.2500." in text


def test_render_without_main_has_dashes_and_the_note():
    _, note = mr.load_main(None)
    text = mr.render(evaluation(rmse=2.1), None, note)
    assert table_row(text, "rmse") == ["rmse", "2.1000", "0.0500", "n/a", "n/a"]
    assert "No evaluation from main" in text


def test_render_links_the_artifact():
    text = mr.render(evaluation(), artifact_url="https://example.invalid/a/1")
    assert "[run artifact](https://example.invalid/a/1)" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("{not json", "not readable JSON"), ('{"n_rows": 3}', "regression")],
)
def test_load_evaluation_errors_name_the_problem(tmp_path, content, message):
    path = tmp_path / "evaluation.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(mr.ConfigError, match=message):
        mr.load_evaluation(path)


def test_unreadable_main_is_ignored_with_a_note(tmp_path):
    path = tmp_path / "main.json"
    path.write_text("[]", encoding="utf-8")
    data, note = mr.load_main(path)
    assert data is None
    assert "ignored" in note


def test_cli_writes_output_summary_step_output_and_copy(tmp_path, monkeypatch):
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    ours = write(tmp_path / "ours.json", evaluation(rmse=2.0))
    main = write(tmp_path / "main.json", evaluation(rmse=2.2))
    out, copy = tmp_path / "metrics.md", tmp_path / "keep" / "evaluation.json"
    argv = ["--evaluation", str(ours), "--baseline", str(main), "--output", str(out)]
    assert mr.main([*argv, "--copy-to", str(copy)]) == 0
    text = out.read_text(encoding="utf-8")
    assert table_row(text, "rmse")[3:] == ["2.2000", "-0.2000 (better)"]
    assert text.strip() in summary.read_text(encoding="utf-8")
    assert outputs.read_text(encoding="utf-8").startswith("report<<")
    assert json.loads(copy.read_text(encoding="utf-8")) == evaluation(rmse=2.0)


def test_cli_missing_baseline_file_degrades(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    ours = write(tmp_path / "ours.json", evaluation())
    assert mr.main(["--evaluation", str(ours), "--baseline", str(tmp_path / "none.json")]) == 0
    assert "none cached for main" in capsys.readouterr().out


def test_cli_bad_evaluation_is_one_line_and_nonzero(tmp_path, capsys):
    code = mr.main(["--evaluation", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert code == mr.ConfigError.exit_code
    assert err.count("\n") == 1
    assert err.startswith("error: evaluation file")
