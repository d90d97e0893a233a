"""Raw network outputs -> :class:`~synthloop.evaluation.FrameDetections`, the same for every backend.

Raw outputs (batch 1, numpy):

* DetectNet_v2: ``cov`` (1, C, Gh, Gw) coverage logits, ``bbox`` (1, C, 4, Gh, Gw) encoded boxes
  (stride 16, :mod:`synthloop.training.rasterizer` encoding); decoded by sigmoid + the training
  package's DBSCAN post-processing with the model's per-class ``cluster`` parameters. A TAO-layout
  export (``output_cov/Sigmoid``, ``output_bbox/BiasAdd``) is mapped back to these first
  (:func:`synthloop.deploy.deepstream.tao_to_raw`);
* Mask R-CNN: ``boxes`` (N, 4) x1 y1 x2 y2, ``labels`` (N,) 1..C, ``scores`` (N,), ``masks``
  (N, 1, H, W) probabilities, all in network-input pixels;
* Keypoint R-CNN: ``boxes``, ``labels``, ``scores`` as Mask R-CNN, ``keypoints`` (N, K, 3)
  ``u, v, 1`` in network-input pixels and ``keypoints_scores`` (N, K).

Boxes are scaled from the network input (W, H) to the original image size; labels become dataset
category ids; masks are resized to the original image, thresholded at ``desc.mask_threshold`` and
stored as COCO RLE; keypoints are scaled like the boxes (not clipped: a keypoint may lie outside
the image) and keep their third value (torchvision's 1), as the training Predictor gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from PIL import Image

from synthloop.deploy import deepstream
from synthloop.evaluation.detections import FrameDetections
from synthloop.geometry.masks import mask_to_rle
from synthloop.training.checkpoints import ModelDesc
from synthloop.training.postprocess import ClusterParams, detectnet_postprocess

STRIDE = 16


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _scale_boxes(boxes: np.ndarray, desc: ModelDesc, orig_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) input-pixel boxes -> original-image pixels, corners ordered (x1 <= x2, y1 <= y2:
    an untrained regressor may swap them), clipped to the image."""
    sx, sy = orig_size[0] / desc.input_width, orig_size[1] / desc.input_height
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = np.stack(
        [
            np.minimum(b[:, 0], b[:, 2]),
            np.minimum(b[:, 1], b[:, 3]),
            np.maximum(b[:, 0], b[:, 2]),
            np.maximum(b[:, 1], b[:, 3]),
        ],
        axis=1,
    )
    out = b * np.array([sx, sy, sx, sy])
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, orig_size[0])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, orig_size[1])
    return out


def _labels_to_ids(labels: np.ndarray, desc: ModelDesc) -> np.ndarray:
    table = desc.label_to_category()
    return np.array([table[int(v)] for v in labels], np.int64)


class _Kept(NamedTuple):
    """One image's kept detections in network-input pixels: ``boxes`` (N, 4) x1 y1 x2 y2,
    ``scores`` (N,), ``labels`` (N,) training labels 1..C, ``masks`` (N, h, w) probabilities or None,
    ``keypoints`` (N, K, 3) ``u, v, 1`` in network-input pixels or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    keypoints: np.ndarray | None = None


def _detectnet_kept(raw: Mapping[str, np.ndarray], desc: ModelDesc, score_thr: float) -> _Kept:
    """DetectNet raw outputs (or the TAO layout) -> clustered boxes with finite values, score >= thr."""
    if deepstream.COV_NAME in raw:
        logits, enc = deepstream.tao_to_raw(
            raw[deepstream.COV_NAME], raw[deepstream.BBOX_NAME], desc.bbox_norm
        )
        raw = {"cov": logits, "bbox": enc}
    cov = _sigmoid(np.asarray(raw["cov"])[0])
    bbox = np.asarray(raw["bbox"], np.float64)[0]
    params = desc.cluster or [ClusterParams()] * desc.num_classes
    r = detectnet_postprocess(
        cov, bbox, STRIDE, params, desc.bbox_norm, (desc.input_width, desc.input_height)
    )
    keep = (r["scores"] >= score_thr) & np.isfinite(r["boxes"]).all(axis=1) & np.isfinite(r["scores"])
    return _Kept(r["boxes"][keep], r["scores"][keep], r["labels"][keep], None)


def _rcnn_kept(raw: Mapping[str, np.ndarray], desc: ModelDesc, score_thr: float) -> _Kept:
    """Mask / Keypoint R-CNN outputs -> the detections with score >= thr; masks (N, h, w)
    probabilities when ``raw`` has ``masks``, keypoints (N, K, 3) when it has ``keypoints``."""
    scores = np.asarray(raw["scores"], np.float32).reshape(-1)
    keep = scores >= score_thr
    masks = None
    if "masks" in raw:
        m = np.asarray(raw["masks"], np.float32)[keep]
        masks = m.reshape(len(m), *m.shape[-2:])
    kp = np.asarray(raw["keypoints"], np.float32)[keep] if "keypoints" in raw else None
    return _Kept(
        np.asarray(raw["boxes"])[keep],
        scores[keep],
        np.asarray(raw["labels"]).reshape(-1)[keep],
        masks,
        kp,
    )


def _mask_rles(probs: np.ndarray, orig_size: tuple[int, int], threshold: float) -> list[dict]:
    """(N, h, w) mask probabilities -> N COCO RLEs, bilinearly resized to ``orig_size`` (W0, H0)
    and thresholded (a pixel is on where its probability > ``threshold``)."""
    out = []
    for m in probs:
        resized = Image.fromarray(m).resize(orig_size, Image.Resampling.BILINEAR)
        out.append(mask_to_rle(np.asarray(resized) > threshold))
    return out


def decode(
    raw: Mapping[str, np.ndarray],
    desc: ModelDesc,
    orig_size: tuple[int, int],
    frame_id: str,
    score_thr: float = 0.0,
) -> FrameDetections:
    """Raw outputs of one image (``desc.family``'s layout) -> detections in original-image pixels
    (W0, H0 = ``orig_size``), dataset category ids, RLE masks (Mask R-CNN) and keypoints scaled
    like the boxes (Keypoint R-CNN)."""
    kept = (_detectnet_kept if desc.family == "detectnet_v2" else _rcnn_kept)(raw, desc, score_thr)
    masks = None if kept.masks is None else _mask_rles(kept.masks, orig_size, desc.mask_threshold)
    kp = None
    if kept.keypoints is not None:
        kp = kept.keypoints.copy()
        kp[..., 0] *= orig_size[0] / desc.input_width
        kp[..., 1] *= orig_size[1] / desc.input_height
    return FrameDetections(
        frame_id,
        _scale_boxes(kept.boxes, desc, orig_size),
        kept.scores,
        _labels_to_ids(kept.labels, desc),
        masks=masks,
        keypoints=kp,
    )
