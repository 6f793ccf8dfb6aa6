"""Training an XGBoost iris classifier, deterministically, and the iris table.

``train_model`` uses XGBoost's native API (``xgboost.train`` on a DMatrix) with
a fixed seed and a fixed thread count, so the same rows and parameters give the
same model file byte for byte, hence the same content-addressed version
(``artifacts.save_model``).
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import xgboost as xgb

from irisdag.core.keys import N_FEATURES, invalid_mask
from irisdag.models.artifacts import CLASSES

N_CLASSES = len(CLASSES)

DEFAULT_ROUNDS = 50
DEFAULT_PARAMS: dict = {
    "objective": "multi:softprob",
    "num_class": N_CLASSES,
    "max_depth": 3,
    "eta": 0.3,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "tree_method": "hist",
    "max_bin": 256,
    "eval_metric": "mlogloss",
    # Determinism: one thread, fixed seed (``seed`` is overwritten by train_model's seed).
    "nthread": 1,
    "seed": 0,
    "verbosity": 0,
}
# Keys of ``params`` that are not booster parameters but the number of rounds.
_ROUND_KEYS = ("num_boost_round", "n_estimators", "rounds")


def _check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise ValueError(f"X must have shape (n, {N_FEATURES}), got {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
    if len(X) == 0:
        raise ValueError("cannot train on zero rows")
    bad = np.flatnonzero(invalid_mask(X))
    if len(bad):
        raise ValueError(f"X has {len(bad)} invalid rows (NaN, infinite or |x| >= 1e6), first at index {bad[0]}: {X[bad[0]].tolist()}")
    if not np.issubdtype(y.dtype, np.integer):
        yf = y.astype(np.float64)
        if not np.all(np.isfinite(yf)) or not np.all(yf == np.round(yf)):
            raise ValueError("y must hold integer class indices 0, 1, 2")
        y = yf.astype(np.int64)
    out = (y < 0) | (y >= N_CLASSES)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(f"y must hold class indices 0..{N_CLASSES - 1}; index {i} holds {y[i]!r}")
    return X, y.astype(np.int64)


def resolved_params(*, seed: int = 0, params: Mapping | None = None) -> tuple[dict, int]:
    """The booster parameters and number of rounds ``train_model`` would use."""
    merged = dict(DEFAULT_PARAMS)
    rounds = DEFAULT_ROUNDS
    for k, v in (params or {}).items():
        if k in _ROUND_KEYS:
            rounds = int(v)
        else:
            merged[k] = v
    merged["seed"] = int(seed)
    if merged.get("objective") not in ("multi:softprob", "multi:softmax"):
        raise ValueError(f"objective must be multi:softprob or multi:softmax, got {merged.get('objective')!r}")
    if int(merged.get("num_class", N_CLASSES)) != N_CLASSES:
        raise ValueError(f"num_class must be {N_CLASSES}, got {merged.get('num_class')!r}")
    merged["num_class"] = N_CLASSES
    if rounds < 1:
        raise ValueError(f"number of boosting rounds must be >= 1, got {rounds}")
    return merged, rounds


def train_model(X, y, *, seed: int = 0, params: Mapping | None = None) -> xgb.Booster:
    """Train a 3-class XGBoost booster on float (N, 4) features and labels 0/1/2.

    ``params`` overrides DEFAULT_PARAMS (and may carry ``num_boost_round``,
    default 50). Deterministic: same rows, seed and params give the same model
    bytes.
    """
    X, y = _check_xy(X, y)
    booster_params, rounds = resolved_params(seed=seed, params=params)
    dtrain = xgb.DMatrix(X, label=y, nthread=int(booster_params.get("nthread", 1)))
    return xgb.train(booster_params, dtrain, num_boost_round=rounds, verbose_eval=False)


def iris_table() -> tuple[np.ndarray, np.ndarray]:
    """The iris table bundled with scikit-learn (no network): X float64 (150, 4), y int64 (150,)."""
    from sklearn.datasets import load_iris

    data = load_iris()
    return np.asarray(data.data, dtype=np.float64).copy(), np.asarray(data.target, dtype=np.int64).copy()


class Split(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_holdout: np.ndarray
    y_holdout: np.ndarray
    train_index: np.ndarray
    holdout_index: np.ndarray


def split_holdout(X, y, holdout_fraction: float = 0.3, seed: int = 0) -> Split:
    """Deterministic stratified split: round(holdout_fraction * n_c) rows of each class held out.

    Returns a ``Split`` (X_train, y_train, X_holdout, y_holdout, train_index,
    holdout_index); indices are sorted so row order is kept within each part.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(holdout_fraction * len(idx)))
        held.append(rng.permutation(idx)[:k])
    hold = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.zeros(len(y), dtype=bool)
    mask[hold] = True
    train = np.flatnonzero(~mask)
    return Split(X[train], y[train], X[hold], y[hold], train, hold)
