"""Model artifacts and training with real XGBoost: import, digest, determinism, refusals, drift."""
from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
import xgboost as xgb

from irisdag.core import generator as gen
from irisdag.core.batches import read_feature_csv, read_label_csv
from irisdag.models import artifacts
from irisdag.models.artifacts import (
    CLASSES,
    DigestMismatch,
    ModelArtifact,
    ModelFormatError,
    import_model,
    load_model,
    predict_labels,
    predict_proba,
    save_model,
)
from irisdag.models.training import DEFAULT_ROUNDS, iris_table, split_holdout, train_model
from irisdag_tests.support.data import COURSE



def accuracy(booster, X, y) -> float:
    return float((predict_labels(booster, X) == np.asarray(y)).mean())


@pytest.fixture(scope="module")
def iris():
    return iris_table()


def test_import_course_model(tmp_path):
    raw = (COURSE / "model.json").read_bytes()
    art = import_model(COURSE / "model.json", tmp_path / "models")
    assert isinstance(art, ModelArtifact)
    assert art.version == art.digest == hashlib.sha256(raw).hexdigest()
    assert art.path == tmp_path / "models" / f"{art.version}.json"
    assert art.path.read_bytes() == raw  # byte for byte
    meta = json.loads((tmp_path / "models" / f"{art.version}.meta.json").read_text())
    assert meta["version"] == art.version and meta["source"].endswith("model.json") and meta["imported"] is True
    assert meta["num_class"] == 3 and meta["num_feature"] == 4 and meta["objective"] == "multi:softprob"
    for k in ("rows", "trained_keys", "params", "created_at", "source"):
        assert k in meta
    # importing again: same version, nothing changes
    again = import_model(raw, tmp_path / "models", source="s3://bucket/artifact/model.json")
    assert again.version == art.version
    assert artifacts.list_versions(tmp_path / "models") == [art.version]

    booster = load_model(tmp_path / "models", art.version, art.digest)
    X = read_feature_csv(COURSE / "iris.csv").X
    y = read_label_csv(COURSE / "iris_y.csv")
    labels = predict_labels(booster, X)
    assert labels.dtype == np.int8 and labels.shape == (1050,)
    acc = float((labels == y).mean())
    assert acc >= 0.9, acc
    first = predict_labels(booster, np.array([[5.0, 2.9, 1.1, 0.4]]))
    assert CLASSES[int(first[0])] == "setosa"
    # every class is predicted; chunked prediction gives the same labels
    assert set(labels.tolist()) == {0, 1, 2}
    assert np.array_equal(predict_labels(booster, X, chunk_rows=7), labels)
    assert np.array_equal(art.load().inplace_predict(X).argmax(axis=1), labels)


def test_flipped_byte_is_refused(tmp_path):
    art = import_model(COURSE / "model.json", tmp_path)
    data = bytearray(art.path.read_bytes())
    i = data.index(b'"num_trees":"30"') + len(b'"num_trees":"')
    data[i] = ord("2")  # one byte: still valid JSON, a different model
    art.path.write_bytes(bytes(data))
    found = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(DigestMismatch) as err:
        load_model(tmp_path, art.version, art.digest)
    msg = str(err.value)
    assert art.digest in msg and found in msg
    assert isinstance(err.value, ValueError)
    assert err.value.expected == art.digest and err.value.found == found
    with pytest.raises(DigestMismatch):
        art.load()
    with pytest.raises(DigestMismatch):
        load_model(art.path)  # digest taken from the file name
    # a wrong expected digest is refused even for an intact file
    art2 = import_model(COURSE / "model.json", tmp_path / "b")
    with pytest.raises(DigestMismatch):
        load_model(tmp_path / "b", art2.version, "0" * 64)


def test_pickles_and_foreign_json_are_refused(tmp_path, iris):
    X, y = iris
    booster = train_model(X, y)
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(booster))
    with pytest.raises(ModelFormatError, match=r"model\.pkl.*pickle"):
        import_model(pkl, tmp_path / "store")
    old_pickle = tmp_path / "p0.json"
    old_pickle.write_bytes(pickle.dumps({"a": 1}, protocol=0))
    with pytest.raises(ModelFormatError, match=r"p0\.json.*pickle"):
        import_model(old_pickle, tmp_path / "store")
    rnd = tmp_path / "random.json"
    rnd.write_text(json.dumps({"weights": [1, 2, 3], "name": "not a model"}))
    with pytest.raises(ModelFormatError, match=r"random\.json.*not an XGBoost model"):
        import_model(rnd, tmp_path / "store")
    txt = tmp_path / "notes.json"
    txt.write_text("this is not json")
    with pytest.raises(ModelFormatError, match=r"notes\.json.*not JSON"):
        import_model(txt, tmp_path / "store")
    ubj = tmp_path / "model.ubj"
    ubj.write_bytes(bytes(booster.save_raw(raw_format="ubj")))
    with pytest.raises(ModelFormatError, match=r"model\.ubj"):
        import_model(ubj, tmp_path / "store")
    # XGBoost JSON, but the wrong shape of model
    two = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, label=(y == 0)), 3)
    (tmp_path / "binary.json").write_bytes(bytes(two.save_raw("json")))
    with pytest.raises(ModelFormatError, match=r"binary\.json.*objective"):
        import_model(tmp_path / "binary.json", tmp_path / "store")
    five = xgb.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1},
                     xgb.DMatrix(np.hstack([X, X[:, :1]]), label=y), 3)
    (tmp_path / "five.json").write_bytes(bytes(five.save_raw("json")))
    with pytest.raises(ModelFormatError, match=r"five\.json.*5 features"):
        import_model(tmp_path / "five.json", tmp_path / "store")
    four_classes = xgb.train({"objective": "multi:softprob", "num_class": 4, "nthread": 1},
                             xgb.DMatrix(X, label=np.where(X[:, 0] > 7, 3, y)), 3)
    (tmp_path / "four.json").write_bytes(bytes(four_classes.save_raw("json")))
    with pytest.raises(ModelFormatError, match=r"four\.json.*4 classes"):
        import_model(tmp_path / "four.json", tmp_path / "store")
    with pytest.raises(FileNotFoundError):
        import_model(tmp_path / "missing.json", tmp_path / "store")
    assert artifacts.list_versions(tmp_path / "store") == []


