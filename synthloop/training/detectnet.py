"""DetectNet_v2-style detector: backbone -> stride-16 grid -> per class coverage + 4 bbox channels.

Input: a list of (3, H, W) float RGB tensors in [0, 1] of one size (or a (B, 3, H, W) tensor);
the model normalizes with the ImageNet mean/std. Outputs at stride 16: ``cov`` logits
(B, C, Gh, Gw) and ``bbox`` (B, C, 4, Gh, Gw) encoded as in :mod:`synthloop.training.rasterizer`.

Like torchvision detectors: ``model(images, targets)`` in training mode returns a loss dict
(``loss_cov``, ``loss_bbox``); in eval mode ``model(images)`` returns per image
``{"boxes" (M, 4) pixel x1 y1 x2 y2, "scores" (M,), "labels" (M,) int64 in 1..C}``.

Loss = ``cov_loss_weight`` * the per-class-weighted coverage loss (BCE on logits or L2 on the
sigmoid; dormant cells have weight 0) summed over cells and divided by the number of covered cells
(``cov_normalize="positives"``, robust when objects cover few cells) or averaged over all cells
(``"cells"``, TLT's way) + ``bbox_loss_weight`` * L1 of the bbox
channels over covered cells (per-class weighted, divided by the number of covered cells).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD, FeatureBackbone
from synthloop.training.distributed import global_mean_count
from synthloop.training.postprocess import ClusterParams, detectnet_postprocess
from synthloop.training.rasterizer import RasterParams, rasterize

STRIDE = 16


class DetectNetV2(nn.Module):
    """See module docstring. ``raster``/``cluster``/``class_weights``: one entry per class (1..C)."""

    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet mean, a buffer
    std: torch.Tensor  # (1, 3, 1, 1) ImageNet std, a buffer

    def __init__(
        self,
        backbone: FeatureBackbone,
        num_classes: int,
        raster: list[RasterParams] | None = None,
        cluster: list[ClusterParams] | None = None,
        class_weights: list[float] | None = None,
        cov_loss: Literal["bce", "l2"] = "bce",
        cov_loss_weight: float = 1.0,
        bbox_loss_weight: float = 10.0,
        bbox_norm: float = 35.0,
        head_channels: int = 128,
        cov_normalize: Literal["cells", "positives"] = "positives",
    ):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.raster = raster or [RasterParams()] * num_classes
        self.cluster = cluster or [ClusterParams()] * num_classes
        self.class_weights = class_weights or [1.0] * num_classes
        if not (len(self.raster) == len(self.cluster) == len(self.class_weights) == num_classes):
            raise ValueError("raster, cluster and class_weights need one entry per class")
        self.cov_loss, self.cov_loss_weight, self.bbox_loss_weight = (
            cov_loss,
            cov_loss_weight,
            bbox_loss_weight,
        )
        self.bbox_norm = bbox_norm
        self.cov_normalize = cov_normalize
        c16, c32 = backbone.out_channels_list[1], backbone.out_channels_list[2]
        self.lat16 = nn.Conv2d(c16, head_channels, 1)
        self.lat32 = nn.Conv2d(c32, head_channels, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.cov_head = nn.Conv2d(head_channels, num_classes, 1)
        self.bbox_head = nn.Conv2d(head_channels, 4 * num_classes, 1)
        cov_bias = self.cov_head.bias
        assert cov_bias is not None  # nn.Conv2d(bias=True)
        nn.init.constant_(cov_bias, -2.0)  # start near "no object" (prior ~0.12)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _batch(self, images: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            sizes = {tuple(im.shape[-2:]) for im in images}
            if len(sizes) != 1:
                raise ValueError(
                    f"DetectNetV2 needs images of one size (set input_width/height), got {sorted(sizes)}"
                )
            images = torch.stack(images)
        if images.is_cuda:  # the model is channels_last on CUDA (see synthloop.training.loop)
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> cov logits (B, C, Gh, Gw), bbox (B, C, 4, Gh, Gw)."""
        feats = self.backbone((x - self.mean) / self.std)
        f16 = self.lat16(feats["1"])
        f32 = F.interpolate(self.lat32(feats["2"]), size=f16.shape[-2:], mode="nearest")
        y = self.fuse(f16 + f32)
        b, _, gh, gw = y.shape
        return self.cov_head(y), self.bbox_head(y).view(b, self.num_classes, 4, gh, gw)

    def targets_to_grid(self, targets: list[dict[str, torch.Tensor]], gh: int, gw: int, device: torch.device):
        cov, bbox, weight = [], [], []
        for t in targets:
            c, b, w = rasterize(
                t["boxes"].detach().cpu().numpy(),
                t["labels"].detach().cpu().numpy(),
                self.num_classes,
                gh,
                gw,
                STRIDE,
                self.raster,
                self.bbox_norm,
            )
            cov.append(c)
            bbox.append(b)
            weight.append(w)
        as_t = lambda a: torch.from_numpy(np.stack(a)).to(device)  # noqa: E731
        return as_t(cov), as_t(bbox), as_t(weight)

    def loss(self, cov_logits, bbox_pred, targets, soft=None) -> dict[str, torch.Tensor]:
        """Ground-truth losses; with ``soft`` = the teacher's (cov logits, bbox) of the same batch
        also the distillation terms ``loss_distill_cov`` / ``loss_distill_bbox`` (before
        ``distill.weight``; see :class:`synthloop.training.spec.DistillSpec`), reduced like
        ``loss_cov`` / ``loss_bbox``. The soft coverage term covers every cell (the teacher has no
        dead zone) and includes the teacher's entropy, so its minimum is not 0."""
        gh, gw = cov_logits.shape[-2:]
        cov_t, bbox_t, w = self.targets_to_grid(targets, gh, gw, cov_logits.device)
        cw = torch.tensor(self.class_weights, device=cov_logits.device, dtype=torch.float32).view(1, -1, 1, 1)
        cov_logits = cov_logits.float()
        if self.cov_loss == "bce":
            per = F.binary_cross_entropy_with_logits(cov_logits, cov_t, reduction="none")
        else:
            per = (torch.sigmoid(cov_logits) - cov_t) ** 2
        # the positive-cell count is summed over data-parallel ranks (a no-op in one process), so N
        # ranks train exactly as one process with the N-times batch
        positives = global_mean_count(cov_t.sum(), minimum=1.0)
        if self.cov_normalize == "cells":
            loss_cov = (per * w * cw).mean()
        else:
            loss_cov = (per * w * cw).sum() / positives
        l1 = (bbox_pred.float() - bbox_t).abs().sum(2)  # (B, C, Gh, Gw)
        loss_bbox = (l1 * cov_t * cw).sum() / (4 * positives)
        out = {"loss_cov": self.cov_loss_weight * loss_cov, "loss_bbox": self.bbox_loss_weight * loss_bbox}
        if soft is not None:
            t_cov, t_bbox = soft
            if t_cov.shape != cov_logits.shape or t_bbox.shape != bbox_pred.shape:
                raise ValueError(
                    f"teacher outputs {tuple(t_cov.shape)} / {tuple(t_bbox.shape)} do not match the "
                    f"student's {tuple(cov_logits.shape)} / {tuple(bbox_pred.shape)}"
                )
            t_prob = torch.sigmoid(t_cov.float())
            kd_cov = F.binary_cross_entropy_with_logits(cov_logits, t_prob, reduction="none")
            kd_l1 = (bbox_pred.float() - t_bbox.float()).abs().sum(2)
            if self.cov_normalize == "cells":
                kd_cov = (kd_cov * cw).mean()
            else:
                kd_cov = (kd_cov * cw).sum() / positives
            out["loss_distill_cov"] = self.cov_loss_weight * kd_cov
            out["loss_distill_bbox"] = self.bbox_loss_weight * (kd_l1 * t_prob * cw).sum() / (4 * positives)
        return out

    def forward(self, images, targets: list[dict[str, torch.Tensor]] | None = None, soft=None):
        """Training: loss dict (``soft``: a teacher's ``head`` outputs, see :meth:`loss`);
        eval: post-processed detections per image."""
        x = self._batch(images)
        cov_logits, bbox = self.head(x)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            return self.loss(cov_logits, bbox, targets, soft)
        return self.postprocess(cov_logits, bbox, (x.shape[-1], x.shape[-2]))

    @torch.no_grad()
    def postprocess(self, cov_logits, bbox, image_size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        cov = torch.sigmoid(cov_logits.float()).cpu().numpy()
        bb = bbox.float().cpu().numpy()
        out = []
        for i in range(cov.shape[0]):
            r = detectnet_postprocess(cov[i], bb[i], STRIDE, self.cluster, self.bbox_norm, image_size)
            out.append(
                {
                    "boxes": torch.from_numpy(r["boxes"].astype(np.float32)),
                    "scores": torch.from_numpy(r["scores"].astype(np.float32)),
                    "labels": torch.from_numpy(r["labels"]),
                }
            )
        return out


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The sum of a model's loss terms (scalar tensors), added in the mapping's order."""
    if not losses:
        raise ValueError("no loss terms")
    return functools.reduce(operator.add, losses.values())


def as_detectnet(model: nn.Module) -> DetectNetV2:
    """``model`` itself, typed as a :class:`DetectNetV2`; TypeError for another network."""
    if not isinstance(model, DetectNetV2):
        raise TypeError(f"expected a DetectNetV2, got {type(model).__name__}")
    return model
