"""The bootstrap's retrain opt-in: the token from env or stdin (never argv), kept in Secrets
Manager, and retrain.yaml's parameters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops import retrain_setup
from mlops.errors import ConfigError

TOKEN = "github_pat_11ABCDEFG0123456789_abcdef"


def test_the_token_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("GH_DISPATCH", f"  {TOKEN}\n")
    assert retrain_setup.read_token("GH_DISPATCH") == TOKEN


def test_or_from_stdin():
    assert retrain_setup.read_token("-", io.StringIO(TOKEN + "\n")) == TOKEN


@pytest.mark.parametrize(
    "value", ["", "short", "with space in it 0123456789", "tab\there0123456789abcdef"]
)
def test_an_empty_or_malformed_token_is_refused_without_showing_it(monkeypatch, value):
    monkeypatch.setenv("GH_DISPATCH", value)
    with pytest.raises(ConfigError) as refused:
        retrain_setup.read_token("GH_DISPATCH")
    assert "Contents: Read and write" in str(refused.value) or "spaces" in str(refused.value)
    assert not value.strip() or value.strip() not in str(refused.value)


def test_a_token_passed_as_the_name_is_refused_and_not_echoed():
    with pytest.raises(ConfigError, match="NAME of an environment variable") as refused:
        retrain_setup.read_token(TOKEN.replace("_", "-"))
    assert "github" not in str(refused.value)


def test_the_help_says_which_permission_the_token_needs():
    assert "Contents: Read and write" in retrain_setup.HELP and "stdin" in retrain_setup.HELP


class Secrets:
    def __init__(self, exists: bool) -> None:
        self.exists, self.calls = exists, []

    def describe_secret(self, **args):
        self.calls.append(("describe", args))
        if not self.exists:
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "DescribeSecret"
            )
        return {}

    def create_secret(self, **args):
        self.calls.append(("create", args))
        return {"VersionId": "v-created"}

    def put_secret_value(self, **args):
        self.calls.append(("put", args))
        return {"VersionId": "v-new"}


def test_a_new_secret_is_created_and_an_existing_one_gets_a_version():
    created, updated = Secrets(False), Secrets(True)
    assert retrain_setup.put_token(created, "mlops-github-dispatch", TOKEN) == "v-created"
    assert retrain_setup.put_token(updated, "mlops-github-dispatch", TOKEN) == "v-new"
    ((_, args),) = [c for c in created.calls if c[0] == "create"]
    assert args["Name"] == "mlops-github-dispatch"
    assert json.loads(args["SecretString"]) == {"authorization": f"Bearer {TOKEN}"}
    assert [c[0] for c in updated.calls] == ["describe", "put"]


def test_the_parameters_are_the_templates():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda *_: None)
    text = (
        Path(__file__).resolve().parents[2] / "cloudformation" / retrain_setup.TEMPLATE
    ).read_text()
    template = yaml.load(text, Loader=Loader)
    given = retrain_setup.parameters("mlops", "mlops-bootstrap", "octo-org/repo", "v" * 32)
    required = {k for k, p in template["Parameters"].items() if "Default" not in p}
    assert required <= set(given) <= set(template["Parameters"])
    assert set(retrain_setup.OUTPUTS) == set(template["Outputs"])
    assert (given["GitHubOwner"], given["GitHubRepo"]) == ("octo-org", "repo")
