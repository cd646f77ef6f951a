"""The long-lived local AWS (local/server.py), started through `mlops local up`'s code in a tmp
state folder, used from OTHER processes with nothing but the environment it prints: a dev loop
(`mlops etl`, then `mlops train`) in a subprocess, its outputs listed by a plain boto3 client here,
and the moto gap hooks (real compute), the IAM enforcement and the endpoint router all applying to
requests that arrive over HTTP. This test process never enters a LocalRuntime: no patch of moto
and no AWS_* variable of its own is involved."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from mlops.aws import split_s3
from mlops.local import control, oidc, server

pytestmark = pytest.mark.cost(70)  # seconds on two workers
ROOT = Path(__file__).resolve().parents[2]


def parse_env(text: str) -> dict[str, str]:
    """The ``export`` lines of `mlops local up`, as a shell's eval would set them."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0]
    return found


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """A server as `mlops local up` starts it; stopped as `mlops local down` stops it."""
    state = tmp_path_factory.mktemp("local-aws") / "state"
    env = parse_env(control.up(state, ROOT, timeout=170))
    pid = control.read_state(state)["pid"]
    yield state, env
    said = control.down(state)
    assert said.startswith(f"local AWS: stopped (pid {pid}, ")  # by itself, on SIGTERM
    assert control.read_state(state)["status"] == "stopped"
    assert not (state / control.ENV_FILE).exists()
    left = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
    assert left.stdout == ""  # no endpoint, job or server process outlives it


def client(env: dict[str, str], service: str, **creds: str) -> object:
    """A plain boto3 client of this process, pointed at the server by its printed env only."""
    runtime = service == "sagemaker-runtime"
    url = env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME" if runtime else "AWS_ENDPOINT_URL"]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=env["AWS_REGION"],
        aws_access_key_id=creds.get("key", env["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=creds.get("secret", env["AWS_SECRET_ACCESS_KEY"]),
        aws_session_token=creds.get("token"),
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def mlops(env: dict[str, str], manifest: Path, *argv: str) -> subprocess.CompletedProcess:
    """A step in a process that has only the printed env (and PATH/HOME to run at all)."""
    only = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [sys.executable, "-m", "mlops", "--manifest", str(manifest), *argv],
        cwd=ROOT,
        env=only,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_up_prints_the_env_and_writes_the_state_folder(up):
    state, env = up
    assert "AWS_ENDPOINT_URL" not in os.environ  # the test process is a client, nothing more
    assert sorted(env) == sorted(
        [
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "MLOPS_BOOTSTRAP_STACK",
            "MLOPS_IMAGE_URI", "MLOPS_CONTAINER_ENGINE",
        ]
    )  # fmt: skip
    assert env["MLOPS_CONTAINER_ENGINE"] == "local"  # a reused model's evaluation: no docker
    data = control.read_state(state)
    assert data["moto_url"] == env["AWS_ENDPOINT_URL"]
    assert {s["name"] for s in data["stacks"]} >= {"mlops-bootstrap", "mlops-github-access"}
    # the GitHub variables the bootstrap set, as act's --var-file reads them
    repo = dict(line.split("=", 1) for line in (state / "vars").read_text().splitlines())
    prod = dict(line.split("=", 1) for line in (state / "vars.prod").read_text().splitlines())
    assert repo["MLOPS_BOOTSTRAP_STACK"] == "mlops-bootstrap" and "DEPLOY_ROLE_ARN" not in repo
    assert prod["DEPLOY_ROLE_ARN"].startswith("arn:aws:iam::123456789012:role/")
    assert prod["ECR_REPOSITORY_URI"] == repo["ECR_REPOSITORY_URI"]  # repository vars inherited
    # the image bootstrap pushed is in ECR, for `mlops train --image-uri $MLOPS_IMAGE_URI`
    repository, digest = env["MLOPS_IMAGE_URI"].split("/", 1)[1].split("@")
    images = client(env, "ecr").describe_images(repositoryName=repository)["imageDetails"]
    assert digest in {i["imageDigest"] for i in images}
    # a second `up` finds it: the same server, its env again
    assert parse_env(control.up(state, ROOT)) == env
    assert control.read_state(state)["pid"] == data["pid"]
    running, lines = control.status(state)
    assert running and lines[0].startswith(f"local AWS: running (pid {data['pid']}, up ")
    assert "  stack mlops-bootstrap: CREATE_COMPLETE" in lines


def test_a_dev_loop_runs_unchanged_from_another_process(up, tmp_path):
    """etl, look at S3, train: the Glue and training compute run for real (moto's gap hooks)."""
    _, env = up
    manifest = tmp_path / "run.json"
    done = mlops(env, manifest, "etl")
    assert done.returncode == 0, done.stderr[-2000:]
    etl = json.loads(manifest.read_text())["etl"]
    bucket, prefix = split_s3(etl["output"])
    s3 = client(env, "s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    for split in ("train", "validation", "test"):
        assert any(k.startswith(f"{prefix}{split}/") for k in keys), split  # Spark wrote them
    done = mlops(env, manifest, "train", "--image-uri", env["MLOPS_IMAGE_URI"])
    assert done.returncode == 0, done.stderr[-2000:]
    bucket, key = split_s3(json.loads(manifest.read_text())["train"]["model_data"])
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0  # moto never writes it


def test_iam_is_enforced_on_requests_over_http(up):
    state, env = up
    with pytest.raises(ClientError, match="security token included in the request is invalid"):
        client(env, "s3", key="AKIAUNKNOWN0000000000", secret="x").list_buckets()
    build_role = server_var(state, "BUILD_ROLE_ARN")
    creds = client(env, "sts").assume_role(RoleArn=build_role, RoleSessionName="dev")["Credentials"]
    as_build = {"key": creds["AccessKeyId"], "secret": creds["SecretAccessKey"]}
    as_build["token"] = creds["SessionToken"]
    client(env, "ecr", **as_build).get_authorization_token()  # granted: the build role logs in
    with pytest.raises(ClientError) as denied:
        client(env, "cloudformation", **as_build).delete_stack(StackName="mlops-bootstrap")
    message = denied.value.response["Error"]["Message"]
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "is not authorized to perform: cloudformation:DeleteStack" in message
    assert "assumed-role/" in message and build_role.rsplit("/", 1)[1] in message


def test_job_tokens_signed_with_the_saved_key_meet_each_role_s_trust_policy(up):
    """make workflows' token service signs with the key the server saved: the local STS takes
    its tokens, and each role's trust policy decides by the job's claims (environment)."""
    from mlops.local.act.token_service import Job

    state, env = up
    key = state / control.OIDC_KEY
    assert key.stat().st_mode & 0o777 == 0o600
    tokens = oidc.TokenService.load(key)
    repository = control.read_state(state)["repository"]
    role = dict(line.split("=", 1) for line in (state / "vars.dev").read_text().splitlines())[
        "DEPLOY_ROLE_ARN"
    ]
    sts = client(env, "sts")

    def assume(environment: str) -> dict:
        job = Job("deploy-dev", repository, environment=environment, workflow="deploy.yml")
        token = tokens.issue(job.claims(oidc.AUDIENCE))
        return sts.assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="GitHubActions", WebIdentityToken=token
        )

    assert assume("dev")["AssumedRoleUser"]["Arn"].endswith("/GitHubActions")
    with pytest.raises(ClientError) as denied:
        assume("prod")  # the dev deploy role trusts environment:dev only
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError, match=r"InvalidIdentityToken|not valid"):
        sts.assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="xx",
            WebIdentityToken=oidc.TokenService().issue(Job("j", repository, environment="dev")
                                                       .claims(oidc.AUDIENCE)),
        )  # fmt: skip


