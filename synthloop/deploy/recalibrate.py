"""Calibration after pruning: batch-norm statistics re-estimated ("adaptive BN", Li et al.,
EagleEye, ECCV 2020) and removed channels' means folded into biases.

A channel with a small filter norm is not a channel that outputs nothing. Its batch norm adds a
shift (``beta - gamma * mean / std``), ReLU6 keeps it, and the next layer's batch norm was
calibrated with that constant in its input. Removing channels moves every later layer's input
statistics, so the pruned network's running statistics no longer describe it.
:func:`recalibrate_bn` re-estimates every batch norm's running mean and variance on unlabeled
training images, with no gradients and no weight change.

Batch norms only fix what a later batch norm sees. A layer with a bias and no batch norm (the
DetectNet head convs, the FPN laterals) that reads a pruned channel loses that channel's mean
contribution for good. So :func:`conv_input_means` first measures every conv's per-channel input
mean on the same images. The pruner then folds ``sum_k W[:, c, k] * mean_c`` of each removed input
channel ``c`` into the reading conv's bias. This is first-order: the channel is replaced by its
mean. It is exact for a constant channel, apart from the zero-padded border.

Measured on the fruits-nuts detector (AP50 0.920; calibration on 40 renders): a uniform 5 % cut
scores 0.880 with calibration and 0.836 without; a 10 % cut scores 0.186 and 0.050. From 0.45x
parameters down, both score 0 and retraining does all of the recovery
(``docs/results/prune_v2_h200.md``).

Images go through the same preprocessing as inference (:mod:`synthloop.deploy.preprocess`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthloop.deploy.errors import DeployError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def calibration_images(source: str | os.PathLike, count: int, seed: int = 0) -> list[Path]:
    """Up to ``count`` image paths from ``source``, a seeded sample when it has more, sorted.

    ``source``: a dataset (synthloop folder, COCO json, KITTI or BlenderProc folder: its frames'
    images) or, when a folder is no dataset at all, every image file under it (no labels needed).
    A dataset that fails to load is an error, not a reason to fall back (its folder also holds
    masks and depth maps)."""
    from synthloop.importers import detect_format, load_any

    src = Path(source)
    try:
        fmt: str | None = detect_format(src)
    except Exception:  # noqa: BLE001 - no dataset: a folder of images will do
        fmt = None
    if fmt is None and src.is_dir():
        paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        try:
            paths = sorted({Path(f.image_path) for f in load_any(src).frames})
        except Exception as e:  # noqa: BLE001 - any loader failure is a bad --calib argument
            raise DeployError(f"cannot read calibration data: {e}", where="calib") from None
    if not paths:
        raise DeployError("calibration data holds no images", path=str(src), where="calib")
    if len(paths) > count:
        pick = np.random.default_rng(seed).choice(len(paths), size=count, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    return paths


def image_batches(
    paths: Sequence[Path], width: int, height: int, batch_size: int = 8
) -> Iterable[torch.Tensor]:
    """(B, 3, height, width) float32 batches in [0, 1] of the images at ``paths``."""
    from synthloop.deploy.preprocess import load_input

    for i in range(0, len(paths), batch_size):
        yield torch.from_numpy(np.stack([load_input(p, width, height)[0] for p in paths[i : i + batch_size]]))


@torch.no_grad()
def conv_input_means(
    module: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], object] | None = None,
) -> dict[nn.Module, torch.Tensor]:
    """Per-input-channel mean (C_in,) of every ``nn.Conv2d`` in ``module`` over ``batches`` (all
    images and positions weighted equally), the module in eval mode."""
    sums: dict[nn.Conv2d, torch.Tensor] = {}
    counts: dict[nn.Conv2d, int] = {}

    def hook(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().float()
        s = x.sum((0, 2, 3)).cpu()
        sums[conv] = sums[conv] + s if conv in sums else s
        counts[conv] = counts.get(conv, 0) + x.shape[0] * x.shape[2] * x.shape[3]

    module.eval()
    handles = [m.register_forward_pre_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        for x in batches:
            (forward or module)(x)
    finally:
        for h in handles:
            h.remove()
    if not sums:
        raise DeployError("no calibration batch was given", where="calib")
    return {m: sums[m] / counts[m] for m in sums}


def _running_stats(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(running_mean, running_var, num_batches_tracked) of a batch norm that tracks them."""
    mean, var, n = bn.running_mean, bn.running_var, bn.num_batches_tracked
    if mean is None or var is None or n is None:
        raise DeployError(f"{type(bn).__name__} does not track running statistics", where="calib")
    return mean, var, n


@torch.no_grad()
def recalibrate_bn(
    module: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], object] | None = None,
) -> int:
    """Replace every batch norm's running mean/var in ``module`` by their cumulative average over
    ``batches`` (``momentum=None``): with batches of equal size the mean is the exact mean over all
    of them, the variance the average of the per-batch (unbiased) variances. Weights and biases do
    not change.

    ``forward(x)`` runs the network on one batch (default ``module(x)``). Only the batch norms are in
    training mode meanwhile; the module is left in eval mode. Returns the number of batch norms
    recalibrated; no batch or no batch norm raises :class:`DeployError`. With no batch, or when
    ``forward`` raises, the old statistics are put back."""
    bns = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not bns:
        raise DeployError("the model has no batch norm to recalibrate", where="calib")
    momenta = [bn.momentum for bn in bns]
    saved = [tuple(t.clone() for t in _running_stats(bn)) for bn in bns]
    module.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    seen, done = 0, False
    try:
        for x in batches:
            (forward or module)(x)
            seen += 1
        done = seen > 0
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        module.eval()
        if not done:  # no batch, or an error part-way: put the old statistics back
            for bn, old in zip(bns, saved, strict=True):
                for live, value in zip(_running_stats(bn), old, strict=True):
                    live.copy_(value)
    if not seen:
        raise DeployError("no calibration batch was given", where="calib")
    return len(bns)
