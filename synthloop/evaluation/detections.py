"""Detections: what a predictor returns for each frame, and its COCO-results form.

Conventions (the same as :mod:`synthloop.dataset.types`):

* ``boxes`` are pixel boxes ``(x1, y1, x2, y2)`` in continuous image coordinates (pixel i covers
  [i, i+1)), float32, shape (N, 4). COCO ``xywh`` appears only in :func:`to_coco_results`.
* ``labels`` are dataset category ids (from 1), int64, shape (N,); ``scores`` float32, shape (N,).
* ``masks`` (optional): N COCO compressed RLE dicts ``{"size": [h, w], "counts": str}``.
* ``keypoints`` (optional): float32 (N, K, 3) of ``(u, v, score_or_visibility)`` in the same pixel
  coordinates; COCOeval ignores the third value.

On disk a :class:`Detections` is one canonical JSON file (schema ``synthloop.detections/1``),
written atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.atomic import atomic_write_json
from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError
from synthloop.jsonio import read_json, require_schema

DETECTIONS_SCHEMA = "synthloop.detections/1"


class EvaluationError(SynthloopError):
    """Evaluation inputs that do not fit together (unknown frames or categories, bad options)."""


class DetectionsError(EvaluationError):
    """A detections object or file that is malformed."""


def _normalize_rle(rle: Any, where: str) -> dict:
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise DetectionsError("mask must be a COCO RLE dict with 'size' and 'counts'", where=where)
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise DetectionsError("mask 'counts' must be compressed RLE (str or bytes)", where=where)
    size = [int(s) for s in rle["size"]]
    if len(size) != 2:
        raise DetectionsError("mask 'size' must be [height, width]", where=where)
    return {"size": size, "counts": counts}


@dataclass
class FrameDetections:
    """Detections of one frame. Arrays are converted and shape-checked on construction.

    ``boxes`` (N, 4) float32 xyxy pixels; ``scores`` (N,) float32; ``labels`` (N,) int64 category
    ids; ``masks`` list of N RLE dicts or None; ``keypoints`` (N, K, 3) float32 or None.
    """

    frame_id: str
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: list[dict] | None = None
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = f"frame {self.frame_id!r}"
        self.frame_id = str(self.frame_id)
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels).reshape(-1)
        n = len(self.scores)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise DetectionsError(f"boxes must have shape (N, 4), got {self.boxes.shape}", where=where)
        if len(self.boxes) != n or len(self.labels) != n:
            raise DetectionsError(
                f"boxes/scores/labels lengths differ: {len(self.boxes)}/{n}/{len(self.labels)}", where=where
            )
        if n and not np.all(np.isfinite(self.boxes)):
            raise DetectionsError("boxes contain non-finite values", where=where)
        if n and not np.all(np.isfinite(self.scores)):
            raise DetectionsError("scores contain non-finite values", where=where)
        if n and np.any(self.boxes[:, 2:] < self.boxes[:, :2]):
            raise DetectionsError("boxes must satisfy x2 >= x1 and y2 >= y1", where=where)
        if self.labels.size and not np.all(np.equal(np.mod(self.labels, 1), 0)):
            raise DetectionsError("labels must be integer category ids", where=where)
        self.labels = self.labels.astype(np.int64)
        if self.masks is not None:
            if len(self.masks) != n:
                raise DetectionsError(f"{len(self.masks)} masks for {n} detections", where=where)
            self.masks = [_normalize_rle(m, f"{where}, mask {i}") for i, m in enumerate(self.masks)]
        if self.keypoints is not None:
            kp = np.asarray(self.keypoints, dtype=np.float32)
            if kp.size == 0 and n == 0:
                kp = kp.reshape(0, kp.shape[1] if kp.ndim == 3 else 0, 3)
            if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3:
                raise DetectionsError(f"keypoints must have shape (N, K, 3), got {kp.shape}", where=where)
            self.keypoints = kp

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, frame_id: str) -> FrameDetections:
        return cls(frame_id, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "frame_id": self.frame_id,
            "boxes": [[float(v) for v in b] for b in self.boxes],
            "scores": [float(s) for s in self.scores],
            "labels": [int(v) for v in self.labels],
        }
        if self.masks is not None:
            d["masks"] = [dict(m) for m in self.masks]
        if self.keypoints is not None:
            d["keypoints"] = self.keypoints.tolist()
            d["num_keypoints"] = int(self.keypoints.shape[1])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> FrameDetections:
        try:
            fid = str(d["frame_id"])
            n = len(d["scores"])
            kp = d.get("keypoints")
            if kp is not None:
                kp = np.asarray(kp, dtype=np.float32).reshape(n, int(d.get("num_keypoints", 0)), 3)
            return cls(
                frame_id=fid,
                boxes=np.asarray(d["boxes"], dtype=np.float32).reshape(n, 4),
                scores=d["scores"],
                labels=d["labels"],
                masks=d.get("masks"),
                keypoints=kp,
            )
        except DetectionsError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise DetectionsError(f"malformed frame detections ({type(e).__name__}: {e})", where=where) from e


class Detections(dict[str, FrameDetections]):
    """Mapping ``frame_id -> FrameDetections``. Frames of a dataset missing here have no detections."""

    @classmethod
    def from_frames(cls, frames: Iterable[FrameDetections]) -> Detections:
        out = cls()
        for fd in frames:
            if fd.frame_id in out:
                raise DetectionsError(f"duplicate frame_id {fd.frame_id!r}")
            out[fd.frame_id] = fd
        return out

    def get_frame(self, frame_id: str) -> FrameDetections:
        """Detections of ``frame_id`` (an empty one when the frame has none)."""
        fd = self.get(frame_id)
        return fd if fd is not None else FrameDetections.empty(frame_id)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": DETECTIONS_SCHEMA, "frames": [fd.to_dict() for fd in self.values()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> Detections:
        require_schema(d, DETECTIONS_SCHEMA, "detections file", DetectionsError, path)
        frames = d.get("frames")
        if not isinstance(frames, list):
            raise DetectionsError("'frames' must be a list", path=path, where="frames")
        out = cls()
        for i, fd in enumerate(frames):
            where = f"frames[{i}]"
            try:
                f = FrameDetections.from_dict(fd, where=where)
            except DetectionsError as e:
                raise DetectionsError(e.message, path=path, where=e.where or where) from e
            if f.frame_id in out:
                raise DetectionsError(f"duplicate frame_id {f.frame_id!r}", path=path, where=where)
            out[f.frame_id] = f
        return out

    def save(self, path: str | Path) -> Path:
        """Write canonical JSON atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Detections:
        return cls.from_dict(read_json(path, DetectionsError, "detections file"), path=str(path))


