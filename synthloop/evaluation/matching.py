"""Greedy score-ordered matching of detections to ground truth (PASCAL VOC devkit rules), pure numpy.

Rules (shared by VOC AP, precision/recall, confusion matrix and slices):

* IoU of continuous pixel boxes ``(x1, y1, x2, y2)`` — no VOC "+1" pixel convention.
* Within a frame and class, detections are visited by descending score (stable: ties keep their
  stored order). A detection's candidate is the same-class GT with the highest IoU among *all*
  same-class GT of the frame (VOC devkit, ties to the lower index). If that IoU >= the class's
  minimum IoU: an ignored GT (``iscrowd`` or ``attributes["difficult"]``) makes the detection
  *ignored* (neither TP nor FP); an unmatched GT is matched (TP); an already-matched GT makes the
  detection a duplicate (FP). Below the minimum IoU the detection is FP.
* Because the order is by score, the matches made by detections with score >= t are the same
  whether or not lower-scored detections exist: metrics at a score threshold are read off one
  matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from synthloop.dataset.types import Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import EvaluationError, FrameDetections
from synthloop.geometry.masks import box_iou

TP, FP, IGNORED = 1, 0, -1


def is_ignored(obj: ObjectAnnotation) -> bool:
    """Crowd and 'difficult' GT are neither required (no miss) nor penalized (no FP if matched)."""
    return bool(obj.iscrowd) or bool(obj.attributes.get("difficult", False))


def resolve_min_iou(
    ds: Dataset, min_iou: float | Mapping[int | str, float] | None, default: float = 0.5
) -> dict[int, float]:
    """Per-category-id minimum IoU. ``min_iou`` is a float for every class, or a dict keyed by category
    id or name (TLT's ``minimum_detection_ground_truth_overlap``); classes not named get ``default``."""
    ids = [c.id for c in ds.categories]
    if min_iou is None:
        return {i: float(default) for i in ids}
    if isinstance(min_iou, int | float):
        out = {i: float(min_iou) for i in ids}
    else:
        by_name = {c.name: c.id for c in ds.categories}
        out = {i: float(default) for i in ids}
        for k, v in min_iou.items():
            if isinstance(k, str) and k in by_name:
                cid = by_name[k]
            elif isinstance(k, int) and k in out:
                cid = k
            elif isinstance(k, str) and k.isdigit() and int(k) in out:
                cid = int(k)
            else:
                raise EvaluationError(f"min_iou names unknown class {k!r}", where="min_iou")
            out[cid] = float(v)
    for cid, v in out.items():
        if not 0.0 < v <= 1.0:
            raise EvaluationError(f"min_iou for class {cid} must be in (0, 1], got {v}", where="min_iou")
    return out


@dataclass
class FrameMatch:
    """Matching of one frame. D = detections, G = frame.objects (all, ignored ones included).

    ``det_status`` (D,) int8: 1 TP, 0 FP, -1 ignored. ``det_gt`` (D,) index of the GT it matched
    (TP) or hit (ignored), else -1. ``det_best_gt`` (D,) index of the same-class GT with the best
    IoU whatever the outcome (-1 if the frame has none); ``det_iou`` (D,) that IoU (0 if none).
    ``gt_det`` (G,) index of the matching detection or -1; ``gt_iou`` (G,) that IoU (0 if none);
    ``gt_best_iou`` (G,) best IoU with any same-class detection.
    """

    det_status: np.ndarray
    det_gt: np.ndarray
    det_best_gt: np.ndarray
    det_iou: np.ndarray
    gt_det: np.ndarray
    gt_iou: np.ndarray
    gt_best_iou: np.ndarray


def frame_gt_arrays(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (G, 4) float64 xyxy, labels (G,) int64, ignored (G,) bool) of a frame's objects."""
    objs = frame.objects
    boxes = np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4)
    labels = np.array([o.category_id for o in objs], dtype=np.int64)
    ignored = np.array([is_ignored(o) for o in objs], dtype=bool)
    return boxes, labels, ignored


def match_frame(frame: Frame, fd: FrameDetections, min_iou: Mapping[int, float]) -> FrameMatch:
    """Match ``fd`` to ``frame.objects`` with the rules in the module docstring."""
    g_boxes, g_labels, g_ign = frame_gt_arrays(frame)
    n_d, n_g = len(fd), len(g_labels)
    m = FrameMatch(
        det_status=np.full(n_d, FP, dtype=np.int8),
        det_gt=np.full(n_d, -1, dtype=np.int64),
        det_best_gt=np.full(n_d, -1, dtype=np.int64),
        det_iou=np.zeros(n_d),
        gt_det=np.full(n_g, -1, dtype=np.int64),
        gt_iou=np.zeros(n_g),
        gt_best_iou=np.zeros(n_g),
    )
    if n_d == 0:
        return m
    iou = box_iou(fd.boxes, g_boxes)
    same = fd.labels[:, None] == g_labels[None, :]
    iou = np.where(same, iou, -1.0)
    if n_g:
        m.gt_best_iou = np.clip(iou.max(axis=0), 0.0, None)
    order = np.argsort(-fd.scores.astype(np.float64), kind="stable")
    for d in order:
        if n_g == 0 or not same[d].any():
            continue
        j = int(np.argmax(iou[d]))
        ov = float(iou[d, j])
        m.det_iou[d] = ov
        m.det_best_gt[d] = j
        if ov < min_iou.get(int(fd.labels[d]), 0.5):
            continue
        if g_ign[j]:
            m.det_status[d] = IGNORED
            m.det_gt[d] = j
        elif m.gt_det[j] < 0:
            m.det_status[d] = TP
            m.det_gt[d] = j
            m.gt_det[j] = d
            m.gt_iou[j] = ov
    return m


def match_dataset(
    ds: Dataset, dets: Mapping[str, FrameDetections], min_iou: Mapping[int, float]
) -> list[tuple[Frame, FrameDetections, FrameMatch]]:
    """Match every frame of ``ds`` (frames without detections get an empty FrameDetections)."""
    out = []
    for frame in ds.frames:
        fd = dets.get(frame.frame_id)
        if fd is None:
            fd = FrameDetections.empty(frame.frame_id)
        out.append((frame, fd, match_frame(frame, fd, min_iou)))
    return out
