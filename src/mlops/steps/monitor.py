"""Drift on live traffic: the stage's capture-monitor pipeline over a window of data capture.

``mlops inference upsert`` creates ``<project>-monitor-<stage>`` beside the batch pipeline (the
same package values as its defaults) when the stage captures data; cloudformation/monitor.yaml
starts it daily (EventBridge Scheduler, the last 24 h) and alarms on its MaxDriftScore. ``run``
is the on-demand form, ``mlops monitor --stage prod [--since 24h]``: one execution, waited for,
its verdict printed and written to the job summary, and with ``--issue`` the one open GitHub
issue labelled ``drift`` opened or updated with the report.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mlops import github, github_issue
from mlops.aws import call, log, read_json_object, s3_uri, split_s3
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.github_setup import Gh

RELATIVE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[mhd])$")
HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


def pipeline_name(ctx: Context, stage: str) -> str:
    return f"{ctx.config.project}-monitor-{stage}"


def capture_uri(ctx: Context, stage: str) -> str:
    """Where the stage's endpoint captures (deploy's CaptureS3Uri, then endpoint/variant/...)."""
    return (
        s3_uri(ctx.account.CaptureBucket, "capture", stage, ctx.config.endpoint_name(stage)) + "/"
    )


def output_prefix(ctx: Context, stage: str) -> str:
    return s3_uri(ctx.account.ArtifactBucket, "inference", stage, "monitor")


def captures(ctx: Context, stage: str) -> bool:
    return ctx.config.stage(stage).capture_sampling_percent > 0


def definition_config(ctx: Context, stage: str, batch_cfg: dict[str, Any]) -> dict[str, Any]:
    """The capture pipeline's compile config: the batch's, with its own metrics dimension."""
    cfg = {k: v for k, v in batch_cfg.items() if not k.startswith("transform_")}
    return cfg | {"pipeline": "capture", "metrics_pipeline": pipeline_name(ctx, stage)}


def defaults(ctx: Context, stage: str, params: dict[str, str]) -> dict[str, str]:
    """The execution defaults: the serving package's values, the capture and output prefixes."""
    keep = ("ImageUri", "ModelDataUri", "BaselineUri", "TestDataUri")
    found = {k: params[k] for k in keep}
    return found | {
        "CaptureUri": capture_uri(ctx, stage),
        "OutputPrefix": output_prefix(ctx, stage),
    }


# --- the window -------------------------------------------------------------------------------
def window(since: str = "", until: str = "", hours: float = 24.0) -> dict[str, str]:
    """The execution's Since/Until/WindowHours: ``--since`` 24h / 90m / 2d, or ISO 8601."""
    if until:
        until = _iso(until, "--until")
    if match := RELATIVE.match(since.strip()):
        hours, since = float(match["n"]) * HOURS[match["unit"]], ""
    elif since:
        since = _iso(since, "--since")
    if hours <= 0:
        raise ConfigError(f"the window must be longer than 0 (got {hours:g} hours)")
    if since and until and since >= until:
        raise ConfigError(f"the window is empty: --since {since} is not before --until {until}")
    return {"Since": since, "Until": until, "WindowHours": f"{hours:g}"}


def _iso(text: str, flag: str) -> str:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: pass ISO 8601 (2026-12-01T06:00:00Z) or, for --since, 24h / 90m / 2d"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


# --- one run ---------------------------------------------------------------------------------
def run(
    ctx: Context, stage: str, span: dict[str, str], gh: Gh | None = None, repo: str = ""
) -> dict[str, Any]:
    """Start one execution, wait, report; ``gh`` set: open or update the drift issue."""
    if not captures(ctx, stage):
        raise ConfigError(
            f"{stage} captures no data (capture_sampling_percent = 0 in [stages.{stage}] of "
            "pipeline.toml): enable capture and deploy, then monitor"
        )
    if not _has_capture(ctx, stage):
        return _report(ctx, stage, _nothing_captured(ctx, stage, span), gh, repo)
    from mlops.steps.inference import execute

    sm, name = ctx.client("sagemaker"), pipeline_name(ctx, stage)
    what = f"monitor: {name} over {capture_uri(ctx, stage)}"
    arn, execution_id, waited = execute(sm, name, span, what)
    found = _read(ctx, f"{output_prefix(ctx, stage)}/{execution_id}/monitor")
    found |= {"execution_arn": arn, "seconds": round(waited.seconds, 1)}
    return _report(ctx, stage, found, gh, repo)


