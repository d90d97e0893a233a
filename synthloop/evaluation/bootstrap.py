"""How much of a COCO AP is the choice of val images: a percentile bootstrap over images.

With a small val set (fruits-nuts val has 6 photos) two models' APs differ by a few points for no
reason but which images happen to be in it. :func:`bootstrap_coco` resamples the images with
replacement ``resamples`` times and re-runs pycocotools' COCOeval on each resample (an image drawn
``k`` times appears ``k`` times, under new image ids, with its ground truth and its detections),
so the spread is that of COCO's own AP, not of an approximation.

Several detection sets of the same images (models) share the same resamples, which gives paired
differences against the first: ``AP50(b) - AP50(a)`` per resample, and its interval. A paired
interval is much narrower than the two separate ones when the models fail on the same images.

The interval covers evaluation noise only: a model retrained with another seed moves by more
(``docs/results/prune_v2_h200.md``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from pycocotools.cocoeval import COCOeval

from synthloop.dataset.types import Dataset
from synthloop.evaluation.coco_metrics import (
    _coco_from_dict,
    _load_results,
    _results_for,
    _supports,
    dataset_gt,
)
from synthloop.evaluation.detections import EvaluationError, FrameDetections, to_coco_results

STATS = ("AP", "AP50", "AP75")
# keypoints: OKS AP with pycocotools' default sigmas (COCO's 17 person keypoints)
BOOTSTRAP_IOU_TYPES = ("bbox", "segm", "keypoints")


def _stats(gt_dict: dict[str, Any], results: list[dict[str, Any]], iou_type: str) -> np.ndarray:
    """COCOeval's AP, AP50, AP75 (``-1`` = undefined) of ``results`` against ``gt_dict``."""
    gt = _coco_from_dict(gt_dict)
    dt = _load_results(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        e = COCOeval(gt, dt, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats[:3], dtype=np.float64)


def _by_image(items: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """COCO annotations or results grouped by ``image_id``."""
    out: dict[int, list[dict[str, Any]]] = {}
    for x in items:
        out.setdefault(int(x["image_id"]), []).append(x)
    return out


def _resample(
    gt_dict: dict[str, Any],
    gt_by_image: dict[int, list[dict[str, Any]]],
    by_image: list[dict[int, list[dict[str, Any]]]],
    picks: np.ndarray,
) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """GT dict and per-model results for the images ``picks`` (indices into ``gt_dict['images']``);
    ``gt_by_image``/``by_image``: ground truth / each model's results grouped by image id."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    results: list[list[dict[str, Any]]] = [[] for _ in by_image]
    for new_id, i in enumerate(picks.tolist(), start=1):
        img = gt_dict["images"][i]
        images.append({**img, "id": new_id})
        for a in gt_by_image.get(int(img["id"]), []):
            anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
        for m, res in enumerate(by_image):
            results[m].extend({**r, "image_id": new_id} for r in res.get(int(img["id"]), []))
    return {**gt_dict, "images": images, "annotations": anns}, results


def _check(runs: Mapping[str, Any], resamples: int, confidence: float, iou_type: str) -> None:
    if not runs:
        raise EvaluationError("bootstrap needs at least one detection set")
    if resamples < 10:
        raise EvaluationError(f"bootstrap needs at least 10 resamples, got {resamples}", where="resamples")
    if not 0.5 <= confidence < 1:
        raise EvaluationError(f"confidence must be in [0.5, 1), got {confidence}", where="confidence")
    if iou_type not in BOOTSTRAP_IOU_TYPES:
        raise EvaluationError(
            f"bootstrap supports {', '.join(BOOTSTRAP_IOU_TYPES)}, not {iou_type!r}", where="iou_type"
        )


def _sample_stats(
    ds: Dataset,
    runs: Mapping[str, Mapping[str, FrameDetections]],
    resamples: int,
    seed: int,
    iou_type: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(full, samples, num_images)``: COCO AP/AP50/AP75 of each run on the full set, shape
    ``(R, 3)``, and on each resample of the images, shape ``(resamples, R, 3)``; ``-1`` where a
    stat is undefined. Runs are in ``runs``' order and share the resamples."""
    gt_dict, ids = dataset_gt(ds)
    n_img = len(gt_dict["images"])
    if n_img == 0:
        raise EvaluationError("bootstrap needs at least one image")
    full = []
    by_image: list[dict[int, list[dict[str, Any]]]] = []
    for name, dets in runs.items():
        reason = _supports(gt_dict, ds, dets, iou_type)
        if reason is not None:
            raise EvaluationError(f"cannot bootstrap {iou_type} AP of {name!r}: {reason}", where="iou_type")
        res = _results_for(iou_type, to_coco_results(ds, dets, ids))
        full.append(_stats(gt_dict, res, iou_type))
        by_image.append(_by_image(res))
    gt_by_image = _by_image(gt_dict["annotations"])
    rng = np.random.default_rng(seed)
    samples = np.empty((resamples, len(runs), len(STATS)))
    for s in range(resamples):
        gt_s, res_s = _resample(gt_dict, gt_by_image, by_image, rng.integers(0, n_img, n_img))
        for m, res in enumerate(res_s):
            samples[s, m] = _stats(gt_s, res, iou_type)
    return np.asarray(full), samples, n_img


def _summarise(
    names: list[str], full: np.ndarray, samples: np.ndarray, confidence: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Intervals of each column of ``samples`` (``(resamples, M, 3)``; ``-1`` = undefined), of each
    column's paired difference to the first and of its paired ratio to the first, as
    :func:`bootstrap_coco` returns them."""
    q = (1 - confidence) / 2
    out_runs: dict[str, Any] = {}
    for m, name in enumerate(names):
        out_runs[name] = {}
        for k, stat in enumerate(STATS):
            lo, hi = quantile_interval(samples[:, m, k], samples[:, m, k] > -1, q)
            out_runs[name][stat] = {
                "value": None if full[m][k] < 0 else float(full[m][k]),
                "lo": lo,
                "hi": hi,
            }
    diffs: dict[str, Any] = {}
    for m in range(1, len(names)):
        key = f"{names[m]} - {names[0]}"
        diffs[key] = {}
        for k, stat in enumerate(STATS):
            ok = (samples[:, m, k] > -1) & (samples[:, 0, k] > -1)
            d = samples[:, m, k] - samples[:, 0, k]
            lo, hi = quantile_interval(d, ok, q)
            value = None if min(full[m][k], full[0][k]) < 0 else float(full[m][k] - full[0][k])
            p = float(np.mean(d[ok] <= 0)) if ok.any() else None
            diffs[key][stat] = {"value": value, "lo": lo, "hi": hi, "p_not_above_zero": p}
    ratios = {
        f"{names[m]} / {names[0]}": {
            stat: _ratio(full[m][k], full[0][k], samples[:, m, k], samples[:, 0, k], q)
            for k, stat in enumerate(STATS)
        }
        for m in range(1, len(names))
    }
    return out_runs, diffs, ratios


def quantile_interval(values: np.ndarray, defined: np.ndarray, q: float) -> tuple[float | None, float | None]:
    """The ``q`` and ``1 - q`` quantiles of ``values[defined]``; ``(None, None)`` if none is."""
    v = values[defined]
    if v.size == 0:
        return None, None
    return float(np.quantile(v, q)), float(np.quantile(v, 1 - q))


def _ratio(full_b: float, full_a: float, b: np.ndarray, a: np.ndarray, q: float) -> dict[str, float | None]:
    """B's stat as a share of A's: ``value`` on the full set, ``lo``/``hi`` over the resamples
    where both are defined and A's is above 0, ``defined_share`` the share of such resamples (a
    ratio to an A of about 0 is undefined on many resamples, and its interval says little)."""
    ok = (b > -1) & (a > 0)
    lo, hi = quantile_interval(np.where(ok, b, 0.0) / np.where(ok, a, 1.0), ok, q)
    value = float(full_b / full_a) if full_b > -1 and full_a > 0 else None
    return {"value": value, "lo": lo, "hi": hi, "defined_share": float(ok.mean()) if ok.size else 0.0}


def bootstrap_coco(
    ds: Dataset,
    runs: Mapping[str, Mapping[str, FrameDetections]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """Percentile-bootstrap intervals of COCO AP, AP50, AP75 for each of ``runs`` (name ->
    detections of ``ds``'s frames), and of each run's difference to the first run.

    Returns ``{"resamples", "confidence", "seed", "iou_type", "num_images", "runs": {name: {stat:
    {"value", "lo", "hi"}}}, "differences": {"B - A": {stat: {"value", "lo", "hi",
    "p_not_above_zero"}}}}``: ``value`` on the full set, ``lo``/``hi`` the interval's ends over the
    resamples where the stat is defined, ``p_not_above_zero`` the share of resamples where B is
    not better than A. All values are in AP units (0..1). ``"ratios": {"B / A": {stat: {"value",
    "lo", "hi", "defined_share"}}}``: B's stat as a share of A's, paired per resample (see
    :func:`_ratio`)."""
    _check(runs, resamples, confidence, iou_type)
    full, samples, n_img = _sample_stats(ds, runs, resamples, seed, iou_type)
    return _result(list(runs), full, samples, n_img, resamples, seed, confidence, iou_type)


def bootstrap_arms(
    ds: Dataset,
    arms: Mapping[str, Mapping[str, Mapping[str, FrameDetections]]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    iou_type: str = "bbox",
) -> dict[str, Any]:
    """Like :func:`bootstrap_coco` for arms of an experiment: ``arms`` maps an arm's name to its
    runs (e.g. one model per training seed, name -> detections). On the full set and on every
    resample of the images, an arm's stat is the mean over its runs (runs whose stat is undefined
    there are left out), so an arm's interval holds both the evaluation noise of the small val set
    and the spread over seeds that the mean smooths; differences are paired against the first arm.
    The result has bootstrap_coco's keys, with ``runs`` holding the arms, plus ``members``."""
    flat = {f"{arm}/{run}": dets for arm, runs in arms.items() for run, dets in runs.items()}
    _check(flat, resamples, confidence, iou_type)
    if any(not runs for runs in arms.values()):
        raise EvaluationError("every arm needs at least one run", where="arms")
    full, samples, n_img = _sample_stats(ds, flat, resamples, seed, iou_type)
    cols: list[np.ndarray] = []
    full_cols: list[np.ndarray] = []
    start = 0
    for runs in arms.values():
        block = slice(start, start + len(runs))
        start += len(runs)
        cols.append(_mean_defined(samples[:, block, :], axis=1))
        full_cols.append(_mean_defined(full[None, block, :], axis=1)[0])
    out = _result(
        list(arms), np.stack(full_cols), np.stack(cols, axis=1), n_img, resamples, seed, confidence, iou_type
    )
    out["members"] = {arm: list(runs) for arm, runs in arms.items()}
    return out


def _result(
    names: list[str],
    full: np.ndarray,
    samples: np.ndarray,
    num_images: int,
    resamples: int,
    seed: int,
    confidence: float,
    iou_type: str,
) -> dict[str, Any]:
    """The dict :func:`bootstrap_coco` returns, from :func:`_summarise` of ``full``/``samples``."""
    out_runs, diffs, ratios = _summarise(names, full, samples, confidence)
    return {
        "resamples": resamples,
        "confidence": confidence,
        "seed": seed,
        "iou_type": iou_type,
        "num_images": num_images,
        "runs": out_runs,
        "differences": diffs,
        "ratios": ratios,
    }


def _mean_defined(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean of ``x`` over ``axis`` ignoring ``-1`` (undefined) entries; ``-1`` where all are."""
    ok = x > -1
    n = ok.sum(axis=axis)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    return np.where(n > 0, total / np.maximum(n, 1), -1.0)


def format_bootstrap(b: Mapping[str, Any], stat: str = "AP50") -> str:
    """A few lines: each run's ``stat`` with its interval, then the paired differences."""
    pct = int(round(b["confidence"] * 100))

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        f"bootstrap over {b['num_images']} images, {b['resamples']} resamples, {pct}% intervals ({stat}):"
    ]
    for name, r in b["runs"].items():
        s = r[stat]
        lines.append(f"  {name}: {f(s['value'])} [{f(s['lo'])}, {f(s['hi'])}]")
    for key, d in b["differences"].items():
        s = d[stat]
        lines.append(f"  {key}: {f(s['value'])} [{f(s['lo'])}, {f(s['hi'])}]")
    return "\n".join(lines)
