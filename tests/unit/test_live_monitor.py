"""`mlops monitor`'s window and the one drift issue (mlops.steps.monitor, mlops.github_issue)."""

from __future__ import annotations

import pytest

from mlops import github_issue
from mlops.cli import main
from mlops.errors import ConfigError
from mlops.local.github_stub import LocalGitHub
from mlops.steps import monitor


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("24h", "", {"Since": "", "Until": "", "WindowHours": "24"}),
        ("90m", "", {"Since": "", "Until": "", "WindowHours": "1.5"}),
        (
            "2d",
            "2026-12-01T06:00:00Z",
            {"Since": "", "Until": "2026-12-01T06:00:00Z", "WindowHours": "48"},
        ),
        (
            "2026-12-01T06:00:00+02:00",
            "",
            {"Since": "2026-12-01T04:00:00Z", "Until": "", "WindowHours": "24"},
        ),
        (
            "2026-11-30",
            "2026-12-01",
            {"Since": "2026-11-30T00:00:00Z", "Until": "2026-12-01T00:00:00Z", "WindowHours": "24"},
        ),
    ],
)
def test_the_window_becomes_the_executions_parameters(since, until, expected):
    assert monitor.window(since, until) == expected


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", "", "--since 'yesterday': pass ISO 8601"),
        ("24h", "noon", "--until 'noon': pass ISO 8601"),
        ("0h", "", "the window must be longer than 0"),
        ("2026-12-02", "2026-12-01", "the window is empty"),
        ("24 h", "", "--since '24 h'"),
    ],
)
def test_a_bad_window_is_refused_before_any_call(since, until, message):
    with pytest.raises(ConfigError, match=message):
        monitor.window(since, until)


def test_the_cli_refuses_a_bad_window_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code = main(["--config", str(monitor_toml()), "monitor", "--since", "last week"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: --since 'last week'") and err.count("\n") == 1


def monitor_toml():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "pipeline.toml"


def test_drift_opens_one_issue_then_updates_it_with_a_comment():
    gh = LocalGitHub()
    repo = gh.repository
    assert github_issue.report(gh, repo, "Drift", "first report", "again") == ("opened", 1)
    assert gh.issues[1]["labels"] == ["drift"] and gh.issues[1]["body"] == "first report"
    assert github_issue.report(gh, repo, "Drift", "second report", "found again") == ("updated", 1)
    assert gh.issues[1]["body"] == "second report" and gh.issues[1]["comments"] == ["found again"]


def test_a_closed_drift_issue_is_not_reopened_a_new_one_is_opened():
    gh = LocalGitHub()
    github_issue.report(gh, gh.repository, "Drift", "old", "c")
    gh.issues[1]["state"] = "closed"
    assert github_issue.report(gh, gh.repository, "Drift", "new", "c") == ("opened", 2)


def test_other_labels_do_not_count_and_the_oldest_open_one_is_updated():
    gh = LocalGitHub()
    gh.issues[1] = {"title": "bug", "body": "", "labels": ["bug"], "state": "open", "comments": []}
    for n in (2, 3):
        gh.issues[n] = {
            "title": "d",
            "body": "",
            "labels": ["drift"],
            "state": "open",
            "comments": [],
        }
    assert github_issue.report(gh, gh.repository, "Drift", "b", "c") == ("updated", 2)


def test_a_body_over_githubs_limit_is_cut_with_a_pointer_to_the_report():
    gh = LocalGitHub()
    github_issue.report(gh, gh.repository, "Drift", "x" * 70000, "c")
    body = gh.issues[1]["body"]
    assert len(body) <= github_issue.BODY_LIMIT and body.endswith("the full report is in S3)\n")


def test_the_list_call_filters_pull_requests_and_asks_for_open_drift_issues():
    seen = []

    def gh(args, body=None, placeholder=""):
        seen.append(args)
        return ""

    assert github_issue.open_issue(gh, "o/r") is None
    (args,) = seen
    assert args[:4] == ["api", "--method", "GET", "repos/o/r/issues"]
    assert "labels=drift" in args and "state=open" in args
    assert "select(.pull_request == null)" in args[args.index("--jq") + 1]
