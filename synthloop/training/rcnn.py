"""What the torchvision R-CNN families share: the backbone + FPN, the anchors and the box branch.

:func:`rcnn_parts` builds the keyword arguments that torchvision's ``MaskRCNN`` and ``KeypointRCNN``
take alike (backbone + FPN, anchor generator, box RoI pool / head / predictor, the resize and
sampling settings); :mod:`synthloop.training.maskrcnn` and :mod:`synthloop.training.keypointrcnn`
add their own heads. ``num_classes`` counts the background (dataset categories + 1). Images in
[0, 1] are normalized with the ImageNet mean/std and resized so the short side is ``min_size``
(long <= ``max_size``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD, FeatureBackbone

FPN_LEVELS = 4
FPN_NAMES = ["0", "1", "2"]  # the maps the RoI pools read ("pool", stride 64, only feeds the RPN)


# the RCNNSettings fields that torchvision's MaskRCNN / KeypointRCNN take under the same name
TORCHVISION_SETTINGS = (
    "min_size",
    "max_size",
    "box_detections_per_img",
    "box_score_thresh",
    "rpn_batch_size_per_image",
    "rpn_pre_nms_top_n_train",
    "rpn_post_nms_top_n_train",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test",
    "box_batch_size_per_image",
)


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
        out: OrderedDict[str, torch.Tensor] = self.fpn(self.body(x))
        return out


@dataclass(frozen=True)
class RCNNSettings:
    """The settings both R-CNN families take; the defaults are torchvision's.

    ``anchor_sizes``: one per FPN level (pixels of the network input); ``min_size`` / ``max_size``:
    the resize of the short / long side (pixels); the sampling sizes and head widths
    (``fpn_channels``, ``box_head_dim``) are torchvision's by default, small values make CPU runs fast.
    """

    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_size: int = 800
    max_size: int = 1333
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    rpn_batch_size_per_image: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 512
    fpn_channels: int = 256
    box_head_dim: int = 1024


def anchor_sizes_of(model: nn.Module) -> tuple[int, ...]:
    """The anchor sizes (pixels, one per FPN level) of a built R-CNN model's RPN."""
    generator = model.get_submodule("rpn.anchor_generator")
    assert isinstance(generator, AnchorGenerator)
    return tuple(int(level[0]) for level in generator.sizes)


def rcnn_parts(backbone: FeatureBackbone, num_classes: int, s: RCNNSettings) -> dict[str, Any]:
    """The keyword arguments of torchvision's ``MaskRCNN`` / ``KeypointRCNN`` that are not the
    family's own heads: backbone + FPN, anchors, the box branch (7x7 RoIs) and ``s``'s settings.
    The modules are made in torchvision's argument order, so a seeded build gives the same weights
    as passing them inline. Raises ValueError unless there is one anchor size per FPN level."""
    if len(s.anchor_sizes) != FPN_LEVELS:
        raise ValueError(f"need {FPN_LEVELS} anchor sizes (one per FPN level), got {len(s.anchor_sizes)}")
    anchors = AnchorGenerator(
        tuple((int(a),) for a in s.anchor_sizes), (tuple(s.aspect_ratios),) * FPN_LEVELS
    )
    return dict(
        backbone=BackboneFPN(backbone, s.fpn_channels),
        num_classes=None,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(FPN_NAMES, 7, 2),
        box_head=TwoMLPHead(s.fpn_channels * 7 * 7, s.box_head_dim),
        box_predictor=FastRCNNPredictor(s.box_head_dim, num_classes),
        **{name: getattr(s, name) for name in TORCHVISION_SETTINGS},
    )
