"""mlops image (steps/image.py) against moto's ECR: find this commit's image, pin it by digest.

ECR tags are immutable in the bootstrap's repository and the tag is the commit sha, so a re-run of
the build job must reuse the image it pushed before instead of pushing the same tag again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlops import config
from mlops.aws import new_session
from mlops.context import Context
from mlops.errors import ConfigError, PipelineError
from mlops.manifest import Manifest
from mlops.steps import image

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SHA = "0123456789abcdef0123456789abcdef01234567"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": "sha256:" + "c" * 64,
        },
        "layers": [],
    }
)


@pytest.fixture
def session(monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)  # another test's local server must not catch these calls
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield new_session(region_name=REGION)


@pytest.fixture
def repo_uri(session) -> str:
    """An IMMUTABLE repository, as bootstrap.yaml makes it: its full URI."""
    created = session.client("ecr").create_repository(
        repositoryName="mlops", imageTagMutability="IMMUTABLE"
    )
    return created["repository"]["repositoryUri"]


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "github_output"
    path.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    return path


def step_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT's name<<DELIMITER blocks as a dict (the last value of each name)."""
    lines, found, i = path.read_text().splitlines(), {}, 0
    while i < len(lines):
        name, delimiter = lines[i].split("<<", 1)
        end = lines.index(delimiter, i + 1)
        found[name] = "\n".join(lines[i + 1 : end])
        i = end + 1
    return found


@pytest.fixture
def ctx(session, tmp_path) -> Context:
    cfg = config.load(ROOT / "pipeline.toml")
    return Context(cfg, session, Manifest(tmp_path / "run.json"), root=tmp_path)


def push(session, tag: str) -> str:
    pushed = session.client("ecr").put_image(
        repositoryName="mlops", imageManifest=MANIFEST, imageTag=tag
    )
    return pushed["image"]["imageId"]["imageDigest"]


def test_repository_uri_is_a_full_ecr_uri(repo_uri):
    assert repo_uri == f"123456789012.dkr.ecr.{REGION}.amazonaws.com/mlops"
    assert image.repository(repo_uri) == "mlops"


def test_a_new_tag_outputs_an_empty_digest(ctx, repo_uri, outputs):
    assert image.run(ctx, repo_uri, SHA) == {"digest": ""}
    assert step_outputs(outputs) == {"digest": ""}  # the build step's `if` runs the push


def test_an_existing_tag_outputs_its_digest(ctx, session, repo_uri, outputs):
    digest = push(session, SHA)
    push(session, "other")  # another commit's image does not count
    assert digest.startswith("sha256:")
    assert image.run(ctx, repo_uri, SHA) == {"digest": digest}
    assert step_outputs(outputs) == {"digest": digest}
    assert image.run(ctx, repo_uri, "f" * 40) == {"digest": ""}


def test_a_pushed_digest_is_pinned_as_the_image_uri(ctx, session, repo_uri, outputs):
    digest = push(session, SHA)
    result = image.run(ctx, repo_uri, SHA, digest)
    assert result == {"digest": digest, "image-uri": f"{repo_uri}@{digest}"}
    assert step_outputs(outputs) == {"digest": digest, "image-uri": f"{repo_uri}@{digest}"}
    assert ctx.manifest.get("image") == {
        "uri": f"{repo_uri}@{digest}",
        "digest": digest,
        "tag": SHA,
    }


def test_an_unknown_digest_is_refused_in_one_line(ctx, session, repo_uri, outputs):
    push(session, SHA)
    unknown = "sha256:" + "d" * 64
    with pytest.raises(PipelineError) as caught:
        image.run(ctx, repo_uri, SHA, unknown)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"check {repo_uri}@{unknown} in ECR: ImageNotFoundException")
    assert "image-uri" not in step_outputs(outputs)  # nothing downstream gets a broken image


def test_a_digest_that_is_not_one_is_a_config_error(ctx, repo_uri):
    with pytest.raises(ConfigError, match="is not an image digest"):
        image.run(ctx, repo_uri, SHA, "latest")


@pytest.mark.parametrize("bare", ["mlops", "docker.io/library/mlops", ""])
@pytest.mark.parametrize("digest", ["", "sha256:" + "a" * 64])
def test_a_repository_without_the_registry_host_is_refused(ctx, repo_uri, bare, digest):
    """A tag without the ECR host goes to Docker Hub: the old ECR_REPOSITORY variable."""
    with pytest.raises(ConfigError) as caught:
        image.run(ctx, bare, SHA, digest)
    message = str(caught.value)
    assert "\n" not in message
    assert "set the repository variable ECR_REPOSITORY_URI" in message
    assert "bootstrap output EcrRepositoryUri" in message


def test_moto_refuses_the_same_tag_twice_in_an_immutable_repository(session, repo_uri):
    """Why the build is skipped on a re-run: ECR would refuse the second push of the sha."""
    first = push(session, SHA)
    other = MANIFEST.replace("c" * 64, "e" * 64)  # a rebuild is a different image
    ecr = session.client("ecr")
    with pytest.raises(ClientError) as caught:
        ecr.put_image(repositoryName="mlops", imageManifest=other, imageTag=SHA)
    # AWS answers ImageTagAlreadyExistsException; moto 5.2.5 refuses with ImageAlreadyExists
    code = caught.value.response["Error"]["Code"]
    assert code in {"ImageTagAlreadyExistsException", "ImageAlreadyExistsException"}
    assert SHA in caught.value.response["Error"]["Message"]
    (kept,) = ecr.describe_images(repositoryName="mlops", imageIds=[{"imageTag": SHA}])[
        "imageDetails"
    ]
    assert kept["imageDigest"] == first  # the tag still names the first image


def test_a_lookup_failure_other_than_not_found_is_one_line(ctx, outputs):
    missing = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/nope"  # no such repository
    with pytest.raises(PipelineError) as caught:
        image.run(ctx, missing, SHA)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"look up {missing}:{SHA}: ")
    assert "RepositoryNotFoundException" in str(caught.value)
