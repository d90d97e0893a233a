"""Object rows with measured properties: real ground truth, false positives, pool detections, renders.

Every row is a dict the miner's :func:`~synthloop.active.outcomes.outcome_table` reads: ``frame_id``,
``category``, ``bbox`` (xyxy pixels), ``properties`` (:func:`synthloop.geometry.properties.
object_properties` of the object in its image) and its outcome:

* :func:`describe_real` (a labeled real split and a model's detections on it, both at the score
  threshold ``score_thr``): one row per ground-truth object (``kind: "gt"``; ``matched`` by a
  detection at the evaluation's IoU, else mislocalized/missed) and one per detection (``kind:
  "det"``; ``matched`` for a true positive, ``outcome: "false_positive"`` otherwise; detections on
  crowd/difficult objects are left out). A GT object's neighbours are the other GT objects; a
  detection's are the frame's GT objects (minus the one it matched), so both sides use the same
  context.
* :func:`describe_pool` (unlabeled photos): the detections scored >= ``min_score`` of the
  ``top`` most uncertain images (mean binary entropy of their scores,
  :func:`~synthloop.active.select.detection_entropy`); ``matched`` when scored >= ``score_thr``,
  else ``outcome: "uncertain"``. Neighbours: the image's confident detections.
* :func:`describe_renders` (a synthloop render folder): one row per visible labeled object with its
  sampled ``attributes`` and its frame's ``scene_params`` (what a recipe produced it from), so a
  property region can be turned back into parameters, and one per visible distractor (its group
  as ``category``: what false positives are mapped through). Neighbours: the labeled objects.

Real rows carry no ``attributes``/``scene_params`` (a photo has none), so only ``prop.*`` and
``object.category`` describe them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synthloop.active.errors import ActiveError
from synthloop.active.select import detection_entropy, load_rgb
from synthloop.dataset.folder import is_synthloop_dataset, iter_records, load_instance_map
from synthloop.dataset.types import Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import FrameDetections
from synthloop.evaluation.matching import TP, is_ignored, match_dataset, resolve_min_iou
from synthloop.geometry.masks import rle_to_mask
from synthloop.geometry.properties import object_properties

LoadImage = Callable[[Frame], np.ndarray]
EXCLUDED_MEASURED = ("object.area", "object.occlusion", "object.truncation")
"""Measured columns left out of property mining: ``prop.size`` replaces the resolution-dependent
pixel area; occlusion/truncation are unknown on photos."""


def frame_image(frame: Frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a frame's image; an unreadable one is one ActiveError naming it."""
    try:
        return load_rgb(frame.image_path)
    except OSError as e:
        raise ActiveError(f"cannot read image ({e})", path=str(frame.image_path)) from None


def _props(p: Mapping[str, np.ndarray], i: int) -> dict[str, float | None]:
    return {k: (float(v[i]) if np.isfinite(v[i]) else None) for k, v in p.items()}


def _masks(frame: Frame) -> list[np.ndarray | None]:
    return [rle_to_mask(o.mask) if o.mask is not None and not o.iscrowd else None for o in frame.objects]


def _above(fd: FrameDetections, thr: float) -> FrameDetections:
    keep = np.asarray(fd.scores) >= thr
    return FrameDetections(fd.frame_id, fd.boxes[keep], fd.scores[keep], fd.labels[keep])


def _object_row(
    kind: str,
    frame_id: str,
    j: int,
    o: ObjectAnnotation,
    names: Mapping[int, str],
    ignored: bool,
    matched: bool,
) -> dict[str, Any]:
    """The leading keys of the row of annotated object ``j`` (bbox x1 y1 x2 y2 pixels, category by
    name); the caller adds its own keys after them."""
    return {
        "kind": kind,
        "frame_id": frame_id,
        "object_index": j,
        "category": names.get(o.category_id, str(o.category_id)),
        "bbox": [float(v) for v in o.bbox],
        "ignored": ignored,
        "matched": matched,
    }


