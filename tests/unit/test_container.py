"""A processing request run on the runner (mlops.container): Docker's command lines, the S3
staging of inputs and outputs, one-line errors; and the local runtime's engine (mlops.local.engine)
with the ECR gap it pulls through."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from moto import mock_aws

from mlops import config, container
from mlops.account import Account
from mlops.aws import new_session
from mlops.context import Context
from mlops.errors import PipelineError
from mlops.local import engine as local_engine
from mlops.local import moto_gaps
from mlops.local.moto_gaps import ecr as ecr_gap
from mlops.manifest import Manifest
from mlops.steps import evaluate

ROOT = Path(__file__).resolve().parents[2]
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
IMAGE_REPO = "mlops"


@pytest.fixture
def ctx(tmp_path, monkeypatch, moto_env) -> Context:
    with mock_aws():
        session = new_session(region_name="us-east-1")
        s3 = session.client("s3")
        for bucket in ("data", "artifacts"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="artifacts", Key="train/model.tar.gz", Body=b"model")
        s3.put_object(Bucket="data", Key="etl/test/part-0.csv", Body=b"rings,x\n1,2\n")
        account = Account(
            "us-east-1",
            {"SageMakerExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
             "KmsKeyArn": KEY, "ArtifactBucket": "artifacts"},
        )  # fmt: skip
        cfg = config.load(ROOT / "pipeline.toml")
        yield Context(cfg, session, Manifest(tmp_path / "m.json"), root=ROOT, _account=account)


def _request(ctx: Context) -> dict:
    return evaluate.request(
        ctx,
        "mlops-evaluate-1",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "a" * 64,
        "s3://artifacts/train/model.tar.gz",
        "s3://data/etl/test/",
        "s3://artifacts/runs/r/evaluation/candidate",
    )


class Recorder:
    """An engine that writes what the evaluation would and records what it was given."""

    def __init__(self, code: int = 0, output: str = "") -> None:
        self.code, self.output, self.calls = code, output, []

    def pull(self, ctx, image):
        self.calls.append(("pull", image))

    def run(self, ctx, image, args, mounts, env):
        self.calls.append(("run", image, args, {m.container: m.host for m in mounts}, env))
        staged = {m.container: m.host for m in mounts}
        self.seen = {
            c: sorted(p.relative_to(h).as_posix() for p in h.rglob("*") if p.is_file())
            for c, h in staged.items()
        }
        out = staged["/opt/ml/processing/evaluation"]
        (out / "evaluation.json").write_text('{"rmse": 2}')
        (out / "plots").mkdir()
        (out / "plots" / "p.png").write_bytes(b"png")
        return self.code, self.output


def test_the_request_runs_with_its_inputs_staged_and_its_outputs_uploaded_with_its_key(ctx):
    engine = Recorder()
    container.run_processing(ctx, _request(ctx), engine)
    (pull, image), (_, ran, args, _mounts, env) = engine.calls
    assert pull == "pull" and ran == image == _request(ctx)["AppSpecification"]["ImageUri"]
    base = "/opt/ml/processing"
    assert args == ["evaluate", "--model", f"{base}/model", "--test", f"{base}/test",
                    "--output", f"{base}/evaluation"]  # fmt: skip
    assert engine.seen["/opt/ml/processing/model"] == ["model.tar.gz"]
    assert engine.seen["/opt/ml/processing/test"] == ["part-0.csv"]
    assert env == {}
    s3 = ctx.client("s3")
    prefix = "runs/r/evaluation/candidate/"
    keys = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix=prefix)["Contents"]
    )
    assert keys == [prefix + "evaluation.json", prefix + "plots/p.png"]
    head = s3.head_object(Bucket="artifacts", Key=prefix + "evaluation.json")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == KEY


def test_a_failed_container_is_one_error_naming_the_job_and_its_last_line(ctx, capsys):
    engine = Recorder(code=2, output="loading\nerror: the test split has no rows\n")
    with pytest.raises(PipelineError, match=r"mlops-evaluate-1 failed on this runner \(exit 2\): "
                       "error: the test split has no rows") as failed:  # fmt: skip
        container.run_processing(ctx, _request(ctx), engine)
    assert "output is above" in str(failed.value)
    assert "  | loading" in capsys.readouterr().err
    listed = ctx.client("s3").list_objects_v2(Bucket="artifacts", Prefix="runs/")
    assert "Contents" not in listed  # nothing of a failed run is uploaded


class FakeRun:
    def __init__(self, results: dict[str, subprocess.CompletedProcess]) -> None:
        self.results, self.argv, self.stdin = results, [], []

    def __call__(self, argv, input=None, **_kwargs):
        if argv[0] != "docker":  # anything else in the process (git, ...) is none of ours
            return subprocess.CompletedProcess(argv, 0, "", "")
        self.argv.append(argv)
        self.stdin.append(input)
        return self.results.get(argv[1], subprocess.CompletedProcess(argv, 0, "", ""))


def test_docker_logs_in_with_the_ecr_token_pulls_by_digest_and_runs_as_the_runner_user(
    ctx, monkeypatch
):
    fake = FakeRun({"run": subprocess.CompletedProcess([], 0, "ok\n", "")})
    monkeypatch.setattr(container.subprocess, "run", fake)
    docker = container.Docker()
    image = _request(ctx)["AppSpecification"]["ImageUri"]
    docker.pull(ctx, image)
    mounts = [container.Mount("test", Path("/tmp/t"), "/opt/ml/processing/test")]
    code, out = docker.run(ctx, image, ["evaluate", "--test", "/opt/ml/processing/test"],
                           mounts, {"A": "1"})  # fmt: skip
    login, pull, run = fake.argv
    assert login[:5] == ["docker", "login", "--username", "AWS", "--password-stdin"]
    assert login[5] == image.split("/")[0]
    password = (
        base64.b64decode(
            ctx.client("ecr").get_authorization_token()["authorizationData"][0][
                "authorizationToken"
            ]
        )
        .decode()
        .split(":", 1)[1]
    )
    assert fake.stdin[0] == password and password not in " ".join(login)
    assert pull == ["docker", "pull", "--quiet", image]
    assert run[:4] == ["docker", "run", "--rm", f"--user={os.getuid()}:{os.getgid()}"]
    assert run[4:] == ["--volume", "/tmp/t:/opt/ml/processing/test", "--env", "A=1", image,
                       "evaluate", "--test", "/opt/ml/processing/test"]  # fmt: skip
    assert (code, out) == (0, "ok\n")


def test_a_refused_pull_names_dockers_reason(ctx, monkeypatch):
    denied = subprocess.CompletedProcess([], 1, "", "Error response: pull access denied\n")
    monkeypatch.setattr(container.subprocess, "run", FakeRun({"pull": denied}))
    with pytest.raises(PipelineError, match=r"^docker pull failed: Error response: pull access"):
        container.Docker().pull(ctx, _request(ctx)["AppSpecification"]["ImageUri"])


def test_no_docker_says_what_to_do(ctx, monkeypatch):
    def missing(*_a, **_k):
        raise FileNotFoundError("docker")

    monkeypatch.setattr(container.subprocess, "run", missing)
    with pytest.raises(PipelineError, match="docker is not installed") as failed:
        container.Docker().pull(ctx, _request(ctx)["AppSpecification"]["ImageUri"])
    assert 'reused_model_on = "processing-job"' in str(failed.value)


def test_the_engine_is_docker_unless_the_environment_points_at_the_local_aws(monkeypatch):
    monkeypatch.delenv("MLOPS_CONTAINER_ENGINE", raising=False)
    assert isinstance(container.engine(), container.Docker)
    monkeypatch.setenv("MLOPS_CONTAINER_ENGINE", "local")
    assert isinstance(container.engine(), local_engine.LocalEngine)


# --- the local engine: ECR's pull calls through the gap, the entrypoint with mapped paths ------
@pytest.fixture
def pushed(ctx):
    """An image in moto's ECR with one layer, and the GetDownloadUrlForLayer gap installed."""
    ecr = ctx.client("ecr")
    ecr.create_repository(repositoryName=IMAGE_REPO)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "c" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 1, "digest": "sha256:" + "d" * 64}],
    }  # fmt: skip
    image = ecr.put_image(repositoryName=IMAGE_REPO, imageManifest=json.dumps(manifest),
                          imageTag="t")["image"]  # fmt: skip
    moto_gaps._patches.clear()
    ecr_gap.install(moto_gaps._wrap)
    try:
        yield (
            f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{IMAGE_REPO}@"
            + image["imageId"]["imageDigest"]
        )
    finally:
        moto_gaps.uninstall()


