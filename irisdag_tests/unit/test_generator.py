"""The iris-like row generator: seeded, rounded, balanced as asked, drifting as designed.

(The accuracy effect of the drift on real XGBoost models is measured in
``irisdag_tests/integration/test_models.py``.)
"""
from __future__ import annotations

import numpy as np
import pytest

from irisdag.core import generator as gen
from irisdag.core.keys import invalid_mask


def test_constants_are_the_iris_fit():
    from irisdag.models.training import iris_table

    X, y = iris_table()
    fitted = gen.IrisGenerator.fit(X, y, ridge=0.0)
    assert np.allclose(fitted.means, gen.IRIS_MEANS, atol=1e-9)
    assert np.allclose(fitted.covs, gen.IRIS_COVS, atol=1e-7)


def test_seeded_and_reproducible():
    X1, y1 = gen.generate(500, seed=42)
    X2, y2 = gen.generate(500, seed=42)
    X3, _ = gen.generate(500, seed=43)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    Xa, _ = gen.generate(50, seed=(42, 7))
    Xb, _ = gen.generate(50, seed=(42, 7))
    assert np.array_equal(Xa, Xb)


def test_shape_dtype_rounding_and_validity():
    X, y = gen.generate(10_000, seed=1, drift=1.0, t=1.0)
    assert X.shape == (10_000, 4) and X.dtype == np.float64
    assert y.shape == (10_000,) and y.dtype == np.int8 and set(np.unique(y)) == {0, 1, 2}
    q = X * 10
    assert np.array_equal(X, np.rint(q) / 10.0)  # exactly the double of a one-decimal measurement
    assert not invalid_mask(X).any()
    assert X.min() >= 0.1
    X0, _ = gen.generate(0, seed=1)
    assert X0.shape == (0, 4)


def test_class_balance_is_configurable():
    _, y = gen.generate(30_000, seed=2)
    assert np.allclose(np.bincount(y, minlength=3) / len(y), [1 / 3] * 3, atol=0.02)
    _, y = gen.generate(30_000, seed=2, class_weights=[0.6, 0.3, 0.1])
    assert np.allclose(np.bincount(y, minlength=3) / len(y), [0.6, 0.3, 0.1], atol=0.02)
    _, y = gen.generate(1000, seed=2, class_weights=[0, 1, 0])
    assert set(y.tolist()) == {1}
    with pytest.raises(ValueError):
        gen.generate(10, seed=2, class_weights=[1, 1])
    with pytest.raises(ValueError):
        gen.generate(10, seed=2, class_weights=[0, 0, 0])


def test_undrifted_rows_look_like_iris():
    X, y = gen.generate(60_000, seed=3)
    for c in range(3):
        assert np.allclose(X[y == c].mean(axis=0), gen.IRIS_MEANS[c], atol=0.02)
        assert np.allclose(np.cov(X[y == c], rowvar=False), gen.IRIS_COVS[c], atol=0.03)


def test_drift_moves_the_class_means_linearly():
    n = 60_000
    for drift, t in ((1.0, 1.0), (1.0, 0.5), (2.0, 0.25)):
        X, y = gen.generate(n, seed=4, drift=drift, t=t)
        expected = gen.IRIS_MEANS + drift * t * gen.DRIFT_SHIFT
        for c in range(3):
            assert np.allclose(X[y == c].mean(axis=0), expected[c], atol=0.03)
    assert np.allclose(gen.DEFAULT_GENERATOR.class_means(drift=1.0, t=1.0), gen.IRIS_MEANS + gen.DRIFT_SHIFT)
    # drift 0 or t 0: no drift at all, same rows
    assert np.array_equal(gen.generate(100, seed=5, drift=1.0, t=0.0)[0], gen.generate(100, seed=5)[0])
    assert np.array_equal(gen.generate(100, seed=5, drift=0.0, t=0.9)[0], gen.generate(100, seed=5)[0])


def test_drift_design_versicolor_petals_move_toward_virginica():
    shift = gen.DRIFT_SHIFT
    assert np.all(shift[0] == 0)  # setosa stays
    assert shift[1, 2] > 0 and shift[1, 3] > 0 and shift[1, 1] < 0  # versicolor: bigger petals, narrower sepals
    at1 = gen.IRIS_MEANS + shift
    # after drift 1, versicolor's petals sit past the old versicolor/virginica midpoint ...
    mid = (gen.IRIS_MEANS[1, 2:] + gen.IRIS_MEANS[2, 2:]) / 2
    assert np.all(at1[1, 2:] > mid)
    # ... but its sepal width is far from virginica's (separable again)
    assert at1[2, 1] - at1[1, 1] > 0.8


def test_per_row_times():
    n = 40_000
    t = np.linspace(0.0, 1.0, n)
    X, y = gen.generate(n, seed=6, drift=1.0, t=t)
    _, y0 = gen.generate(n, seed=6)
    assert np.array_equal(y, y0)  # the same draw, shifted per row
    early, late = (t < 0.2) & (y == 1), (t > 0.8) & (y == 1)
    # versicolor petal length grows with time by about 0.75 * (0.9 - 0.1)
    grown = X[late, 2].mean() - X[early, 2].mean()
    assert grown == pytest.approx(0.8 * gen.DRIFT_SHIFT[1, 2], abs=0.05)
    with pytest.raises(ValueError):
        gen.generate(10, seed=6, t=np.zeros(3))


def test_fit_on_another_table():
    X, y = gen.generate(3000, seed=7)
    g = gen.fit(X, y)
    Xg, yg = g.generate(20_000, seed=8)
    for c in range(3):
        assert np.allclose(Xg[yg == c].mean(axis=0), gen.IRIS_MEANS[c], atol=0.05)
    with pytest.raises(ValueError):
        gen.fit(X[:3], y[:3])
