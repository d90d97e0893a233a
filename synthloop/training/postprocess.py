"""DetectNet_v2 post-processing: coverage threshold -> candidate boxes -> DBSCAN -> one box per cluster.

Pure numpy + scikit-learn. Per class: cells whose coverage is >= ``coverage_threshold`` give
candidate boxes (decoded from the bbox channels, pixel x1, y1, x2, y2); DBSCAN groups them with
``eps``/``min_samples`` under the distance ``1 - IoU`` (``distance="iou"``) or the L2 distance of
the box corners in pixels (``distance="l2"``); each cluster yields the coverage-weighted mean box
and a confidence, the sum or the max of its cells' coverage (``confidence``). DBSCAN noise points
(label -1) are dropped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.cluster import DBSCAN

from synthloop.geometry.masks import box_iou
from synthloop.training.rasterizer import decode_boxes


class ClusterParams(BaseModel):
    """Per-class clustering parameters (TLT ``postprocessing_config`` names)."""

    model_config = ConfigDict(extra="forbid")

    coverage_threshold: float = Field(0.3, ge=0, le=1)
    eps: float = Field(0.3, gt=0)
    min_samples: int = Field(1, ge=1)
    distance: Literal["iou", "l2"] = "iou"
    confidence: Literal["sum", "max"] = "max"
    min_confidence: float = Field(0.0, ge=0)


def cluster_class(boxes: np.ndarray, cov: np.ndarray, p: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Cluster candidate boxes (N, 4) with coverage (N,) -> (M, 4) boxes and (M,) confidences."""
    if len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    if p.distance == "iou":
        dist = 1.0 - box_iou(boxes, boxes)
        labels = DBSCAN(eps=p.eps, min_samples=p.min_samples, metric="precomputed").fit_predict(dist)
    else:
        labels = DBSCAN(eps=p.eps, min_samples=p.min_samples).fit_predict(boxes)
    out_b, out_s = [], []
    for k in sorted(set(labels.tolist()) - {-1}):
        sel = labels == k
        w = cov[sel].astype(np.float64)
        out_b.append((boxes[sel] * w[:, None]).sum(0) / max(w.sum(), 1e-12))
        out_s.append(w.sum() if p.confidence == "sum" else w.max())
    b, s = np.asarray(out_b).reshape(-1, 4), np.asarray(out_s)
    keep = s >= p.min_confidence
    return b[keep], s[keep]


def detectnet_postprocess(
    cov: np.ndarray,
    bbox: np.ndarray,
    stride: int,
    params: list[ClusterParams],
    bbox_norm: float = 35.0,
    image_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Detections of one image from its network outputs (after sigmoid).

    ``cov`` (C, Gh, Gw) in [0, 1], ``bbox`` (C, 4, Gh, Gw) encoded as in :mod:`rasterizer`;
    ``params`` one per class; ``image_size`` (width, height) clips boxes. Returns ``boxes`` (M, 4)
    float pixel x1, y1, x2, y2, ``scores`` (M,), ``labels`` (M,) int64 in 1..C, sorted by score.
    """
    decoded = decode_boxes(bbox, stride, bbox_norm)
    all_b, all_s, all_l = [], [], []
    for c in range(cov.shape[0]):
        sel = cov[c] >= params[c].coverage_threshold
        b, s = cluster_class(decoded[c][sel], cov[c][sel], params[c])
        all_b.append(b)
        all_s.append(s)
        all_l.append(np.full(len(s), c + 1, np.int64))
    boxes = np.concatenate(all_b) if all_b else np.zeros((0, 4))
    scores = np.concatenate(all_s) if all_s else np.zeros(0)
    labels = np.concatenate(all_l) if all_l else np.zeros(0, np.int64)
    if image_size is not None and len(boxes):
        w, h = image_size
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    order = np.argsort(-scores, kind="stable")
    return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}