def test_the_endpoint_router_answers_sagemaker_runtime_over_http(up):
    _, env = up
    runtime = client(env, "sagemaker-runtime", key="AKIAUNKNOWN0000000000", secret="x")
    with pytest.raises(ClientError, match="security token included in the request is invalid"):
        runtime.invoke_endpoint(EndpointName="mlops-dev", Body=b"1", ContentType="text/csv")
    with pytest.raises(ClientError, match=r"Endpoint mlops-nowhere of account \d+ not found"):
        client(env, "sagemaker-runtime").invoke_endpoint(
            EndpointName="mlops-nowhere", Body=b"1", ContentType="text/csv"
        )


def server_var(state: Path, name: str) -> str:
    return dict(line.split("=", 1) for line in (state / "vars").read_text().splitlines())[name]


def test_env_and_vars_files_quote_what_a_shell_or_dotenv_would_split():
    assert server.env_text({"A": "x y", "B": "http://h:1"}) == (
        "export A='x y'\nexport B=http://h:1\nunset AWS_SESSION_TOKEN AWS_PROFILE\n"
    )
    assert server.dotenv_text({"B": 'say "hi"', "A": "arn:aws:iam::1:role/r"}) == (
        'A=arn:aws:iam::1:role/r\nB="say \\"hi\\""\n'
    )


def test_mlops_run_local_runs_in_the_local_aws_that_is_up(up, tmp_path):
    """`make pipeline` with a local AWS up: the whole run in its account, followed from here."""
    state, env = up
    only = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH") if k in os.environ}
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "run", "--local", "--approve", "--state", str(state)],
        cwd=ROOT, env=only, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"running in the local AWS that is up (pid {control.read_state(state)['pid']}" in (
        done.stderr
    )
    assert "prod approval: granted by --approve" in done.stderr  # the server's log, followed
    folder = re.search(r"run folder: (\S+)", done.stderr)[1]
    assert Path(folder).parent == state / "runs" and (Path(folder) / "summary.md").is_file()
    stacks = client(env, "cloudformation").describe_stacks()["Stacks"]
    assert {"mlops-endpoint-dev", "mlops-endpoint-prod"} <= {s["StackName"] for s in stacks}
