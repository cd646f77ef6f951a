"""The CLI boundary: named exit codes, one ``error:`` line and never a traceback; image pinning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto import mock_aws

from mlops import cli, config
from mlops.errors import EXIT_CONFIG, EXIT_GATE, ConfigError
from mlops.steps import register
from mlops.steps.train import parse_image

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "pipeline.toml")
ARN = "arn:aws:sagemaker:us-east-1:1:model-package/mlops-models/3"
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-model"
DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A clean working directory and none of the MLOPS_* / GitHub variables the CLI reads."""
    for var in (
        "MLOPS_MODEL_PACKAGE_ARN",
        "MLOPS_MANIFEST",
        "MLOPS_IMAGE_URI",
        "MLOPS_LOCAL_FAULTS",
        "MLOPS_BOOTSTRAP_STACK",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["--config", CONFIG, "--region", "us-east-1", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


def one_error(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert lines[-1] == errors[0], "the error is the last thing printed"
    return errors[0]


def write_manifest(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def evaluation(rmse: float) -> dict:
    return {
        "regression_metrics": {"rmse": {"value": rmse}},
        "baseline": {"mean_predictor_rmse": 3.0},
    }


@pytest.mark.parametrize(
    "command", [["deploy", "--stage", "dev"], ["system-test", "--stage", "prod"], ["promote"]]
)
def test_missing_model_package_arn_is_exit_4_and_one_line(workdir, capsys, command):
    write_manifest(workdir / "run.json", {})
    code, lines = run(capsys, *command)
    assert code == EXIT_CONFIG
    assert one_error(lines) == (
        "error: --model-package-arn is required (or set its MLOPS_* environment variable)"
    )


def test_missing_image_uri_for_train_is_exit_4(workdir, capsys):
    write_manifest(workdir / "run.json", {})
    code, lines = run(capsys, "train")
    assert code == EXIT_CONFIG
    assert "--image-uri is required" in one_error(lines)


def test_missing_config_file_is_exit_4_and_one_line(workdir, capsys):
    code = cli.main(["--config", "absent.toml", "gate"])
    lines = capsys.readouterr().err.splitlines()
    assert code == EXIT_CONFIG
    assert lines == [
        "error: absent.toml: not found (run from the repository root or pass --config)"
    ]


def test_invalid_config_is_exit_4_naming_the_key(workdir, capsys):
    text = (
        Path(CONFIG).read_text(encoding="utf-8").replace("instance_count = 2", "instance_count = 1")
    )
    (workdir / "pipeline.toml").write_text(text, encoding="utf-8")
    code = cli.main(["gate"])
    lines = capsys.readouterr().err.splitlines()
    assert code == EXIT_CONFIG
    assert lines == [
        "error: pipeline.toml: stages.prod.deployment_type CANARY needs instance_count >= 2"
    ]


def test_a_step_without_its_manifest_says_which_step_to_run(workdir, capsys):
    code, lines = run(capsys, "gate")
    assert code == EXIT_CONFIG
    assert one_error(lines) == (
        "error: run manifest run.json not found (run the previous step first)"
    )
    write_manifest(workdir / "run.json", {"etl": {}})
    code, lines = run(capsys, "gate")
    assert code == EXIT_CONFIG
    assert "has no evaluate.metrics: run `mlops evaluate` first" in one_error(lines)


def test_gate_pass_is_exit_0(workdir, capsys):
    manifest = write_manifest(workdir / "other.json", {"evaluate": {"metrics": evaluation(1.5)}})
    code, lines = run(capsys, "--manifest", str(manifest), "gate")
    assert code == 0
    assert not [line for line in lines if line.startswith("error:")]
    assert json.loads(manifest.read_text(encoding="utf-8"))["gate"]["passed"] is True


def test_gate_failure_is_exit_3(workdir, capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_MANIFEST", str(workdir / "env.json"))  # read by the parser
    write_manifest(workdir / "env.json", {"evaluate": {"metrics": evaluation(2.9)}})
    monkeypatch.setattr(register, "run", lambda ctx, status="": f"{ARN}-{status}")
    code, lines = run(capsys, "gate")
    assert code == EXIT_GATE
    assert one_error(lines).startswith("error: gate failed on rmse, rmse vs mean predictor; ")
    assert lines[-1].endswith(f"{ARN}-Rejected")


def test_teardown_of_prod_needs_confirmation(workdir, capsys):
    write_manifest(workdir / "run.json", {})
    code, lines = run(capsys, "teardown", "--stage", "prod", "--confirm", "yes")
    assert code == EXIT_CONFIG
    assert one_error(lines) == "error: deleting prod needs --confirm prod"


def test_commands_that_start_a_job_need_no_earlier_manifest(workdir, capsys):
    # BUG (cli.py main, `Manifest.load(args.manifest, create=args.command == "etl")`): only `etl`
    # may start without run.json, yet the deploy-dev/deploy-prod/rollback/teardown jobs of
    # .github/workflows run in fresh checkouts without it, so `mlops teardown`, `deploy`,
    # `system-test`, `promote` and `rollback` stop with "run manifest run.json not found".
    with mock_aws():
        code, lines = run(capsys, "teardown", "--stage", "dev")
    assert code == 0, lines
    assert "  stack mlops-endpoint-dev: does not exist, nothing to delete" in lines


def test_unknown_stage_is_a_usage_error(workdir, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["deploy", "--stage", "qa", "--model-package-arn", ARN])
    assert exc.value.code == 2
    assert "invalid choice: 'qa'" in capsys.readouterr().err


def test_interrupt_is_exit_130_and_one_line(workdir, capsys, monkeypatch):
    def interrupted(_path):
        raise KeyboardInterrupt

    monkeypatch.setattr(config, "load", interrupted)
    assert cli.main(["gate"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_unknown_local_fault_is_exit_4_and_one_line(workdir, capsys, monkeypatch):
    # BUG (local/runtime.py Faults.__init__): an unknown name raises ValueError, which cli.main
    # does not catch, so `MLOPS_LOCAL_FAULTS=trainng mlops run --local` ends in a traceback.
    monkeypatch.setenv("MLOPS_LOCAL_FAULTS", "trainng")
    code, lines = run(capsys, "run", "--local", "--runs-dir", str(workdir / "runs"))
    assert code == EXIT_CONFIG
    assert "'trainng'" in one_error(lines)


# --- the image must be pinned by digest (steps/train.py) ----------------------------------------


def test_parse_image_splits_repository_and_digest():
    assert parse_image(f"{REPO}@{DIGEST}") == (REPO, DIGEST)


@pytest.mark.parametrize(
    "uri",
    [
        f"{REPO}:latest",
        f"{REPO}:v1.2",
        f"{REPO}@{DIGEST[:-1]}",
        f"{REPO}@{DIGEST}0",
        f"{REPO}@{DIGEST.upper()}",
        f"{REPO}@sha512:" + "0" * 64,
        f"@{DIGEST}",
        REPO,
        "",
        None,
    ],
)
def test_parse_image_refuses_anything_but_a_digest(uri):
    with pytest.raises(ConfigError) as exc:
        parse_image(uri)
    assert "not pinned by digest" in str(exc.value)
    assert "@sha256:<64 hex>" in str(exc.value)


# --- the prod approval (cli.approver) ----------------------------------------------------------


def test_approve_flag_grants_without_asking(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: pytest.fail("--approve must not ask"))
    monkeypatch.setattr("builtins.input", lambda _prompt: pytest.fail("--approve must not ask"))
    assert cli.approver(True)(ARN) is True


def test_no_approve_and_no_terminal_refuses(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.setattr("builtins.input", lambda _prompt: pytest.fail("no terminal to ask"))
    assert cli.approver(False)(ARN) is False
    assert capsys.readouterr().err == (
        "\nprod approval: not given (no --approve and no terminal to ask)\n"
    )


@pytest.mark.parametrize(
    ("answer", "approved"),
    [
        ("y", True),
        ("yes", True),
        (" Y ", True),
        ("YES\n", True),
        ("", False),
        ("n", False),
        ("no", False),
        ("ye", False),
        ("yess", False),
        ("y es", False),
    ],
)
def test_terminal_answer_decides(monkeypatch, answer, approved):
    prompts: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or answer)
    assert cli.approver(False)(ARN) is approved
    assert len(prompts) == 1 and ARN in prompts[0] and prompts[0].endswith("prod? [y/N] ")


def test_run_local_runs_the_workflow_with_the_approval_flag(workdir, monkeypatch):
    """`mlops run --local` (make pipeline) is workflow_run with the flags; the run itself is
    tested end to end in tests/integration/test_workflow_local.py."""
    from contextlib import contextmanager

    from mlops.local import run as local_run
    from mlops.local.scoring import score_batches

    seen = {}

    @contextmanager
    def fake(root, runs_dir, cfg, approve, after=None, tune=False):
        seen.update(root=root, runs=runs_dir, project=cfg.project, approved=approve("prod"))
        seen.update(after=after, tune=tune)
        yield None

    monkeypatch.setattr(local_run, "workflow_run", fake)
    (workdir / "pipeline.toml").write_text((ROOT / "pipeline.toml").read_text())
    assert cli.main(["run", "--local", "--approve", "--runs-dir", "r"]) == 0
    assert seen == {
        "root": workdir,
        "runs": Path("r"),
        "project": "mlops",
        "approved": True,
        "after": score_batches,  # make pipeline ends by scoring two batches through prod's pipeline
        "tune": False,
    }
    assert cli.main(["run", "--local", "--approve", "--runs-dir", "r", "--tune"]) == 0
    assert seen["tune"] is True  # deploy.yml's jobs run as a dispatch with the tune input


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["train", "--image-uri", "i"], "", "train"),
        (["train", "--image-uri", "i", "--tune"], "", "tune"),
        (["train", "--image-uri", "i"], "true", "tune"),  # deploy.yml's tune input
        (["train", "--image-uri", "i"], "false", "train"),
    ],
)
def test_train_tune_reaches_the_tune_step(workdir, capsys, monkeypatch, argv, env, expected):
    from mlops.steps import train, tune

    calls = []
    monkeypatch.setenv("MLOPS_TUNE", env)
    monkeypatch.setattr(train, "run", lambda _ctx, image: calls.append(("train", image)))
    monkeypatch.setattr(tune, "run", lambda _ctx, image: calls.append(("tune", image)))
    write_manifest(workdir / "run.json", {"run": {"id": "r"}})
    code, lines = run(capsys, *argv)
    assert code == 0, lines
    assert calls == [(expected, "i")]


def test_help_gives_every_subcommand_a_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    commands = cli._parser()._subparsers._group_actions[0].choices
    for name in commands:
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(None, 1)) == 2, f"{name} has no help line"


# --- mlops inference (steps/inference.py) -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["inference", "upsert"], ("upsert", "prod", None)),
        (
            ["inference", "upsert", "--stage", "dev", "--model-package-arn", ARN],
            ("upsert", "dev", ARN),
        ),
        (["inference", "run", "--input", "batch.csv"], ("run", "prod", "batch.csv")),
        (["inference", "run", "--input", "s3://b/k", "--stage", "dev"], ("run", "dev", "s3://b/k")),
    ],
)
def test_inference_commands_reach_their_step_without_a_manifest(
    workdir, capsys, monkeypatch, argv, expected
):
    from mlops.steps import inference

    calls = []
    monkeypatch.setattr(inference, "upsert", lambda _ctx, *a: calls.append(("upsert", *a)))
    monkeypatch.setattr(inference, "run", lambda _ctx, *a: calls.append(("run", *a)))
    code, lines = run(capsys, *argv)
    assert code == 0, lines
    assert calls == [expected]


def test_inference_run_needs_an_input(workdir, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["inference", "run"])
    assert exc.value.code == 2
    assert "--input" in capsys.readouterr().err


def test_inference_without_its_venv_is_exit_4_and_one_line(workdir, capsys, monkeypatch):
    from mlops.steps import inference, inference_compile

    monkeypatch.setenv(inference_compile.PYTHON_ENV, str(workdir / "no-venv" / "python"))
    monkeypatch.setattr(inference, "serving_package", lambda _ctx, _stage: ARN)
    monkeypatch.setattr(inference.deploy, "check_package", lambda *_: {"ModelPackageArn": ARN})
    monkeypatch.setattr(inference, "pipeline_role", lambda _ctx, _stage: "arn:aws:iam::1:role/p")
    monkeypatch.setattr(inference, "execution_parameters", lambda *_: {"ModelName": "m"})
    monkeypatch.setattr(inference, "ensure_model", lambda *_: "m")
    monkeypatch.setattr(inference, "definition_config", lambda _ctx, _stage: {})
    code, lines = run(capsys, "inference", "upsert")
    assert code == EXIT_CONFIG
    assert "run make inference-venv" in one_error(lines)
