"""The model artefact (save/load/tarball/predict) and model behaviour on the encoded matrix."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from abalone_model import model as artefact
from abalone_model import train
from abalone_model.errors import ModelError
from abalone_model.schema import DATA_FILE, Schema
from abalone_model.trees import compile_booster, parse_base_score

SCHEMA = Schema.load()


def write_splits(root: Path, seed: int = 7) -> dict[str, Path]:
    """70/15/15 seeded split of the real data as Spark-like dirs of part files (encoded)."""
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    perm = np.random.default_rng(seed).permutation(len(rows))
    a, b = int(0.7 * len(rows)), int(0.85 * len(rows))
    columns = [SCHEMA.target.name, *SCHEMA.encoded_names]
    sexes = SCHEMA.column("sex").categories
    out = {}
    for name, idx in (("train", perm[:a]), ("validation", perm[a:b]), ("test", perm[b:])):
        out[name] = root / name
        out[name].mkdir(parents=True)
        for k, chunk in enumerate(np.array_split(idx, 2)):
            with (out[name] / f"part-{k:05d}.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns)
                for i in chunk:
                    r = rows[i]
                    onehot = [int(r["sex"] == s) for s in sexes]
                    writer.writerow([r["rings"], *onehot, *(r[c] for c in columns[4:])])
        (out[name] / "_SUCCESS").write_text("")
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model dir, test split) trained once with the default hyperparameters."""
    root = tmp_path_factory.mktemp("model")
    splits = write_splits(root / "data")
    model_dir = root / "model"
    train.run(splits["train"], splits["validation"], model_dir, root / "no-config")
    return model_dir, train.read_split(splits["test"], SCHEMA)


@pytest.fixture(scope="module")
def loaded(trained):
    return artefact.load(trained[0])


def test_save_writes_three_files_with_metadata(trained):
    model_dir, _ = trained
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "metadata.json",
        "model.ubj",
        "schema.json",
    ]
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["feature_names"] == list(SCHEMA.encoded_names)
    assert meta["xgboost_version"] == xgb.__version__
    assert meta["hyperparameters"]["eta"] == train.HYPERPARAMETERS["eta"][1]
    assert set(meta["metrics"]) >= {"train_rmse", "validation_rmse", "best_iteration"}
    assert Schema.load(model_dir / "schema.json") == SCHEMA


def test_load_predicts_like_the_booster(trained, loaded):
    _, (_, X) = trained
    booster = xgb.Booster(model_file=str(trained[0] / "model.ubj"))
    expected = booster.predict(xgb.DMatrix(X, feature_names=list(SCHEMA.encoded_names)))
    got = loaded.predict(X)
    assert got.dtype == np.float64
    assert got.shape == (len(X),)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert loaded.feature_names == SCHEMA.encoded_names
    assert loaded.schema == SCHEMA


def test_predict_accepts_one_row_any_dtype_and_layout(trained, loaded):
    _, (_, X) = trained
    batch = loaded.predict(X[:1000])
    assert loaded.predict(X[3]).shape == (1,)
    assert loaded.predict(X[3]) == pytest.approx(batch[3:4])
    fortran = np.asfortranarray(X[:50].astype(np.float64))
    np.testing.assert_array_equal(loaded.predict(fortran), batch[:50])
    assert loaded.predict(X[:0]).shape == (0,)


def test_predict_rejects_wrong_width(loaded):
    with pytest.raises(ModelError, match=r"\(n, 10\) matrix"):
        loaded.predict(np.zeros((2, 9), dtype=np.float32))


def test_tarball_round_trip_is_reproducible(trained, loaded, tmp_path):
    _, (_, X) = trained
    first = artefact.make_tarball(trained[0], tmp_path / "a" / "model.tar.gz")
    second = artefact.make_tarball(trained[0], tmp_path / "b" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "model.ubj", "schema.json"]
    from_tar = artefact.load_from_tarball(first)
    np.testing.assert_array_equal(from_tar.predict(X), loaded.predict(X))
    assert from_tar.metadata == loaded.metadata


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def test_tarball_path_traversal_is_refused(tmp_path):
    evil = _tar_with(tmp_path / "evil.tar.gz", tarfile.TarInfo("../outside.txt"))
    with pytest.raises(ModelError, match="escapes"):
        artefact.load_from_tarball(evil)
    assert not (tmp_path / "outside.txt").exists()


