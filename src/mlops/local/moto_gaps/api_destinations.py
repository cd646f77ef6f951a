"""EventBridge connections and API destinations, locally: the CloudFormation types moto ignores,
and the call a rule's API destination target makes.

moto (5.2.5) keeps connections and API destinations through the API but not through
CloudFormation, resolves no ``{{resolve:secretsmanager:...}}`` dynamic reference, and its own
delivery (off unless MOTO_EVENTS_INVOKE_HTTP) sends none of the connection's authorization and a
transformed input that differs from AWS's. Here:

- AWS::Events::Connection and AWS::Events::ApiDestination are applied through the API, the
  secret's dynamic reference resolved first, as CloudFormation does at deploy time; a non-HTTPS
  endpoint is refused ("The URL must use HTTPS", "API destinations",
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-api-destinations.html).
- :func:`deliver` makes the call AS the target's role, assumed by events.amazonaws.com (trust
  policy, then events:InvokeApiDestination on the destination), with EventBridge's own headers
  (User-Agent Amazon/EventBridge/ApiDestinations, Content-Type application/json; charset=utf-8),
  the connection's API key header and invocation headers, and the target's InputTransformer.
  The endpoint's host is mapped to a local stand-in by the runtime (``api_hosts``: https://
  api.github.com -> the local GitHub API); a host without one is not called (offline only).
  Any failure is one log line: AWS counts a failed invocation (no retry here; AWS retries only
  429 and 5xx answers), and the event that triggered it is never affected.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from moto.events.models import events_backends

from mlops.aws import log
from mlops.local.iam.actions import Access

API_DESTINATION = re.compile(
    r"^arn:aws[\w-]*:events:(?P<region>[^:]*):(?P<account>\d{12}):api-destination/"
    r"(?P<name>[.\-_A-Za-z0-9]+)(/[-A-Za-z0-9]+)?$"
)
# {{resolve:secretsmanager:secret-id:SecretString:json-key:version-stage:version-id}}
# ("Get a secret or secret value from Secrets Manager", CloudFormation User Guide,
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html)
DYNAMIC = re.compile(r"\{\{resolve:secretsmanager:([^{}]+)\}\}")
# "Headers included in requests to API destinations" (the API destinations page above)
HEADERS = {
    "User-Agent": "Amazon/EventBridge/ApiDestinations",
    "Content-Type": "application/json; charset=utf-8",
    "Range": "bytes=0-1048575",
    "Accept-Encoding": "gzip,deflate",
    "Connection": "close",
}
TIMEOUT = 5  # seconds: "must have a maximum client execution timeout of 5 seconds" (same page)
_runtime: Any = None


# --- CloudFormation ------------------------------------------------------------------------------
def resolve(value: Any, secrets: Any) -> Any:
    """Every secretsmanager dynamic reference in ``value`` replaced by the secret's value."""
    if isinstance(value, dict):
        return {k: resolve(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, secrets) for v in value]
    if not isinstance(value, str):
        return value
    return DYNAMIC.sub(lambda m: _secret(m.group(1), secrets), value)


def _secret(spec: str, secrets: Any) -> str:
    secret_id, _, rest = spec.partition(":SecretString")
    key, stage, version = [*rest.lstrip(":").split(":"), "", "", ""][:3]
    args: dict[str, str] = {"SecretId": secret_id}
    if version:
        args["VersionId"] = version
    elif stage:
        args["VersionStage"] = stage
    text = secrets.get_secret_value(**args)["SecretString"]
    if not key:
        return text
    value = json.loads(text).get(key)
    if value is None:
        raise ValueError(f"secret {secret_id} has no key {key!r}")
    return str(value)


