"""System test: tests/system against the deployed endpoint of a stage, local or real."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlops import github, stack
from mlops.aws import download_prefix, log, read_json_object
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.steps import register


def run(ctx: Context, stage: str, arn: str) -> None:
    package = register.describe(ctx, arn)
    meta = package.get("CustomerMetadataProperties", {})
    if "test_data_uri" not in meta:
        raise ConfigError(
            f"model package {arn} has no test_data_uri lineage: register it with `mlops register`"
        )
    outputs = stack.outputs(
        stack.describe(ctx.client("cloudformation"), ctx.config.stack_name(stage)) or {}
    )
    endpoint = outputs.get("EndpointName")
    if not endpoint:
        raise ConfigError(f"no endpoint stack for {stage}: run `mlops deploy --stage {stage}`")
    s3 = ctx.client("s3")
    evaluation = read_json_object(s3, meta["evaluation_uri"])
    s = ctx.config.stage(stage)
    with tempfile.TemporaryDirectory(prefix="system-test-") as tmp:
        data = download_prefix(s3, meta["test_data_uri"], Path(tmp))
        if not list(data.glob("*.csv")):
            raise PipelineError(f"no test data (*.csv) under {meta['test_data_uri']}")
        args = [
            sys.executable,
            "-m",
            "pytest",
            str(ctx.root / "tests" / "system"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--endpoint-name",
            endpoint,
            "--region",
            ctx.region,
            "--test-data",
            str(data),
            "--expected-rmse",
            str(evaluation["regression_metrics"]["rmse"]["value"]),
            "--latency-budget-ms",
            str(s.latency_budget_ms),
        ]
        if s.capture_sampling_percent:
            bucket = ctx.account.CaptureBucket
            args += ["--capture-uri", f"s3://{bucket}/capture/{stage}/{endpoint}/"]
        log(f"system-test: tests/system against {endpoint} ({stage})")
        # tests/system needs pytest alone: no third-party plugin is loaded (0.3 s less per run,
        # and a shuffling or parallel plugin of the dev venv cannot change how they run)
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        code = subprocess.run(args, cwd=ctx.root, env=env, check=False).returncode
    ctx.manifest.update(f"system_test_{stage}", {"endpoint": endpoint, "passed": code == 0})
    if code == 0 and stage == "dev":
        register.set_stage(ctx, arn, stage, "Tested", f"system tests passed against {endpoint}")
    github.summary(f"### System tests ({stage}): {'passed' if code == 0 else 'FAILED'}")
    if code != 0:
        register.set_stage(
            ctx, arn, stage, "Failed", f"system tests failed against {endpoint}", reject=True
        )
        raise PipelineError(
            f"system tests failed against {endpoint} ({stage}), pytest exit {code}: "
            "see the test output above"
        )
