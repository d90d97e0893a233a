"""PASCAL VOC average precision, precision/recall at a score threshold, and a confusion matrix.

Matching follows :mod:`synthloop.evaluation.matching` (VOC devkit rules, per-class minimum IoU,
crowd/difficult GT ignored). Per class, detections of all frames are ranked by descending score
(stable: ties keep dataset frame order, then stored order); ignored detections are dropped; the
precision/recall curve is ``tp_cum / (tp_cum + fp_cum)`` and ``tp_cum / num_gt``.

AP modes:

* ``"sample"`` (VOC2007, 11-point): mean over t in {0, 0.1, ..., 1} of max precision at recall >= t
  (0 when recall never reaches t).
* ``"integrate"`` (VOC2010+): area under the monotone precision envelope: precision is replaced by
  its running maximum from the right, and summed times the recall steps.

A class without (non-ignored) GT has AP None and is left out of mAP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import EvaluationError, FrameDetections, check_detections
from synthloop.evaluation.matching import (
    IGNORED,
    TP,
    is_ignored,
    match_dataset,
    match_frame,
    resolve_min_iou,
)
from synthloop.geometry.masks import box_iou

VocMode = Literal["sample", "integrate"]


def voc_ap(recall: np.ndarray, precision: np.ndarray, mode: VocMode = "integrate") -> float:
    """AP from a PR curve (``recall`` non-decreasing, both shape (D,)); see the module docstring."""
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if mode == "sample":
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            p = prec[rec >= t - 1e-12]
            ap += (float(p.max()) if p.size else 0.0) / 11.0
        return ap
    if mode == "integrate":
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    raise EvaluationError(
        f"unknown VOC AP mode {mode!r} (expected 'sample' or 'integrate')", where="voc_mode"
    )


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted scores, recall, precision), each (D,), ranking ``scores`` descending (stable).

    ``is_tp`` (D,) bool: TP (True) or FP (False); ignored detections must already be removed.
    Recall is 0 everywhere when ``num_gt`` is 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    tp = np.asarray(is_tp, dtype=bool)[order]
    tpc = np.cumsum(tp)
    fpc = np.cumsum(~tp)
    rec = tpc / num_gt if num_gt > 0 else np.zeros(len(tp))
    prec = tpc / np.maximum(tpc + fpc, 1)
    return scores[order], rec, prec


def class_ap(scores: np.ndarray, is_tp: np.ndarray, num_gt: int, mode: VocMode = "integrate") -> float | None:
    """VOC AP of one class; None when it has no GT."""
    if num_gt == 0:
        return None
    _, rec, prec = pr_curve(scores, is_tp, num_gt)
    return voc_ap(rec, prec, mode)


@dataclass
class ClassRecords:
    """Per-class collected matches: ``scores`` (D,), ``is_tp`` (D,) bool (ignored dets excluded),
    ``num_gt`` non-ignored GT count."""

    scores: list[float]
    is_tp: list[bool]
    num_gt: int = 0


def collect(
    ds: Dataset, dets: Mapping[str, FrameDetections], min_iou: Mapping[int, float]
) -> dict[int, ClassRecords]:
    """Category id -> ClassRecords over the whole dataset."""
    recs = {c.id: ClassRecords([], []) for c in ds.categories}
    for frame, fd, m in match_dataset(ds, dets, min_iou):
        for o in frame.objects:
            if not is_ignored(o):
                recs[o.category_id].num_gt += 1
        for d in range(len(fd)):
            if m.det_status[d] == IGNORED:
                continue
            r = recs[int(fd.labels[d])]
            r.scores.append(float(fd.scores[d]))
            r.is_tp.append(bool(m.det_status[d] == TP))
    return recs


def voc_evaluate(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    *,
    mode: VocMode = "integrate",
    min_iou: float | Mapping[int | str, float] | None = None,
    score_thr: float = 0.5,
) -> dict[str, Any]:
    """VOC AP per class + mAP, and per-class precision/recall at ``score_thr`` (score >= thr).

    Returns ``{"mode", "score_thr", "mAP", "per_class": {name: {"category_id", "min_iou", "num_gt",
    "num_dets", "ap", "tp", "fp", "precision", "recall"}}}``; ``precision`` is None with no detection
    at the threshold, ``recall`` and ``ap`` None without GT; ``mAP`` None when no class has GT.
    """
    check_detections(ds, dets)
    if mode not in ("sample", "integrate"):
        raise EvaluationError(
            f"unknown VOC AP mode {mode!r} (expected 'sample' or 'integrate')", where="voc_mode"
        )
    thr = resolve_min_iou(ds, min_iou)
    recs = collect(ds, dets, thr)
    per_class: dict[str, dict[str, Any]] = {}
    aps = []
    for c in ds.categories:
        r = recs[c.id]
        s = np.asarray(r.scores, dtype=np.float64)
        t = np.asarray(r.is_tp, dtype=bool)
        ap = class_ap(s, t, r.num_gt, mode)
        if ap is not None:
            aps.append(ap)
        keep = s >= score_thr
        n_tp, n_fp = int(t[keep].sum()), int((~t[keep]).sum())
        per_class[c.name] = {
            "category_id": c.id,
            "min_iou": thr[c.id],
            "num_gt": r.num_gt,
            "num_dets": len(s),
            "ap": ap,
            "tp": n_tp,
            "fp": n_fp,
            "precision": n_tp / (n_tp + n_fp) if n_tp + n_fp else None,
            "recall": n_tp / r.num_gt if r.num_gt else None,
        }
    return {
        "mode": mode,
        "score_thr": float(score_thr),
        "mAP": float(np.mean(aps)) if aps else None,
        "per_class": per_class,
    }


@dataclass
class ConfusionMatrix:
    """Rows: GT class (last row ``background`` = false positives); columns: predicted class (last
    column ``background`` = missed GT). ``matrix`` (C+1, C+1) int64 counts."""

    labels: list[str]
    category_ids: list[int]
    matrix: np.ndarray
    iou: float
    score_thr: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "category_ids": list(self.category_ids),
            "matrix": self.matrix.astype(int).tolist(),
            "iou": self.iou,
            "score_thr": self.score_thr,
            "rows": "ground truth (last: background = false positive)",
            "columns": "prediction (last: background = missed)",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfusionMatrix:
        return cls(
            labels=list(d["labels"]),
            category_ids=[int(v) for v in d["category_ids"]],
            matrix=np.asarray(d["matrix"], dtype=np.int64),
            iou=float(d["iou"]),
            score_thr=float(d["score_thr"]),
        )


def confusion_matrix(
    ds: Dataset, dets: Mapping[str, FrameDetections], iou: float = 0.5, score_thr: float = 0.5
) -> ConfusionMatrix:
    """Class confusion among detections with score >= ``score_thr``, per frame in two passes:

    1. same-class matching by the VOC rules (the diagonal equals VOC's TP count at this IoU and
       threshold); detections hitting an ignored GT are dropped;
    2. the remaining detections, by descending score, take the unmatched non-ignored GT *of another
       class* with the highest IoU >= ``iou`` (a confusion: row GT class, column predicted class).

    Then each unmatched GT counts in its row's background column and each unmatched detection in the
    background row.
    """
    check_detections(ds, dets)
    cats = [c.id for c in ds.categories]
    index = {cid: i for i, cid in enumerate(cats)}
    bg = len(cats)
    mat = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    thr = {cid: float(iou) for cid in cats}
    for frame in ds.frames:
        full = dets.get(frame.frame_id)
        if full is None:
            full = FrameDetections.empty(frame.frame_id)
        keep = full.scores >= score_thr
        sub = FrameDetections(
            frame.frame_id,
            full.boxes[keep],
            full.scores[keep],
            full.labels[keep],
        )
        m = match_frame(frame, sub, thr)
        labels = np.array([o.category_id for o in frame.objects], dtype=np.int64)
        ignored = np.array([is_ignored(o) for o in frame.objects], dtype=bool)
        gt_taken = m.gt_det >= 0
        det_done = m.det_status != 0
        for d in np.nonzero(m.det_status == TP)[0]:
            k = index[int(sub.labels[d])]
            mat[k, k] += 1
        ious = box_iou(sub.boxes, np.array([o.bbox for o in frame.objects]).reshape(-1, 4))
        for d in np.argsort(-sub.scores.astype(np.float64), kind="stable"):
            if det_done[d]:
                continue
            cand = (~gt_taken) & (~ignored) & (labels != sub.labels[d])
            if len(labels) and cand.any():
                ov = np.where(cand, ious[d], -1.0)
                j = int(np.argmax(ov))
                if ov[j] >= iou:
                    gt_taken[j] = True
                    det_done[d] = True
                    mat[index[int(labels[j])], index[int(sub.labels[d])]] += 1
                    continue
            det_done[d] = True
            mat[bg, index[int(sub.labels[d])]] += 1
        for g in np.nonzero((~gt_taken) & (~ignored))[0]:
            mat[index[int(labels[g])], bg] += 1
    names = [c.name for c in ds.categories] + ["background"]
    return ConfusionMatrix(names, cats, mat, float(iou), float(score_thr))
