"""Evaluation entrypoint: SageMaker Processing contract, model-quality JSON, plot and report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from abalone_model import __main__ as entry
from abalone_model import evaluate, train
from abalone_model import model as artefact
from abalone_model.errors import ModelError
from abalone_model.schema import DATA_FILE, Schema

SCHEMA = Schema.load()
COLUMNS = [SCHEMA.target.name, *SCHEMA.encoded_names]


def write_split(split: Path, rows: list[dict[str, str]]) -> Path:
    """One encoded part file (plus Spark's _SUCCESS marker) from raw abalone rows."""
    split.mkdir(parents=True)
    sexes = SCHEMA.column("sex").categories
    with (split / "part-00000.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow(
                [r["rings"], *(int(r["sex"] == s) for s in sexes), *(r[c] for c in COLUMNS[4:])]
            )
    (split / "_SUCCESS").write_text("")
    return split


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Splits by row position, a small fast model packed as model.tar.gz, one evaluation run."""
    root = tmp_path_factory.mktemp("eval")
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    splits = {
        "train": write_split(root / "train", rows[0::3] + rows[1::3][::2]),
        "validation": write_split(root / "validation", rows[1::3][1::2]),
        "test": write_split(root / "test", rows[2::3]),
    }
    (root / "config").mkdir()
    (root / "config" / "hyperparameters.json").write_text('{"num_round": "80", "eta": "0.1"}')
    train.run(splits["train"], splits["validation"], root / "model", root / "config")
    tarball = artefact.make_tarball(root / "model", root / "processing" / "model" / "model.tar.gz")
    out = root / "evaluation"
    code = entry.main(
        ["evaluate", "--model", str(tarball), "--test", str(splits["test"]), "--output", str(out)]
    )
    assert code == 0
    return {"root": root, "splits": splits, "tarball": tarball, "out": out}


@pytest.fixture(scope="module")
def result(world):
    return json.loads((world["out"] / "evaluation.json").read_text())


def test_evaluation_json_has_the_model_quality_shape(result, world):
    metrics = result["regression_metrics"]
    assert set(metrics) == {"mse", "rmse", "mae", "r2"}
    for m in metrics.values():
        assert set(m) == {"value", "standard_deviation"}
        assert isinstance(m["value"], float) and m["standard_deviation"] > 0
    y, _ = train.read_split(world["splits"]["test"], SCHEMA)
    assert result["n_rows"] == len(y)
    assert result["model"]["feature_names"] == list(SCHEMA.encoded_names)
    assert result["plot"] == evaluate.PLOT_FILE


def test_metric_values_match_numpy(result, world):
    y, X = train.read_split(world["splits"]["test"], SCHEMA)
    pred = artefact.load_from_tarball(world["tarball"]).predict(X)
    m = {k: v["value"] for k, v in result["regression_metrics"].items()}
    assert m["rmse"] ** 2 == pytest.approx(m["mse"], rel=1e-12)
    assert m["mse"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-9)
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-9)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert m["r2"] == pytest.approx(r2, rel=1e-9)
    assert m["rmse"] < 2.5 and 0.4 < m["r2"] < 0.8


def test_baseline_uses_the_train_mean(result, world):
    y, _ = train.read_split(world["splits"]["test"], SCHEMA)
    train_y, _ = train.read_split(world["splits"]["train"], SCHEMA)
    base = result["baseline"]
    assert base["mean"] == pytest.approx(train_y.mean())
    assert "train" in base["mean_source"]
    assert base["mean_predictor_rmse"] == pytest.approx(np.sqrt(np.mean((y - train_y.mean()) ** 2)))
    assert base["mean_predictor_rmse"] > result["regression_metrics"]["rmse"]["value"]


def test_baseline_falls_back_to_the_test_mean(world, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(world["root"] / "model", model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    del meta["train_target_mean"]
    (model_dir / "metadata.json").write_text(json.dumps(meta))
    got = evaluate.evaluate(model_dir, world["splits"]["test"], tmp_path / "out")
    y, _ = train.read_split(world["splits"]["test"], SCHEMA)
    assert got["baseline"]["mean"] == pytest.approx(y.mean())
    assert "test set mean" in got["baseline"]["mean_source"]


def test_bootstrap_is_seeded_and_plausible():
    rng = np.random.default_rng(0)
    y = rng.normal(10, 3, 400)
    pred = y + rng.normal(0, 2, 400)
    first = evaluate.regression_metrics(y, pred)
    assert first == evaluate.regression_metrics(y, pred)
    # the standard error of a mean of 400 |N(0, 2)| draws is about 1.2 / 20
    assert 0.03 < first["mae"]["standard_deviation"] < 0.09
    assert evaluate.regression_metrics(np.full(5, 3.0), np.arange(5.0))["r2"]["value"] is None


def test_plot_is_a_png_and_report_references_it(world, result):
    png = world["out"] / evaluate.PLOT_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    md = (world["out"] / "report.md").read_text()
    rmse = result["regression_metrics"]["rmse"]["value"]
    assert f"| rmse | {rmse:.4f} |" in md
    assert f"Test rows: {result['n_rows']}." in md
    assert f"]({evaluate.PLOT_FILE})" in md
    assert "baseline rmse" in md


@pytest.mark.parametrize("which", ["dir-with-tarball", "unpacked-dir"])
def test_model_may_be_given_as_a_directory(world, which):
    model = world["tarball"].parent if which == "dir-with-tarball" else world["root"] / "model"
    _, X = train.read_split(world["splits"]["test"], SCHEMA)
    expected = artefact.load_from_tarball(world["tarball"]).predict(X)
    np.testing.assert_array_equal(evaluate.load_model(model).predict(X), expected)


def _run(capsys, *args: str) -> tuple[int, str]:
    code = entry.main(["evaluate", *args])
    return code, capsys.readouterr().err


def test_missing_model_is_one_line_error(world, tmp_path, capsys):
    code, err = _run(
        capsys,
        "--model",
        str(tmp_path / "model.tar.gz"),
        "--test",
        str(world["splits"]["test"]),
        "--output",
        str(tmp_path / "o"),
    )
    assert code != 0 and err.count("\n") == 1 and "no model at" in err


def test_empty_test_set_is_one_line_error(world, tmp_path, capsys):
    empty = tmp_path / "test"
    empty.mkdir()
    (empty / "part-00000.csv").write_text(",".join(COLUMNS) + "\n")
    code, err = _run(
        capsys,
        "--model",
        str(world["tarball"]),
        "--test",
        str(empty),
        "--output",
        str(tmp_path / "o"),
    )
    assert code != 0 and err.count("\n") == 1 and "has no rows" in err
    assert not (tmp_path / "o" / "evaluation.json").exists()


def test_missing_columns_are_named(world, tmp_path, capsys):
    bad = tmp_path / "test"
    shutil.copytree(world["splits"]["test"], bad)
    part = bad / "part-00000.csv"
    part.write_text(part.read_text().replace("sex_I,", "sex_X,", 1))
    code, err = _run(
        capsys,
        "--model",
        str(world["tarball"]),
        "--test",
        str(bad),
        "--output",
        str(tmp_path / "o"),
    )
    assert code != 0 and "lacks column(s) sex_I" in err


def test_unpacked_model_error_without_files(tmp_path):
    with pytest.raises(ModelError, match="pass --model"):
        evaluate.load_model(tmp_path)


def test_unwritable_output_is_one_line_error(world, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _run(
        capsys,
        "--model",
        str(world["tarball"]),
        "--test",
        str(world["splits"]["test"]),
        "--output",
        str(blocker / "out"),
    )
    assert code != 0 and err.count("\n") == 1 and "cannot write the evaluation" in err


def test_report_gains_the_global_importance_chart_of_the_test_split(world):
    from abalone_model import explain

    png = world["out"] / evaluate.IMPORTANCE_FILE
    assert evaluate.IMPORTANCE_FILE == "importance.png" and png.parent == world["out"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, X = train.read_split(world["splits"]["test"], SCHEMA)
    model = artefact.load_from_tarball(world["tarball"])
    importance = explain.global_importance(explain.contributions(model, X)[0], SCHEMA)
    md = (world["out"] / "report.md").read_text()
    assert f"![Global feature importance]({evaluate.IMPORTANCE_FILE})" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "|---" not in line]
    table = [r.split("|")[1].strip() for r in rows if r.split("|")[1].strip() in SCHEMA.raw_names]
    assert table == list(importance) and len(table) == len(SCHEMA.raw_names)
    top = next(iter(importance))
    assert f"| {top} | {importance[top]:.4f} |" in md
    unchanged = {"regression_metrics", "baseline", "n_rows", "bootstrap", "plot", "model"}
    assert set(json.loads((world["out"] / "evaluation.json").read_text())) == unchanged
