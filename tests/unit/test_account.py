"""Account names come from the bootstrap stack's outputs; missing ones are named (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from mlops import account
from mlops.errors import EXIT_CONFIG, EXIT_FAILED, ConfigError, PipelineError

REGION = "us-east-1"


def template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


def full_outputs() -> dict[str, str]:
    return {key: f"value-of-{key}" for key in account.REQUIRED}


@pytest.fixture
def cfn():
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def test_read_returns_every_output_as_an_attribute(cfn):
    outputs = {**full_outputs(), "Extra": "kept"}
    cfn.create_stack(StackName="boot", TemplateBody=template(outputs))
    acct = account.read(cfn, "boot", REGION)
    assert acct.region == REGION
    assert acct.outputs == outputs
    assert acct.DataBucket == "value-of-DataBucket"
    assert acct.Extra == "kept"
    with pytest.raises(AttributeError):
        _ = acct.NotAnOutput


def test_missing_outputs_are_named(cfn):
    outputs = full_outputs()
    del outputs["GlueJobName"], outputs["KmsKeyArn"]
    cfn.create_stack(StackName="boot", TemplateBody=template(outputs))
    with pytest.raises(ConfigError) as exc:
        account.read(cfn, "boot", REGION)
    message = str(exc.value)
    assert message.startswith("bootstrap stack boot lacks outputs KmsKeyArn, GlueJobName: ")
    assert "cloudformation/bootstrap.yaml" in message
    assert exc.value.exit_code == EXIT_CONFIG


def test_a_stack_without_outputs_lacks_all_of_them(cfn):
    cfn.create_stack(StackName="boot", TemplateBody=template({}))
    with pytest.raises(ConfigError, match=", ".join(account.REQUIRED)):
        account.read(cfn, "boot", REGION)


def test_a_missing_stack_is_one_line_naming_it(cfn):
    with pytest.raises(PipelineError) as exc:
        account.read(cfn, "nope-bootstrap", REGION)
    assert str(exc.value).startswith("read bootstrap stack nope-bootstrap: ValidationError")
    assert "does not exist" in str(exc.value)
    assert exc.value.exit_code == EXIT_FAILED