def test_deterministic_training_gives_the_same_version(tmp_path, iris):
    X, y = iris
    a = save_model(train_model(X, y, seed=0), tmp_path, {"rows": len(X), "source": "iris", "params": {"seed": 0},
                                                        "trained_keys": "keys-a.npy"})
    b = save_model(train_model(X, y, seed=0), tmp_path, {"rows": len(X), "source": "iris"})
    assert a.version == b.version == hashlib.sha256(a.path.read_bytes()).hexdigest()
    assert a.meta["created_at"] == b.meta["created_at"]
    assert a.meta["trained_keys"] == "keys-a.npy" and a.meta["rows"] == 150
    assert b.meta["trained_keys"] == "keys-a.npy"  # a re-save without it keeps what was known
    c = save_model(train_model(X, y, seed=1, params={"subsample": 0.8}), tmp_path, {"rows": len(X)})
    assert c.version != a.version
    assert set(artifacts.list_versions(tmp_path)) == {a.version, c.version}
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files
    loaded = load_model(tmp_path, a.version)
    assert loaded.num_boosted_rounds() == DEFAULT_ROUNDS
    assert bytes(loaded.save_raw("json")) == a.path.read_bytes()
    assert artifacts.get_artifact(tmp_path, a.version).meta["rows"] == 150
    # a model trained on the iris table classifies iris
    assert accuracy(loaded, X, y) > 0.97


def test_predict_labels_softmax_softprob_and_chunks(iris):
    X, y = iris
    prob = train_model(X, y)
    soft = train_model(X, y, params={"objective": "multi:softmax"})
    lp = predict_labels(prob, X)
    assert np.array_equal(lp, predict_labels(soft, X))
    assert np.array_equal(lp, predict_labels(prob, X, chunk_rows=16))
    assert predict_proba(prob, X).shape == (150, 3)
    assert predict_labels(prob, np.zeros((0, 4))).shape == (0,)
    with pytest.raises(ValueError):
        predict_labels(prob, np.array([[np.nan, 1, 2, 3]]))
    with pytest.raises(ValueError):
        predict_labels(prob, np.zeros((2, 3)))


def test_training_rejects_bad_labels(iris):
    X, y = iris
    with pytest.raises(ValueError):
        train_model(X, np.where(y == 2, 3, y))
    with pytest.raises(ValueError):
        train_model(X[:, :3], y)


def test_split_holdout_is_deterministic_and_stratified(iris):
    X, y = iris
    s1 = split_holdout(X, y, 0.2, seed=5)
    s2 = split_holdout(X, y, 0.2, seed=5)
    assert np.array_equal(s1.holdout_index, s2.holdout_index)
    assert len(s1.y_holdout) == 30 and np.bincount(s1.y_holdout).tolist() == [10, 10, 10]
    assert len(np.intersect1d(s1.train_index, s1.holdout_index)) == 0
    assert len(s1.X_train) + len(s1.X_holdout) == 150
    assert not np.array_equal(split_holdout(X, y, 0.2, seed=6).holdout_index, s1.holdout_index)


def test_drift_degrades_the_champion_and_retraining_recovers(iris, record_property):
    """The generator's drift, measured on real models (seeded; margins asserted, numbers reported)."""
    X, y = iris
    champion = train_model(X, y)
    X0, y0 = gen.generate(20_000, seed=(11, 0))
    X1, y1 = gen.generate(20_000, seed=(11, 1), drift=1.0, t=1.0)
    n = 3000
    t = np.random.default_rng(12).uniform(0.0, 1.0, n)
    Xd, yd = gen.generate(n, seed=(11, 2), drift=1.0, t=t)
    challenger = train_model(np.vstack([X, Xd]), np.concatenate([y, yd]))
    acc = {
        "champion_undrifted": accuracy(champion, X0, y0),
        "champion_drifted": accuracy(champion, X1, y1),
        "challenger_drifted": accuracy(challenger, X1, y1),
        "challenger_undrifted": accuracy(challenger, X0, y0),
    }
    for k, v in acc.items():
        record_property(k, round(v, 4))
    print("drift accuracies:", {k: round(v, 3) for k, v in acc.items()})
    assert acc["champion_undrifted"] >= 0.93
    assert acc["champion_drifted"] <= acc["champion_undrifted"] - 0.10
    assert 0.70 <= acc["champion_drifted"] <= 0.88
    assert acc["challenger_drifted"] >= acc["champion_drifted"] + 0.08
    assert acc["challenger_undrifted"] >= 0.85