def save_detections(dets: Detections, path: str | Path) -> Path:
    return dets.save(path)


def load_detections(path: str | Path) -> Detections:
    return Detections.load(path)


def check_detections(ds: Dataset, dets: Mapping[str, FrameDetections]) -> None:
    """Raise :class:`EvaluationError` if ``dets`` names frames or category ids not in ``ds`` (or a GT
    object of ``ds`` has a category id its categories lack)."""
    frame_ids = {f.frame_id for f in ds.frames}
    cat_ids = {c.id for c in ds.categories}
    for f in ds.frames:
        for j, o in enumerate(f.objects):
            if o.category_id not in cat_ids:
                raise EvaluationError(
                    f"ground-truth category_id {o.category_id} is not a dataset category",
                    where=f"frame {f.frame_id!r}, object {j}",
                )
    for fid, fd in dets.items():
        if fid not in frame_ids:
            raise EvaluationError("detections for a frame not in the dataset", where=f"frame {fid!r}")
        bad = sorted(set(int(v) for v in fd.labels) - cat_ids)
        if bad:
            raise EvaluationError(f"label(s) {bad} are not dataset category ids", where=f"frame {fid!r}")


def default_image_ids(ds: Dataset) -> dict[str, int]:
    """COCO image ids of the exported GT dict: 1..N in frame order (``dataset_to_coco``'s contract)."""
    return {f.frame_id: i + 1 for i, f in enumerate(ds.frames)}


def to_coco_results(
    ds: Dataset, dets: Mapping[str, FrameDetections], image_ids: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """COCO results list: one dict per detection, frames in dataset order, detections in stored order.

    Each has ``image_id`` (``image_ids[frame_id]``, default 1..N in frame order), ``category_id``,
    ``bbox`` ``[x, y, w, h]`` (float64 from the float32 xyxy box), ``score``, and when present
    ``segmentation`` (RLE) and ``keypoints`` (flat ``[u1, v1, s1, ...]``).
    """
    check_detections(ds, dets)
    ids = dict(image_ids) if image_ids is not None else default_image_ids(ds)
    out: list[dict[str, Any]] = []
    for frame in ds.frames:
        fd = dets.get(frame.frame_id)
        if fd is None:
            continue
        img_id = ids[frame.frame_id]
        for i in range(len(fd)):
            x1, y1, x2, y2 = (float(v) for v in fd.boxes[i])
            r: dict[str, Any] = {
                "image_id": int(img_id),
                "category_id": int(fd.labels[i]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(fd.scores[i]),
            }
            if fd.masks is not None:
                r["segmentation"] = dict(fd.masks[i])
            if fd.keypoints is not None:
                r["keypoints"] = [float(v) for v in fd.keypoints[i].reshape(-1)]
            out.append(r)
    return out
