"""KID: unbiased on two samples of one distribution, growing with a known shift; bootstrap; NN."""

from __future__ import annotations

import numpy as np

from synthloop.gap.kid import kid, mmd2_unbiased, nearest, polynomial_kernel


def test_kernel_is_the_cubic_polynomial():
    x = np.array([[1.0, 2.0], [0.0, 1.0]])
    y = np.array([[3.0, -1.0]])
    expected = np.array([[((1 * 3 + 2 * -1) / 2 + 1) ** 3], [((0 * 3 + 1 * -1) / 2 + 1) ** 3]])
    assert np.allclose(polynomial_kernel(x, y), expected)


def test_unbiased_on_one_distribution():
    rng = np.random.default_rng(0)
    vals = np.array([mmd2_unbiased(rng.normal(size=(40, 8)), rng.normal(size=(30, 8))) for _ in range(300)])
    se = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean()) < 3 * se
    assert (vals < 0).any()  # an unbiased estimate of 0 goes negative; a biased (V-statistic) one would not


def test_grows_with_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 8))
    kids = [mmd2_unbiased(x, rng.normal(size=(80, 8)) + s) for s in (0.0, 0.3, 0.6, 1.2)]
    assert all(b > a for a, b in zip(kids, kids[1:], strict=False))
    assert kids[1] > 0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    x = np.random.default_rng(2).normal(size=(60, 4))
    y = np.random.default_rng(3).normal(size=(50, 4)) + 0.8
    a = kid(x, y, np.random.default_rng(7), n_boot=60)
    b = kid(x, y, np.random.default_rng(7), n_boot=60)
    assert a == b
    assert a.low < a.value < a.high and a.se > 0
    assert a.low > 0  # a clear shift: the interval excludes 0
    assert kid(x[:1], y, np.random.default_rng(0)) is None


def test_nearest_excludes_self():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    d, i = nearest(pts, pts, exclude_self=True)
    assert i[:, 0].tolist() == [1, 0, 1]
    assert np.allclose(d[:, 0], [1.0, 1.0, 4.0])
