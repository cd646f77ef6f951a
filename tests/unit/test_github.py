"""GitHub Actions outputs and job summary: the documented file formats, no-ops outside Actions."""

from __future__ import annotations

import re

import pytest

from mlops import github


@pytest.fixture
def outside_actions(monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parse_outputs(text: str) -> dict[str, str]:
    """Read $GITHUB_OUTPUT the way the runner does: NAME<<DELIM, lines, DELIM."""
    outputs, lines = {}, iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        name, delimiter = line.split("<<", 1)
        body = []
        for value_line in lines:
            if value_line == delimiter:
                break
            body.append(value_line)
        else:
            raise AssertionError(f"no closing delimiter for {name}")
        outputs[name] = "\n".join(body)
    return outputs


def test_set_output_writes_the_heredoc_format(monkeypatch, tmp_path):
    target = tmp_path / "output"
    target.write_text("earlier=1\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_OUTPUT", str(target))
    github.set_output("model-package-arn", "arn:aws:sagemaker:us-east-1:1:model-package/g/3")
    github.set_output("report", "| a |\n|---|\nEOF\n| 1 |")
    text = target.read_text(encoding="utf-8")
    assert text.startswith("earlier=1\n"), "must append, never truncate"
    blocks = re.findall(r"^([\w-]+)<<(\S+)\n", text, flags=re.MULTILINE)
    assert [name for name, _ in blocks] == ["model-package-arn", "report"]
    delimiters = [d for _, d in blocks]
    assert len(set(delimiters)) == 2, "each output gets its own delimiter"
    assert all(d != "EOF" for d in delimiters)
    parsed = parse_outputs(text.removeprefix("earlier=1\n"))
    assert parsed == {
        "model-package-arn": "arn:aws:sagemaker:us-east-1:1:model-package/g/3",
        "report": "| a |\n|---|\nEOF\n| 1 |",
    }


def test_set_output_is_a_noop_outside_actions(outside_actions):
    github.set_output("endpoint-name", "mlops-dev")
    assert list(outside_actions.iterdir()) == []


def test_summary_appends_markdown_with_a_blank_line(monkeypatch, tmp_path):
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    github.summary("### Gate: passed\n\n\n")
    github.summary("### Deployed")
    assert target.read_text(encoding="utf-8") == "### Gate: passed\n\n### Deployed\n\n"


def test_summary_is_a_noop_outside_actions(outside_actions):
    github.summary("### nothing")
    assert list(outside_actions.iterdir()) == []


def test_table_is_github_markdown():
    assert github.table(["metric", "value"], [["rmse", 2.1], ["r2", 0.5]]).split("\n") == [
        "| metric | value |",
        "|---|---|",
        "| rmse | 2.1 |",
        "| r2 | 0.5 |",
    ]
