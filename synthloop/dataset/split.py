"""Deterministic dataset splits."""

from __future__ import annotations

import math

import numpy as np

from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError


def split_dataset(
    ds: Dataset, fraction: float | None = None, count: int | None = None, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split frames into ``(subset, rest)``; give exactly one of ``fraction`` or ``count``.

    The subset is ``count`` frames (or ``round(fraction * len(ds))``) drawn without replacement
    by ``np.random.default_rng(seed)``; both parts keep the frames' original order and share the
    categories. Same (dataset, fraction/count, seed) -> same split.
    """
    n = len(ds.frames)
    if (fraction is None) == (count is None):
        raise SynthloopError("give exactly one of fraction or count", where="split")
    if fraction is not None:
        if not (0.0 <= fraction <= 1.0) or math.isnan(fraction):
            raise SynthloopError(f"fraction must be in [0, 1], got {fraction}", where="split.fraction")
        k = int(round(fraction * n))
    else:
        if count is None or count < 0 or count > n:
            raise SynthloopError(f"count must be in [0, {n}], got {count}", where="split.count")
        k = int(count)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(n)[:k]] = True

    def part(mask: np.ndarray, suffix: str) -> Dataset:
        return Dataset(
            categories=list(ds.categories),
            frames=[f for f, m in zip(ds.frames, mask, strict=True) if m],
            name=f"{ds.name}-{suffix}" if ds.name else suffix,
            root=ds.root,
            info={**ds.info, "split": {"part": suffix, "seed": seed, "fraction": fraction, "count": count}},
        )

    return part(chosen, "subset"), part(~chosen, "rest")