def test_tarball_links_are_refused(tmp_path):
    link = tarfile.TarInfo("model.ubj")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ModelError, match="not a regular file"):
        artefact.load_from_tarball(_tar_with(tmp_path / "link.tar.gz", link))


def test_tarball_without_model_or_not_a_tarball(tmp_path):
    empty = _tar_with(tmp_path / "empty.tar.gz", tarfile.TarInfo("readme.txt"))
    with pytest.raises(ModelError, match=r"contains no model\.ubj"):
        artefact.load_from_tarball(empty)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(ModelError, match="cannot extract"):
        artefact.load_from_tarball(junk)
    with pytest.raises(ModelError, match="not found"):
        artefact.load_from_tarball(tmp_path / "absent.tar.gz")


def test_load_names_missing_and_inconsistent_files(trained, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(trained[0], copy)
    (copy / "schema.json").unlink()
    with pytest.raises(ModelError, match=r"lacks schema\.json"):
        artefact.load(copy)
    shutil.copy(trained[0] / "schema.json", copy / "schema.json")
    meta = json.loads((copy / "metadata.json").read_text())
    meta["feature_names"] = meta["feature_names"][::-1]
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="disagree"):
        artefact.load(copy)
    shutil.copy(trained[0] / "metadata.json", copy / "metadata.json")
    (copy / "model.ubj").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a valid XGBoost model"):
        artefact.load(copy)


# --- behaviour on the encoded matrix ------------------------------------------------------------

SHELL = SCHEMA.encoded_names.index("shell_weight")
SEX = {s: SCHEMA.encoded_names.index(f"sex_{s}") for s in ("M", "F", "I")}


def test_heavier_shells_never_lower_the_average_prediction(trained, loaded):
    _, (_, X) = trained
    grid = np.quantile(X[:, SHELL], np.linspace(0.02, 0.98, 25))
    means = []
    for value in grid:
        probe = X.copy()
        probe[:, SHELL] = value
        means.append(loaded.predict(probe).mean())
    assert np.all(np.diff(means) >= -1e-6), means
    assert means[-1] - means[0] > 1.0  # shell weight matters, not a flat line


def _as_sex(X: np.ndarray, sex: str) -> np.ndarray:
    probe = X.copy()
    probe[:, list(SEX.values())] = 0.0
    probe[:, SEX[sex]] = 1.0
    return probe


def test_infants_are_predicted_younger_than_adults(trained, loaded):
    _, (_, X) = trained
    infant = loaded.predict(_as_sex(X, "I")).mean()
    for adult in ("M", "F"):
        assert infant < loaded.predict(_as_sex(X, adult)).mean()
    is_infant = X[:, SEX["I"]] == 1.0
    pred = loaded.predict(X)
    assert pred[is_infant].mean() < pred[~is_infant].mean()


# --- the compiled-trees fast path ---------------------------------------------------------------

TOLERANCE = 1e-5  # absolute; the evaluator is exact in practice (max difference observed: 0.0)


def encode_all() -> tuple[np.ndarray, np.ndarray]:
    """(rings, encoded float32 matrix) for all 4,177 rows of the real data set."""
    with DATA_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sexes = SCHEMA.column("sex").categories
    numeric = SCHEMA.encoded_names[len(sexes) :]
    X = [[float(r["sex"] == s) for s in sexes] + [float(r[c]) for c in numeric] for r in rows]
    return np.array([float(r["rings"]) for r in rows]), np.array(X, dtype=np.float32)


@pytest.fixture(scope="module")
def everything():
    return encode_all()


