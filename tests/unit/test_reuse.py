"""Reuse (steps/reuse.py): the training key, and which package a run may take its model from."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from moto import mock_aws

from mlops import config
from mlops.account import Account
from mlops.aws import new_session
from mlops.context import Context
from mlops.errors import ConfigError
from mlops.manifest import Manifest
from mlops.steps import reuse

ROOT = Path(__file__).resolve().parents[2]
GROUP = "mlops-models"


@pytest.fixture
def ctx(tmp_path, monkeypatch, moto_env) -> Context:
    """A copy of the files the key reads, and a moto registry."""
    cfg = config.load(ROOT / "pipeline.toml")
    for rel in (cfg.data, *cfg.training_code):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    with mock_aws():
        session = new_session(region_name="us-east-1")
        session.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
        account = Account("us-east-1", {"ModelPackageGroupName": GROUP})
        yield Context(cfg, session, Manifest(tmp_path / "m.json"), root=tmp_path, _account=account)


def package(
    ctx: Context, key: str, status: str = "Approved", etl_output: str = "s3://d/runs/r/etl/"
) -> str:
    meta = {"training_key": key, "etl_output": etl_output, "data_uri": "s3://d/raw/a.csv",
            "data_sha256": "d" * 64, "test_data_uri": "s3://d/runs/r/etl/test_raw/",
            "training_job": "mlops-train-1"}  # fmt: skip
    return ctx.client("sagemaker").create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification={
            "Containers": [
                {"Image": "i@sha256:" + "a" * 64, "ModelDataUrl": "s3://a/model.tar.gz"}
            ],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus=status,
        CustomerMetadataProperties={k: v for k, v in meta.items() if v},
    )["ModelPackageArn"]


def test_the_key_changes_with_data_code_or_hyperparameters_and_nothing_else(ctx):
    first = reuse.training_key(ctx)
    assert reuse.training_key(ctx) == first  # deterministic
    (ctx.root / "src/abalone_model/serve").mkdir(parents=True)
    (ctx.root / "src/abalone_model/serve/app.py").write_text("# a serving-only change\n")
    assert reuse.training_key(ctx) == first
    with (ctx.root / ctx.config.training_code[0]).open("a") as fh:
        fh.write("\n# a training code change\n")
    code = reuse.training_key(ctx)
    assert code["code_sha256"] != first["code_sha256"]
    assert code["training_key"] != first["training_key"]
    with (ctx.root / ctx.config.data).open("a") as fh:
        fh.write("M,0.5,0.4,0.1,0.5,0.2,0.1,0.15,9\n")
    data = reuse.training_key(ctx)
    assert data["data_sha256"] != code["data_sha256"]
    assert data["training_key"] != code["training_key"]
    tuned = dataclasses.replace(ctx.config, hyperparameters={"eta": "0.1"})
    hyper = reuse.training_key(dataclasses.replace(ctx, config=tuned))
    assert hyper["hyperparameters_sha256"] != data["hyperparameters_sha256"]
    assert hyper["training_key"] != data["training_key"]


def test_a_missing_training_code_file_is_a_config_error(ctx):
    (ctx.root / ctx.config.training_code[-1]).unlink()
    with pytest.raises(
        ConfigError, match=f"training_code: {ctx.config.training_code[-1]} not found"
    ):
        reuse.training_key(ctx)


def test_the_newest_approved_package_with_the_key_is_reused(ctx, capsys):
    key = reuse.training_key(ctx)["training_key"]
    package(ctx, key)
    newer = package(ctx, key)
    package(ctx, "other")
    package(ctx, key, status="Rejected")
    found = reuse.plan(ctx)
    assert found["ModelPackageArn"] == newer
    assert ctx.manifest.get("reuse.from") == newer
    assert f"reuse its ETL and model: {newer} was trained on the same" in capsys.readouterr().err
    etl = reuse.etl_outputs(found)
    assert etl["reused_from"] == newer
    assert etl["splits"]["test"] == "s3://d/runs/r/etl/test/"
    assert etl["statistics"] == "s3://d/runs/r/etl/baseline/statistics.json"


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_a_package_that_is_not_approved_is_never_reused(ctx, status):
    package(ctx, reuse.training_key(ctx)["training_key"], status=status)
    assert reuse.plan(ctx) is None
    assert "no Approved package" in ctx.manifest.get("reuse.reason")


def test_a_package_without_etl_lineage_is_not_reused(ctx):
    package(ctx, reuse.training_key(ctx)["training_key"], etl_output="")
    assert reuse.plan(ctx) is None


def test_retrain_trains_even_when_a_package_matches(ctx, capsys):
    package(ctx, reuse.training_key(ctx)["training_key"])
    assert reuse.plan(ctx, retrain=True) is None
    assert ctx.manifest.get("reuse.from") == ""
    assert "run ETL and training: retraining was asked for" in capsys.readouterr().err


def test_train_takes_the_reused_model_with_this_run_s_image(ctx):
    arn = package(ctx, reuse.training_key(ctx)["training_key"])
    ctx.manifest.update("etl", reuse.etl_outputs(reuse.plan(ctx)))
    record = reuse.model_outputs(ctx, "repo@sha256:" + "b" * 64, "sha256:" + "b" * 64)
    assert record == {
        "reused_from": arn,
        "job_name": "mlops-train-1",
        "model_data": "s3://a/model.tar.gz",
        "image_uri": "repo@sha256:" + "b" * 64,
        "image_digest": "sha256:" + "b" * 64,
    }


def test_train_trains_when_the_etl_was_not_reused(ctx):
    ctx.manifest.update("etl", {"splits": {}})
    assert reuse.model_outputs(ctx, "repo@sha256:" + "b" * 64, "sha256:" + "b" * 64) is None
