"""`make workflows`' pieces that run without act (mlops.local.act.workflows): which actions the
workflows pin, how ACTIONS_DIR maps to --local-repository and when a stand-in replaces a copy, the
tool cache, the pull_request event; and the upload-artifact stand-in's matching and outputs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from mlops.errors import ConfigError
from mlops.local.act import workflows

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
UPLOAD = workflows.STANDINS / "actions" / "upload-artifact" / "upload.py"
SHA = "a" * 40


def test_every_pinned_action_of_the_workflows_is_found_with_its_subpath():
    pinned = workflows.pinned_actions(WORKFLOWS)
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    expected = set(re.findall(r"uses: ([\w.-]+/[\w.-]+)((?:/[\w.-]+)*)@([0-9a-f]{40})", text))
    assert {(r, s.lstrip("/"), sha) for r, s, sha in expected} == pinned
    assert ("actions/cache", "restore", "27d5ce7f107fe9357f9df03efb73ab90386fccae") in pinned
    assert all(not repo.startswith(".") for repo, _, _ in pinned)  # ./ reusable workflows out


def _action(folder: Path, main: str | None = "dist/index.js", using: str = "node24") -> Path:
    folder.mkdir(parents=True)
    runs = {"using": using, **({"main": main} if main else {})}
    (folder / "action.yml").write_text(yaml.safe_dump({"name": "x", "runs": runs}))
    return folder


def test_a_complete_copy_is_given_to_act_as_it_is(tmp_path):
    copy = _action(tmp_path / "o" / f"r@{SHA}")
    (copy / "dist").mkdir()
    (copy / "dist" / "index.js").write_text("")
    values, notes = workflows.local_repositories(tmp_path, {("o/r", "", SHA)})
    assert values == [f"o/r@{SHA}={copy}"] and notes == []


def test_a_missing_checkout_says_which_commit_to_clone(tmp_path):
    with pytest.raises(
        ConfigError, match=rf"ACTIONS_DIR has no o/r@{SHA}: clone .*check out {SHA}$"
    ):
        workflows.local_repositories(tmp_path, {("o/r", "", SHA)})


def test_a_copy_without_its_entry_point_is_stood_in_or_refused(tmp_path):
    _action(tmp_path / "actions" / f"upload-artifact@{SHA}", main="dist/upload/index.js")
    values, notes = workflows.local_repositories(tmp_path, {("actions/upload-artifact", "", SHA)})
    standin = workflows.STANDINS / "actions" / "upload-artifact"
    assert values == [f"actions/upload-artifact@{SHA}={standin}"]
    assert notes == [f"actions/upload-artifact: the local copy lacks dist/upload/index.js; "
                     f"stood in by {standin}"]  # fmt: skip
    _action(tmp_path / "o" / f"r@{SHA}")
    with pytest.raises(ConfigError, match=r"lacks dist/index\.js and no stand-in exists"):
        workflows.local_repositories(tmp_path, {("o/r", "", SHA)})


def test_composite_actions_and_subpaths_are_checked_where_their_action_is(tmp_path):
    base = tmp_path / "o" / f"r@{SHA}"
    _action(base / "restore", main=None, using="composite")
    values, _ = workflows.local_repositories(tmp_path, {("o/r", "restore", SHA)})
    assert values == [f"o/r@{SHA}={base}"]  # act maps the whole repository


def test_the_tool_cache_holds_this_python_where_setup_python_looks(tmp_path):
    root = workflows.tool_cache(tmp_path)
    version = ".".join(map(str, sys.version_info[:3]))
    assert (root / "Python" / version / "x64").resolve() == Path(sys.base_prefix).resolve()
    assert (root / "Python" / version / "x64.complete").is_file()
    assert workflows.tool_cache(tmp_path) == root  # a second run reuses it


def test_the_pull_request_event_lets_ci_yml_s_comment_job_run():
    event = workflows.pull_request_event("o/r", "b" * 40)
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    condition = ci["jobs"]["comment"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert event["pull_request"]["head"]["repo"]["full_name"] == "o/r"
    assert event["pull_request"]["number"] == event["number"] == 1
    assert event["pull_request"]["head"]["sha"] == "b" * 40


# --- the upload-artifact stand-in ---------------------------------------------------------------
@pytest.fixture
def upload(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("upload_standin", UPLOAD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    work = tmp_path / ".cache" / "ws"  # a workspace below a dot folder, as act's self-hosted one
    for rel in ("runs/r1/evaluation/evaluation.json", "runs/r1/.hidden", "runs/latest/x.json"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(rel)
    monkeypatch.chdir(tmp_path)  # a composite step's directory need not be the workspace
    monkeypatch.setenv("GITHUB_WORKSPACE", str(work))
    monkeypatch.setenv("MLOPS_ACT_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    (tmp_path / "output").write_text("")
    return module, tmp_path


def test_the_stand_in_copies_what_ci_yml_names_minus_excludes_and_hidden_files(upload, monkeypatch):
    module, tmp = upload
    monkeypatch.setenv("INPUT_NAME", "pipeline-run")
    monkeypatch.setenv("INPUT_PATH", "runs/\n!runs/latest/**\n")
    monkeypatch.setenv("INPUT_IF_NO_FILES_FOUND", "error")
    assert module.main() == 0
    target = tmp / "artifacts" / "pipeline-run"
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert copied == ["r1/evaluation/evaluation.json"]  # below the search path runs/
    outputs = dict(line.split("=", 1) for line in (tmp / "output").read_text().splitlines())
    assert outputs["artifact-url"] == target.as_uri()
    assert set(outputs) == {"artifact-id", "artifact-url", "artifact-digest"}


def test_the_stand_in_fails_on_no_files_only_when_told_to(upload, monkeypatch, capsys):
    module, tmp = upload
    monkeypatch.setenv("INPUT_PATH", "nothing-here/")
    monkeypatch.setenv("INPUT_IF_NO_FILES_FOUND", "error")
    assert module.main() == 1
    assert (
        "::error::No files were found with the provided path: nothing-here/"
        in capsys.readouterr().out
    )
    monkeypatch.setenv("INPUT_IF_NO_FILES_FOUND", "warn")
    assert module.main() == 0
    assert "::warning::" in capsys.readouterr().out
    assert not (tmp / "artifacts").exists()


def test_the_artifact_root_is_the_common_ancestor_of_the_search_paths(upload, monkeypatch):
    module, tmp = upload
    monkeypatch.chdir(tmp / ".cache" / "ws")
    assert module.search_root("runs/") == Path("runs").absolute()
    assert (
        module.search_root("runs/r1/evaluation/evaluation.json")
        == Path("runs/r1/evaluation").absolute()
    )
    assert module.search_root("runs/**/*.json") == Path("runs").absolute()
    assert module.search_root("*.json") == Path(".").absolute()


def test_the_stand_in_has_upload_artifact_s_inputs_and_outputs():
    standin = yaml.safe_load((UPLOAD.parent / "action.yml").read_text())
    used = set()
    for path in WORKFLOWS.glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/upload-artifact@"):
                    used |= set(step.get("with", {}))
    assert used and used <= set(standin["inputs"])
    assert {"artifact-id", "artifact-url", "artifact-digest"} <= set(standin["outputs"])
    assert json.dumps(standin["runs"]["steps"]).count("inputs.") == 5  # via env, never in run


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/o/r.git", "o/r"),
        ("git@github.com:o/r-2.git", "o/r-2"),
        ("https://github.com/o/r", "o/r"),
    ],
)
def test_the_repository_is_the_one_act_reads_from_the_origin_remote(tmp_path, url, expected):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", url], check=True)
    assert workflows.repository_of(tmp_path) == expected


def test_without_a_github_remote_the_run_says_the_comment_job_is_skipped(tmp_path, capsys):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert workflows.repository_of(tmp_path) == workflows.LocalGitHub().repository
    assert "comment job is skipped" in capsys.readouterr().err


# --- the whole `make workflows` run (workflows.run), with act's runs faked --------------------
@pytest.fixture
def plan(monkeypatch, tmp_path):
    """workflows.run with run_ci, the local AWS's control and the per-job runs recorded."""
    from mlops.local import control
    from mlops.local.act import jobs

    seen = {"ci": [], "up": [], "down": [], "aws": [], "ci_code": 0, "running": None}

    def run_ci(root, work, extra, act, job=""):
        seen["ci"].append(job)
        return seen["ci_code"]

    monkeypatch.setattr(workflows, "run_ci", run_ci)
    monkeypatch.setattr(workflows, "act_args", lambda root, actions: ["--offline"])
    monkeypatch.setattr(control, "running", lambda state: seen["running"])
    monkeypatch.setattr(control, "up", lambda state, root: seen["up"].append(state))
    monkeypatch.setattr(control, "down", lambda state: seen["down"].append(state))
    monkeypatch.setattr(jobs.LocalAws, "find", classmethod(lambda cls, state: "aws"))

    def against(root, work, aws, approve, which, replayed, **act):
        seen["aws"].append((which, replayed, act["act_args"], approve("deploy.yml deploy-prod")))
        return {"deploy.yml train": 1.0}

    monkeypatch.setattr(jobs, "run_against_local_aws", against)

    def go(*argv):
        args = argparse.Namespace(workflow="all", job="", approve=True, act="act",
                                  actions_dir=None, state=str(tmp_path / "state"))  # fmt: skip
        for item in argv:
            key, value = item.split("=")
            setattr(args, key, value)
        return workflows.run(args, ROOT, tmp_path)

    seen["go"] = go
    return seen