def with_nans(X: np.ndarray, share: float, seed: int = 3) -> np.ndarray:
    out = X.copy()
    out[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return out


def assert_fast_path_exact(model: artefact.TrainedModel, X: np.ndarray) -> None:
    """Single rows and every small batch size through the compiled trees equal XGBoost's."""
    assert model.trees is not None
    expected = model.booster.inplace_predict(X, validate_features=False)
    singles = np.concatenate([model.trees.predict(X[i : i + 1]) for i in range(len(X))])
    assert singles.dtype == np.float32
    assert np.abs(singles - expected).max() <= TOLERANCE
    for size in (2, 3, 8, artefact.FAST_MAX_ROWS):
        batches = [model.trees.predict(X[i : i + size]) for i in range(0, len(X), size)]
        assert np.abs(np.concatenate(batches) - expected).max() <= TOLERANCE, size


def test_fast_path_equals_xgboost_on_every_row(loaded, everything):
    _, X = everything
    assert_fast_path_exact(loaded, X)
    assert_fast_path_exact(loaded, with_nans(X[:600], 0.3))


@pytest.fixture(scope="module")
def deep(tmp_path_factory, everything):
    """Deeper trees and more rounds, trained with missing values so NaN goes both ways."""
    y, X = everything
    booster = xgb.train(
        {"max_depth": 8, "eta": 0.1, "min_child_weight": 1, "tree_method": "hist", "nthread": 1},
        xgb.DMatrix(with_nans(X, 0.2, seed=1), label=y),
        num_boost_round=400,
    )
    model_dir = artefact.save(tmp_path_factory.mktemp("deep"), booster, SCHEMA, {})
    return artefact.load(model_dir)


def test_fast_path_equals_xgboost_for_a_deeper_model(deep, everything):
    _, X = everything
    assert deep.trees is not None
    assert deep.trees.depth == 8
    assert len(deep.trees.roots) == 400
    internal = deep.trees.left != np.arange(len(deep.trees.left))
    assert deep.trees.default_right[internal].any()
    assert not deep.trees.default_right[internal].all()  # both default directions occur
    assert_fast_path_exact(deep, X[:1500])
    assert_fast_path_exact(deep, with_nans(X[1500:3000], 0.25))


def test_predict_uses_the_fast_path_only_for_small_batches(loaded, everything, monkeypatch):
    _, X = everything
    expected = loaded.booster.inplace_predict(X[:100], validate_features=False)
    calls = []
    original = loaded.booster.inplace_predict

    def counting(data, **kwargs):
        calls.append(len(data))
        return original(data, **kwargs)

    monkeypatch.setattr(loaded.booster, "inplace_predict", counting)
    small = X[: artefact.FAST_MAX_ROWS].astype(np.float64)
    np.testing.assert_allclose(loaded.predict(small), expected[: len(small)], atol=TOLERANCE)
    np.testing.assert_allclose(loaded.predict(X[7]), expected[7:8], atol=TOLERANCE)
    assert calls == []
    big = X[: artefact.FAST_MAX_ROWS + 1]
    np.testing.assert_allclose(loaded.predict(big), expected[: len(big)], atol=TOLERANCE)
    assert calls == [artefact.FAST_MAX_ROWS + 1]


def quick_booster(params: dict, X: np.ndarray, y: np.ndarray, **dmatrix) -> xgb.Booster:
    return xgb.train({"nthread": 1, **params}, xgb.DMatrix(X, y, **dmatrix), 5)


def test_unsupported_models_fall_back_to_xgboost(everything, tmp_path):
    y, X = everything
    X, y = X[:800], y[:800]
    unsupported = {
        "gblinear": quick_booster({"booster": "gblinear"}, X, y),
        "dart": quick_booster({"booster": "dart", "rate_drop": 0.5}, X, y),
        "log link": quick_booster({"objective": "count:poisson"}, X, y),
        "two targets": quick_booster(
            {"multi_strategy": "multi_output_tree", "tree_method": "hist"},
            X,
            np.stack([y, y / 2], axis=1),
        ),
    }
    for name, booster in unsupported.items():
        assert compile_booster(booster) is None, name
    # categorical splits: the three sex columns as one categorical code plus padding columns
    codes = X[:, :3].argmax(axis=1).astype(np.float32)
    cat_X = np.column_stack([codes, X[:, 3:], X[:, 3:5]])
    types = ["c"] + ["q"] * 9
    booster = quick_booster(
        {"tree_method": "hist", "max_cat_to_onehot": 1},
        cat_X,
        y,
        feature_types=types,
        enable_categorical=True,
    )
    assert compile_booster(booster) is None
    model = artefact.load(artefact.save(tmp_path / "cat", booster, SCHEMA, {}))
    assert model.trees is None
    expected = booster.inplace_predict(cat_X[:3], validate_features=False)
    np.testing.assert_allclose(model.predict(cat_X[:3]), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "value"),
    [("[9.915498E0]", 9.915498), ("9.9E0", 9.9), (9.5, 9.5), ("[1E0,2E0]", None), ("x", None)],
)
def test_parse_base_score(text, value):
    assert parse_base_score(text) == value