def test_the_ecr_gap_gives_urls_only_for_layers_an_image_references(ctx, pushed):
    ecr = ctx.client("ecr")
    found = ecr.get_download_url_for_layer(
        repositoryName=IMAGE_REPO, layerDigest="sha256:" + "d" * 64
    )
    assert found["layerDigest"] == "sha256:" + "d" * 64 and found["downloadUrl"].startswith(
        "https://"
    )
    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        ecr.get_download_url_for_layer(repositoryName=IMAGE_REPO, layerDigest="sha256:" + "e" * 64)
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.get_download_url_for_layer(repositoryName="other", layerDigest="sha256:" + "d" * 64)


def test_the_local_pull_asks_for_the_manifest_and_every_layer(ctx, pushed, monkeypatch):
    asked = []
    real = ctx.client("ecr")
    monkeypatch.setattr(real, "get_download_url_for_layer",
                        lambda **kw: asked.append(kw["layerDigest"]))  # fmt: skip
    local_engine.LocalEngine().pull(ctx, pushed)
    assert asked == ["sha256:" + "c" * 64, "sha256:" + "d" * 64]


def test_a_local_pull_of_an_image_ecr_does_not_hold_fails_as_docker_would(ctx, pushed):
    missing = pushed.rsplit("@", 1)[0] + "@sha256:" + "f" * 64
    with pytest.raises(PipelineError, match="manifest unknown"):
        local_engine.LocalEngine().pull(ctx, missing)
    with pytest.raises(PipelineError, match="invalid reference format"):
        local_engine.LocalEngine().pull(ctx, "mlops")


