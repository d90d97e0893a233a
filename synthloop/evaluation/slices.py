"""Per-object outcomes and per-slice metrics (recall, VOC AP) — what the active-learning loop mines.

Matching: :mod:`synthloop.evaluation.matching` (VOC rules, per-class minimum IoU, default 0.5).

Slice groups (each splits the ground truth into labelled bins):

* ``size``: COCO area bins of the GT ``area`` (small < 32², medium < 96², large), as COCOeval.
* ``occlusion`` / ``truncation``: fixed-width bins over the object's fraction (edges configurable);
  ``unknown`` when the value is None (real data).
* ``scene.<param>``: each key of ``Frame.scene_params``; numeric params in quantile bins (or fixed
  width over [min, max]) of the per-frame values, or by value when a param has at most ``n_bins``
  distinct values; string/bool params by value; ``unknown`` where a frame lacks the param.
* ``attr.<name>``: each key of the objects' ``attributes``, binned the same way over objects.

Bins are ``[lo, hi)`` with the last one closed; values outside the edges go to the nearest end bin.

Per-slice metrics:

* ``recall``: matched / non-ignored GT in the slice, counting matches by detections with score >=
  ``score_thr`` (default 0: all detections).
* ``ap``: VOC AP (at each class's minimum IoU, so AP50 by default) computed within the slice, per
  class present in the slice (mean over those classes). Detections are assigned to slices by this
  rule: a TP — or a duplicate, whose best same-class GT is already matched — goes to the slice of
  that GT; any other false positive goes, for ``size``, to the bin of its own box area (w*h), for
  ``scene.*``, to the bin of its frame, and for object-level groups (``occlusion``, ``truncation``,
  ``attr.*``), where it has no value, it counts against *every* bin of the group. Detections hitting
  crowd/difficult GT are ignored everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthloop.atomic import atomic_write_json
from synthloop.dataset.types import Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import EvaluationError, FrameDetections, check_detections
from synthloop.evaluation.matching import IGNORED, TP, FrameMatch, is_ignored, match_dataset, resolve_min_iou
from synthloop.evaluation.voc import VocMode, class_ap
from synthloop.jsonio import read_json, reading, require_schema

SLICES_SCHEMA = "synthloop.slices/1"
UNKNOWN = "unknown"
COCO_AREA_EDGES = (0.0, 32.0**2, 96.0**2, math.inf)
COCO_AREA_LABELS = ("small", "medium", "large")
DEFAULT_OCCLUSION_EDGES = (0.0, 0.1, 0.5, 1.0)
DEFAULT_TRUNCATION_EDGES = (0.0, 0.05, 0.3, 1.0)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _jsonable(v: Any) -> Any:
    """Plain JSON value (numpy scalars/arrays converted, non-finite floats -> None)."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if v is None or isinstance(v, str):
        return v
    return str(v)


