"""One job of a workflow as an act run of its own, with its real ``needs`` outputs.

Why not one act run per workflow: GitHub gives each job its environment's variables (``vars``
resolves to ``DEPLOY_ROLE_ARN`` of dev in deploy-dev, of prod in deploy-prod) and its own OIDC
claims (``sub`` names the environment), while one act run has one ``--var-file`` and one token
endpoint. Why not ``act -j <job>``: act plans a job together with every job it needs
(nektos/act pkg/model/planner.go, ``createStages``), so the earlier jobs would run again.

So each job runs in a copy of its workflow where it is exactly as written and each job it needs
is a *replay*: one no-op step, and as outputs the values that job really produced in its own run
(what GitHub's ``needs.<job>.outputs`` holds). A last job, :data:`RECORD`, runs whatever happened
(``if: always()``) and writes ``toJSON(needs.<job>)`` (result and outputs) to ``$MLOPS_ACT_RECORD``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mlops.errors import ConfigError

RECORD = "mlops-act-record"
RECORD_ENV = "MLOPS_ACT_RECORD"
_INPUT = re.compile(r"^\$\{\{\s*inputs\.([\w-]+)\s*\}\}$")


def load(path: Path) -> dict[str, Any]:
    """A workflow file; YAML 1.1 reads the key ``on`` as true, so it is put back as ``on``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
        raise ConfigError(f"{path} is not a workflow (no jobs)")
    if True in data:
        data["on"] = data.pop(True)
    return data


def needs(spec: Mapping[str, Any]) -> list[str]:
    found = spec.get("needs", [])
    return [found] if isinstance(found, str) else list(found)


def environment(spec: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """The job's environment name; ``${{ inputs.<name> }}`` (teardown.yml's) is resolved, any
    other expression is refused, since its variables and token claims depend on it."""
    value = spec.get("environment") or ""
    if isinstance(value, dict):
        value = value.get("name", "")
    value = str(value)
    if "${{" not in value:
        return value
    match = _INPUT.match(value.strip())
    if not match or match[1] not in inputs:
        raise ConfigError(f"environment {value!r}: only ${{{{ inputs.<name> }}}} of a given input "
                          "can be resolved before the job runs")  # fmt: skip
    return str(inputs[match[1]])


def replay(name: str, spec: Mapping[str, Any], outputs: Mapping[str, str]) -> dict[str, Any]:
    """A job that only hands on ``outputs`` (literal values: no expression is evaluated)."""
    for key, value in outputs.items():
        if "${{" in str(value):
            raise ConfigError(f"{name}'s output {key} holds an expression: {value!r}")
    return {
        "name": f"{spec.get('name', name)} (replayed)",
        "runs-on": "ubuntu-latest",
        "outputs": dict(outputs),
        "steps": [{"run": f"echo 'replay of {name}: its outputs from its own run'"}],
    }


def derived(workflow: Mapping[str, Any], job: str, done: Mapping[str, Mapping[str, Any]]) -> dict:
    """The workflow with ``job`` as written, its needs replayed from ``done`` (each a record:
    result and outputs), and the record job after it."""
    jobs = workflow["jobs"]
    if job not in jobs:
        raise ConfigError(f"the workflow has no job {job!r} (jobs: {', '.join(jobs)})")
    result = {key: value for key, value in workflow.items() if key != "jobs"}
    new: dict[str, Any] = {}
    for need in needs(jobs[job]):
        if need not in done:
            raise ConfigError(f"{job} needs {need}, which has not run")
        new[need] = replay(need, jobs[need], done[need].get("outputs") or {})
    new[job] = jobs[job]
    new[RECORD] = {
        "needs": [job],
        "if": "always()",
        "runs-on": "ubuntu-latest",
        "steps": [
            {
                "run": f'printf "%s" "$RECORDED" > "${RECORD_ENV}"',
                "env": {"RECORDED": f"${{{{ toJSON(needs.{job}) }}}}"},
            }
        ],
    }
    result["jobs"] = new
    return result


def write(workflow: Mapping[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(dict(workflow), sort_keys=False, width=1000), encoding="utf-8")
    return path


def read_record(path: Path) -> dict[str, Any]:
    """The record job's file: ``{"result": ..., "outputs": {...}}``; a job that never got that
    far (act failed before it) is a failure with no outputs."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"result": "failure", "outputs": {}}
    return {"result": found.get("result", "failure"), "outputs": found.get("outputs") or {}}
