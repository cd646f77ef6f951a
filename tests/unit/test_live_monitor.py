"""`mlops monitor`'s window and the one drift issue (mlops.steps.monitor, mlops.github_issue)."""

from __future__ import annotations

import os
from pathlib import Path

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


# --- one run: no capture, an execution's verdict and report, the issue on drift ----------------
@pytest.fixture
def ctx(tmp_path, monkeypatch, moto_env):
    from moto import mock_aws

    from mlops import config
    from mlops.account import Account
    from mlops.aws import new_session
    from mlops.context import Context
    from mlops.manifest import Manifest

    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary"))
    with mock_aws():
        session = new_session(region_name="us-east-1")
        for bucket in ("capture", "artifacts"):
            session.client("s3").create_bucket(Bucket=bucket)
        account = Account("us-east-1", {"CaptureBucket": "capture", "ArtifactBucket": "artifacts"})
        cfg = config.load(monitor_toml())
        yield Context(cfg, session, Manifest(tmp_path / "m.json"), root=ROOT, _account=account)


ROOT = monitor_toml().parents[0]
SPAN = {"Since": "", "Until": "", "WindowHours": "24"}
CAPTURED = "s3://capture/capture/prod/mlops-prod/"
OUTPUT = "s3://artifacts/inference/prod/monitor"
NOTHING = f"nothing captured yet under {CAPTURED}"


def _put(ctx, uri: str, body: bytes) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def _executed(ctx, monkeypatch, verdict: str) -> list:
    """One object captured for prod, and an execution whose drift.json says ``verdict``."""
    import json
    from types import SimpleNamespace

    from mlops.steps import inference

    _put(ctx, CAPTURED + "AllTraffic/2026/12/01/11/a.jsonl", b"{}\n")
    started = []

    def execute(sm, name, span, what):
        assert sm is ctx.client("sagemaker")
        started.append((name, span, what))
        return (
            "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/ex1",
            "ex1",
            SimpleNamespace(seconds=12.34),
        )

    monkeypatch.setattr(inference, "execute", execute)
    features = {"length": {"out_of_range": 3}, "height": {"out_of_range": 0}}
    drift = {"verdict": verdict, "max_score": 0.5, "max_feature": "length", "rows": 10,
             "capture": {"since": "a", "until": "b"}, "features": features}  # fmt: skip
    _put(ctx, f"{OUTPUT}/ex1/monitor/drift.json", json.dumps(drift).encode())
    _put(ctx, f"{OUTPUT}/ex1/monitor/report.md", b"# Drift report\n\nPSI table\n")
    return started


def test_a_stage_that_captures_nothing_is_refused(ctx):
    with pytest.raises(ConfigError, match=r"^dev captures no data \(capture_sampling_percent = 0 "
                       r"in \[stages\.dev\] of pipeline\.toml\)"):  # fmt: skip
        monitor.run(ctx, "dev", SPAN)


def test_nothing_captured_for_the_stage_is_no_data_without_an_execution(ctx, monkeypatch, capsys):
    from mlops.steps import inference

    _put(ctx, "s3://capture/capture/dev/mlops-dev/x.jsonl", b"{}\n")  # another stage's capture
    monkeypatch.setattr(inference, "execute", lambda *a: pytest.fail("no execution expected"))
    found = monitor.run(ctx, "prod", SPAN, LocalGitHub(), "o/r")
    assert found == {
        "verdict": "no_data",
        "max_score": None,
        "max_feature": None,
        "rows": 0,
        "report": f"# Drift report\n\n**Verdict: no_data**: {NOTHING}.\n",
        "report_uri": "",
        "window": SPAN,
        "out_of_range": {},
    }
    err = capsys.readouterr().err
    assert f"nothing captured yet under {CAPTURED}: no execution started" in err
    assert "no_data (max PSI n/a on None, 0 rows)" in err and "report in" not in err


