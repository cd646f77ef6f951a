"""The docker and ECR stand-ins of `make workflows` (local/act/standins/): inputs and outputs as
the real actions' the workflows use, the push through the ECR API as the caller (moto's mock, in
this process), the refusals a real push meets."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from mlops.local.act import workflows

ROOT = Path(__file__).resolve().parents[2]
STANDINS = workflows.STANDINS
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_standin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


push = _module(STANDINS / "docker" / "build-push-action" / "push.py")
login = _module(STANDINS / "aws-actions" / "amazon-ecr-login" / "login.py")


@pytest.fixture
def ecr(moto_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("MLOPS_ACT_DOCKER_BUILD", "0")
    with mock_aws():
        client = boto3.client("ecr", region_name="us-east-1")
        client.create_repository(repositoryName="mlops", imageTagMutability="IMMUTABLE")
        yield client


def outputs(tmp_path: Path) -> dict[str, str]:
    text = (tmp_path / "out").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_every_input_the_workflows_pass_a_stood_in_action_is_declared_by_its_stand_in():
    used: dict[str, set[str]] = {}
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                repo = step.get("uses", "").split("@")[0]
                if repo in workflows.REPLACED:
                    used.setdefault(repo, set()).update(step.get("with", {}))
    assert set(used) == set(workflows.REPLACED)
    for repo, inputs in used.items():
        declared = yaml.safe_load((STANDINS / repo / "action.yml").read_text())["inputs"]
        assert inputs <= set(declared), repo


def test_the_stood_in_actions_are_given_to_act_with_or_without_local_copies():
    pinned = workflows.pinned_actions(ROOT / ".github" / "workflows")
    values, notes = workflows.local_repositories(None, pinned)
    assert sorted(v.split("@")[0] for v in values) == sorted(workflows.REPLACED)
    assert all(f"={STANDINS / v.split('@')[0]}" in v for v in values)
    assert len(notes) == len(workflows.REPLACED)


def test_a_push_goes_to_ecr_as_the_caller_and_its_digest_is_the_output(ecr, tmp_path, monkeypatch):
    tag = f"{REGISTRY}/mlops:{'a' * 40}"
    monkeypatch.setenv("INPUT_TAGS", tag)
    monkeypatch.setenv("INPUT_PUSH", "true")
    assert push.main() == 0
    digest = outputs(tmp_path)["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    found = ecr.describe_images(repositoryName="mlops", imageIds=[{"imageTag": "a" * 40}])
    assert found["imageDetails"][0]["imageDigest"] == digest
    image = ecr.batch_get_image(repositoryName="mlops", imageIds=[{"imageDigest": digest}])
    manifest = json.loads(image["images"][0]["imageManifest"])
    assert manifest["config"]["digest"] == outputs(tmp_path)["imageid"]
    layers = ecr.batch_check_layer_availability(  # the config went up as docker push sends it
        repositoryName="mlops", layerDigests=[manifest["config"]["digest"]]
    )["layers"]
    assert [layer["layerAvailability"] for layer in layers] == ["AVAILABLE"]


def test_a_tag_the_immutable_repository_holds_is_refused_as_a_push_is(ecr, tmp_path, monkeypatch):
    tag = f"{REGISTRY}/mlops:v1"
    monkeypatch.setenv("INPUT_TAGS", tag)
    monkeypatch.setenv("INPUT_PUSH", "true")
    push.main()
    # moto's own refusal here; the local AWS's rules answer ImageTagAlreadyExistsException
    with pytest.raises(SystemExit, match=rf"to push {re.escape(tag)}: Image(Tag)?AlreadyExists"):
        push.main()


@pytest.mark.parametrize("tag", ["mlops:v1", "ghcr.io/o/mlops:v1", f"{REGISTRY}x/mlops:v1"])
def test_a_tag_outside_the_account_s_registry_is_denied(ecr, tag, monkeypatch):
    monkeypatch.setenv("INPUT_TAGS", tag)
    monkeypatch.setenv("INPUT_PUSH", "true")
    with pytest.raises(SystemExit, match=r"denied: .*set ECR_REPOSITORY_URI"):
        push.main()
    assert ecr.describe_images(repositoryName="mlops")["imageDetails"] == []


def test_no_push_pushes_nothing_and_no_tags_builds_nothing(ecr, tmp_path, monkeypatch):
    monkeypatch.setenv("INPUT_TAGS", f"{REGISTRY}/mlops:v1")
    monkeypatch.setenv("INPUT_PUSH", "false")
    assert push.main() == 0
    assert outputs(tmp_path)["digest"] == ""
    assert ecr.describe_images(repositoryName="mlops")["imageDetails"] == []
    monkeypatch.setenv("INPUT_TAGS", " \n ")
    with pytest.raises(SystemExit, match="tag is needed"):
        push.main()


def test_tags_are_split_on_lines_and_commas():
    assert push.tags("a:1, b:2\n\nc:3 ") == ["a:1", "b:2", "c:3"]


def test_without_a_daemon_each_build_has_its_own_digest(monkeypatch):
    monkeypatch.setenv("MLOPS_ACT_DOCKER_BUILD", "0")
    (blob, image_id), (other, _) = push.built_config("src", "t"), push.built_config("src", "t")
    assert blob != other and image_id == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_ecr_login_asks_for_the_token_and_names_the_registry(ecr, tmp_path):
    assert login.main() == 0
    assert outputs(tmp_path) == {"registry": REGISTRY}


def test_ecr_login_refused_fails_with_the_reason(ecr, monkeypatch, capsys):
    from botocore.exceptions import ClientError

    class Refusing:
        def get_authorization_token(self):
            error = {"Code": "AccessDeniedException", "Message": "not authorized"}
            raise ClientError({"Error": error}, "GetAuthorizationToken")

    monkeypatch.setattr(boto3, "client", lambda *_a, **_k: Refusing())
    assert login.main() == 1
    said = capsys.readouterr().out
    assert "::error::Could not get an ECR authorization token: " in said
    assert "AccessDeniedException" in said and "not authorized" in said