def test_the_local_run_maps_container_paths_to_the_staged_folders(ctx, tmp_path, monkeypatch):
    seen = {}

    def fake(argv, env, **_kw):
        seen.update(argv=argv, env=env)
        return subprocess.CompletedProcess(argv, 0, "out", "err")

    monkeypatch.setattr(local_engine.subprocess, "run", fake)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    mounts = [
        container.Mount("model", tmp_path / "m", "/opt/ml/processing/model"),
        container.Mount("test", tmp_path / "t", "/opt/ml/processing/test/"),
    ]
    args = ["evaluate", "--model", "/opt/ml/processing/model/model.tar.gz", "--test",
            "/opt/ml/processing/test", "--other", "/opt/ml/processing/testing"]  # fmt: skip
    code, out = local_engine.LocalEngine().run(ctx, "i", args, mounts, {"E": "1"})
    assert seen["argv"][-7:] == ["evaluate", "--model", f"{tmp_path}/m/model.tar.gz",
                                 "--test", f"{tmp_path}/t",
                                 "--other", "/opt/ml/processing/testing"]  # fmt: skip
    assert (
        seen["argv"][: len(ctx.config.local_entrypoint)][1:]
        == list(ctx.config.local_entrypoint)[1:]
    )
    assert seen["env"]["E"] == "1" and not any(k.startswith("AWS_") for k in seen["env"])
    assert (code, out) == (0, "outerr")


def test_the_jobs_environment_and_mount_names_reach_the_engine_with_the_context(ctx):
    seen = {}

    class Names(Recorder):
        def run(self, run_ctx, image, args, mounts, env):
            seen.update(ctx=run_ctx, names=[m.name for m in mounts])
            return super().run(run_ctx, image, args, mounts, env)

        def pull(self, pull_ctx, image):
            seen["pull_ctx"] = pull_ctx

    engine = Names()
    container.run_processing(ctx, {**_request(ctx), "Environment": {"A": "1"}}, engine)
    assert engine.calls[-1][-1] == {"A": "1"}
    assert seen["names"] == ["model", "test", "evaluation"]
    assert seen["ctx"] is ctx and seen["pull_ctx"] is ctx


def test_outputs_without_a_kms_key_are_uploaded_without_sse_kms(ctx):
    request = _request(ctx)
    request["ProcessingOutputConfig"] = {
        k: v for k, v in request["ProcessingOutputConfig"].items() if k != "KmsKeyId"
    }
    container.run_processing(ctx, request, Recorder())
    head = ctx.client("s3").head_object(
        Bucket="artifacts", Key="runs/r/evaluation/candidate/evaluation.json"
    )
    assert head.get("ServerSideEncryption") != "aws:kms" and "SSEKMSKeyId" not in head


def test_an_output_uri_ending_in_a_slash_gives_no_empty_key_segment(ctx):
    request = _request(ctx)
    request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] += "/"
    container.run_processing(ctx, request, Recorder())
    listed = ctx.client("s3").list_objects_v2(Bucket="artifacts", Prefix="runs/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "runs/r/evaluation/candidate/evaluation.json",
        "runs/r/evaluation/candidate/plots/p.png",
    ]


