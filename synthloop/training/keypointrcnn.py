"""Keypoint R-CNN (torchvision) on a :class:`FeatureBackbone` + FPN, the sibling of Mask R-CNN.

``num_classes`` counts the background (dataset categories + 1); ``num_keypoints`` is the keypoint
count of the keypoint category (17 for COCO persons). Targets: torchvision detection format plus
``keypoints`` (N, K, 3) float32 ``u, v, vis`` in pixels (:mod:`synthloop.training.data` builds them,
and swaps left/right labels when an augmentation mirrors the image). Predictions add
``keypoints`` (N, K, 3) ``u, v, 1`` and ``keypoints_scores`` (N, K). The RPN and box settings are
the spec's ``model.mask_rcnn`` ones (:class:`~synthloop.training.rcnn.RCNNSettings`); the keypoint
head is torchvision's (8 convs of 512, 14x14 RoIs, 56x56 heatmaps).
"""

from __future__ import annotations

import torch
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from synthloop.training.backbones import FeatureBackbone
from synthloop.training.rcnn import FPN_NAMES, RCNNSettings, rcnn_parts

KEYPOINT_HEAD_DIM = 512


class ContiguousKeypointPredictor(KeypointRCNNPredictor):
    """torchvision's keypoint predictor with a contiguous output.

    Output: heatmap logits (R, K, 56, 56) for R RoIs and K keypoints. Under ``channels_last``
    (the training loop's CUDA default) the upsampled logits keep that memory format, and
    torchvision's ``keypointrcnn_loss`` flattens them with ``.view``, which fails on it. Same
    parameters and state-dict keys as the parent.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).contiguous()


def build_keypointrcnn(
    backbone: FeatureBackbone,
    num_classes: int,
    settings: RCNNSettings = RCNNSettings(),
    num_keypoints: int = 17,
    keypoint_head_dim: int = KEYPOINT_HEAD_DIM,
) -> KeypointRCNN:
    """torchvision KeypointRCNN; the backbone + FPN, anchors, box branch and resize come from
    ``settings`` (:func:`~synthloop.training.rcnn.rcnn_parts`); the keypoint head is 8 convs of
    ``keypoint_head_dim``. Small head widths make CPU tests fast."""
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    return KeypointRCNN(
        **rcnn_parts(backbone, num_classes, settings),
        keypoint_roi_pool=MultiScaleRoIAlign(FPN_NAMES, 14, 2),
        keypoint_head=KeypointRCNNHeads(settings.fpn_channels, (keypoint_head_dim,) * 8),
        keypoint_predictor=ContiguousKeypointPredictor(keypoint_head_dim, num_keypoints),
    )
