"""S3 "Object Created" events through EventBridge rules to SageMaker pipeline targets, locally.

A bucket with EventBridge notifications on, a rule on the default bus matching incoming/ whose
target is a pipeline (one Condition step: no compute), started as the target's role. Each test
uses its own pipeline, so "nothing started" is read on a pipeline nothing else starts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlops.local.moto_gaps import events
from mlops.local.runtime import ACCOUNT, REGION, LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
ON, OFF = "events-on", "events-off"


def trust(service: str) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": f"{service}.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def allow(action: str, resource: str = "*") -> str:
    statement = {"Effect": "Allow", "Action": action, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


DEFINITION = json.dumps(
    {
        "Version": "2020-12-01",
        "Parameters": [{"Name": n, "Type": "String"} for n in ("InputDataUri", "OutputPrefix")],
        "Steps": [
            {
                "Name": "Check",
                "Type": "Condition",
                "Arguments": {"Conditions": [], "IfSteps": [], "ElseSteps": []},
            }
        ],
    }
)


class World:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.sm, self.s3 = runtime.session.client("sagemaker"), runtime.session.client("s3")
        self.events, self.iam = runtime.session.client("events"), runtime.session.client("iam")
        self.count, self.rules = 0, []

    def role(self, name: str, service: str, policy: str) -> str:
        arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(service))["Role"][
            "Arn"
        ]
        self.iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy)
        return arn

    def wire(self, bucket: str, role: str) -> tuple[str, list[dict]]:
        """A pipeline and a rule starting it for objects under incoming/ of ``bucket``."""
        for earlier in self.rules:  # one rule at a time: each test's own
            self.events.disable_rule(Name=earlier)
        self.count += 1
        name = f"p{self.count}"
        arn = self.sm.create_pipeline(
            PipelineName=name, PipelineDefinition=DEFINITION, RoleArn=self.pipeline_role
        )["PipelineArn"]
        pattern = {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "incoming/"}]}},
        }
        self.events.put_rule(Name=f"r{self.count}", EventPattern=json.dumps(pattern))
        self.rules.append(f"r{self.count}")
        params = [
            {"Name": "InputDataUri", "Value": f"s3://{bucket}/incoming/"},
            {"Name": "OutputPrefix", "Value": f"s3://{bucket}/out/{name}"},
        ]
        target = {
            "Id": "pipeline",
            "Arn": arn,
            "RoleArn": role,
            "SageMakerPipelineParameters": {"PipelineParameterList": params},
        }
        self.events.put_targets(Rule=f"r{self.count}", Targets=[target])
        return name, params

    def executions(self, name: str, wait: float = 0.0) -> list[str]:
        """The pipeline's executions, once one exists or ``wait`` seconds have passed."""
        deadline = time.monotonic() + wait
        while True:
            found = self.sm.list_pipeline_executions(PipelineName=name)
            arns = [e["PipelineExecutionArn"] for e in found["PipelineExecutionSummaries"]]
            if arns or time.monotonic() >= deadline:
                return arns
            time.sleep(0.05)

    def settle(self) -> None:
        """Every delivery started so far has finished (they run on their own threads)."""
        for thread in list(events._threads):
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with LocalRuntime(ROOT, tmp_path_factory.mktemp("events") / "runs") as runtime:
        w = World(runtime)
        w.pipeline_role = w.role("pipeline", "sagemaker", allow("*"))
        pipelines = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/*"
        w.starter = w.role(
            "starter", "events", allow("sagemaker:StartPipelineExecution", pipelines)
        )
        w.no_grant = w.role("no-grant", "events", allow("s3:GetObject"))
        for bucket in (ON, OFF):
            w.s3.create_bucket(Bucket=bucket)
        w.s3.put_bucket_notification_configuration(
            Bucket=ON, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        yield w


def test_an_object_under_incoming_starts_the_pipeline_with_the_targets_parameters(world):
    name, params = world.wire(ON, world.starter)
    world.s3.put_object(Bucket=ON, Key="incoming/batch.csv", Body=b"1,2,3\n")
    [arn] = world.executions(name, wait=5)
    given = world.sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert given["PipelineParameters"] == params
    deadline = time.monotonic() + 5
    while (
        status := world.sm.describe_pipeline_execution(PipelineExecutionArn=arn)[
            "PipelineExecutionStatus"
        ]
    ) == "Executing" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == "Succeeded"


def test_copy_and_multipart_uploads_start_it_once_each(world):
    name, _ = world.wire(ON, world.starter)
    world.s3.put_object(Bucket=ON, Key="staging/a.csv", Body=b"1\n")  # outside incoming/
    world.s3.copy_object(
        Bucket=ON, Key="incoming/a.csv", CopySource={"Bucket": ON, "Key": "staging/a.csv"}
    )
    upload = world.s3.create_multipart_upload(Bucket=ON, Key="incoming/b.csv")["UploadId"]
    etag = world.s3.upload_part(
        Bucket=ON, Key="incoming/b.csv", UploadId=upload, PartNumber=1, Body=b"2\n"
    )["ETag"]
    world.s3.complete_multipart_upload(
        Bucket=ON,
        Key="incoming/b.csv",
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )
    world.settle()
    assert len(world.executions(name)) == 2  # moto's extra Put inside the multipart: not an event


def test_an_object_outside_incoming_starts_nothing(world):
    name, _ = world.wire(ON, world.starter)
    world.s3.put_object(Bucket=ON, Key="other/batch.csv", Body=b"1,2,3\n")
    world.settle()
    assert world.executions(name, wait=0.2) == []


def test_a_bucket_without_eventbridge_notifications_starts_nothing(world):
    name, _ = world.wire(OFF, world.starter)
    world.s3.put_object(Bucket=OFF, Key="incoming/batch.csv", Body=b"1,2,3\n")
    world.settle()
    assert world.executions(name, wait=0.2) == []


def test_a_disabled_rule_starts_nothing(world):
    name, _ = world.wire(ON, world.starter)
    world.events.disable_rule(Name=f"r{world.count}")
    world.s3.put_object(Bucket=ON, Key="incoming/batch.csv", Body=b"1,2,3\n")
    world.settle()
    assert world.executions(name, wait=0.2) == []


def test_a_role_without_the_grant_starts_nothing_and_the_log_says_why(world, capsys):
    name, _ = world.wire(ON, world.no_grant)
    response = world.s3.put_object(Bucket=ON, Key="incoming/denied.csv", Body=b"1\n")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200  # the upload succeeds
    world.settle()
    assert world.executions(name, wait=0.2) == []
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if f"could not start pipeline {name}:" in line
    ]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"  local: EventBridge rule r{world.count} could not start")
    assert "sagemaker:StartPipelineExecution" in lines[0] and "not authorized" in lines[0]


def test_the_event_has_the_shape_s3_sends_and_moto_still_delivers_to_sqs(world):
    world.wire(ON, world.starter)  # only this test's rules are enabled from here
    sqs = world.runtime.session.client("sqs")
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:events"
    pattern = {"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "shape/"}]}}}
    world.events.put_rule(Name="to-sqs", EventPattern=json.dumps(pattern))
    world.events.put_targets(Rule="to-sqs", Targets=[{"Id": "queue", "Arn": queue_arn}])
    etag = world.s3.put_object(Bucket=ON, Key="shape/x.csv", Body=b"abc")["ETag"].strip('"')
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
    event = json.loads(message["Body"])
    world.events.disable_rule(Name="to-sqs")
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region")} == {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "region": REGION,
    }
    assert event["resources"] == [f"arn:aws:s3:::{ON}"]
    assert time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    assert detail["object"].keys() == {"key", "size", "etag", "sequencer"}  # unversioned
    assert (detail["object"]["key"], detail["object"]["size"], detail["object"]["etag"]) == (
        "shape/x.csv",
        3,
        etag,
    )
    assert detail["reason"] == "PutObject" and detail["bucket"] == {"name": ON}
    assert {"version", "request-id", "requester", "source-ip-address"} <= detail.keys()


def test_cloudformation_notification_configuration_turns_eventbridge_on(world):
    world.count += 1
    name = f"p{world.count}"
    world.sm.create_pipeline(
        PipelineName=name, PipelineDefinition=DEFINITION, RoleArn=world.pipeline_role
    )
    bucket = "events-cfn"
    params = [{"Name": n, "Value": "v"} for n in ("InputDataUri", "OutputPrefix")]
    template = {
        "Resources": {
            "DataBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": bucket,
                    "NotificationConfiguration": {
                        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
                    },
                },
            },
            "IncomingRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": "cfn-incoming",
                    "State": "ENABLED",
                    "EventPattern": {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": {
                            "bucket": {"name": [bucket]},
                            "object": {"key": [{"prefix": "incoming/"}]},
                        },
                    },
                    "Targets": [
                        {
                            "Id": "pipeline",
                            "Arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{name}",
                            "RoleArn": world.starter,
                            "SageMakerPipelineParameters": {"PipelineParameterList": params},
                        }
                    ],
                },
            },
        }
    }
    world.runtime.session.client("cloudformation").create_stack(
        StackName="events", TemplateBody=json.dumps(template)
    )
    world.s3.put_object(Bucket=bucket, Key="incoming/batch.csv", Body=b"1\n")
    [arn] = world.executions(name, wait=5)
    given = world.sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert given["PipelineParameters"] == params
