"""The SageMaker Pipelines definition language, evaluated for the local executor.

Get (Parameters.X, Execution.X, Steps.X.<describe path>, with ``Outputs['name']`` picking a list
item by its *Name), Std:Join, Std:JsonGet (a step's PropertyFile, or an S3Uri), the conditions
Equals, GreaterThan(OrEqualTo), LessThan(OrEqualTo), In, Not and Or, and the parameters of a
start call (typed, defaults applied). Anything else is a StepFailed naming it, never a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError

from mlops.aws import split_s3

TOKEN = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


class StepFailed(Exception):
    """Why a step failed: its FailureReason, and the execution's."""


def walk(value: Any, path: str, what: str) -> Any:
    """``a.b[0]['name']`` into describe responses and JSON; a name indexes a list by *Name."""
    for name, index, key1, key2 in TOKEN.findall(path.removeprefix("$").lstrip(".")):
        key = key1 or key2
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        elif key and isinstance(value, dict) and key in value:
            value = value[key]
        elif key and isinstance(value, list):
            found = [v for v in value if isinstance(v, dict) and key in _names(v)]
            if not found:
                raise StepFailed(f"{what}: no item named {key!r} at {path!r}")
            value = found[0]
        else:
            raise StepFailed(f"{what}: {path!r} is not there (stopped at {name or index or key!r})")
    return value


def _names(item: dict[str, Any]) -> list[Any]:
    return [v for k, v in item.items() if k.endswith("Name")]


def refs(value: Any) -> set[str]:
    """Step names that ``value`` reads (``{"Get": "Steps.X..."}``)."""
    if isinstance(value, dict):
        get = value.get("Get")
        own = {get.split(".")[1]} if isinstance(get, str) and get.startswith("Steps.") else set()
        return own.union(*(refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value))
    return set()


def typed(kind: str, value: Any, name: str) -> Any:
    try:
        if kind == "Integer":
            return int(value)
        if kind == "Float":
            return float(value)
        if kind == "Boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
    except ValueError:
        raise ValidationError(
            f"Pipeline parameter {name} must be a {kind}, not {value!r}"
        ) from None
    return str(value)


def parameters(definition: dict[str, Any], given: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Defaults and the start call's values, typed; missing or unknown names are refused."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    values = {p["Name"]: p["Value"] for p in given or []}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValidationError(f"Pipeline parameter {unknown[0]} is not in the pipeline definition")
    resolved = {}
    for name, spec in declared.items():
        if name not in values and "DefaultValue" not in spec:
            raise ValidationError(f"Pipeline parameter {name} has no default: pass its value")
        value = values.get(name, spec.get("DefaultValue"))
        resolved[name] = typed(spec.get("Type", "String"), value, name)
    return resolved


class Resolver:
    """Values of one execution: parameters, execution variables, finished steps' properties."""

    def __init__(self, params: dict[str, Any], variables: dict[str, str], s3: Any) -> None:
        self.params, self.variables, self.s3 = params, variables, s3
        self.steps: dict[str, dict[str, Any]] = {}  # name -> its definition (branches added later)
        self.described: dict[str, dict[str, Any]] = {}  # name -> describe_*_job response

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Get":
                return self.get(arg)
            if key == "Std:Join":
                return str(arg.get("On", "")).join(text(self.resolve(v)) for v in arg["Values"])
            if key == "Std:JsonGet":
                return self.json_get(arg)
            if key.startswith("Std:"):
                raise StepFailed(f"function {key} is not run by the local runtime")
        return {k: self.resolve(v) for k, v in value.items()}

    def get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.params:
                raise StepFailed(f"{path}: no such pipeline parameter")
            return self.params[rest]
        if head == "Execution":
            return self._execution_variable(rest)
        if head == "Steps":
            step, _, inner = rest.partition(".")
            if step not in self.described:
                raise StepFailed(f"{path}: step {step} has no properties (not a finished job step)")
            return walk(self.described[step], inner.removeprefix("Properties."), path)
        raise StepFailed(f"{path}: cannot resolve {head}")

    def _execution_variable(self, name: str) -> str:
        if name == "CurrentDateTime":
            return utcnow().isoformat()
        if name not in self.variables:
            raise StepFailed(f"Execution.{name} is not an execution variable the local runtime has")
        return self.variables[name]

    def json_get(self, arg: dict[str, Any]) -> Any:
        uri = self.resolve(arg["S3Uri"]) if "S3Uri" in arg else self._property_file(arg)
        bucket, key = split_s3(uri)
        try:
            document = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:
            raise StepFailed(f"JsonGet cannot read {uri}: {exc}") from None
        return walk(document, arg["Path"], f"JsonGet {arg['Path']!r} in {uri}")

    def _property_file(self, arg: dict[str, Any]) -> str:
        ref = arg["PropertyFile"]
        path = ref.get("Get", "") if isinstance(ref, dict) else ""
        match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.(.+)", path)
        if not match:
            raise StepFailed(f"JsonGet needs Steps.<step>.PropertyFiles.<name>, not {ref!r}")
        step, name = match.groups()
        files = self.steps.get(step, {}).get("PropertyFiles", [])
        spec = next((f for f in files if f.get("PropertyFileName") == name), None)
        if spec is None:
            raise StepFailed(f"{path}: step {step} declares no property file {name}")
        output = self.get(f"Steps.{step}.ProcessingOutputConfig.Outputs['{spec['OutputName']}']")
        return output["S3Output"]["S3Uri"].rstrip("/") + "/" + spec["FilePath"].lstrip("/")

    def condition(self, cond: dict[str, Any]) -> bool:
        kind = cond.get("Type", "")
        if kind == "Not":
            return not self.condition(cond["Condition"])
        if kind == "Or":
            return any(self.condition(c) for c in cond["Conditions"])
        if kind == "In":
            query = self.resolve(cond["QueryValue"])
            return query in [self.resolve(v) for v in cond["Values"]]
        if kind not in COMPARE:
            raise StepFailed(f"condition type {kind} is not run by the local runtime")
        left, right = self.resolve(cond["LeftValue"]), self.resolve(cond["RightValue"])
        try:
            return bool(COMPARE[kind](left, right))
        except TypeError:
            raise StepFailed(f"{kind} cannot compare {left!r} with {right!r}") from None


def deps(step: dict[str, Any]) -> set[str]:
    args = step.get("Arguments", {})
    read = args.get("Conditions", []) if step.get("Type") == "Condition" else args
    return set(step.get("DependsOn", [])) | refs(read)


def text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value.isoformat() if isinstance(value, datetime) else str(value)
