"""Synthetic/real mixing: the seeded real subset, blend batches at an exact ratio, training phases.

Items are addressed as ``(part, index, aug_seed)``: ``part`` 0 = synthetic, 1 = real (see
:class:`MixedDataset`), ``index`` a frame of that part, ``aug_seed`` the augmentation seed. Every
epoch is a stream of items that is a pure function of ``(seed, phase, epoch)`` and does not depend
on the batch size, so a resumed run replays the same items even on another number of processes (the
sampler's state *is* its seed and position in the stream).

* ``blend``: every batch holds ``k_s`` synthetic and ``k_r`` real items with
  ``k_s : k_r == ratio`` exactly (``batch_size`` a multiple of ``sum(ratio)``), both drawn with
  replacement; an epoch has ``ceil(n_synthetic / k_s)`` batches (``ceil(n_real / k_r)`` without
  synthetic share). Under data parallelism every rank's share of a batch holds the ratio too.
* ``pretrain_finetune``: phase ``pretrain`` = synthetic only (shuffled, without replacement), then
  phase ``finetune`` = the real subset, with its own epochs and learning rate.
* ``real_fraction`` 0 or no real data = synthetic only; no (enabled) synthetic data = real only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synthloop.training.data import DetectionDataset

SYNTHETIC, REAL = 0, 1
Item = tuple[int, int, int]


def real_subset(n_real: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded ``fraction`` of ``n_real`` frames (round, at least 1 if fraction > 0)."""
    if n_real == 0 or fraction <= 0:
        return np.zeros(0, np.int64)
    k = min(n_real, max(1, int(round(fraction * n_real))))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7EA1]))
    return np.sort(rng.choice(n_real, size=k, replace=False)).astype(np.int64)


def _aug_seeds(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**31 - 1, size=n)


