"""Mask R-CNN (torchvision) on a :class:`FeatureBackbone` + FPN.

``num_classes`` counts the background: dataset categories + 1 (labels 1..C, 0 = background).
Anchor sizes (one per FPN level, strides 8/16/32/64) come from the spec or from the data
(:func:`anchor_sizes_from_boxes`: quantiles of sqrt(box area) in network-input pixels).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD, FeatureBackbone
from synthloop.training.rcnn_batched import batch_the_heads

FPN_LEVELS = 4
ANCHOR_QUANTILES = (0.05, 0.35, 0.65, 0.95)


class BackboneFPN(nn.Module):
    """Backbone features at strides 8/16/32 -> FPN maps "0", "1", "2" and "pool" (stride 64)."""

    def __init__(self, backbone: FeatureBackbone, out_channels: int = 256):
        super().__init__()
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(
            backbone.out_channels_list, out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


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
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256),
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    min_size: int = 800,
    max_size: int = 1333,
    box_detections_per_img: int = 100,
    box_score_thresh: float = 0.05,
    rpn_batch_size_per_image: int = 256,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_test: int = 1000,
    box_batch_size_per_image: int = 512,
    fpn_channels: int = 256,
    box_head_dim: int = 1024,
    mask_head_dim: int = 256,
    batched_heads: bool = True,
    matrix_nms: bool | None = None,
) -> MaskRCNN:
    """torchvision MaskRCNN; ``num_classes`` includes background; images in [0, 1] are normalized
    with the ImageNet mean/std and resized so the short side is ``min_size`` (long <= ``max_size``).
    The sampling sizes and head widths (``fpn_channels``, ``box_head_dim``, ``mask_head_dim``) default
    to torchvision's; small values make CPU runs fast. ``batched_heads``: the transform, RPN and RoI
    heads do their training bookkeeping per batch (:mod:`synthloop.training.rcnn_batched`, same
    math, far fewer kernel launches); False keeps torchvision's per-image modules. ``matrix_nms``
    (needs ``batched_heads``; ``None``: on with it): the RPN's proposal NMS for the whole batch on
    CUDA (:func:`~synthloop.training.rcnn_batched.greedy_nms_batched`, exact)."""
    if len(anchor_sizes) != FPN_LEVELS:
        raise ValueError(f"need {FPN_LEVELS} anchor sizes (one per FPN level), got {len(anchor_sizes)}")
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(aspect_ratios),) * FPN_LEVELS)
    names = ["0", "1", "2"]
    model = MaskRCNN(
        BackboneFPN(backbone, fpn_channels),
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_dim),
        box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
        mask_head=MaskRCNNHeads(fpn_channels, (mask_head_dim,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mask_head_dim, mask_head_dim, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        box_detections_per_img=box_detections_per_img,
        box_score_thresh=box_score_thresh,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_batch_size_per_image=box_batch_size_per_image,
    )
    if not batched_heads:
        if matrix_nms:
            raise ValueError("matrix_nms needs batched_heads")
        return model
    batch_the_heads(model)
    model.rpn.matrix_nms = True if matrix_nms is None else matrix_nms
    return model