def test_a_failure_names_the_last_of_many_lines_and_shows_only_the_tail(ctx, capsys):
    lines = [f"line {i}" for i in range(container.TAIL + 5)]
    with pytest.raises(PipelineError, match=rf"\(exit 1\): line {container.TAIL + 4} \("):
        container.run_processing(ctx, _request(ctx), Recorder(code=1, output="\n".join(lines)))
    err = capsys.readouterr().err
    assert "  | line 5\n" in err and "  | line 4\n" not in err


def test_a_silent_failure_names_its_exit_code_and_a_long_line_is_cut(ctx):
    with pytest.raises(PipelineError, match=r"\(exit 3\): exit code 3"):
        container.run_processing(ctx, _request(ctx), Recorder(code=3, output="\n"))
    with pytest.raises(PipelineError) as failed:
        container.run_processing(ctx, _request(ctx), Recorder(code=1, output="y" * 600))
    assert "(exit 1): " + "y" * 500 + " (the container's output" in str(failed.value)


def test_docker_runs_capture_text_output_with_a_timeout_and_no_check(ctx, monkeypatch):
    given = []

    def run(argv, **kwargs):
        given.append(kwargs)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(container.subprocess, "run", run)
    container.Docker().run(ctx, "i", [], [], {})
    assert given == [
        {"input": None, "capture_output": True, "text": True, "timeout": 3600, "check": False}
    ]


def test_a_docker_command_over_the_timeout_is_named(ctx, monkeypatch):
    def slow(argv, **_k):
        raise subprocess.TimeoutExpired(argv, 3600)

    monkeypatch.setattr(container.subprocess, "run", slow)
    with pytest.raises(PipelineError, match=r"^`docker run --rm` took over 3600 s"):
        container.Docker().run(ctx, "i", [], [], {})


def test_docker_logs_in_to_the_registry_of_an_image_in_a_nested_repository(ctx, monkeypatch):
    fake = FakeRun({})
    monkeypatch.setattr(container.subprocess, "run", fake)
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    container.Docker().pull(ctx, f"{registry}/team/mlops@sha256:" + "a" * 64)
    assert fake.argv[0][5] == registry


def test_a_failed_docker_command_without_output_names_its_exit_code(ctx, monkeypatch):
    monkeypatch.setattr(
        container.subprocess, "run", FakeRun({"login": subprocess.CompletedProcess([], 5, "", "")})
    )
    with pytest.raises(PipelineError, match=r"^docker login failed: exit 5$"):
        container.Docker().pull(ctx, _request(ctx)["AppSpecification"]["ImageUri"])


# --- the local engine's details -----------------------------------------------------------------
def test_the_local_pull_asks_for_the_manifest_in_dockers_media_types(ctx, pushed, monkeypatch):
    real, asked = ctx.client("ecr"), []
    batch_get_image = real.batch_get_image

    def recorded(**kwargs):
        asked.append(kwargs)
        return batch_get_image(**kwargs)

    monkeypatch.setattr(real, "batch_get_image", recorded)
    local_engine.LocalEngine().pull(ctx, pushed)
    assert asked == [
        {"repositoryName": IMAGE_REPO, "imageIds": [{"imageDigest": pushed.rsplit("@", 1)[1]}],
         "acceptedMediaTypes": local_engine.MEDIA_TYPES}
    ]  # fmt: skip


def test_the_local_pull_by_tag_asks_each_layer_of_the_repository(ctx, pushed, monkeypatch):
    real, asked = ctx.client("ecr"), []
    monkeypatch.setattr(real, "get_download_url_for_layer", lambda **kw: asked.append(kw))
    local_engine.LocalEngine().pull(ctx, pushed.rsplit("@", 1)[0] + ":t")
    assert asked == [
        {"repositoryName": IMAGE_REPO, "layerDigest": "sha256:" + "c" * 64},
        {"repositoryName": IMAGE_REPO, "layerDigest": "sha256:" + "d" * 64},
    ]


def _local_run(ctx, monkeypatch, mounts=(), args=()):
    seen = {}

    def fake(argv, **kwargs):
        seen.update(argv=argv, **kwargs)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(local_engine.subprocess, "run", fake)
    local_engine.LocalEngine().run(ctx, "i", list(args), list(mounts), {})
    return seen


