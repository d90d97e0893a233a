"""Mask R-CNN (torchvision) on a :class:`FeatureBackbone` + FPN.

``num_classes`` counts the background: dataset categories + 1 (labels 1..C, 0 = background).
Anchor sizes (one per FPN level, strides 8/16/32/64) come from the spec or from the data
(:func:`anchor_sizes_from_boxes`: quantiles of sqrt(box area) in network-input pixels).
"""

from __future__ import annotations

import numpy as np
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from synthloop.training.backbones import FeatureBackbone
from synthloop.training.rcnn import FPN_LEVELS, FPN_NAMES, RCNNSettings, rcnn_parts
from synthloop.training.rcnn_batched import batch_the_heads

ANCHOR_QUANTILES = (0.05, 0.35, 0.65, 0.95)


def anchor_sizes_from_boxes(sizes: np.ndarray, levels: int = FPN_LEVELS) -> tuple[int, ...]:
    """Anchor size per FPN level from box sizes (N,) = sqrt(w*h) in network pixels.

    Quantiles :data:`ANCHOR_QUANTILES`, rounded, made strictly increasing, at least 4 px. Falls back
    to (32, 64, 128, 256) without boxes.
    """
    sizes = np.asarray(sizes, np.float64)
    if sizes.size == 0:
        return (32, 64, 128, 256)[:levels]
    q = np.quantile(sizes, np.linspace(ANCHOR_QUANTILES[0], ANCHOR_QUANTILES[-1], levels))
    out: list[int] = []
    for v in q:
        v = max(4, int(round(v)))
        out.append(v if not out or v > out[-1] else out[-1] + max(1, out[-1] // 4))
    return tuple(out)


def build_maskrcnn(
    backbone: FeatureBackbone,
    num_classes: int,
    settings: RCNNSettings = RCNNSettings(),
    mask_head_dim: int = 256,
    batched_heads: bool = True,
    matrix_nms: bool | None = None,
) -> MaskRCNN:
    """torchvision MaskRCNN; ``num_classes`` includes background; the backbone + FPN, anchors, box
    branch and resize come from ``settings`` (:func:`~synthloop.training.rcnn.rcnn_parts`); the mask
    head is torchvision's (4 convs of ``mask_head_dim``, 14x14 RoIs). ``batched_heads``: the
    transform, RPN and RoI heads do their training bookkeeping per batch
    (:mod:`synthloop.training.rcnn_batched`, same math, far fewer kernel launches); False keeps
    torchvision's per-image modules. ``matrix_nms`` (needs ``batched_heads``; ``None``: on with it):
    the RPN's proposal NMS for the whole batch on CUDA
    (:func:`~synthloop.training.rcnn_batched.greedy_nms_batched`, exact)."""
    if matrix_nms and not batched_heads:
        raise ValueError("matrix_nms needs batched_heads")
    model = MaskRCNN(
        **rcnn_parts(backbone, num_classes, settings),
        mask_head=MaskRCNNHeads(settings.fpn_channels, (mask_head_dim,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_head_dim, mask_head_dim, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(FPN_NAMES, 14, 2),
    )
    if not batched_heads:
        return model
    batch_the_heads(model)
    model.rpn.matrix_nms = True if matrix_nms is None else matrix_nms
    return model