def connection(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    events = _runtime.session.client("events")
    given = resolve(props.get("AuthParameters", {}), _runtime.session.client("secretsmanager"))
    target = props.get("Name") or name
    args = {
        "Name": target,
        "Description": props.get("Description", ""),
        "AuthorizationType": props["AuthorizationType"],
        "AuthParameters": given,
    }
    if target in _backend().connections:
        events.update_connection(**args)
        arn = _backend().connections[target].arn
    else:
        arn = events.create_connection(**args)["ConnectionArn"]
    secret = _backend().connections[target].secret_arn
    policy = arn.rsplit("/", 1)[0]
    return target, {"Arn": arn, "ArnForPolicy": policy, "SecretArn": secret}


def api_destination(name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    endpoint = props["InvocationEndpoint"]
    if not endpoint.startswith("https://"):
        raise ValueError(f"InvocationEndpoint {endpoint}: the URL must use HTTPS")
    events, target = _runtime.session.client("events"), props.get("Name") or name
    args = {
        "Name": target,
        "Description": props.get("Description", ""),
        "ConnectionArn": props["ConnectionArn"],
        "InvocationEndpoint": endpoint,
        "HttpMethod": props["HttpMethod"],
        "InvocationRateLimitPerSecond": int(props.get("InvocationRateLimitPerSecond", 300)),
    }
    if target in _backend().destinations:
        events.update_api_destination(**args)
    else:
        events.create_api_destination(**args)
    arn = _backend().destinations[target].arn
    return target, {"Arn": arn, "ArnForPolicy": arn.rsplit("/", 1)[0]}


CFN = {"AWS::Events::Connection": connection, "AWS::Events::ApiDestination": api_destination}


# --- the input transformer -----------------------------------------------------------------------
def _path(event: Any, path: str) -> tuple[bool, Any]:
    """A JSON path in dot notation ($.detail.object.key, array indices as .0 or [0])."""
    value = event
    for part in re.findall(r"[^.\[\]]+", path.removeprefix("$")):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def transform(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule: str) -> str:
    """The body EventBridge sends for ``event`` ("Amazon EventBridge input transformation",
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html):
    the event itself, or Input, or InputPath's value, or InputTemplate with each <variable> from
    InputPathsMap and the predefined aws.events.* ones. Inside quotes a string is inserted as it
    is (EventBridge does not escape it), outside quotes as JSON; a path the event lacks makes no
    variable; JSON output is minified."""
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(_path(event, target["InputPath"])[1], separators=(",", ":"))
    spec = target.get("InputTransformer")
    if not spec:
        return json.dumps(event, separators=(",", ":"))
    found = {
        "aws.events.rule-arn": rule_arn,
        "aws.events.rule-name": rule,
        "aws.events.event.ingestion-time": event.get("time", ""),
        "aws.events.event": event,
        "aws.events.event.json": event,
    }
    for name, path in spec.get("InputPathsMap", {}).items():
        ok, value = _path(event, path)
        if ok:
            found[name] = value
    template = spec["InputTemplate"]

    def fill(match: re.Match) -> str:
        quote, name = match.group(1), match.group(2)
        if name not in found:
            return match.group(0)
        value = found[name]
        if quote and isinstance(value, str):
            return f'"{value}"'
        return quote + json.dumps(value, separators=(",", ":")) + quote

    text = re.sub(r'("?)<([A-Za-z0-9_.-]+)>\1', fill, template)
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return text  # not JSON: sent as it is (the endpoint decides)


# --- the call ------------------------------------------------------------------------------------
def _backend() -> Any:
    return events_backends[_runtime.account][_runtime.region]


def deliver(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    """One invocation of an API destination target; never raises (runs on its own thread)."""
    arn = target.get("Arn", "")
    try:
        status = _invoke(rule, target, event)
        log(f"  local: EventBridge rule {rule.name} called API destination {arn}: HTTP {status}")
    except Exception as exc:  # a failed invocation on AWS (metrics, DLQ): never the event's source
        reason = str(exc).replace("\n", " ")
        log(f"  local: EventBridge rule {rule.name} could not call API destination {arn}: {reason}")


def _invoke(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> int:
    arn = target["Arn"]
    if not target.get("RoleArn"):
        raise ValueError("the target has no RoleArn (an API destination target needs one)")
    enforcer = _runtime.enforcer
    principal = enforcer.service_principal(target["RoleArn"], "events")  # the trust policy
    # authorised on the destination's ARN as the target names it (name/uuid); the Service
    # Authorization Reference's format is api-destination/<name> (CloudFormation's ArnForPolicy),
    # so retrain.yaml grants both: which one AWS evaluates is not documented
    enforcer.check(principal, [Access("events:InvokeApiDestination", arn)])
    name = API_DESTINATION.match(arn)
    destination = _backend().destinations.get(name["name"]) if name else None
    if destination is None:
        raise ValueError("no such API destination")
    found = [c for c in _backend().connections.values() if c.arn == destination.connection_arn]
    if not found:
        raise ValueError(f"its connection {destination.connection_arn} does not exist")
    headers = {**HEADERS, **_connection_headers(found[0])}
    params = target.get("HttpParameters", {})
    headers.update(params.get("HeaderParameters", {}))
    for fixed in ("User-Agent", "Range"):  # EventBridge's own: not overridable
        headers[fixed] = HEADERS[fixed]
    url = _local_url(destination.invocation_endpoint)
    body = transform(target, event, rule.arn, rule.name).encode()
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only (_local_url)
        url, data=body, method=destination.http_method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - loopback
            return answer.status
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")[:200].replace("\n", " ")
        raise ValueError(
            f"HTTP {exc.code} from {destination.invocation_endpoint}: {text}"
        ) from None


def _connection_headers(conn: Any) -> dict[str, str]:
    auth = conn.auth_parameters
    headers: dict[str, str] = {}
    key = auth.get("ApiKeyAuthParameters")
    if key:
        headers[key["ApiKeyName"]] = key["ApiKeyValue"]
    basic = auth.get("BasicAuthParameters")
    if basic:
        import base64

        pair = f"{basic['Username']}:{basic['Password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    for header in auth.get("InvocationHttpParameters", {}).get("HeaderParameters", []):
        headers[header["Key"]] = str(header["Value"])
    return headers


def _local_url(endpoint: str) -> str:
    """The endpoint's host mapped to its local stand-in (runtime.api_hosts); refuse any other."""
    host = endpoint.removeprefix("https://").split("/", 1)[0]
    local = _runtime.api_hosts.get(host)
    if local is None:
        raise ValueError(f"the local AWS has no stand-in for {host} (it never leaves the machine)")
    return local + endpoint.removeprefix(f"https://{host}")


def install(runtime: Any) -> None:
    global _runtime
    _runtime = runtime


def uninstall() -> None:
    global _runtime
    _runtime = None
