"""The call an API destination target makes: its body (the input transformer), the dynamic
references resolved at deploy, the connection's headers, and the local host mapping."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlops.local.moto_gaps import api_destinations as ad

ROOT = Path(__file__).resolve().parents[2]
RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/r"


class _Cfn(yaml.SafeLoader):
    pass


_Cfn.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    ),
)


def s3_event(key: str) -> dict:
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-12-02T14:00:00Z",
        "detail": {"bucket": {"name": "data"}, "object": {"key": key, "size": 3}},
    }


def template_targets() -> dict[str, dict]:
    text = (ROOT / "cloudformation/retrain.yaml").read_text()
    resources = yaml.load(text, Loader=_Cfn)["Resources"]
    return {
        k: r["Properties"]["Targets"][0]
        for k, r in resources.items()
        if r["Type"] == "AWS::Events::Rule"
    }


def test_the_new_data_rule_body_is_githubs_dispatch_with_the_key():
    target = template_targets()["NewDataRule"]
    body = ad.transform(target, s3_event("training/a/b.csv"), RULE_ARN, "r")
    assert json.loads(body) == {
        "event_type": "retrain",
        "client_payload": {"reason": "new-data", "data_key": "training/a/b.csv"},
    }
    assert " " not in body  # minified, as EventBridge sends JSON


def test_the_drift_rule_body_names_the_alarm_and_no_data():
    target = template_targets()["DriftRule"]
    event = {"detail": {"alarmName": "mlops-inference-prod-drift", "state": {"value": "ALARM"}}}
    assert json.loads(ad.transform(target, event, RULE_ARN, "r")) == {
        "event_type": "retrain",
        "client_payload": {
            "reason": "drift",
            "alarm": "mlops-inference-prod-drift",
            "data_key": "",
        },
    }


def test_values_outside_quotes_are_json_and_predefined_variables_exist():
    target = {
        "InputTransformer": {
            "InputPathsMap": {"size": "$.detail.object.size", "obj": "$.detail.object"},
            "InputTemplate": '{"n": <size>, "o": <obj>, "rule": "<aws.events.rule-name>", '
            '"e": <aws.events.event>}',
        }
    }
    out = json.loads(ad.transform(target, s3_event("k"), RULE_ARN, "r"))
    assert out["n"] == 3 and out["o"] == {"key": "k", "size": 3} and out["rule"] == "r"
    assert out["e"]["source"] == "aws.s3"


def test_a_string_inside_quotes_is_not_escaped_as_eventbridge_does():
    """EventBridge does not escape values from InputPathsMap: a quote in a key breaks the
    JSON, which GitHub then refuses (why the ETL checks a dispatched key's characters)."""
    target = template_targets()["NewDataRule"]
    body = ad.transform(target, s3_event('training/a"b.csv'), RULE_ARN, "r")
    with pytest.raises(ValueError):
        json.loads(body)


def test_a_path_the_event_lacks_makes_no_variable():
    target = {
        "InputTransformer": {"InputPathsMap": {"x": "$.detail.nope"}, "InputTemplate": '"<x>"'}
    }
    assert ad.transform(target, s3_event("k"), RULE_ARN, "r") == '"<x>"'


def test_input_inputpath_and_no_transformer():
    event = s3_event("k")
    assert ad.transform({"Input": '{"a":1}'}, event, RULE_ARN, "r") == '{"a":1}'
    assert (
        json.loads(ad.transform({"InputPath": "$.detail.object"}, event, RULE_ARN, "r"))
        == event["detail"]["object"]
    )
    assert json.loads(ad.transform({}, event, RULE_ARN, "r")) == event


class Secrets:
    def __init__(self) -> None:
        self.asked: list[dict] = []

    def get_secret_value(self, **args):
        self.asked.append(args)
        return {"SecretString": json.dumps({"authorization": "Bearer t0ken"})}


def test_secretsmanager_dynamic_references_resolve_with_key_and_version():
    secrets = Secrets()
    props = {"A": ["{{resolve:secretsmanager:s:SecretString:authorization::v1}}", 3], "B": "plain"}
    assert ad.resolve(props, secrets) == {"A": ["Bearer t0ken", 3], "B": "plain"}
    assert secrets.asked == [{"SecretId": "s", "VersionId": "v1"}]
    whole = ad.resolve("{{resolve:secretsmanager:s:SecretString}}", secrets)
    assert json.loads(whole) == {"authorization": "Bearer t0ken"}
    with pytest.raises(ValueError, match="no key 'other'"):
        ad.resolve("{{resolve:secretsmanager:s:SecretString:other}}", secrets)


def test_the_connection_sends_its_api_key_and_invocation_headers():
    conn = SimpleNamespace(
        auth_parameters={
            "ApiKeyAuthParameters": {"ApiKeyName": "Authorization", "ApiKeyValue": "Bearer t"},
            "InvocationHttpParameters": {
                "HeaderParameters": [{"Key": "Accept", "Value": "application/vnd.github+json"}]
            },
        }
    )
    assert ad._connection_headers(conn) == {
        "Authorization": "Bearer t",
        "Accept": "application/vnd.github+json",
    }
    assert ad.HEADERS["User-Agent"] == "Amazon/EventBridge/ApiDestinations"


def test_only_mapped_hosts_are_called(monkeypatch):
    monkeypatch.setattr(
        ad, "_runtime", SimpleNamespace(api_hosts={"api.github.com": "http://127.0.0.1:9"})
    )
    url = ad._local_url("https://api.github.com/repos/o/r/dispatches")
    assert url == "http://127.0.0.1:9/repos/o/r/dispatches"
    with pytest.raises(ValueError, match=r"no stand-in for example\.com"):
        ad._local_url("https://example.com/hook")


def test_an_endpoint_that_is_not_https_is_refused():
    with pytest.raises(ValueError, match="must use HTTPS"):
        ad.api_destination(
            "d",
            {
                "InvocationEndpoint": "http://api.github.com/x",
                "HttpMethod": "POST",
                "ConnectionArn": "c",
            },
        )


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        (
            "arn:aws:events:us-east-1:123456789012:api-destination/mlops-github-dispatch/0f-1a",
            "mlops-github-dispatch",
        ),
        ("arn:aws:events:us-east-1:123456789012:api-destination/d", "d"),
    ],
)
def test_api_destination_arns(arn, name):
    assert ad.API_DESTINATION.match(arn)["name"] == name
    assert not ad.API_DESTINATION.match("arn:aws:sagemaker:us-east-1:123456789012:pipeline/p")
