"""Kernel Inception Distance (KID): the unbiased MMD^2 with the cubic polynomial kernel.

Bińkowski et al., "Demystifying MMD GANs" (ICLR 2018): for features x, y in R^d,
k(x, y) = (x . y / d + 1)^3 and

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j),

an unbiased estimate (it can be slightly negative when the two distributions agree). Intervals come
from a seeded bootstrap: both samples are resampled with replacement, and pairs of draws of the same
original item are left out of the within-sample sums (so a duplicate does not count as a perfect
match). Pure numpy; features in any units (the kernel divides by d).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m, d), (n, d) -> (m, n) matrix of (x . y / d + 1)^3."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def _mmd2_from_kernels(
    kxx: np.ndarray,
    kyy: np.ndarray,
    kxy: np.ndarray,
    ix: np.ndarray | None = None,
    iy: np.ndarray | None = None,
) -> float:
    """Unbiased MMD^2 from kernel matrices; ``ix``/``iy``: original indices of each draw (pairs with
    equal original index are left out of the within-sample means), None for distinct draws."""

    def within(k: np.ndarray, idx: np.ndarray | None) -> float:
        if idx is None:
            m = k.shape[0]
            return float((k.sum() - np.trace(k)) / (m * (m - 1)))
        sub = k[np.ix_(idx, idx)]
        keep = idx[:, None] != idx[None, :]
        return float(sub[keep].mean()) if keep.any() else float("nan")

    cross = kxy if ix is None or iy is None else kxy[np.ix_(ix, iy)]
    return within(kxx, ix) + within(kyy, iy) - 2.0 * float(cross.mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (the KID) between samples x (m, d) and y (n, d), m, n >= 2."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(x)} and {len(y)}")
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


@dataclass(frozen=True)
class KidResult:
    """``value``: KID on all (or ``max_samples``) items; ``low``/``high``: the bootstrap percentile
    interval at ``level``; ``se``: bootstrap standard error; ``n_x``/``n_y``: items per side."""

    value: float
    low: float
    high: float
    se: float
    n_x: int
    n_y: int
    level: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def kid(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    *,
    n_boot: int = 100,
    level: float = 0.95,
    max_samples: int = 1000,
) -> KidResult | None:
    """KID of x (m, d) vs y (n, d) with a bootstrap interval (``n_boot`` resamples drawn from
    ``rng``). Sides larger than ``max_samples`` are subsampled (without replacement, from ``rng``)
    first. None when either side has fewer than 2 items."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        return None
    if len(x) > max_samples:
        x = x[np.sort(rng.choice(len(x), max_samples, replace=False))]
    if len(y) > max_samples:
        y = y[np.sort(rng.choice(len(y), max_samples, replace=False))]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    value = _mmd2_from_kernels(kxx, kyy, kxy)
    boots = np.array(
        [
            _mmd2_from_kernels(
                kxx, kyy, kxy, rng.integers(0, len(x), len(x)), rng.integers(0, len(y), len(y))
            )
            for _ in range(n_boot)
        ]
    )
    boots = boots[np.isfinite(boots)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [alpha, 1 - alpha]) if boots.size else (np.nan, np.nan)
    se = float(boots.std(ddof=1)) if boots.size > 1 else float("nan")
    return KidResult(float(value), float(low), float(high), se, len(x), len(y), level)


def nearest(
    queries: np.ndarray, pool: np.ndarray, *, exclude_self: bool = False, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k nearest neighbours of each query row in ``pool``: (distances (q, k), indices
    (q, k)), nearest first. ``exclude_self``: queries are ``pool`` itself; an item is not its own
    neighbour."""
    q = np.asarray(queries, dtype=np.float64)
    p = np.asarray(pool, dtype=np.float64)
    d2 = (q * q).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * q @ p.T
    d2 = np.maximum(d2, 0.0)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    k = min(k, p.shape[0])
    idx = np.argsort(d2, axis=1)[:, :k]
    return np.sqrt(np.take_along_axis(d2, idx, axis=1)), idx
