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