def test_the_local_run_is_this_pythons_entrypoint_in_the_checkout(ctx, monkeypatch):
    import sys

    seen = _local_run(ctx, monkeypatch)
    assert seen["argv"] == [sys.executable, *ctx.config.local_entrypoint[1:]]
    assert seen["cwd"] == ctx.root
    assert (seen["capture_output"], seen["text"], seen["timeout"], seen["check"]) == (
        True,
        True,
        container.TIMEOUT,
        False,
    )


def test_a_local_entrypoint_that_is_not_python_runs_as_configured(ctx, monkeypatch):
    import dataclasses

    for entrypoint in (("./serve", "evaluate"), ()):
        ctx.config = dataclasses.replace(ctx.config, local_entrypoint=entrypoint)
        assert _local_run(ctx, monkeypatch, args=["x"])["argv"] == [*entrypoint, "x"]


def test_a_path_maps_to_the_deepest_mount_that_holds_it(tmp_path):
    mounts = [
        container.Mount("all", tmp_path / "a", "/opt/ml/processing"),
        container.Mount("test", tmp_path / "t", "/opt/ml/processing/test"),
    ]
    assert local_engine._host_path("/opt/ml/processing/test/x.csv", mounts) == (
        f"{tmp_path}/t/x.csv"
    )
    assert local_engine._host_path("/opt/ml/processing/model", mounts) == f"{tmp_path}/a/model"


class Faults:
    def __init__(self, *armed: str) -> None:
        self.armed, self.taken = set(armed), []

    def take(self, name: str) -> bool:
        self.taken.append(name)
        return name in self.armed


def _staged(tmp_path):
    mounts = []
    for name in ("model", "test"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.csv").write_text("rings,x\n1,2\n")
        mounts.append(container.Mount(name, tmp_path / name, f"/opt/ml/processing/{name}"))
    return mounts


def test_the_evaluation_fault_empties_only_the_test_input(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(local_engine, "RUNTIME_FAULTS", Faults("evaluation"))
    _local_run(ctx, monkeypatch, mounts=_staged(tmp_path))
    assert not (tmp_path / "test" / "part.csv").exists()
    assert (tmp_path / "model" / "part.csv").exists()
    # each fault is asked for once, for the test input only
    assert local_engine.RUNTIME_FAULTS.taken == ["evaluation", "gate"]


def test_the_gate_fault_shifts_the_test_labels(ctx, tmp_path, monkeypatch):
    shifted = []
    monkeypatch.setattr(local_engine, "RUNTIME_FAULTS", Faults("gate"))
    monkeypatch.setattr(local_engine, "shift_labels", shifted.append)
    _local_run(ctx, monkeypatch, mounts=_staged(tmp_path))
    assert shifted == [tmp_path / "test"] and (tmp_path / "test" / "part.csv").exists()


def test_no_faults_leave_the_staged_inputs_alone(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(local_engine, "RUNTIME_FAULTS", Faults())
    _local_run(ctx, monkeypatch, mounts=_staged(tmp_path))
    assert (tmp_path / "test" / "part.csv").read_text() == "rings,x\n1,2\n"


# --- the ECR gap's details ----------------------------------------------------------------------
def test_the_layer_url_points_at_ecrs_layer_bucket_for_the_repository(ctx, pushed):
    digest = "sha256:" + "d" * 64
    found = ctx.client("ecr").get_download_url_for_layer(
        repositoryName=IMAGE_REPO, layerDigest=digest
    )
    assert found["downloadUrl"] == (
        "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/"
        f"123456789012/{IMAGE_REPO}/{digest}"
    )


def test_an_unreferenced_layer_is_refused_naming_it_and_the_repository(ctx, pushed):
    ecr = ctx.client("ecr")
    with pytest.raises(ecr.exceptions.LayersNotFoundException) as refused:
        ecr.get_download_url_for_layer(repositoryName=IMAGE_REPO, layerDigest="sha256:e")
    assert "digest 'sha256:e' is not referenced" in str(refused.value) and "'mlops'" in str(
        refused.value
    )


@pytest.mark.parametrize(
    ("manifest", "digests"),
    [
        ("not json", set()),
        (json.dumps({"layers": [{"digest": "sha256:d"}, {"size": 1}]}), {"sha256:d"}),
        (json.dumps({"config": {"digest": "sha256:c"}}), {"sha256:c"}),
        (json.dumps({"config": {"size": 1}, "layers": []}), set()),
    ],
)
def test_the_digests_of_a_manifest_are_its_layers_and_config(manifest, digests):
    assert ecr_gap.layer_digests(manifest) == digests
