"""Training entrypoint: SageMaker contract, hyperparameters, channels, determinism, quality."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from abalone_model import __main__ as entry
from abalone_model import model as artefact
from abalone_model import train
from abalone_model.errors import ModelError
from abalone_model.schema import DATA_FILE, Schema

SCHEMA = Schema.load()
COLUMNS = [SCHEMA.target.name, *SCHEMA.encoded_names]


def encoded_rows(seed: int = 7) -> dict[str, list[list[str]]]:
    """The real data, one-hot encoded, split 70/15/15 by a seeded permutation."""
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sexes = SCHEMA.column("sex").categories
    enc = [
        [r["rings"], *(str(int(r["sex"] == s)) for s in sexes), *(r[c] for c in COLUMNS[4:])]
        for r in rows
    ]
    perm = np.random.default_rng(seed).permutation(len(enc))
    a, b = int(0.7 * len(enc)), int(0.85 * len(enc))
    cuts = {"train": perm[:a], "validation": perm[a:b], "test": perm[b:]}
    return {name: [enc[i] for i in idx] for name, idx in cuts.items()}


def write_parts(split: Path, rows: list[list[str]], parts: int = 2, columns=COLUMNS) -> Path:
    """A Spark-like split dir: part files with a header (in ``columns`` order) + _SUCCESS/.crc."""
    split.mkdir(parents=True)
    order = [COLUMNS.index(c) for c in columns]
    for k, chunk in enumerate(np.array_split(np.arange(len(rows)), parts)):
        with (split / f"part-{k:05d}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows([rows[i][j] for j in order] for i in chunk)
        (split / f".part-{k:05d}.csv.crc").write_bytes(b"\x00crc")
    (split / "_SUCCESS").write_text("")
    return split


@pytest.fixture(scope="module")
def data():
    return encoded_rows()


@pytest.fixture(scope="module")
def splits(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("splits")
    return {name: write_parts(root / name, rows) for name, rows in data.items()}


@pytest.fixture
def sm_env(tmp_path, monkeypatch, splits):
    """SageMaker's environment pointed at temporary dirs; returns the opt/ml root."""
    root = tmp_path / "ml"
    (root / "config").mkdir(parents=True)
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(splits["train"]))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(splits["validation"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(root / "model"))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("SM_OUTPUT_DIR", str(root / "output"))
    return root


def write_hp(root: Path, values: dict) -> None:
    (root / "config" / "hyperparameters.json").write_text(json.dumps(values))


# --- hyperparameters ----------------------------------------------------------------------------


def test_hyperparameter_strings_are_typed():
    hp = train.parse_hyperparameters(
        {"eta": "0.05", "max_depth": "6", "num_round": '"300"', "subsample": 1, "seed": "7"}
    )
    assert hp["eta"] == 0.05 and isinstance(hp["eta"], float)
    assert hp["max_depth"] == 6 and isinstance(hp["max_depth"], int)
    assert hp["num_round"] == 300 and hp["subsample"] == 1.0 and hp["seed"] == 7
    assert hp["min_child_weight"] == train.HYPERPARAMETERS["min_child_weight"][1]


def test_missing_or_empty_hyperparameters_mean_defaults(tmp_path):
    defaults = {k: v[1] for k, v in train.HYPERPARAMETERS.items()}
    assert train.read_hyperparameters(tmp_path / "absent") == defaults
    (tmp_path / "hyperparameters.json").write_text("{}")
    assert train.read_hyperparameters(tmp_path) == defaults


def test_sagemaker_added_keys_are_ignored():
    hp = train.parse_hyperparameters(
        {"_tuning_objective_metric": "validation:rmse", "sagemaker_region": '"eu-west-1"'}
    )
    assert "_tuning_objective_metric" not in hp and "sagemaker_region" not in hp


def test_unknown_hyperparameters_are_named():
    with pytest.raises(ModelError, match=r"unknown hyperparameter\(s\): depth, etaa; known: "):
        train.parse_hyperparameters({"etaa": "0.1", "depth": "3", "eta": "0.1"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_depth": "4.5"}, r"max_depth='4\.5' is not an integer"),
        ({"eta": "fast"}, r"eta='fast' is not a number"),
        ({"eta": "0"}, r"eta='0' out of range: must be > 0 and <= 1"),
        ({"subsample": "1.5"}, "subsample='1.5' out of range"),
        ({"eta": "nan"}, "eta='nan' out of range"),
        ({"num_round": "0"}, r"num_round='0' out of range: must be >= 1"),
    ],
)
def test_bad_hyperparameter_values_are_explained(raw, message):
    with pytest.raises(ModelError, match=message):
        train.parse_hyperparameters(raw)


def test_hyperparameters_file_must_be_a_json_object(tmp_path):
    (tmp_path / "hyperparameters.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="JSON object"):
        train.read_hyperparameters(tmp_path)
    (tmp_path / "hyperparameters.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        train.read_hyperparameters(tmp_path)


# --- channels -----------------------------------------------------------------------------------


def test_channel_reading_ignores_markers_and_column_order(tmp_path, data, splits):
    y, X = train.read_split(splits["validation"], SCHEMA)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert X.shape == (len(data["validation"]), 10)
    shuffled = COLUMNS[::-1]
    y2, X2 = train.read_split(write_parts(tmp_path / "v", data["validation"], 3, shuffled), SCHEMA)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(X, X2)
    assert sorted(y) == sorted(float(r[0]) for r in data["validation"])


def test_header_only_part_files_are_fine(tmp_path, data):
    split = write_parts(tmp_path / "s", data["test"][:5], parts=1)
    (split / "part-00009.csv").write_text(",".join(COLUMNS) + "\n")
    (split / "part-00010.csv").write_text("")
    assert train.read_split(split, SCHEMA)[0].shape == (5,)


def test_missing_columns_are_named(tmp_path, data):
    split = write_parts(tmp_path / "s", data["test"][:3], 1)
    text = (split / "part-00000.csv").read_text().replace("shell_weight", "shell")
    (split / "part-00000.csv").write_text(text)
    with pytest.raises(ModelError, match=r"lacks column\(s\) shell_weight"):
        train.read_split(split, SCHEMA, channel="train")


def test_non_numeric_values_are_located(tmp_path, data):
    rows = [list(r) for r in data["test"][:4]]
    rows[2][COLUMNS.index("height")] = "tall"
    with pytest.raises(ModelError, match="row 3 column height is not a number"):
        train.read_split(write_parts(tmp_path / "s", rows, 1), SCHEMA)


def test_missing_or_empty_channels_are_explained(tmp_path):
    with pytest.raises(ModelError, match=r"validation data .* not found"):
        train.read_split(tmp_path / "nope", SCHEMA, channel="validation")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(ModelError, match=r"holds no \.csv part files"):
        train.read_split(tmp_path / "empty", SCHEMA)
    header_only = tmp_path / "h"
    header_only.mkdir()
    (header_only / "part-0.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ModelError, match="has no rows"):
        train.read_split(header_only, SCHEMA)


# --- the entrypoint -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_model(tmp_path_factory, splits):
    """One training run with the default hyperparameters, shared by the quality tests."""
    model_dir = tmp_path_factory.mktemp("default") / "model"
    metrics = train.run(splits["train"], splits["validation"], model_dir, model_dir / "none")
    return model_dir, metrics


def test_test_rmse_meets_the_target(default_model, splits):
    model = artefact.load(default_model[0])
    y, X = train.read_split(splits["test"], SCHEMA)
    test_rmse = train.rmse(y, model.predict(X))
    assert test_rmse <= 2.15, test_rmse
    assert default_model[1]["validation_rmse"] < 2.4


def test_main_follows_the_training_contract(sm_env, capsys):
    write_hp(sm_env, {"num_round": "40", "eta": "0.1"})
    assert entry.main(["train"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^train:rmse=\d+\.\d{6}$", out, re.M)
    assert re.search(r"^validation:rmse=\d+\.\d{6}$", out, re.M)
    assert re.search(r"^best_iteration=\d+$", out, re.M)
    meta = json.loads((sm_env / "model" / "metadata.json").read_text())
    assert meta["hyperparameters"]["num_round"] == 40
    assert f"validation:rmse={meta['metrics']['validation_rmse']:.6f}" in out
    assert not (sm_env / "output" / "failure").exists()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda root, env: write_hp(root, {"colour": "red"}), "unknown hyperparameter(s): colour"),
        (
            lambda root, env: env.setenv("SM_CHANNEL_VALIDATION", str(root / "missing")),
            "validation data",
        ),
    ],
)
def test_failures_write_the_reason_and_exit_non_zero(sm_env, monkeypatch, capsys, setup, reason):
    setup(sm_env, monkeypatch)
    code = train.main([])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and reason in err
    assert reason in (sm_env / "output" / "failure").read_text()
    assert not (sm_env / "model" / "model.ubj").exists()


def test_training_is_deterministic_across_runs_and_partitioning(tmp_path, data, splits):
    hp_dir = tmp_path / "config"
    hp_dir.mkdir()
    (hp_dir / "hyperparameters.json").write_text(json.dumps({"num_round": "60", "eta": "0.1"}))
    rng = np.random.default_rng(3)
    reshuffled = {
        name: write_parts(
            tmp_path / f"re-{name}",
            [data[name][i] for i in rng.permutation(len(data[name]))],
            parts=5,
            columns=COLUMNS[::-1],
        )
        for name in ("train", "validation")
    }
    runs = [
        (splits["train"], splits["validation"]),
        (splits["train"], splits["validation"]),
        (reshuffled["train"], reshuffled["validation"]),
    ]
    results = []
    for k, (tr, va) in enumerate(runs):
        metrics = train.run(tr, va, tmp_path / f"m{k}", hp_dir)
        results.append(((tmp_path / f"m{k}" / "model.ubj").read_bytes(), metrics))
    assert results[0] == results[1] == results[2]
    meta = [(tmp_path / f"m{k}" / "metadata.json").read_text() for k in range(3)]
    assert meta[0] == meta[1] == meta[2]
