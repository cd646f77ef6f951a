"""The compute AWS would perform when a job starts, run for real as subprocesses.

Inputs come from moto's S3 at the URIs the job names, outputs go back there, so the step code reads
them exactly as it would on AWS. Paths follow the SageMaker and Glue contracts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.aws import download_prefix, list_keys, split_s3

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TIMEOUT = 1800


class Compute:
    """Each job's reads and writes go through the service role it names, as on AWS."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self._local = threading.local()

    def as_role(self, role: str, service: str) -> None:
        """This thread's job acts as ``role`` (Denied when the service may not assume it)."""
        self._local.session = self.rt.role_session(role, service)

    @property
    def session(self) -> Any:
        return getattr(self._local, "session", None) or self.rt.session

    @property
    def s3(self) -> Any:
        return self.session.client("s3")

    def container_credentials(self) -> dict[str, str]:
        """What the AWS SDK in a job's container finds: its role's credentials (on AWS the job
        acts as its RoleArn, "an IAM role that Amazon SageMaker can assume to perform tasks on
        your behalf", API_CreateProcessingJob) and, offline, the local AWS's endpoint. No
        region: a job that calls AWS names it in its Environment."""
        creds = self.session.get_credentials().get_frozen_credentials()
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_SESSION_TOKEN": creds.token or "",
            "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL", ""),
        }

    # --- S3 staging ---------------------------------------------------------------------------
    def keys(self, uri: str) -> list[str]:
        return list_keys(self.s3, uri)

    def download(self, uri: str, dest: Path) -> Path:
        return download_prefix(self.s3, uri, dest)

    def upload_dir(self, src: Path, uri: str) -> None:
        bucket, prefix = split_s3(uri)
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(src).as_posix()]))
            self.s3.upload_file(str(path), bucket, key)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env={**self.rt.child_env, **env},
            timeout=TIMEOUT,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    @staticmethod
    def reason(output: str, code: int) -> str:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        return (lines[-1] if lines else f"exit code {code}")[:1000]

    # --- every job ends Completed or Failed with a reason, whatever happens in here ---------------
    def glue(self, job: Any, run: Any) -> None:
        try:
            self.as_role(job.role, "glue")
            self._glue(job, run)
        except Exception as exc:
            run.error_message = f"local runtime: {type(exc).__name__}: {exc}"
            run.status = "FAILED"

    def training(self, job: Any) -> None:
        try:
            self.as_role(job.role_arn, "sagemaker")
            self._training(job)
        except Exception as exc:
            job.failure_reason = f"local runtime: {type(exc).__name__}: {exc}"
            job.training_job_status = job.secondary_status = "Failed"

    def processing(self, job: Any) -> None:
        try:
            self.as_role(job.role_arn, "sagemaker")
            self._processing(job)
        except Exception as exc:
            job.failure_reason = f"local runtime: {type(exc).__name__}: {exc}"
            job.processing_job_status = "Failed"

    # --- Glue -----------------------------------------------------------------------------------
    def _glue(self, job: Any, run: Any) -> None:
        work = self.rt.work_dir / f"glue-{run.job_run_id[3:15]}"
        cwd = work / "cwd"
        cwd.mkdir(parents=True)
        args = {**job.default_arguments, **(run.arguments or {})}
        for uri in filter(None, args.pop("--extra-files", "").split(",")):
            self.download(uri, cwd)
        script = self.download(job.command["ScriptLocation"], work / "script")
        argv = [sys.executable, str(next(script.iterdir())), "--JOB_NAME", job.name]
        outputs: list[tuple[Path, str]] = []
        for i, (key, value) in enumerate(sorted(args.items())):
            if isinstance(value, str) and value.startswith("s3://"):
                value = self._stage_glue_arg(value, work / f"arg{i}", outputs)
            argv += [key, str(value)]
        if self.rt.faults.take("glue"):
            argv += ["--max_bad_fraction", "-1"]
        code, output = self.run(argv, {}, cwd)
        if code == 0:
            for local, uri in outputs:
                self.upload_dir(local, uri)
            run.status = "SUCCEEDED"
        else:
            run.error_message = self.reason(output, code)
            run.status = "FAILED"

    def _stage_glue_arg(self, uri: str, local: Path, outputs: list[tuple[Path, str]]) -> str:
        bucket, key = split_s3(uri)
        existing = self.keys(uri)
        if key in existing:  # one object: a file input
            local.mkdir(parents=True)
            target = local / Path(key).name
            self.s3.download_file(bucket, key, str(target))
            return str(target)
        if existing:
            return str(self.download(uri, local))
        local.mkdir(parents=True)
        outputs.append((local, uri))
        return str(local) + "/"

    # --- SageMaker training -----------------------------------------------------------------------
    def _training(self, job: Any) -> None:
        ml = self.rt.work_dir / f"train-{job.training_job_name}"
        config, model, output = ml / "input/config", ml / "model", ml / "output"
        for d in (config, model, output):
            d.mkdir(parents=True)
        hyper = dict(job.hyper_parameters or {})
        if self.rt.faults.take("training"):
            hyper["injected_fault"] = "1"
        (config / "hyperparameters.json").write_text(json.dumps(hyper))
        env = {
            "SM_INPUT_CONFIG_DIR": str(config),
            "SM_MODEL_DIR": str(model),
            "SM_OUTPUT_DIR": str(output),
            "SM_OUTPUT_DATA_DIR": str(output / "data"),
        }
        for channel in job.input_data_config:
            name = channel["ChannelName"]
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            env[f"SM_CHANNEL_{name.upper()}"] = str(self.download(uri, ml / "input/data" / name))
        job.secondary_status = "Training"
        code, out = self.run([*self.rt.entrypoint, "train"], env, ml)
        self._log(job.training_job_name, out)
        job.final_metric_data_list = final_metrics(
            job.algorithm_specification.get("MetricDefinitions") or [], out
        )
        if code == 0:
            tarball = ml / "model.tar.gz"
            with tarfile.open(tarball, "w:gz") as tar:
                for path in sorted(model.iterdir()):
                    tar.add(path, arcname=path.name)
            bucket, key = split_s3(job.model_artifacts["S3ModelArtifacts"])
            self.s3.upload_file(str(tarball), bucket, key)
            job.training_job_status = job.secondary_status = "Completed"
        else:
            failure = output / "failure"
            job.failure_reason = (
                failure.read_text().strip() if failure.exists() else self.reason(out, code)
            )[:1024]
            job.training_job_status = job.secondary_status = "Failed"

    def _log(self, job_name: str, output: str) -> None:
        """The job's output as CloudWatch log events, where the train step streams them from."""
        logs = self.session.client("logs")
        stream = f"{job_name}/algo-1-{int(time.time())}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [
            {"timestamp": now, "message": line}
            for line in output.splitlines()[-200:]
            if line.strip()
        ]
        if events:
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)

    # --- SageMaker processing -------------------------------------------------------------------
    def _processing(self, job: Any) -> None:
        root = self.rt.work_dir / f"processing-{job.processing_job_name}"
        local = lambda path: root / str(path).removeprefix("/opt/ml/").lstrip("/")  # noqa: E731
        drop = "test" if self.rt.faults.take("evaluation") else None
        worse = "test" if self.rt.faults.take("gate") else None
        for item in job.processing_inputs:
            s3_input = item["S3Input"]
            target = local(s3_input["LocalPath"])
            if item.get("InputName") == drop:
                target.mkdir(parents=True, exist_ok=True)
                continue
            self.download(s3_input["S3Uri"], target)
            if item.get("InputName") == worse:
                shift_labels(target)
        outputs = job.processing_output_config.get("Outputs", [])
        for item in outputs:
            local(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        spec = job.app_specification
        args = [
            str(local(a)) if str(a).startswith("/opt/ml/") else str(a)
            for a in spec.get("ContainerArguments", [])
        ]
        env = {**getattr(job, "environment", {}), **self.container_credentials()}
        code, out = self.run([*self.rt.entrypoint, *args], env, root)
        if code == 0:
            for item in outputs:
                self.upload_dir(local(item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"])
            job.processing_job_status = "Completed"
        else:
            job.failure_reason = self.reason(out, code)
            job.processing_job_status = "Failed"


def final_metrics(definitions: list[dict[str, str]], output: str) -> list[dict[str, Any]]:
    """FinalMetricDataList as SageMaker fills it: each MetricDefinitions regex over the job's
    log, the last value it matched ("Define metrics", SageMaker Developer Guide:
    https://docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html)."""
    found = []
    for definition in definitions:
        values = re.findall(definition["Regex"], output)
        if values:
            last = values[-1][0] if isinstance(values[-1], tuple) else values[-1]
            with contextlib.suppress(ValueError):
                found.append({"MetricName": definition["Name"], "Value": float(last),
                              "Timestamp": datetime.now(UTC)})  # fmt: skip
    return found


def shift_labels(folder: Path, by: int = 10) -> None:
    """The gate fault: every test label moves by ``by`` rings, so the model scores far worse."""
    for path in folder.rglob("*.csv"):
        header, *rows = path.read_text().splitlines()
        shifted = [f"{float(r.split(',', 1)[0]) + by:g},{r.split(',', 1)[1]}" for r in rows if r]
        path.write_text("\n".join([header, *shifted]) + "\n")