def test_an_execution_over_the_window_reports_its_verdict_and_report(ctx, monkeypatch, capsys):
    started = _executed(ctx, monkeypatch, "drift")
    found = monitor.run(ctx, "prod", SPAN)
    assert started == [("mlops-monitor-prod", SPAN, f"monitor: mlops-monitor-prod over {CAPTURED}")]
    assert found == {
        "verdict": "drift",
        "max_score": 0.5,
        "max_feature": "length",
        "rows": 10,
        "report": "# Drift report\n\nPSI table\n",
        "report_uri": f"{OUTPUT}/ex1/monitor/",
        "window": {"since": "a", "until": "b"},
        "out_of_range": {"length": 3},
        "execution_arn": "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/ex1",
        "seconds": 12.3,
    }
    err = capsys.readouterr().err
    assert "monitor: prod live traffic: drift (max PSI 0.500 on length, 10 rows)" in err
    assert "monitor: values outside the training ranges: length 3" in err
    assert f"monitor: report in {OUTPUT}/ex1/monitor/" in err


def test_the_verdict_goes_to_the_step_outputs_the_summary_and_the_manifest(ctx, monkeypatch):
    _executed(ctx, monkeypatch, "no_drift")
    monitor.run(ctx, "prod", SPAN)
    outputs = Path(os.environ["GITHUB_OUTPUT"]).read_text()
    assert "drift-verdict<<" in outputs and "\nno_drift\n" in outputs
    assert "report-uri<<" in outputs and f"\n{OUTPUT}/ex1/monitor/\n" in outputs
    summary = Path(os.environ["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("### Live drift (prod)\n\n# Drift report\n\nPSI table\n")
    assert f"Report: `{OUTPUT}/ex1/monitor/`" in summary
    recorded = ctx.manifest.get("monitor")
    assert recorded["stage"] == "prod" and recorded["verdict"] == "no_drift"
    assert "report" not in recorded and recorded["report_uri"] == f"{OUTPUT}/ex1/monitor/"


def test_drift_with_github_opens_the_issue_with_the_report_then_comments(ctx, monkeypatch):
    _executed(ctx, monkeypatch, "drift")
    gh = LocalGitHub()
    assert monitor.run(ctx, "prod", SPAN, gh, gh.repository)["issue"] == {
        "action": "opened",
        "number": 1,
    }
    issue = gh.issues[1]
    assert issue["title"] == "Drift on live traffic of mlops-prod (prod)"
    assert issue["body"] == (
        f"# Drift report\n\nPSI table\n\n\nReport: `{OUTPUT}/ex1/monitor/`\n"
        "Execution: `arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/ex1`\n"
    )
    again = monitor.run(ctx, "prod", SPAN, gh, gh.repository)
    assert again["issue"] == {"action": "updated", "number": 1}
    (comment,) = gh.issues[1]["comments"]
    assert comment.startswith("Drift found again at ") and " UTC: max PSI 0.500 on `length`;" in (
        comment
    )
    assert ctx.manifest.get("monitor")["issue"] == {"action": "updated", "number": 1}


def test_no_drift_opens_no_issue(ctx, monkeypatch):
    _executed(ctx, monkeypatch, "no_drift")
    gh = LocalGitHub()
    assert "issue" not in monitor.run(ctx, "prod", SPAN, gh, gh.repository)
    assert gh.issues == {}


def test_the_capture_pipelines_defaults_and_compile_config(ctx):
    params = {
        "ImageUri": "i",
        "ModelDataUri": "m",
        "BaselineUri": "b",
        "TestDataUri": "t",
        "X": "x",
    }
    assert monitor.defaults(ctx, "prod", params) == {
        "ImageUri": "i",
        "ModelDataUri": "m",
        "BaselineUri": "b",
        "TestDataUri": "t",
        "CaptureUri": CAPTURED,
        "OutputPrefix": OUTPUT,
    }
    batch = {"pipeline": "batch", "transform_instance_type": "ml.m5.large", "image": "i"}
    assert monitor.definition_config(ctx, "prod", batch) == {
        "pipeline": "capture",
        "image": "i",
        "metrics_pipeline": "mlops-monitor-prod",
    }


class RecordingGh:
    """A gh that records each call and answers the list with ``open_number``, a create with 7."""

    def __init__(self, open_number: str = "") -> None:
        self.open_number, self.calls = open_number, []

    def __call__(self, args, body=None, placeholder=""):
        self.calls.append((args, body))
        if args[2] == "GET":
            return self.open_number
        return "7\n" if args[2] == "POST" and args[3].endswith("/issues") else ""


def test_a_new_finding_creates_the_labelled_issue_through_stdin():
    gh = RecordingGh()
    assert github_issue.report(gh, "o/r", "Drift", "body", "note") == ("opened", 7)
    (list_args, _), create = gh.calls
    assert list_args == ["api", "--method", "GET", "repos/o/r/issues", "-f", "labels=drift", "-f",
                         "state=open", "--jq", list_args[-1]]  # fmt: skip
    assert list_args[-1] == (
        "[.[] | select(.pull_request == null)] | sort_by(.number) | .[0].number // empty"
    )
    assert create == (
        ["api", "--method", "POST", "repos/o/r/issues", "--input", "-", "--jq", ".number"],
        {"title": "Drift", "body": "body", "labels": ["drift"]},
    )


def test_an_open_issue_gets_the_new_title_and_body_and_a_comment():
    gh = RecordingGh(open_number="4\n")
    assert github_issue.report(gh, "o/r", "Drift", "body", "note") == ("updated", 4)
    _, patch, comment = gh.calls
    assert patch == (
        ["api", "--method", "PATCH", "repos/o/r/issues/4", "--input", "-"],
        {"title": "Drift", "body": "body"},
    )
    assert comment == (
        ["api", "--method", "POST", "repos/o/r/issues/4/comments", "--input", "-"],
        {"body": "note"},
    )


def test_a_dry_run_answering_with_placeholders_opens_issue_1():
    def dry(args, body=None, placeholder=""):
        return placeholder

    assert github_issue.report(dry, "o/r", "Drift", "b", "c") == ("opened", 1)


def test_a_body_of_exactly_githubs_limit_is_kept_and_one_more_character_is_cut():
    limit = github_issue.BODY_LIMIT
    gh = RecordingGh()
    github_issue.report(gh, "o/r", "Drift", "x" * limit, "c")
    assert gh.calls[1][1]["body"] == "x" * limit
    text = "".join(chr(97 + i % 26) for i in range(limit + 1))
    github_issue.report(gh, "o/r", "Drift", text, "c")
    body = gh.calls[3][1]["body"]
    assert body == text[: limit - 80] + (
        "\n\n… (cut to GitHub's body limit: the full report is in S3)\n"
    )


def test_a_window_under_an_hour_is_allowed_and_one_of_no_length_is_refused():
    assert monitor.window("30m")["WindowHours"] == "0.5"
    with pytest.raises(ConfigError, match="the window is empty"):
        monitor.window("2026-12-01T06:00:00Z", "2026-12-01T06:00:00Z")


def test_a_time_without_a_zone_is_utc_whatever_the_machines_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert monitor.window("2026-11-30T06:00:00")["Since"] == "2026-11-30T06:00:00Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_drift_report_without_a_capture_section_has_an_empty_window(ctx, monkeypatch):
    import json

    _executed(ctx, monkeypatch, "no_drift")
    drift = {"verdict": "no_drift", "max_score": 0.1, "max_feature": "x", "rows": 1, "features": {}}
    _put(ctx, f"{OUTPUT}/ex1/monitor/drift.json", json.dumps(drift).encode())
    assert monitor.run(ctx, "prod", SPAN)["window"] == {}


def test_nothing_captured_is_recorded_and_summarised_for_the_stage(ctx, tmp_path):
    monitor.run(ctx, "prod", SPAN)
    assert ctx.manifest.get("monitor")["stage"] == "prod"
    assert (tmp_path / "summary").read_text().startswith("### Live drift (prod)\n")


def test_a_stage_sampling_one_percent_captures(ctx):
    import dataclasses

    stages = {**ctx.config.stages}
    stages["dev"] = dataclasses.replace(stages["dev"], capture_sampling_percent=1)
    ctx.config = dataclasses.replace(ctx.config, stages=stages)
    assert monitor.captures(ctx, "dev")
