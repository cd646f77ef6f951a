"""TreeSHAP explanations: exact additivity, one-hot columns summed back, top-k, CLI outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from abalone_model import __main__ as entry
from abalone_model import explain, train
from abalone_model import model as artefact
from abalone_model.features import encode_rows
from abalone_model.schema import DATA_FILE, Schema

SCHEMA = Schema.load()
NAMES = list(SCHEMA.raw_names)
with DATA_FILE.open(newline="") as _fh:
    ROWS = list(csv.DictReader(_fh))
CELLS = [[r[n] for n in NAMES] for r in ROWS]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A small model (depth 3, 40 rounds) trained on two thirds of the rows, packed as a tarball."""
    root = tmp_path_factory.mktemp("explain")
    X = encode_rows(SCHEMA, CELLS)
    y = np.array([float(r["rings"]) for r in ROWS])
    fit = [i for i in range(len(ROWS)) if i % 3 != 2]
    params = train.booster_params(train.parse_hyperparameters({"max_depth": "3"}), SCHEMA)
    dtrain = xgb.DMatrix(X[fit], label=y[fit], feature_names=list(SCHEMA.encoded_names))
    booster = xgb.train(params, dtrain, num_boost_round=40)
    artefact.save(root / "model", booster, SCHEMA, {})
    tarball = artefact.make_tarball(root / "model", root / "model.tar.gz")
    held_out = [c for i, c in enumerate(CELLS) if i % 3 == 2]
    model = artefact.load(root / "model")
    return {
        "model": model,
        "tarball": tarball,
        "X": encode_rows(SCHEMA, held_out),
        "held_out": held_out,
    }


def write_batch(path: Path, rows: list[list[str]], header: list[str] | None = NAMES) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        if header:
            out.writerow(header)
        out.writerows(rows)
    return path


@pytest.mark.parametrize("rows", [5, 400])  # the compiled-trees route and XGBoost's own
def test_contributions_plus_bias_are_the_prediction(world, rows):
    model, X = world["model"], world["X"][:rows]
    raw, bias = explain.contributions(model, X)
    assert raw.shape == (rows, len(NAMES))
    np.testing.assert_allclose(raw.sum(axis=1) + bias, model.predict(X), rtol=0, atol=1e-4)
    assert np.ptp(bias) == 0  # TreeSHAP's bias is the model's expected value: one number


def test_one_hot_columns_are_summed_per_row_before_the_absolute_value(world):
    model, X = world["model"], world["X"]
    data = xgb.DMatrix(X, feature_names=list(SCHEMA.encoded_names))
    encoded = model.booster.predict(data, pred_contribs=True).astype(np.float64)
    raw, _ = explain.contributions(model, X)
    np.testing.assert_allclose(raw[:, 0], encoded[:, 0:3].sum(axis=1))  # sex_M + sex_F + sex_I
    np.testing.assert_allclose(raw[:, 1:], encoded[:, 3:-1])  # the numeric columns unchanged
    importance = explain.global_importance(raw, SCHEMA)
    assert importance["sex"] == pytest.approx(np.abs(encoded[:, 0:3].sum(axis=1)).mean())
    # summing after the absolute value would overstate sex: its one-hot effects partly cancel
    assert importance["sex"] < np.abs(encoded[:, 0:3]).mean(axis=0).sum() - 1e-5
    assert list(importance.values()) == sorted(importance.values(), reverse=True)


def test_top_k_are_the_largest_absolute_contributions_in_order():
    raw = np.array([[0.1, -3.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(explain.top_contributions(raw, 3), [[1, 2, 3], [0, 1, 2]])


def cli(capsys, *args) -> tuple[int, str, str]:
    code = entry.main(["explain", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_json_csv_and_plot(world, tmp_path, capsys):
    batch = write_batch(tmp_path / "b.csv", world["held_out"][:50])
    out = tmp_path / "out"
    code, stdout, _ = cli(capsys, "--model", world["tarball"], "--batch", batch, "--output", out)
    assert code == 0 and "explain:rows=50" in stdout
    result = json.loads((out / "explanations.json").read_text())
    raw, bias = explain.contributions(world["model"], world["X"][:50])
    assert result["rows"] == 50 and result["top_k"] == explain.TOP_K
    assert result["bias"] == pytest.approx(bias[0])
    assert result["global_importance"] == pytest.approx(explain.global_importance(raw, SCHEMA))
    first = result["explanations"][0]
    assert first["prediction"] == pytest.approx(world["model"].predict(world["X"][:1])[0], abs=1e-4)
    magnitudes = [abs(t["contribution"]) for t in first["top"]]
    assert len(magnitudes) == 3 and magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[-1] >= np.sort(np.abs(raw[0]))[-3] - 1e-12
    with (out / "explanations.csv").open(newline="") as fh:
        table = list(csv.reader(fh))
    pairs = [f"{w}_{i}" for i in (1, 2, 3) for w in ("feature", "contribution")]
    assert table[0] == ["row", *pairs]
    assert len(table) == 51 and table[1][0] == "1"
    assert table[1][1::2] == [t["feature"] for t in first["top"]]
    signed = [t["contribution"] for t in first["top"]]
    np.testing.assert_allclose([float(v) for v in table[1][2::2]], signed, rtol=1e-5)
    assert (out / explain.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_large_batches_keep_per_row_explanations_out_of_the_json(world, tmp_path):
    batch = write_batch(tmp_path / "b.csv", world["held_out"][:30], header=None)
    result = explain.explain(world["tarball"], batch, tmp_path / "o", top_k=2, inline_rows=20)
    assert result["explanations"] is None and result["top_k"] == 2
    table = (tmp_path / "o" / "explanations.csv").read_text().splitlines()
    assert len(table) == 31 and table[0] == "row,feature_1,contribution_1,feature_2,contribution_2"


@pytest.mark.parametrize(
    ("rows", "extra", "code", "message"),
    [
        ([["M", "0.5", "0.4", "abc", "0.5", "0.2", "0.1", "0.15"]], [], 3, "row 1: height is not"),
        ([], [], 3, "has no data rows"),
        ([["M"] * 8], ["--top-k", "0"], 64, "--top-k"),
    ],
)
def test_errors_are_one_line(world, tmp_path, capsys, rows, extra, code, message):
    batch = write_batch(tmp_path / "b.csv", rows)
    args = ["--model", world["tarball"], "--batch", batch, "--output", tmp_path / "o", *extra]
    got, _, err = cli(capsys, *args)
    assert (got, err.count("\n")) == (code, 1) and err.startswith("error: ") and message in err


def test_missing_model_is_named(tmp_path, capsys):
    batch = write_batch(tmp_path / "b.csv", CELLS[:2])
    code, _, err = cli(capsys, "--model", tmp_path / "model.tar.gz", "--batch", batch)
    assert code == 2 and err.count("\n") == 1 and "no model at" in err