def test_all_runs_ci_then_the_aws_workflows_with_ci_standing_for_deploy_s_test(plan):
    assert plan["go"]() == 0
    assert plan["ci"] == [""]
    which, replayed, act_args, approved = plan["aws"][0]
    assert which == workflows.WORKFLOWS and replayed == {"test": workflows.TESTED_BY_CI}
    assert act_args == ["--offline"] and approved is True
    assert len(plan["up"]) == 1 and plan["down"] == plan["up"]  # started for the run, stopped


def test_a_failed_ci_stops_before_any_aws_workflow(plan):
    plan["ci_code"] = 2
    assert plan["go"]() == 2
    assert plan["aws"] == [] and plan["up"] == []


def test_a_running_local_aws_is_used_and_left_up(plan):
    plan["running"] = {"pid": 1}
    assert plan["go"]("workflow=deploy") == 0
    assert plan["ci"] == [] and plan["up"] == [] and plan["down"] == []
    which, replayed, _, _ = plan["aws"][0]
    assert which == ("deploy.yml",) and replayed == {}  # deploy alone runs its test job


def test_a_job_is_one_of_ci_yml_s(plan):
    assert plan["go"]("job=pipeline") == 0
    assert plan["ci"] == ["pipeline"] and plan["aws"] == []
    with pytest.raises(ConfigError, match=r"--job is one job of ci\.yml"):
        plan["go"]("job=pipeline", "workflow=deploy")


def test_without_act_the_run_says_how_to_get_it(tmp_path, capsys):
    code = workflows.main(["--act", str(tmp_path / "no-act"), "--work", str(tmp_path / "w")])
    assert code == ConfigError.exit_code
    assert "no-act not found: `make install` puts act" in capsys.readouterr().err
