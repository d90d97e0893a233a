"""Keypoint R-CNN (torchvision) on a :class:`FeatureBackbone` + FPN, the sibling of Mask R-CNN.

``num_classes`` counts the background (dataset categories + 1); ``num_keypoints`` is the keypoint
count of the keypoint category (17 for COCO persons). Targets: torchvision detection format plus
``keypoints`` (N, K, 3) float32 ``u, v, vis`` in pixels (:mod:`synthloop.training.data` builds them,
and swaps left/right labels when an augmentation mirrors the image). Predictions add
``keypoints`` (N, K, 3) ``u, v, 1`` and ``keypoints_scores`` (N, K). The RPN and box settings are
the spec's ``model.mask_rcnn`` ones (shared R-CNN settings); the keypoint head is torchvision's
(8 convs of 512, 14x14 RoIs, 56x56 heatmaps).
"""

from __future__ import annotations

from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD, FeatureBackbone
from synthloop.training.maskrcnn import FPN_LEVELS, BackboneFPN

KEYPOINT_HEAD_DIM = 512


def build_keypointrcnn(
    backbone: FeatureBackbone,
    num_classes: int,
    num_keypoints: int = 17,
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
    keypoint_head_dim: int = KEYPOINT_HEAD_DIM,
) -> KeypointRCNN:
    """torchvision KeypointRCNN; images in [0, 1] normalized with the ImageNet mean/std, short side
    resized to ``min_size`` (long <= ``max_size``). Small head widths make CPU tests fast."""
    if len(anchor_sizes) != FPN_LEVELS:
        raise ValueError(f"need {FPN_LEVELS} anchor sizes (one per FPN level), got {len(anchor_sizes)}")
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(aspect_ratios),) * FPN_LEVELS)
    names = ["0", "1", "2"]
    return KeypointRCNN(
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
        keypoint_roi_pool=MultiScaleRoIAlign(names, 14, 2),
        keypoint_head=KeypointRCNNHeads(fpn_channels, (keypoint_head_dim,) * 8),
        keypoint_predictor=KeypointRCNNPredictor(keypoint_head_dim, num_keypoints),
        box_detections_per_img=box_detections_per_img,
        box_score_thresh=box_score_thresh,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_batch_size_per_image=box_batch_size_per_image,
    )