def _has_capture(ctx: Context, stage: str) -> bool:
    bucket, prefix = split_s3(capture_uri(ctx, stage))
    listed = call(
        f"list {capture_uri(ctx, stage)}",
        ctx.client("s3").list_objects_v2,
        Bucket=bucket,
        Prefix=prefix,
        MaxKeys=1,
    )
    return bool(listed.get("KeyCount"))


def _nothing_captured(ctx: Context, stage: str, span: dict[str, str]) -> dict[str, Any]:
    """No execution: nothing to judge, and a job downloading an empty prefix only costs start-up."""
    log(f"monitor: nothing captured yet under {capture_uri(ctx, stage)}: no execution started")
    reason = f"nothing captured yet under {capture_uri(ctx, stage)}"
    return {
        "verdict": "no_data",
        "max_score": None,
        "max_feature": None,
        "rows": 0,
        "report": f"# Drift report\n\n**Verdict: no_data**: {reason}.\n",
        "report_uri": "",
        "window": span,
        "out_of_range": {},
    }


def _read(ctx: Context, base: str) -> dict[str, Any]:
    s3 = ctx.client("s3")
    drift = read_json_object(s3, f"{base}/drift.json")
    bucket, key = split_s3(f"{base}/report.md")
    body = call(f"read {base}/report.md", s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    out_of_range = {n: f["out_of_range"] for n, f in drift["features"].items() if f["out_of_range"]}
    found = {k: drift.get(k) for k in ("verdict", "max_score", "max_feature", "rows")}
    return found | {
        "report": body.decode("utf-8"),
        "report_uri": f"{base}/",
        "window": drift.get("capture", {}),
        "out_of_range": out_of_range,
    }


def _report(
    ctx: Context, stage: str, found: dict[str, Any], gh: Gh | None, repo: str
) -> dict[str, Any]:
    score = found["max_score"]
    shown = f"{score:.3f}" if isinstance(score, int | float) else "n/a"
    log(
        f"monitor: {stage} live traffic: {found['verdict']} (max PSI {shown} on "
        f"{found['max_feature']}, {found['rows']} rows)"
    )
    if found["out_of_range"]:
        counts = ", ".join(f"{n} {c}" for n, c in sorted(found["out_of_range"].items()))
        log(f"monitor: values outside the training ranges: {counts}")
    if found["report_uri"]:
        log(f"monitor: report in {found['report_uri']}")
    github.set_output("drift-verdict", found["verdict"])
    github.set_output("report-uri", found["report_uri"])
    github.summary(
        f"### Live drift ({stage})\n\n{found['report']}\n\nReport: `{found['report_uri']}`"
    )
    if gh is not None and found["verdict"] == "drift":
        found["issue"] = _issue(ctx, stage, found, gh, repo)
    ctx.manifest.update(
        "monitor", {"stage": stage, **{k: v for k, v in found.items() if k != "report"}}
    )
    return found


def _issue(ctx: Context, stage: str, found: dict[str, Any], gh: Gh, repo: str) -> dict[str, Any]:
    endpoint = ctx.config.endpoint_name(stage)
    when = datetime.now(UTC)
    title = f"Drift on live traffic of {endpoint} ({stage})"
    body = f"{found['report']}\n\nReport: `{found['report_uri']}`\n"
    body += f"Execution: `{found.get('execution_arn', '')}`\n"
    note = f"Drift found again at {when:%Y-%m-%d %H:%M} UTC: max PSI {found['max_score']:.3f} "
    note += f"on `{found['max_feature']}`; the body holds this report."
    action, number = github_issue.report(gh, repo, title, body, note)
    log(f"monitor: GitHub issue #{number} {action} (label {github_issue.LABEL}) in {repo}")
    return {"action": action, "number": number}
