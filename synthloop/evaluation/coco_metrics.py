"""COCO metrics through pycocotools' own COCOeval (never re-implemented here).

The ground truth is the COCO dict of the dataset (:func:`synthloop.dataset.coco_dict.coco_instances`,
the one the COCO exporter writes, image ids 1..N in frame order); detections go through
:func:`synthloop.evaluation.detections.to_coco_results` and ``COCO.loadRes``.

Values are pycocotools' own: stats of -1.0 mean "undefined" (no ground truth in that range),
per-class values are None in that case.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from synthloop.dataset.coco_dict import coco_instances
from synthloop.dataset.keypoints import DEFAULT_SIGMA, category_sigmas
from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import (
    EvaluationError,
    FrameDetections,
    default_image_ids,
    to_coco_results,
)

IOU_TYPES = ("bbox", "segm", "keypoints")
BOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KP_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def dataset_gt(ds: Dataset) -> tuple[dict[str, Any], dict[str, int]]:
    """(COCO GT dict, frame_id -> image id): :func:`synthloop.dataset.coco_dict.coco_instances`
    (image ids 1..N in frame order, ``file_name`` = frame id)."""
    return coco_instances(ds, [f.frame_id for f in ds.frames]), default_image_ids(ds)


def _coco_from_dict(d: dict[str, Any]) -> COCO:
    c = COCO()
    c.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _load_results(gt: COCO, results: list[dict[str, Any]]) -> COCO:
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(copy.deepcopy(results))
    # loadRes cannot take an empty list: an empty result set over the same images
    return _coco_from_dict(
        {
            "images": list(gt.dataset["images"]),
            "categories": list(gt.dataset["categories"]),
            "annotations": [],
        }
    )


def _supports(
    gt: dict[str, Any], ds: Dataset, dets: Mapping[str, FrameDetections], iou_type: str
) -> str | None:
    """None if ``iou_type`` can be evaluated on GT dict ``gt`` and ``dets``, else the reason it cannot."""
    anns = gt["annotations"]
    frames = [dets[f.frame_id] for f in ds.frames if f.frame_id in dets and len(dets[f.frame_id])]
    if iou_type == "bbox":
        return None
    if iou_type == "segm":
        if not anns or any(not a.get("segmentation") for a in anns):
            return "skipped: not every ground-truth object has a mask"
        if any(fd.masks is None for fd in frames):
            return "skipped: detections carry no masks"
        return None
    if iou_type == "keypoints":
        if not any(c.keypoints for c in ds.categories):
            return "skipped: no category defines keypoints"
        if not any(a.get("num_keypoints", 0) > 0 for a in anns):
            return "skipped: no ground-truth object has labeled keypoints"
        if not frames or any(fd.keypoints is None for fd in frames):
            return "skipped: detections carry no keypoints"
        return None
    raise EvaluationError(f"unknown iou type {iou_type!r} (expected one of {IOU_TYPES})", where="iou_types")


def _area_ranges(area_rng: Any, params: Any) -> None:
    """Replace ``params.areaRng`` entries by label (dict label -> (lo, hi), or 4 pairs all/s/m/l)."""
    if area_rng is None:
        return
    if isinstance(area_rng, Mapping):
        table = {str(k): v for k, v in area_rng.items()}
    else:
        pairs = list(area_rng)
        if len(pairs) != 4:
            raise EvaluationError(
                "area_rng must be a dict label -> (lo, hi) or 4 (lo, hi) pairs for all/s/m/l"
            )
        table = dict(zip(("all", "small", "medium", "large"), pairs, strict=True))
    unknown = set(table) - {"all", "small", "medium", "large"}
    if unknown:
        raise EvaluationError(f"area_rng labels {sorted(unknown)} not in all/small/medium/large")
    rng = [list(r) for r in params.areaRng]
    for i, lbl in enumerate(params.areaRngLbl):
        if lbl in table:
            lo, hi = (float(v) for v in table[lbl])
            if not hi > lo >= 0:
                raise EvaluationError(f"area_rng[{lbl!r}] must satisfy 0 <= lo < hi, got ({lo}, {hi})")
            rng[i] = [lo, hi]
    params.areaRng = rng


def _mean_valid(x: np.ndarray) -> float | None:
    v = x[x > -1]
    return float(np.mean(v)) if v.size else None


def _per_class(E: COCOeval, ds: Dataset) -> dict[str, dict[str, Any]]:
    """Per-class AP (IoU .50:.95), AP50, AP75 from ``E.eval['precision']`` [T, R, K, A, M], area 'all',
    the largest maxDets."""
    prec = E.eval["precision"]
    thrs = E.params.iouThrs
    i50 = int(np.argmin(np.abs(thrs - 0.5)))
    i75 = int(np.argmin(np.abs(thrs - 0.75)))
    names = ds.category_by_id()
    out: dict[str, dict[str, Any]] = {}
    for k, cid in enumerate(E.params.catIds):
        p = prec[:, :, k, 0, -1]
        name = names[cid].name if cid in names else str(cid)
        out[name] = {
            "category_id": int(cid),
            "AP": _mean_valid(p),
            "AP50": _mean_valid(p[i50]),
            "AP75": _mean_valid(p[i75]),
        }
    return out


def _results_for(iou_type: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if iou_type == "bbox":
        return [{k: v for k, v in r.items() if k not in ("segmentation", "keypoints")} for r in results]
    if iou_type == "segm":
        # without 'bbox', loadRes takes the mask area (not the box area) for the area ranges
        return [{k: v for k, v in r.items() if k not in ("bbox", "keypoints")} for r in results]
    return [{k: v for k, v in r.items() if k != "segmentation"} for r in results if "keypoints" in r]


class _PerCategoryOks(COCOeval):
    """COCOeval whose OKS uses each category's own keypoint sigmas (pycocotools keeps one
    ``params.kpt_oks_sigmas`` for all categories; this sets it per category before each
    ``computeOks`` call, the rest is pycocotools' own code)."""

    sigmas_by_cat: dict[int, tuple[float, ...]]

    @classmethod
    def from_eval(cls, e: COCOeval, sigmas_by_cat: dict[int, tuple[float, ...]]) -> _PerCategoryOks:
        new = cls.__new__(cls)
        new.__dict__.update(e.__dict__)
        new.sigmas_by_cat = sigmas_by_cat
        return new

    def computeOks(self, imgId: int, catId: int):
        if catId in self.sigmas_by_cat:
            self.params.kpt_oks_sigmas = np.asarray(self.sigmas_by_cat[catId], dtype=float)
        return super().computeOks(imgId, catId)


