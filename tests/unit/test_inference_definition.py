"""The batch-inference pipeline definition, compiled by the SageMaker SDK in .venv-inference.

The SDK lives only in that virtualenv (``make inference-venv``), so the compile runs there as a
subprocess, exactly as the control plane runs it. A missing or stale venv FAILS these tests
(never skips): the definition is what AWS runs, so it must always be checked. The compile runs
under a socket guard (a sitecustomize on PYTHONPATH) that refuses and records every connection
that is not to loopback: compiling must never reach AWS (STS, telemetry, IMDS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from abalone_model import explain, monitor

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-inference"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".inference"
ROLE = "arn:aws:iam::123456789012:role/mlops-sagemaker"
CFG = {"role_arn": ROLE, "region": "eu-west-1", "processing_instance_type": "ml.c5.xlarge"}
GUARD = """
import os, socket
_log = os.environ["SOCKET_GUARD_LOG"]
_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo
LOCAL = ("127.0.0.1", "::1", "localhost")

def _refuse(what):
    with open(_log, "a") as fh:
        fh.write(what + "\\n")
    raise OSError(f"socket guard: {what} refused")

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        _refuse(f"connect {address[0]}:{address[1]}")
    return _connect(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL and host is not None:
        _refuse(f"resolve {host}")
    return _getaddrinfo(host, *args, **kwargs)

socket.socket.connect = connect
socket.getaddrinfo = getaddrinfo
"""

pytestmark = pytest.mark.cost(7)  # seconds: scheduled before the small modules


def _venv() -> Path:
    """The inference venv's python, or a failure that says how to build it."""
    if not PYTHON.exists() or not STAMP.exists():
        pytest.fail(f"{VENV.name} is missing: run `make inference-venv` (the SDK compiles here)")
    lock = ROOT / "requirements" / "inference.txt"
    if STAMP.stat().st_mtime < lock.stat().st_mtime:
        pytest.fail(f"{VENV.name} is older than {lock.name}: run `make inference-venv`")
    return PYTHON


def _run(tmp: Path, cfg: dict, *code: str) -> subprocess.CompletedProcess:
    guard = tmp / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONPATH=str(guard), SOCKET_GUARD_LOG=str(tmp / "sockets.log"))
    argv = [str(_venv()), *code] if code else [
        str(_venv()), "-m", "mlops.inference_definition",
        "--config", str(tmp / "cfg.json"), "--out", str(tmp / "definition.json"),
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("definition")
    proc = _run(tmp, CFG)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "definition.json").read_text()), tmp, proc


def steps(definition: dict) -> dict[str, dict]:
    return {s["Name"]: s for s in definition["Steps"]}


def reads(value: object) -> set[str]:
    """Every ``Get`` path in a value."""
    text = json.dumps(value)
    return set(re.findall(r'"Get": "([^"]+)"', text))


def test_compiling_opens_no_socket_and_prints_nothing(compiled):
    _, tmp, proc = compiled
    log = tmp / "sockets.log"
    assert not log.exists(), log.read_text()
    assert proc.stdout == "" and proc.stderr == ""


def test_the_socket_guard_is_armed_under_that_interpreter(compiled):
    _, tmp, _ = compiled
    code = "import socket; socket.create_connection(('192.0.2.1', 443), timeout=2)"
    proc = _run(tmp, CFG, "-c", code)
    assert proc.returncode != 0 and "socket guard" in proc.stderr
    assert "192.0.2.1" in (tmp / "sockets.log").read_text()  # refused at resolve or connect
    (tmp / "sockets.log").unlink()


def test_parameters_are_the_ones_the_control_plane_passes(compiled):
    definition, _, _ = compiled
    names = ["ModelName", "ModelDataUri", "ImageUri", "InputDataUri", "BaselineUri", "TestDataUri"]
    assert definition["Parameters"] == [
        {"Name": n, "Type": "String"} for n in [*names, "OutputPrefix"]
    ]  # no defaults: every value comes from StartPipelineExecution


