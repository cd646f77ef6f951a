"""ETL: upload the Glue script and the raw data, start the Glue job run, wait, read its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops import github
from mlops.aws import (
    call,
    console,
    log,
    read_json_object,
    s3_uri,
    sha256_file,
    split_s3,
    upload_file,
    wait_for,
)
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.steps import data_key as data_key_mod
from mlops.steps import reuse

GLUE_FAILED = {"FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED"}


def upload_if_changed(s3: Any, path: Path, uri: str) -> str:
    """Upload unless the object already has this sha256 (kept in its metadata); returns the sha."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: check [model] in pipeline.toml")
    digest = sha256_file(path)
    bucket, key = split_s3(uri)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get("sha256") == digest:
            return digest
    except s3.exceptions.ClientError:
        pass
    upload_file(s3, path, uri, {"Metadata": {"sha256": digest}})
    return digest


def run(
    ctx: Context, retrain: bool = False, data_key: str = "", reason: str = ""
) -> dict[str, Any]:
    """The Glue run; or, when a registered package was trained on the same inputs (and no
    ``retrain``), that package's ETL outputs (see steps/reuse.py). ``data_key``: train on that
    object of the data bucket (a repository dispatch named it) instead of the configured data;
    ``reason``: why the dispatch asked (new-data, drift), printed."""
    if data_key_mod.check_reason(reason):
        log(f"etl: retraining asked for by a repository dispatch: {reason}")
    named = data_key_mod.fetch(ctx, data_key) if data_key else None
    found = reuse.plan(ctx, retrain, named["data_sha256"] if named else "")
    if found:
        result = reuse.etl_outputs(found)
        ctx.manifest.update("etl", result)
        return result
    cfg, acct, s3, glue = ctx.config, ctx.account, ctx.client("s3"), ctx.client("glue")
    job = call("read the Glue job", glue.get_job, JobName=acct.GlueJobName)["Job"]
    script_uri = job["Command"]["ScriptLocation"]
    script_sha = upload_if_changed(s3, ctx.root / cfg.glue_script, script_uri)
    code_prefix = s3_uri(acct.ArtifactBucket, "runs", ctx.run_id, "code")
    extra = [f"{code_prefix}/{Path(f).name}" for f in cfg.glue_extra_files]
    for local, uri in zip(cfg.glue_extra_files, extra, strict=True):
        upload_if_changed(s3, ctx.root / local, uri)
    if named:
        data_uri, data_sha = named["data_uri"], named["data_sha256"]
    else:
        data_path = ctx.root / cfg.data
        data_uri = s3_uri(acct.DataBucket, "raw", data_path.name)
        data_sha = upload_if_changed(s3, data_path, data_uri)
    output = s3_uri(acct.DataBucket, "runs", ctx.run_id, "etl") + "/"
    arguments = {
        "--input": data_uri,
        "--output": output,
        **{f"--{k}": v for k, v in cfg.etl.items()},
    }
    if extra:
        arguments["--extra-files"] = ",".join(extra)
    run_id = call(
        "start the Glue job run", glue.start_job_run, JobName=acct.GlueJobName, Arguments=arguments
    )["JobRunId"]
    log(f"etl: Glue job {acct.GlueJobName} run {run_id}")
    wait_for(
        f"Glue run {run_id[:16]}",
        lambda: call(
            "get the Glue job run", glue.get_job_run, JobName=acct.GlueJobName, RunId=run_id
        )["JobRun"],
        lambda d: d["JobRunState"],
        done={"SUCCEEDED"},
        failed=GLUE_FAILED,
        link=console(
            ctx.region, f"gluestudio/home?region={ctx.region}#/editor/job/{acct.GlueJobName}/runs"
        ),
    )
    etl_manifest = read_json_object(s3, output + "manifest.json")
    result = {
        "glue_job": acct.GlueJobName,
        "job_run_id": run_id,
        "script_sha256": script_sha,
        "data_uri": data_uri,
        "data_sha256": data_sha,
        "output": output,
        "splits": {name: output + name + "/" for name in ("train", "validation", "test")},
        "test_raw": output + "test_raw/",
        "row_counts": etl_manifest.get("split_counts") or etl_manifest.get("rows", {}),
        "statistics": output + "baseline/statistics.json",
    }
    ctx.manifest.update("etl", result)
    github.summary(
        "### ETL\n"
        + github.table(["split", "rows"], [[k, v] for k, v in sorted(result["row_counts"].items())])
    )
    return result