def coco_evaluate(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    iou_types: Sequence[str] = IOU_TYPES,
    area_rng: Mapping[str, tuple[float, float]] | Sequence[tuple[float, float]] | None = None,
    img_ids: Sequence[str] | None = None,
    cat_ids: Sequence[int] | None = None,
    kpt_oks_sigmas: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Run COCOeval for each of ``iou_types`` the data supports, silently.

    ``area_rng``: override COCO's area ranges in pixels² (dict label -> (lo, hi) with labels
    all/small/medium/large, or 4 pairs). ``img_ids``: restrict to these frame ids. ``cat_ids``:
    restrict to these category ids. ``kpt_oks_sigmas``: per-keypoint OKS sigmas for every category
    (default: each category's ``keypoint_sigmas``, else :func:`synthloop.dataset.keypoints.default_sigmas`,
    with a note).

    Returns ``{iou_type: {"stats": {name: value}, "per_class": {name: {...}}, "summary_text": str,
    "num_images": int, "num_detections": int}, "skipped": {iou_type: reason}, "notes": [...]}``.
    Stats: bbox/segm ``AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl``; keypoints
    ``AP AP50 AP75 APm APl AR AR50 AR75 ARm ARl``.
    """
    gt_dict, ids = dataset_gt(ds)
    results = to_coco_results(ds, dets, ids)
    gt = _coco_from_dict(gt_dict)
    out: dict[str, Any] = {"skipped": {}, "notes": []}
    eval_img_ids = _checked_ids(ds, ids, img_ids, cat_ids)
    for iou_type in iou_types:
        reason = _supports(gt_dict, ds, dets, iou_type)
        if reason is not None:
            out["skipped"][iou_type] = reason
            continue
        res = _results_for(iou_type, results)
        dt = _load_results(gt, res)
        with contextlib.redirect_stdout(io.StringIO()):
            E = COCOeval(gt, dt, iou_type)
            if eval_img_ids is not None:
                E.params.imgIds = eval_img_ids
            if cat_ids is not None:
                E.params.catIds = sorted(int(c) for c in cat_ids)
            if iou_type == "keypoints":
                E = _keypoint_eval(E, ds, cat_ids, kpt_oks_sigmas, out["notes"])
            _area_ranges(area_rng, E.params)
            E.evaluate()
            E.accumulate()
        out[iou_type] = _summary(E, ds, iou_type, num_detections=len(res))
    return out


def _checked_ids(
    ds: Dataset, ids: Mapping[str, int], img_ids: Sequence[str] | None, cat_ids: Sequence[int] | None
) -> list[int] | None:
    """The COCO image ids of ``img_ids`` (frame ids; None: all), sorted; raises EvaluationError
    for a frame id or a category id (``cat_ids``) that the dataset lacks."""
    missing = [f for f in img_ids or () if f not in ids]
    if missing:
        raise EvaluationError(f"img_ids not in the dataset: {missing[:5]}")
    known = {c.id for c in ds.categories}
    bad = [c for c in cat_ids or () if c not in known]
    if bad:
        raise EvaluationError(f"cat_ids not in the dataset: {bad}")
    return None if img_ids is None else sorted(ids[f] for f in img_ids)


def _keypoint_eval(
    E: COCOeval,
    ds: Dataset,
    cat_ids: Sequence[int] | None,
    kpt_oks_sigmas: Sequence[float] | None,
    notes: list[str],
) -> COCOeval:
    """``E`` set up for OKS: the categories with keypoints (unless ``cat_ids`` chose), and the
    given sigmas for every category, else each category's own (:class:`_PerCategoryOks`, with a
    note in ``notes`` for categories whose sigmas are guessed)."""
    kp_cats = [c for c in ds.categories if c.keypoints]
    if cat_ids is None:
        E.params.catIds = sorted(c.id for c in kp_cats)
    if kpt_oks_sigmas is not None:
        n_kp = max(len(c.keypoints) for c in kp_cats)
        if len(kpt_oks_sigmas) != n_kp:
            raise EvaluationError(f"kpt_oks_sigmas has {len(kpt_oks_sigmas)} values for {n_kp} keypoints")
        E.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, dtype=float)
        return E
    guessed = [c.name for c in kp_cats if not c.keypoint_sigmas and len(c.keypoints) != 17]
    if guessed:
        notes.append(
            f"keypoints: no keypoint_sigmas for {', '.join(guessed)}; OKS sigma "
            f"{DEFAULT_SIGMA} for each of their keypoints"
        )
    return _PerCategoryOks.from_eval(E, {c.id: category_sigmas(c) for c in kp_cats})


def _summary(E: COCOeval, ds: Dataset, iou_type: str, num_detections: int) -> dict[str, Any]:
    """One iou type's entry of :func:`coco_evaluate`'s result, from an accumulated ``E``."""
    summ = io.StringIO()
    with contextlib.redirect_stdout(summ):
        E.summarize()
    names = KP_STAT_NAMES if iou_type == "keypoints" else BOX_STAT_NAMES
    return {
        "stats": {n: float(v) for n, v in zip(names, E.stats, strict=True)},
        "per_class": _per_class(E, ds),
        "summary_text": summ.getvalue(),
        "num_images": len(E.params.imgIds),
        "num_detections": num_detections,
        "area_rng": {
            lbl: list(map(float, r)) for lbl, r in zip(E.params.areaRngLbl, E.params.areaRng, strict=True)
        },
    }