@dataclass(frozen=True)
class Phase:
    """One training phase: which items it draws from and how long/fast it trains.

    ``synthetic``/``real``: frame indices of each part available to the phase; ``ratio``:
    (k_s, k_r) per batch for ``blend`` phases (None = one source, shuffled without replacement).
    """

    name: str
    synthetic: np.ndarray
    real: np.ndarray
    epochs: int
    lr: float
    batch_size: int
    ratio: tuple[int, int] | None = None

    def batches_per_epoch(self) -> int:
        if self.ratio is not None:
            k_s, k_r = self.per_batch()
            return math.ceil(len(self.synthetic) / k_s) if k_s else math.ceil(len(self.real) / k_r)
        return math.ceil((len(self.synthetic) + len(self.real)) / self.batch_size)

    def per_batch(self) -> tuple[int, int]:
        """Synthetic and real items per batch of a blend phase."""
        assert self.ratio is not None
        a, b = self.ratio
        m = self.batch_size // (a + b)
        return a * m, b * m

    def epoch_batches(self, seed: int, phase_index: int, epoch: int, start: int = 0) -> list[list[Item]]:
        """The epoch's batches from item ``start`` on, deterministic in ``(seed, phase_index, epoch)``.

        Each epoch is a fixed stream of items that does not depend on ``batch_size``: a permutation
        (shuffled phases) or, for blend phases, ratio units of ``a`` synthetic + ``b`` real items
        drawn from separate synthetic/real streams. So a run resumed at item ``start`` with another
        batch size (another number of processes) sees the same items in the same order.
        ``start`` of a blend phase must fall on a unit boundary (a multiple of ``a + b``).
        """
        # one generator per stream, so the first n draws of a stream never depend on its length
        rng_s, rng_s_aug, rng_r, rng_r_aug, rng_order = (
            np.random.default_rng(np.random.SeedSequence([seed, 0xBA7C, phase_index, epoch, k]))
            for k in range(5)
        )
        if self.ratio is not None:
            a, b = self.ratio
            if start % (a + b):
                raise ValueError(f"blend start {start} is not a multiple of the ratio sum {a + b}")
            k_s, k_r = self.per_batch()
            n_batches = self.batches_per_epoch()
            units = n_batches * (k_s + k_r) // (a + b)
            none = np.zeros(0, np.int64)  # a stream with no share in the ratio draws nothing
            s = self.synthetic[rng_s.integers(0, len(self.synthetic), size=units * a)] if a else none
            s_seeds = _aug_seeds(rng_s_aug, units * a) if a else none
            r = self.real[rng_r.integers(0, len(self.real), size=units * b)] if b else none
            r_seeds = _aug_seeds(rng_r_aug, units * b) if b else none
            m = self.batch_size // (a + b)
            out = []
            for u0 in range(start // (a + b), units, m):
                u1 = min(units, u0 + m)
                out.append(
                    [(SYNTHETIC, int(s[j]), int(s_seeds[j])) for j in range(u0 * a, u1 * a)]
                    + [(REAL, int(r[j]), int(r_seeds[j])) for j in range(u0 * b, u1 * b)]
                )
            return out
        items = [(SYNTHETIC, int(i)) for i in self.synthetic] + [(REAL, int(i)) for i in self.real]
        order = rng_order.permutation(len(items))
        seeds = _aug_seeds(rng_order, len(items))
        flat = [(items[o][0], items[o][1], int(seeds[k])) for k, o in enumerate(order)][start:]
        return [flat[k : k + self.batch_size] for k in range(0, len(flat), self.batch_size)]


def build_phases(
    n_synthetic: int,
    n_real: int,
    *,
    schedule: str,
    real_fraction: float,
    ratio: tuple[int, int],
    epochs: int,
    lr: float,
    batch_size: int,
    finetune_epochs: int,
    finetune_lr: float | None,
    seed: int,
    world_size: int = 1,
) -> list[Phase]:
    """The phases of a run (see module docstring). Raises ``ValueError`` for an impossible mix.

    ``batch_size`` is per process; the phases' batches are global batches of
    ``batch_size * world_size`` items that :func:`synthloop.training.distributed.rank_items` splits.
    """
    per_rank = batch_size
    batch_size = batch_size * world_size
    synth = np.arange(n_synthetic, dtype=np.int64)
    real = real_subset(n_real, real_fraction, seed)
    none = np.zeros(0, np.int64)
    if len(synth) == 0 and len(real) == 0:
        raise ValueError("no training frames: synthetic data is empty/disabled and the real subset is empty")
    if len(real) == 0:
        return [Phase("synthetic", synth, none, epochs, lr, batch_size)]
    if len(synth) == 0:
        return [Phase("real", none, real, epochs, lr, batch_size)]
    if schedule == "pretrain_finetune":
        phases = [Phase("pretrain", synth, none, epochs, lr, batch_size)]
        if finetune_epochs > 0:
            phases.append(Phase("finetune", none, real, finetune_epochs, finetune_lr or lr * 0.1, batch_size))
        return phases
    a, b = ratio
    if per_rank % (a + b):
        raise ValueError(f"batch_size {per_rank} is not a multiple of ratio {a}:{b} (sum {a + b})")
    return [Phase("blend", synth, real, epochs, lr, batch_size, ratio=(a, b))]


class MixedDataset(torch.utils.data.Dataset):
    """Two :class:`DetectionDataset` parts (synthetic, real) addressed by ``(part, index, aug_seed)``."""

    def __init__(self, synthetic: DetectionDataset | None, real: DetectionDataset | None):
        self.parts = (synthetic, real)

    def __getitem__(self, item: Item):
        part, index, seed = item
        ds = self.parts[part]
        if ds is None:
            raise IndexError(f"no dataset for part {part}")
        image, target = ds[(index, seed)]
        target["source"] = torch.tensor(part, dtype=torch.int64)
        return image, target

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts if p is not None)


class ListBatchSampler(torch.utils.data.Sampler):
    """Yields precomputed batches (lists of items) from ``start`` on; for ``DataLoader(batch_sampler=)``."""

    def __init__(self, batches: list[list[Item]], start: int = 0):
        self.batches, self.start = batches, start

    def __iter__(self):
        yield from self.batches[self.start :]

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start)
