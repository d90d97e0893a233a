"""Per-frame outcomes of a detector and overlay images of its worst frames (PIL only).

A frame's outcome counts detections with ``score >= score_thr`` matched to its ground truth with
the VOC rules of :mod:`synthloop.evaluation.matching` (per-class minimum IoU, crowd/difficult GT
ignored): TP (matched), FP (unmatched detection), missed (non-ignored GT without a match).
Per-frame F1 is ``2 TP / (2 TP + FP + missed)``; a frame with no GT and no detection has F1 1.

Overlays (drawn by :mod:`synthloop.overlays`): matched detections green, missed GT red with a
dashed outline, false positives orange; detections are labelled ``class score``, missed GT
``class (missed)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from synthloop.atomic import atomic_save_image
from synthloop.dataset.staging import safe_stem
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.evaluation.detections import EvaluationError, FrameDetections, check_detections
from synthloop.evaluation.matching import TP, frame_gt_arrays, match_frame, resolve_min_iou
from synthloop.overlays import GREEN, ORANGE, RED, Mark, detection_keypoints, load_rgb, paint

WorstBy = Literal["f1", "missed"]


@dataclass
class FrameOutcome:
    """Outcome of one frame at one operating point.

    ``tp``/``fp``/``missed``: counts; ``det_index``: indices (into the frame's FrameDetections) of
    the detections kept (score >= threshold); ``det_status`` (same length) 1 TP, 0 FP, -1 ignored;
    ``missed_gt``: indices into ``frame.objects`` of the missed GT; ``matched_gt``: indices of GT
    that a detection matched.
    """

    frame_id: str
    tp: int
    fp: int
    missed: int
    det_index: list[int]
    det_status: list[int]
    missed_gt: list[int]
    matched_gt: list[int]

    @property
    def num_gt(self) -> int:
        return self.tp + self.missed

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.missed
        return 1.0 if denom == 0 else 2 * self.tp / denom

    def to_dict(self) -> dict[str, object]:
        return {
            "frame_id": self.frame_id,
            "tp": self.tp,
            "fp": self.fp,
            "missed": self.missed,
            "f1": round(self.f1, 6),
        }


def frame_outcome(
    frame: Frame, fd: FrameDetections, min_iou: Mapping[int, float], score_thr: float = 0.5
) -> FrameOutcome:
    """Match the detections of ``fd`` with ``score >= score_thr`` to ``frame.objects``.

    ``min_iou``: category id -> minimum IoU (see :func:`resolve_min_iou`).
    """
    keep = np.nonzero(fd.scores >= score_thr)[0]
    sub = FrameDetections(fd.frame_id, fd.boxes[keep], fd.scores[keep], fd.labels[keep])
    m = match_frame(frame, sub, min_iou)
    _, _, ignored = frame_gt_arrays(frame)
    missed = [j for j in range(len(frame.objects)) if not ignored[j] and m.gt_det[j] < 0]
    matched = [j for j in range(len(frame.objects)) if m.gt_det[j] >= 0]
    status = [int(s) for s in m.det_status]
    return FrameOutcome(
        frame_id=frame.frame_id,
        tp=sum(1 for s in status if s == TP),
        fp=sum(1 for s in status if s == 0),
        missed=len(missed),
        det_index=[int(i) for i in keep],
        det_status=status,
        missed_gt=missed,
        matched_gt=matched,
    )


def frame_outcomes(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    *,
    score_thr: float = 0.5,
    min_iou: float | Mapping[int | str, float] | None = None,
) -> list[FrameOutcome]:
    """One :class:`FrameOutcome` per frame of ``ds``, in dataset order."""
    check_detections(ds, dets)
    ious = resolve_min_iou(ds, min_iou)
    return [
        frame_outcome(f, dets.get(f.frame_id) or FrameDetections.empty(f.frame_id), ious, score_thr)
        for f in ds.frames
    ]


def rank_worst(outcomes: Sequence[FrameOutcome], by: WorstBy = "f1") -> list[FrameOutcome]:
    """Outcomes sorted worst first.

    ``by="f1"``: lowest F1 first, ties by more missed, then more FP; ``by="missed"``: most missed GT
    first, ties by lower F1, then more FP. Remaining ties keep dataset order (stable sort).
    """
    if by == "f1":
        key = lambda o: (o.f1, -o.missed, -o.fp)  # noqa: E731
    elif by == "missed":
        key = lambda o: (-o.missed, o.f1, -o.fp)  # noqa: E731
    else:
        raise EvaluationError(f"worst-frame ranking must be 'f1' or 'missed', got {by!r}", where="by")
    return sorted(outcomes, key=key)


def outcome_marks(
    frame: Frame, fd: FrameDetections, outcome: FrameOutcome, cats: Mapping[int, Category]
) -> list[Mark]:
    """Marks of a frame's outcome: missed GT (red, dashed), then false positives (orange), then
    matched detections (green) on top, so matches stay visible where they overlap."""

    def name(cid: int) -> str:
        c = cats.get(cid)
        return c.name if c else f"id {cid}"

    marks = [
        Mark(frame.objects[j].bbox, f"{name(frame.objects[j].category_id)} (missed)", RED, dashed=True)
        for j in outcome.missed_gt
    ]
    for status_wanted, color in ((0, ORANGE), (TP, GREEN)):
        for i, st in zip(outcome.det_index, outcome.det_status, strict=True):
            if st == status_wanted:
                label = f"{name(int(fd.labels[i]))} {float(fd.scores[i]):.2f}"
                cat = cats.get(int(fd.labels[i]))
                kps, skel = detection_keypoints(fd, i, cat.skeleton if cat and cat.skeleton else None)
                marks.append(Mark(tuple(float(v) for v in fd.boxes[i]), label, color, False, None, kps, skel))
    return marks


def render_outcome_overlay(
    frame: Frame, fd: FrameDetections, outcome: FrameOutcome, cats: Mapping[int, Category]
) -> Image.Image:
    """The frame's image (RGB) with :func:`outcome_marks` drawn, under a black bar with the frame's
    counts; see :func:`synthloop.overlays.paint` for the enlargement and the bar."""
    header = (
        f"{frame.frame_id}  TP {outcome.tp}  FP {outcome.fp}  missed {outcome.missed}  F1 {outcome.f1:.2f}"
    )
    return paint(load_rgb(frame), outcome_marks(frame, fd, outcome, cats), header=header)


def write_outcome_overlays(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    out_dir: str | Path,
    *,
    frames: Sequence[str] | None = None,
    worst: int | None = 8,
    by: WorstBy = "f1",
    score_thr: float = 0.5,
    min_iou: float | Mapping[int | str, float] | None = None,
) -> list[tuple[Path, FrameOutcome]]:
    """Write overlays to ``out_dir``: of ``frames`` (frame ids, in the given order) when given, else of
    the ``worst`` frames ranked by ``by`` (all frames when ``worst`` is None). Files are named
    ``NN_<frame id>.png`` (NN = rank from 00), written atomically. Returns (path, outcome) pairs."""
    outcomes = frame_outcomes(ds, dets, score_thr=score_thr, min_iou=min_iou)
    by_id = {o.frame_id: o for o in outcomes}
    if frames is not None:
        missing = [f for f in frames if f not in by_id]
        if missing:
            raise DatasetError(
                f"no frame with id {missing[0]!r}", path=str(ds.root or ds.name), where="frames"
            )
        chosen = [by_id[f] for f in frames]
    else:
        chosen = rank_worst(outcomes, by)
        if worst is not None:
            chosen = chosen[: max(0, worst)]
    frame_by_id = {f.frame_id: f for f in ds.frames}
    cats = ds.category_by_id()
    out = Path(out_dir)
    written = []
    for rank, oc in enumerate(chosen):
        fd = dets.get(oc.frame_id) or FrameDetections.empty(oc.frame_id)
        img = render_outcome_overlay(frame_by_id[oc.frame_id], fd, oc, cats)
        path = out / f"{rank:02d}_{safe_stem(oc.frame_id)}.png"
        atomic_save_image(path, img)
        written.append((path, oc))
    return written
