"""SageMaker Pipelines executions run for real by the local AWS, from hand-written definitions.

No SDK here: the definitions are the JSON the SDK compiles (tests/unit/test_inference_definition
checks ours). One execution runs a batch transform through the real model server and a real
processing job (`explain`), resolves Join, a step property and a JsonGet on a PropertyFile, and
branches on it; cheap executions cover the refusals. Splitting and joining are checked on the
transform's pure functions, where a wrong split cannot hide behind the server's header handling.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError

from abalone_model import model as artefact
from abalone_model.features import encode_rows
from abalone_model.schema import DATA_FILE, Schema
from mlops.local import transform
from mlops.local.pipeline_expressions import StepFailed, walk
from mlops.local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "batch-inference"
SCHEMA = Schema.load()
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
COPIES = 1  # 4177 rows (~170 KB); splitting itself is checked on the pure functions below


pytestmark = pytest.mark.cost(8)  # seconds: scheduled before the small modules


def get(path: str) -> dict:
    return {"Get": path}


def join(*values: object, on: str = "/") -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def out(kind: str) -> dict:
    return join(get("Parameters.OutputPrefix"), get("Execution.PipelineExecutionId"), kind)


ROWS_JSON = {
    "Std:JsonGet": {"PropertyFile": get("Steps.Explain.PropertyFiles.Rows"), "Path": "rows"}
}
PREDICT = {
    "Name": "Predict",
    "Type": "Transform",
    "Arguments": {
        "ModelName": get("Parameters.ModelName"),
        "MaxPayloadInMB": 1,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": get("Parameters.InputDataUri")}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": out("predictions"),
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    },
}


def s3_input(name: str, uri: object) -> dict:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": f"/opt/ml/processing/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
        },
    }


EXPLAIN = {  # listed before Predict: it reads Predict's output, so it must run after it
    "Name": "Explain",
    "Type": "Processing",
    "Arguments": {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            }
        },
        "AppSpecification": {
            "ImageUri": "local/abalone:test",
            "ContainerArguments": [
                "explain",
                "--model",
                "/opt/ml/processing/model/model.tar.gz",
                "--batch",
                "/opt/ml/processing/batch",
                "--output",
                "/opt/ml/processing/explain",
            ],
        },
        "RoleArn": get("Parameters.RoleArn"),
        "ProcessingInputs": [
            s3_input("batch", get("Parameters.InputDataUri")),
            s3_input("model", get("Parameters.ModelDataUri")),
            s3_input("predictions", get("Steps.Predict.TransformOutput.S3OutputPath")),
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "explain",
                    "S3Output": {
                        "S3Uri": out("explain"),
                        "LocalPath": "/opt/ml/processing/explain",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    },
    "PropertyFiles": [
        {"PropertyFileName": "Rows", "OutputName": "explain", "FilePath": "explanations.json"}
    ],
}
ENOUGH = {
    "Name": "Enough",
    "Type": "Condition",
    "Arguments": {
        "Conditions": [
            {
                "Type": "GreaterThanOrEqualTo",
                "LeftValue": ROWS_JSON,
                "RightValue": get("Parameters.MinRows"),
            }
        ],
        "IfSteps": [],
        "ElseSteps": [
            {"Name": "TooFew", "Type": "Fail", "Arguments": {"ErrorMessage": "too few rows"}}
        ],
    },
}
PARAMETERS = [
    *(
        {"Name": n, "Type": "String"}
        for n in ("ModelName", "InputDataUri", "ModelDataUri", "OutputPrefix", "RoleArn")
    ),
    {"Name": "MinRows", "Type": "Integer", "DefaultValue": 10},
]


class World:
    def __init__(self, runtime: LocalRuntime, role: str, rows: int) -> None:
        self.runtime, self.role, self.rows = runtime, role, rows
        self.sm, self.s3 = runtime.session.client("sagemaker"), runtime.session.client("s3")
        self.count = 0
        self.params = {
            "ModelName": "abalone",
            "InputDataUri": f"s3://{BUCKET}/in/",
            "ModelDataUri": f"s3://{BUCKET}/model/model.tar.gz",
            "OutputPrefix": f"s3://{BUCKET}/out",
            "RoleArn": role,
        }

    def execute(
        self, steps: list, parameters: list | None = None, **values: object
    ) -> tuple[str, dict, list]:
        """Create a pipeline, start it with ``values``, wait; (arn, described, steps ascending)."""
        self.count += 1
        name = f"p{self.count}"
        declared = PARAMETERS if parameters is None else parameters
        definition = {"Version": "2020-12-01", "Parameters": declared, "Steps": steps}
        self.sm.create_pipeline(
            PipelineName=name, PipelineDefinition=json.dumps(definition), RoleArn=self.role
        )
        given = [{"Name": k, "Value": str(v)} for k, v in values.items()]
        arn = self.sm.start_pipeline_execution(PipelineName=name, PipelineParameters=given)[
            "PipelineExecutionArn"
        ]
        deadline = time.monotonic() + 60
        while (described := self.sm.describe_pipeline_execution(PipelineExecutionArn=arn))[
            "PipelineExecutionStatus"
        ] == "Executing":
            assert time.monotonic() < deadline, "the execution did not finish within 60 s"
            time.sleep(0.1)
        listed = self.sm.list_pipeline_execution_steps(
            PipelineExecutionArn=arn, SortOrder="Ascending"
        )
        return arn, described, listed["PipelineExecutionSteps"]


def _model_tarball(tmp: Path) -> Path:
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:400]
    data = xgb.DMatrix(
        encode_rows(SCHEMA, [[r[n] for n in SCHEMA.raw_names] for r in rows]),
        label=np.array([float(r["rings"]) for r in rows]),
    )
    booster = xgb.train({"max_depth": 3, "nthread": 1, "seed": 0}, data, num_boost_round=20)
    return artefact.make_tarball(
        artefact.save(tmp / "model", booster, SCHEMA, {"note": "test"}), tmp / "model.tar.gz"
    )


def _batch() -> tuple[bytes, int]:
    """Raw feature rows with their header, as clients send them."""
    with DATA_FILE.open(newline="") as fh:
        rows = [[r[n] for n in SCHEMA.raw_names] for r in csv.DictReader(fh)] * COPIES
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([list(SCHEMA.raw_names), *rows])
    return text.getvalue().encode(), len(rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    with LocalRuntime(ROOT, tmp / "runs") as runtime:
        runtime.entrypoint = [sys.executable, "-m", "abalone_model"]
        iam = runtime.session.client("iam")
        role = iam.create_role(RoleName="pipeline", AssumeRolePolicyDocument=json.dumps(TRUST))[
            "Role"
        ]["Arn"]
        iam.put_role_policy(
            RoleName="pipeline", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        body, rows = _batch()
        w = World(runtime, role, rows)
        w.s3.create_bucket(Bucket=BUCKET)
        w.s3.upload_file(str(_model_tarball(tmp)), BUCKET, "model/model.tar.gz")
        w.s3.put_object(Bucket=BUCKET, Key="in/batch.csv", Body=body)
        w.s3.put_object(
            Bucket=BUCKET, Key="bad/batch.csv", Body=b"M,0.455,abc,0.095,0.514,0.2245,0.101,0.15\n"
        )
        container = {"Image": "local/abalone:test", "ModelDataUrl": w.params["ModelDataUri"]}
        w.sm.create_model(ModelName="abalone", ExecutionRoleArn=role, PrimaryContainer=container)
        yield w


@pytest.fixture(scope="module")
def run(world):
    return world.execute([EXPLAIN, PREDICT, ENOUGH], **world.params)


def test_steps_run_in_dependency_order_and_are_listed_as_the_api_lists_them(world, run):
    arn, described, steps = run
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    assert "FailureReason" not in described
    assert [s["StepName"] for s in steps] == ["Predict", "Explain", "Enough"]
    assert all(s["StepStatus"] == "Succeeded" and s["EndTime"] >= s["StartTime"] for s in steps)
    assert (
        steps[0]["Metadata"]["TransformJob"]["Arn"]
        .split(":")[5]
        .startswith("transform-job/pipelines-")
    )
    assert (
        steps[1]["Metadata"]["ProcessingJob"]["Arn"]
        .split(":")[5]
        .startswith("processing-job/pipelines-")
    )
    assert steps[2]["Metadata"] == {"Condition": {"Outcome": "True"}}  # rows >= MinRows (default)
    newest_first = world.sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)[
        "PipelineExecutionSteps"
    ]
    assert [s["StepName"] for s in newest_first] == ["Enough", "Explain", "Predict"]


def test_the_transform_assembles_one_prediction_per_data_row_under_the_input_name(world, run):
    arn, _, _ = run
    execution = arn.rsplit("/", 1)[-1]
    key = f"out/{execution}/predictions/batch.csv.out"  # <S3OutputPath>/<input name>.out
    lines = world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    assert len(lines) == world.rows  # the header went to the first mini-batch only, as a header
    assert all(0 < float(v) < 40 for v in lines)


def test_job_arguments_resolve_join_properties_and_json_get(world, run):
    arn, _, steps = run
    execution = arn.rsplit("/", 1)[-1]
    job = world.sm.describe_processing_job(
        ProcessingJobName=steps[1]["Metadata"]["ProcessingJob"]["Arn"].split("/")[-1]
    )
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in job["ProcessingInputs"]}
    assert inputs["predictions"] == f"s3://{BUCKET}/out/{execution}/predictions"  # Steps.Predict...
    assert job["RoleArn"] == world.role
    explained = json.loads(
        world.s3.get_object(Bucket=BUCKET, Key=f"out/{execution}/explain/explanations.json")[
            "Body"
        ].read()
    )
    assert explained["rows"] == world.rows  # what the JsonGet read for the condition


def test_a_model_4xx_fails_the_transform_step_with_the_models_message(world):
    _, described, steps = world.execute(
        [PREDICT], **{**world.params, "InputDataUri": f"s3://{BUCKET}/bad/"}
    )
    assert described["PipelineExecutionStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith("step Predict (Transform) failed: Transform job pipelines-")
    assert "the model answered 400" in reason and "abc" in reason
    assert [(s["StepName"], s["StepStatus"]) for s in steps] == [("Predict", "Failed")]
    job = world.sm.describe_transform_job(
        TransformJobName=steps[0]["Metadata"]["TransformJob"]["Arn"].split("/")[-1]
    )
    assert job["TransformJobStatus"] == "Failed" and "abc" in job["FailureReason"]


def test_a_step_type_the_runtime_does_not_run_fails_the_execution_naming_it(world):
    _, described, steps = world.execute(
        [{"Name": "Tune", "Type": "Tuning", "Arguments": {}}], parameters=[]
    )
    assert described["PipelineExecutionStatus"] == "Failed"
    assert described["FailureReason"] == (
        "step Tune (Tuning) failed: step type Tuning is not run by the local runtime "
        "(it runs Processing, Transform, Condition, Fail)"
    )
    assert steps[0]["StepStatus"] == "Failed" and "Tuning" in steps[0]["FailureReason"]


def test_a_condition_chooses_its_branch_and_a_fail_step_fails_with_its_message(world):
    mode = [{"Name": "Mode", "Type": "String", "DefaultValue": "fast"}]
    unknown_mode = {
        "Type": "Not",
        "Condition": {
            "Type": "In",
            "QueryValue": get("Parameters.Mode"),
            "Values": ["fast", "full"],
        },
    }
    gate = {
        "Name": "Gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "Or",
                    "Conditions": [
                        unknown_mode,
                        {
                            "Type": "Equals",
                            "LeftValue": get("Parameters.Mode"),
                            "RightValue": "full",
                        },
                    ],
                }
            ],
            "IfSteps": [
                {
                    "Name": "Stop",
                    "Type": "Fail",
                    "Arguments": {"ErrorMessage": join("mode", get("Parameters.Mode"), on=" ")},
                }
            ],
            "ElseSteps": [],
        },
    }
    _, fast, steps = world.execute([gate], parameters=mode)
    assert fast["PipelineExecutionStatus"] == "Succeeded"
    assert steps[0]["Metadata"] == {"Condition": {"Outcome": "False"}}
    _, full, steps = world.execute([gate], parameters=mode, Mode="full")
    assert full["PipelineExecutionStatus"] == "Failed"
    assert full["FailureReason"] == "step Stop (Fail) failed: mode full"
    assert [s["StepName"] for s in steps] == ["Gate", "Stop"]
    assert steps[1]["Metadata"] == {"Fail": {"ErrorMessage": "mode full"}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "Pipeline parameter ModelName has no default"),
        (
            {"ModelName": "m", "Typo": "x"},
            "Pipeline parameter Typo is not in the pipeline definition",
        ),
    ],
)
def test_start_refuses_missing_and_unknown_parameters(world, values, message):
    params = [{"Name": "ModelName", "Type": "String"}]
    world.sm.create_pipeline(
        PipelineName=f"refuse{len(values)}",
        PipelineDefinition=json.dumps({"Parameters": params, "Steps": []}),
        RoleArn=world.role,
    )
    given = [{"Name": k, "Value": v} for k, v in values.items()]
    with pytest.raises(ClientError, match=message):
        world.sm.start_pipeline_execution(
            PipelineName=f"refuse{len(values)}", PipelineParameters=given
        )


# --- the transform's splitting, batching and joining (pure functions) ---------------------------
def settings(
    payload: int = 64, strategy: str = "MultiRecord", join_input: bool = False
) -> transform.Settings:
    return transform.Settings(
        strategy, payload, "text/csv", "text/csv", "Line", "Line", join_input, 10
    )


def test_mini_batches_keep_whole_lines_in_order_with_the_header_only_in_the_first():
    lines = [b"sex,length", *(f"M,0.{i:04d}".encode() for i in range(40))]
    batches = list(
        transform._mini_batches(b"\n".join(lines) + b"\n", settings(payload=64), "s3://b/k")
    )
    assert len(batches) > 3
    assert [r for b in batches for r in b] == lines  # every record once, in order, whole
    assert all(sum(len(r) + 1 for r in b) <= 64 for b in batches)
    assert [b"sex,length" in b for b in batches] == [True] + [False] * (len(batches) - 1)
    assert [
        len(b)
        for b in transform._mini_batches(b"a\n\nb\r\nc", settings(strategy="SingleRecord"), "k")
    ] == [1, 1, 1]


def test_a_record_over_max_payload_fails_naming_it():
    with pytest.raises(transform.TransformFailed, match=r"record 2 of s3://b/k is 70 bytes"):
        list(transform._mini_batches(b"a\n" + b"x" * 70 + b"\n", settings(payload=64), "s3://b/k"))


def test_join_source_input_appends_each_output_row_to_its_input_row():
    assert transform._joined([b"M,1", b"F,2"], b"9.5\n7\n", "m") == b"M,1,9.5\nF,2,7\n"
    with pytest.raises(transform.TransformFailed, match="3 records but the model returned 2"):
        transform._joined([b"sex", b"M,1", b"F,2"], b"9.5\n7\n", "m")


def test_output_names_are_relative_to_the_input_folder(world):
    for key in ("names/a.csv", "names/sub/b.csv"):
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x\n")
    spec = lambda uri: {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}  # noqa: E731
    names = [n for _, _, n in transform._inputs(world.s3, spec(f"s3://{BUCKET}/names/"))]
    assert names == ["a.csv", "sub/b.csv"]
    assert [n for _, _, n in transform._inputs(world.s3, spec(f"s3://{BUCKET}/names/a"))] == [
        "a.csv"
    ]
    with pytest.raises(transform.TransformFailed, match="no S3 objects found under"):
        transform._inputs(world.s3, spec(f"s3://{BUCKET}/nothing/"))


def test_property_paths_index_lists_by_name_and_refuse_what_is_not_there():
    described = {
        "ProcessingOutputConfig": {
            "Outputs": [{"OutputName": "a", "S3Output": {"S3Uri": "s3://x/a"}}]
        }
    }
    assert walk(described, "ProcessingOutputConfig.Outputs['a'].S3Output.S3Uri", "p") == "s3://x/a"
    assert walk({"m": [{"v": 1}]}, "$.m[0].v", "p") == 1
    with pytest.raises(StepFailed, match="no item named 'b'"):
        walk(described, "ProcessingOutputConfig.Outputs['b'].S3Output", "p")


def test_steps_that_need_nothing_of_each_other_run_at_once(world):
    twin = {**PREDICT, "Name": "PredictAgain"}  # the same transform, depending on nothing
    _, described, steps = world.execute([PREDICT, twin], **world.params)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    first, second = sorted(steps, key=lambda s: s["StartTime"])
    assert second["StartTime"] < first["EndTime"]  # one at a time would start it after