def test_the_step_graph(compiled):
    s = steps(compiled[0])
    assert {n: x["Type"] for n, x in s.items()} == {
        "Predict": "Transform",
        "Monitor": "Processing",
        "Explain": "Processing",
        "DriftFound": "Condition",
    }
    step_reads = {
        n: {r.split(".")[1] for r in reads(x) if r.startswith("Steps.")} for n, x in s.items()
    }
    assert step_reads == {
        "Predict": set(),
        "Monitor": {"Predict"},
        "Explain": set(),
        "DriftFound": {"Monitor"},
    }
    assert not any("DependsOn" in x for x in s.values())  # data dependencies only


def test_the_batch_transform_is_sagemakers_line_split_multirecord(compiled):
    args = steps(compiled[0])["Predict"]["Arguments"]
    assert args["ModelName"] == {"Get": "Parameters.ModelName"}
    assert args["BatchStrategy"] == "MultiRecord" and args["MaxPayloadInMB"] == 6
    source = args["TransformInput"]["DataSource"]["S3DataSource"]
    assert source == {"S3DataType": "S3Prefix", "S3Uri": {"Get": "Parameters.InputDataUri"}}
    assert args["TransformInput"]["ContentType"] == "text/csv"
    assert args["TransformInput"]["SplitType"] == "Line"
    assert args["TransformOutput"]["AssembleWith"] == "Line"
    assert args["TransformOutput"]["S3OutputPath"] == _out("predictions")


def _out(kind: str) -> dict:
    values = [{"Get": "Parameters.OutputPrefix"}, {"Get": "Execution.PipelineExecutionId"}, kind]
    return {"Std:Join": {"On": "/", "Values": values}}


def test_monitor_reads_the_batch_its_predictions_and_the_baseline(compiled):
    monitor_step = steps(compiled[0])["Monitor"]
    args = monitor_step["Arguments"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in args["ProcessingInputs"]}
    assert inputs == {
        "batch": {"Get": "Parameters.InputDataUri"},
        "predictions": {"Get": "Steps.Predict.TransformOutput.S3OutputPath"},
        "baseline": {"Get": "Parameters.BaselineUri"},
        "model": {"Get": "Parameters.ModelDataUri"},  # the reference predictions and the schema
        "test": {"Get": "Parameters.TestDataUri"},
    }
    assert args["AppSpecification"]["ImageUri"] == {"Get": "Parameters.ImageUri"}
    assert args["RoleArn"] == ROLE
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c5.xlarge"
    [output] = args["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "monitor" and output["S3Output"]["S3Uri"] == _out("monitor")
    assert monitor_step["PropertyFiles"] == [
        {"PropertyFileName": "DriftReport", "OutputName": "monitor", "FilePath": "drift.json"}
    ]


def test_drift_found_is_a_json_get_condition_with_no_failure(compiled):
    args = steps(compiled[0])["DriftFound"]["Arguments"]
    assert args["Conditions"] == [
        {
            "Type": "Equals",
            "LeftValue": {
                "Std:JsonGet": {
                    "PropertyFile": {"Get": "Steps.Monitor.PropertyFiles.DriftReport"},
                    "Path": "verdict",
                }
            },
            "RightValue": "drift",
        }
    ]
    assert args["IfSteps"] == [] and args["ElseSteps"] == []  # drift is a signal, not a failure


@pytest.mark.parametrize(("step", "entrypoint"), [("Monitor", monitor), ("Explain", explain)])
def test_container_arguments_are_the_entrypoints_and_use_only_mounted_paths(
    compiled, step, entrypoint
):
    args = steps(compiled[0])[step]["Arguments"]
    argv = args["AppSpecification"]["ContainerArguments"]
    assert argv[0] == step.lower()
    entrypoint._args(argv[1:])  # the model's own argparse accepts them (SystemExit otherwise)
    mounted = [i["S3Input"]["LocalPath"] for i in args["ProcessingInputs"]]
    mounted += [o["S3Output"]["LocalPath"] for o in args["ProcessingOutputConfig"]["Outputs"]]
    for path in (a for a in argv if a.startswith("/opt/ml/")):
        assert any(path == m or path.startswith(m + "/") for m in mounted), path


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({}, "inference config needs 'role_arn' (the job role ARN)"),
        ({"role_arn": ROLE, "instance": "x"}, "unknown inference config key 'instance'"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_code_4(tmp_path, cfg, message):
    proc = _run(tmp_path, cfg)
    assert proc.returncode == 4
    assert proc.stderr == f"error: inference definition: {message}\n"