def _det_row(
    kind: str,
    frame_id: str,
    fd: FrameDetections,
    d: int,
    names: Mapping[int, str],
    matched: bool,
    miss: str,
    extra: dict[str, Any],
    properties: dict[str, float | None],
) -> dict[str, Any]:
    """The row of detection ``d`` of ``fd`` in frame ``frame_id`` (bbox x1 y1 x2 y2 pixels, category
    by name): ``extra`` keys stand before ``properties``; an unmatched row gets ``"outcome": miss``."""
    row = {
        "kind": kind,
        "frame_id": frame_id,
        "object_index": d,
        "category": names.get(int(fd.labels[d]), str(int(fd.labels[d]))),
        "bbox": [float(v) for v in fd.boxes[d]],
        "score": float(fd.scores[d]),
        "ignored": False,
        "matched": matched,
        **extra,
        "properties": properties,
    }
    if not matched:
        row["outcome"] = miss
    return row


def describe_real(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    *,
    score_thr: float = 0.5,
    min_iou: float | Mapping[int | str, float] | None = None,
    load_image: LoadImage = frame_image,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(GT rows, detection rows) of a labeled split (module docstring)."""
    names = {c.id: c.name for c in ds.categories}
    kept = {fid: _above(fd, score_thr) for fid, fd in dets.items()}
    gt_rows: list[dict[str, Any]] = []
    det_rows: list[dict[str, Any]] = []
    for frame, fd, m in match_dataset(ds, kept, resolve_min_iou(ds, min_iou)):
        image = load_image(frame)
        gt_boxes = np.array([o.bbox for o in frame.objects], dtype=np.float64).reshape(-1, 4)
        masks = _masks(frame)
        gp = object_properties(image, gt_boxes, masks)
        for j, o in enumerate(frame.objects):
            row = _object_row("gt", frame.frame_id, j, o, names, is_ignored(o), bool(m.gt_det[j] >= 0))
            gt_rows.append(row | {"best_iou": float(m.gt_best_iou[j]), "properties": _props(gp, j)})
        live = [d for d in range(len(fd)) if m.det_status[d] >= 0]
        if not live:
            continue
        self_idx = [int(m.det_gt[d]) if m.det_status[d] == TP else -1 for d in live]
        dp = object_properties(
            image, fd.boxes[live], None, context_boxes=gt_boxes, context_masks=masks, self_index=self_idx
        )
        for i, d in enumerate(live):
            tp = bool(m.det_status[d] == TP)
            extra = {"best_iou": float(m.det_iou[d])}
            det_rows.append(
                _det_row("det", frame.frame_id, fd, d, names, tp, "false_positive", extra, _props(dp, i))
            )
    return gt_rows, det_rows


def describe_pool(
    frames: Sequence[Frame],
    dets: Mapping[str, FrameDetections],
    *,
    top: int = 10,
    min_score: float = 0.1,
    score_thr: float = 0.5,
    category_names: Mapping[int, str] | None = None,
    load_image: LoadImage = frame_image,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(detection rows, per-image ``{"frame_id", "uncertainty", "num_detections"}`` of the chosen
    images, most uncertain first) of unlabeled photos (module docstring)."""
    names = dict(category_names or {})
    scored = []
    for f in frames:
        fd = _above(dets.get(f.frame_id) or FrameDetections.empty(f.frame_id), min_score)
        scored.append((detection_entropy(fd.scores, None, min_score), f, fd))
    scored.sort(key=lambda t: -t[0])
    rows: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for u, f, fd in scored[: max(0, top)]:
        chosen.append({"frame_id": f.frame_id, "uncertainty": float(u), "num_detections": len(fd)})
        if not len(fd):
            continue
        confident = np.flatnonzero(np.asarray(fd.scores) >= score_thr)
        pos = {int(d): k for k, d in enumerate(confident)}
        p = object_properties(
            load_image(f),
            fd.boxes,
            None,
            context_boxes=fd.boxes[confident],
            self_index=[pos.get(d, -1) for d in range(len(fd))],
        )
        for d in range(len(fd)):
            ok = bool(fd.scores[d] >= score_thr)
            rows.append(_det_row("pool", f.frame_id, fd, d, names, ok, "uncertain", {}, _props(p, d)))
    return rows, chosen


def _distractors_by_frame(ds: Dataset) -> dict[str, list[dict[str, Any]]]:
    """frame_id -> visible distractors ``{"name", "instance_id", "bbox"}`` from the folder's frame
    records (their scene names the group: ``<group>_<index>``); empty without records."""
    if ds.root is None or not is_synthloop_dataset(ds.root):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for _, rec in iter_records(ds.root):
        names = {
            int(o["instance_id"]): str(o.get("name", ""))
            for o in (rec.get("scene") or {}).get("objects", [])
            if o.get("category_id") is None
        }
        out[str(rec.get("frame_id"))] = [
            {"name": names.get(int(d["instance_id"]), "").rsplit("_", 1)[0], **d}
            for d in rec.get("distractors") or []
            if d.get("bbox") and d.get("area", 0) > 0 and int(d["instance_id"]) in names
        ]
    return out


def _distractor_rows(
    frame: Frame,
    image: np.ndarray,
    dis: Sequence[Mapping[str, Any]],
    boxes: np.ndarray,
    masks: Sequence[np.ndarray | None],
) -> list[dict[str, Any]]:
    """Rows of a frame's visible distractors (pixels from the instance map; the labeled objects
    ``boxes``/``masks`` as neighbours)."""
    inst = load_instance_map(frame)
    dp = object_properties(
        image,
        np.array([d["bbox"] for d in dis], dtype=np.float64),
        [inst == int(d["instance_id"]) for d in dis],
        context_boxes=boxes,
        context_masks=masks,
    )
    return [
        {
            "kind": "distractor",
            "frame_id": frame.frame_id,
            "object_index": j,
            "category": d["name"],
            "bbox": [float(v) for v in d["bbox"]],
            "ignored": False,
            "matched": True,
            "properties": _props(dp, j),
            "scene_params": dict(frame.scene_params),
        }
        for j, d in enumerate(dis)
    ]


def describe_renders(
    ds: Dataset, *, load_image: LoadImage = frame_image, on_frame: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """One row per visible labeled object of a synthloop render dataset (``kind: "render"``), and,
    where the folder's records name them and an instance map holds their pixels, one per visible
    distractor (``kind: "distractor"``, ``category`` = its group name, no ``attributes``: false
    positives that look like one map to more of its group). Both use the labeled objects as
    neighbours (as on real photos). ``on_frame`` is called after each frame (a progress bar)."""
    names = {c.id: c.name for c in ds.categories}
    distractors = _distractors_by_frame(ds)
    rows: list[dict[str, Any]] = []
    for frame in ds.frames:
        objs = [o for o in frame.objects if o.area > 0]
        dis = distractors.get(frame.frame_id, []) if frame.instance_map_path is not None else []
        if on_frame is not None:
            on_frame()
        if not objs and not dis:
            continue
        image = load_image(frame)
        boxes = np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4)
        masks = [rle_to_mask(o.mask) if o.mask is not None else None for o in objs]
        p = object_properties(image, boxes, masks)
        for j, o in enumerate(objs):
            rows.append(
                _object_row("render", frame.frame_id, j, o, names, False, True)
                | {
                    "properties": _props(p, j),
                    "attributes": dict(o.attributes),
                    "scene_params": dict(frame.scene_params),
                }
            )
        if dis:
            rows += _distractor_rows(frame, image, dis, boxes, masks)
    return rows


def pool_frames(paths: Sequence[str | Path]) -> list[Frame]:
    """Label-free frames for a list of image paths (ids: the file stems, made unique); an unreadable
    image is one ActiveError naming it."""
    out: list[Frame] = []
    seen: set[str] = set()
    for p in paths:
        p = Path(p)
        try:
            with Image.open(p) as im:
                w, h = im.size
        except OSError as e:
            raise ActiveError(f"cannot read image ({e})", path=str(p)) from None
        fid, k = p.stem, 1
        while fid in seen:
            k += 1
            fid = f"{p.stem}_{k}"
        seen.add(fid)
        out.append(Frame(frame_id=fid, image_path=p.resolve(), width=w, height=h, source="real"))
    return out