@dataclass
class Binning:
    """How one group's values map to slice labels.

    ``method``: ``"fixed"`` / ``"quantile"`` (interval bins with ``edges``, len = len(labels) + 1),
    ``"coco_area"`` (fixed, COCO's labels) or ``"categorical"`` (``labels`` are the values as str).
    ``level``: ``"object"`` or ``"frame"`` (which entity carries the value).
    """

    group: str
    kind: str
    level: Literal["object", "frame"]
    method: Literal["fixed", "quantile", "coco_area", "categorical"]
    labels: list[str]
    edges: list[float] | None = None

    def assign(self, value: Any) -> str:
        """Label of ``value``; ``"unknown"`` for None/NaN or a value this binning cannot place."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return UNKNOWN
        if self.method == "categorical":
            return str(value)
        if not _is_number(value) or self.edges is None:
            return UNKNOWN
        inner = np.asarray(self.edges[1:-1], dtype=np.float64)
        return self.labels[int(np.searchsorted(inner, float(value), side="right"))]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.edges is not None:
            d["edges"] = [None if math.isinf(e) else float(e) for e in self.edges]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Binning:
        edges = d.get("edges")
        if edges is not None:
            edges = [math.inf if e is None else float(e) for e in edges]
        return cls(d["group"], d["kind"], d["level"], d["method"], list(d["labels"]), edges)


def interval_labels(edges: Sequence[float]) -> list[str]:
    """``[lo, hi)`` labels for consecutive edges, the last one closed ``[lo, hi]``."""
    n = len(edges) - 1
    return [f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])}{']' if i == n - 1 else ')'}" for i in range(n)]


def fixed_binning(group: str, kind: str, level: Any, edges: Sequence[float]) -> Binning:
    e = [float(x) for x in edges]
    if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:], strict=False)):
        raise EvaluationError(f"bin edges for {group!r} must be >= 2 increasing values, got {e}", where=group)
    return Binning(group, kind, level, "fixed", interval_labels(e), e)


def numeric_or_categorical_binning(
    group: str,
    kind: str,
    level: Any,
    values: Sequence[Any],
    n_bins: int = 4,
    method: Literal["quantile", "fixed"] = "quantile",
    edges: Sequence[float] | None = None,
) -> Binning:
    """Binning of a param from its observed ``values`` (None = missing).

    All-numeric values: ``edges`` if given, else by value when at most ``n_bins`` distinct values,
    else ``quantile`` edges (``np.quantile`` at k/n_bins, duplicates merged) or ``fixed`` width
    over [min, max]. Anything else: categorical by ``str(value)``.
    """
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if edges is not None:
        return fixed_binning(group, kind, level, edges)
    if present and all(_is_number(v) for v in present):
        x = np.asarray(present, dtype=np.float64)
        uniq = np.unique(x)
        if len(uniq) > n_bins:
            if method == "quantile":
                e = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
            elif method == "fixed":
                e = np.linspace(x.min(), x.max(), n_bins + 1)
            else:
                raise EvaluationError(f"unknown binning method {method!r}", where="scene_binning")
            edges_l = [float(v) for v in e]
            return Binning(group, kind, level, method, interval_labels(edges_l), edges_l)
        labels = [str(v.item() if isinstance(v, np.generic) else v) for v in _sorted_unique(present)]
        return Binning(group, kind, level, "categorical", labels)
    return Binning(group, kind, level, "categorical", sorted({str(v) for v in present}))


def _sorted_unique(values: Sequence[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in sorted(values, key=float):
        seen.setdefault(str(v), v)
    return list(seen.values())


@dataclass
class SliceMetrics:
    """Metrics of one slice: GT count (non-ignored), matched count (score >= score_thr), recall,
    VOC AP within the slice (None without GT), and how many detections were assigned to it."""

    group: str
    kind: str
    label: str
    num_gt: int
    num_matched: int
    recall: float | None
    ap: float | None
    num_dets: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SliceTable:
    """Per-object outcomes + per-slice metrics + the binnings that made the slices.

    ``objects``: one JSON-able dict per GT object (see :func:`compute_slices`); ``slices``: list of
    :class:`SliceMetrics`; ``binnings``: group -> :class:`Binning`; ``min_iou``: str(category id) ->
    IoU; ``score_thr``: the recall threshold; ``voc_mode``: the AP mode; ``rules``: how detections
    are assigned to slices (this module's docstring, for the record).
    """

    objects: list[dict[str, Any]]
    slices: list[SliceMetrics]
    binnings: dict[str, Binning]
    min_iou: dict[str, float]
    score_thr: float = 0.0
    voc_mode: str = "integrate"
    rules: str = field(default="", repr=False)

    def groups(self) -> list[str]:
        return list(self.binnings)

    def by_group(self, group: str) -> dict[str, SliceMetrics]:
        """Label -> metrics of one group."""
        return {s.label: s for s in self.slices if s.group == group}

    def worst(self, metric: Literal["recall", "ap"] = "recall", min_gt: int = 1) -> list[SliceMetrics]:
        """Slices with at least ``min_gt`` GT, lowest ``metric`` first (ties: more GT first)."""
        rows = [s for s in self.slices if s.num_gt >= min_gt and getattr(s, metric) is not None]
        return sorted(rows, key=lambda s: (getattr(s, metric), -s.num_gt, s.group, s.label))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SLICES_SCHEMA,
            "objects": _jsonable(self.objects),
            "slices": [s.to_dict() for s in self.slices],
            "binnings": {g: b.to_dict() for g, b in self.binnings.items()},
            "min_iou": dict(self.min_iou),
            "score_thr": self.score_thr,
            "voc_mode": self.voc_mode,
            "rules": self.rules,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> SliceTable:
        require_schema(d, SLICES_SCHEMA, "slice table", EvaluationError, path)
        with reading("slice table", EvaluationError, path):
            return cls(
                objects=list(d["objects"]),
                slices=[SliceMetrics(**s) for s in d["slices"]],
                binnings={g: Binning.from_dict(b) for g, b in d["binnings"].items()},
                min_iou={str(k): float(v) for k, v in d["min_iou"].items()},
                score_thr=float(d["score_thr"]),
                voc_mode=str(d["voc_mode"]),
                rules=str(d.get("rules", "")),
            )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> SliceTable:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SliceTable:
        return cls.from_dict(read_json(path, EvaluationError, "slice table"), path=str(path))


def _object_value(binning: Binning, frame: Frame, obj: ObjectAnnotation) -> Any:
    if binning.kind == "size":
        return float(obj.area)
    if binning.kind == "occlusion":
        return obj.occlusion
    if binning.kind == "truncation":
        return obj.truncation
    if binning.kind == "scene_param":
        return frame.scene_params.get(binning.group[len("scene.") :])
    return obj.attributes.get(binning.group[len("attr.") :])


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | bool | int | float | np.generic)


def build_binnings(
    ds: Dataset,
    *,
    n_bins: int = 4,
    scene_binning: Literal["quantile", "fixed"] = "quantile",
    param_edges: Mapping[str, Sequence[float]] | None = None,
    occlusion_edges: Sequence[float] = DEFAULT_OCCLUSION_EDGES,
    truncation_edges: Sequence[float] = DEFAULT_TRUNCATION_EDGES,
    include_attributes: bool = True,
) -> dict[str, Binning]:
    """Binnings for every group the dataset supports (see module docstring). ``param_edges`` forces
    fixed edges for a group named ``scene.<param>`` / ``attr.<name>`` (or just the param name)."""
    edges_for = dict(param_edges or {})
    out = {
        "size": Binning("size", "size", "object", "coco_area", list(COCO_AREA_LABELS), list(COCO_AREA_EDGES)),
        "occlusion": fixed_binning("occlusion", "occlusion", "object", occlusion_edges),
        "truncation": fixed_binning("truncation", "truncation", "object", truncation_edges),
    }
    scene_keys = sorted({k for f in ds.frames for k in f.scene_params})
    for key in scene_keys:
        vals = [f.scene_params.get(key) for f in ds.frames]
        if not all(_scalar(v) for v in vals):
            continue
        g = f"scene.{key}"
        e = edges_for.get(g, edges_for.get(key))
        out[g] = numeric_or_categorical_binning(g, "scene_param", "frame", vals, n_bins, scene_binning, e)
    if include_attributes:
        objs = [o for f in ds.frames for o in f.objects]
        for key in sorted({k for o in objs for k in o.attributes if k != "difficult"}):
            vals = [o.attributes.get(key) for o in objs]
            if not all(_scalar(v) for v in vals):
                continue
            g = f"attr.{key}"
            e = edges_for.get(g, edges_for.get(key))
            out[g] = numeric_or_categorical_binning(g, "attribute", "object", vals, n_bins, scene_binning, e)
    return out


class _SliceCounts:
    """What the slices are scored from. ``acc``: group -> bin label -> class id ->
    [detection scores, is-true-positive flags, number of ground-truth objects]; ``matched``:
    group -> bin label -> [ground-truth objects, matched ones]; ``unattributed``: group ->
    (class id, score) of the false positives with no value for an object-level binning."""

    def __init__(self, groups: Iterable[str]) -> None:
        self.acc: dict[str, dict[str, dict[int, list]]] = {g: {} for g in groups}
        self.matched: dict[str, dict[str, list[int]]] = {g: {} for g in self.acc}
        self.unattributed: dict[str, list[tuple[int, float]]] = {g: [] for g in self.acc}

    def _cls(self, g: str, label: str, cid: int) -> list:
        return self.acc[g].setdefault(label, {}).setdefault(cid, [[], [], 0])

    def add_gt(self, labels: Mapping[str, str], cid: int, matched: bool) -> None:
        """One (not ignored) ground-truth object with its bin label per group."""
        for g, label in labels.items():
            self._cls(g, label, cid)[2] += 1
            mc = self.matched[g].setdefault(label, [0, 0])
            mc[0] += 1
            mc[1] += int(matched)

    def add_det(self, g: str, label: str, cid: int, score: float, is_tp: bool) -> None:
        rec = self._cls(g, label, cid)
        rec[0].append(score)
        rec[1].append(is_tp)

    def score_unattributed(self) -> None:
        """Object-level false positives without a value count against every bin of their group."""
        for g, fps in self.unattributed.items():
            for label in list(self.acc[g]):
                for cid, score in fps:
                    self.add_det(g, label, cid, score, False)


def _object_row(
    frame: Frame,
    j: int,
    fd: FrameDetections,
    m: FrameMatch,
    score_thr: float,
    cat_names: Mapping[int, str],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The outcome row of ground-truth object ``j`` of ``frame`` (fields in :func:`compute_slices`)."""
    o = frame.objects[j]
    d = int(m.gt_det[j])
    return {
        "frame_id": frame.frame_id,
        "object_index": j,
        "category_id": int(o.category_id),
        "category": cat_names.get(o.category_id, str(o.category_id)),
        "bbox": [float(v) for v in o.bbox],
        "area": float(o.area),
        "occlusion": o.occlusion,
        "truncation": o.truncation,
        "ignored": is_ignored(o),
        "matched": bool(d >= 0 and float(fd.scores[d]) >= score_thr),
        "det_index": d if d >= 0 else None,
        "det_score": float(fd.scores[d]) if d >= 0 else None,
        "iou": float(m.gt_iou[j]) if d >= 0 else None,
        "best_iou": float(m.gt_best_iou[j]),
        "source": frame.source,
        "scene_params": _jsonable(frame.scene_params),
        "attributes": _jsonable(o.attributes),
        "slices": labels,
    }


def compute_slices(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    *,
    min_iou: float | Mapping[int | str, float] | None = None,
    score_thr: float = 0.0,
    voc_mode: VocMode = "integrate",
    binnings: Mapping[str, Binning] | None = None,
    **binning_options: Any,
) -> SliceTable:
    """Per-object outcomes and per-slice recall / AP (rules in the module docstring).

    ``binnings`` overrides :func:`build_binnings` (to which ``binning_options`` go otherwise:
    ``n_bins``, ``scene_binning``, ``param_edges``, ``occlusion_edges``, ``truncation_edges``,
    ``include_attributes``).

    Each row of ``SliceTable.objects`` (one per GT object, dataset order): ``frame_id``,
    ``object_index`` (index in ``frame.objects``), ``category_id``, ``category``, ``bbox`` (xyxy
    pixels), ``area`` (px²), ``occlusion``, ``truncation``, ``ignored`` (crowd/difficult),
    ``matched`` (by a detection with score >= ``score_thr``), ``det_index`` / ``det_score`` / ``iou``
    of the matching detection whatever its score (None if unmatched), ``best_iou`` (best IoU with any
    same-class detection), ``source``, ``scene_params``, ``attributes``, and ``slices`` (group ->
    bin label).
    """
    check_detections(ds, dets)
    thr = resolve_min_iou(ds, min_iou)
    bins = dict(binnings) if binnings is not None else build_binnings(ds, **binning_options)
    cat_names = {c.id: c.name for c in ds.categories}
    objects: list[dict[str, Any]] = []
    counts = _SliceCounts(bins)
    for frame, fd, m in match_dataset(ds, dets, thr):
        obj_labels = [
            {g: b.assign(_object_value(b, frame, o)) for g, b in bins.items()} for o in frame.objects
        ]
        for j, o in enumerate(frame.objects):
            row = _object_row(frame, j, fd, m, score_thr, cat_names, obj_labels[j])
            objects.append(row)
            if not row["ignored"]:
                counts.add_gt(obj_labels[j], int(o.category_id), row["matched"])
        for d in range(len(fd)):
            if m.det_status[d] == IGNORED:
                continue
            cid, score = int(fd.labels[d]), float(fd.scores[d])
            is_tp = bool(m.det_status[d] == TP)
            j = int(m.det_gt[d]) if is_tp else int(m.det_best_gt[d])
            duplicate = not is_tp and j >= 0 and m.det_iou[d] >= thr[cid] and not is_ignored(frame.objects[j])
            for g, b in bins.items():
                if is_tp or duplicate:
                    counts.add_det(g, obj_labels[j][g], cid, score, is_tp)
                elif b.kind == "size":
                    x1, y1, x2, y2 = (float(v) for v in fd.boxes[d])
                    counts.add_det(g, b.assign((x2 - x1) * (y2 - y1)), cid, score, False)
                elif b.level == "frame":
                    counts.add_det(g, b.assign(frame.scene_params.get(g[len("scene.") :])), cid, score, False)
                else:
                    counts.unattributed[g].append((cid, score))
    counts.score_unattributed()
    acc, matched_cnt = counts.acc, counts.matched
    slices = _finalize(bins, acc, matched_cnt, voc_mode)
    return SliceTable(
        objects=objects,
        slices=slices,
        binnings=dict(bins),
        min_iou={str(k): v for k, v in thr.items()},
        score_thr=float(score_thr),
        voc_mode=voc_mode,
        rules=__doc__ or "",
    )


def _finalize(
    bins: Mapping[str, Binning],
    acc: dict[str, dict[str, dict[int, list]]],
    matched_cnt: dict[str, dict[str, list[int]]],
    voc_mode: VocMode,
) -> list[SliceMetrics]:
    out = []
    for g, b in bins.items():
        order = [lab for lab in [*b.labels, UNKNOWN] if lab in acc[g]]
        order += sorted(lab for lab in acc[g] if lab not in order)
        for lab in order:
            per_cls = acc[g][lab]
            aps = [
                class_ap(np.asarray(s), np.asarray(t, dtype=bool), n, voc_mode)
                for s, t, n in per_cls.values()
                if n > 0
            ]
            n_gt, n_m = matched_cnt[g].get(lab, [0, 0])
            out.append(
                SliceMetrics(
                    group=g,
                    kind=b.kind,
                    label=lab,
                    num_gt=n_gt,
                    num_matched=n_m,
                    recall=n_m / n_gt if n_gt else None,
                    ap=float(np.mean([a for a in aps if a is not None])) if aps else None,
                    num_dets=sum(len(s) for s, _, _ in per_cls.values()),
                )
            )
    return out
