"""Synthetic/real mixing: the seeded real subset, blend batches at an exact ratio, training phases.

Items are addressed as ``(part, index, aug_seed)``: ``part`` 0 = synthetic, 1 = real (see
:class:`MixedDataset`), ``index`` a frame of that part, ``aug_seed`` the augmentation seed. Every
batch list of an epoch is a pure function of ``(seed, phase, epoch)``, so a resumed run replays the
same batches (the sampler's state *is* its seed and position).

* ``blend``: every batch holds ``k_s`` synthetic and ``k_r`` real items with
  ``k_s : k_r == ratio`` exactly (``batch_size`` a multiple of ``sum(ratio)``), both drawn with
  replacement; an epoch has ``ceil(n_synthetic / k_s)`` batches (``ceil(n_real / k_r)`` without
  synthetic share).
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


def _rng(seed: int, phase: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0xBA7C, phase, epoch]))


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

    def epoch_batches(self, seed: int, phase_index: int, epoch: int) -> list[list[Item]]:
        """All batches of one epoch, deterministic in ``(seed, phase_index, epoch)``."""
        rng = _rng(seed, phase_index, epoch)
        n_batches = self.batches_per_epoch()
        if self.ratio is not None:
            k_s, k_r = self.per_batch()
            s = (
                rng.choice(self.synthetic, size=(n_batches, k_s), replace=True)
                if k_s
                else np.zeros((n_batches, 0))
            )
            r = (
                rng.choice(self.real, size=(n_batches, k_r), replace=True)
                if k_r
                else np.zeros((n_batches, 0))
            )
            seeds = _aug_seeds(rng, n_batches * (k_s + k_r)).reshape(n_batches, k_s + k_r)
            return [
                [(SYNTHETIC, int(i), int(seeds[b, j])) for j, i in enumerate(s[b])]
                + [(REAL, int(i), int(seeds[b, k_s + j])) for j, i in enumerate(r[b])]
                for b in range(n_batches)
            ]
        items = [(SYNTHETIC, int(i)) for i in self.synthetic] + [(REAL, int(i)) for i in self.real]
        order = rng.permutation(len(items))
        seeds = _aug_seeds(rng, len(items))
        flat = [(items[o][0], items[o][1], int(seeds[k])) for k, o in enumerate(order)]
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
) -> list[Phase]:
    """The phases of a run (see module docstring). Raises ``ValueError`` for an impossible mix."""
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
    if batch_size % (a + b):
        raise ValueError(f"batch_size {batch_size} is not a multiple of ratio {a}:{b} (sum {a + b})")
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
