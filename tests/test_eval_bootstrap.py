"""Bootstrap intervals of COCO AP over val images (synthloop.evaluation.bootstrap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.bootstrap import (
    _by_image,
    _resample,
    _stats,
    bootstrap_arms,
    bootstrap_coco,
    format_bootstrap,
)
from synthloop.evaluation.coco_metrics import coco_evaluate, dataset_gt
from synthloop.evaluation.detections import Detections, EvaluationError, FrameDetections, to_coco_results

CATS = [Category(1, "A"), Category(2, "B")]


def _dataset(n: int = 6) -> Dataset:
    frames = []
    for i in range(n):
        objs = [
            ObjectAnnotation(1 + (i + k) % 2, (10.0 + 20 * k, 10.0, 25.0 + 20 * k, 30.0 + i), 15.0 * (20 + i))
            for k in range(3)
        ]
        frames.append(Frame(f"f{i}", Path(f"/nonexistent/f{i}.png"), 100, 100, objs))
    return Dataset(CATS, frames)


def _dets(ds: Dataset, found: set[int], shift: float = 0.0) -> Detections:
    """The ground truth as detections (score 0.9, boxes shifted by ``shift`` px) on frames ``found``;
    elsewhere one false box."""
    out = []
    for i, f in enumerate(ds.frames):
        if i in found:
            boxes = [np.asarray(o.bbox) + shift for o in f.objects]
            labels = [o.category_id for o in f.objects]
        else:
            boxes, labels = [[60.0, 60.0, 90.0, 90.0]], [1]
        out.append(
            FrameDetections(f.frame_id, np.asarray(boxes), np.full(len(boxes), 0.9), np.asarray(labels))
        )
    return Detections.from_frames(out)


def test_values_match_coco_evaluate_and_intervals_behave():
    ds = _dataset()
    perfect, half = _dets(ds, set(range(6))), _dets(ds, {0, 1, 2})
    b = bootstrap_coco(ds, {"perfect": perfect, "half": half}, resamples=200, seed=1)
    assert b["num_images"] == 6 and b["resamples"] == 200
    ap50_half = coco_evaluate(ds, half, iou_types=("bbox",))["bbox"]["stats"]["AP50"]
    h = b["runs"]["half"]["AP50"]
    assert h["value"] == pytest.approx(ap50_half)
    assert h["lo"] < h["value"] < h["hi"]  # which frames are drawn matters for "half"
    assert b["runs"]["perfect"]["AP50"] == {"value": 1.0, "lo": 1.0, "hi": 1.0}  # ... not for "perfect"
    d = b["differences"]["half - perfect"]["AP50"]
    assert d["value"] == pytest.approx(ap50_half - 1.0)
    assert d["hi"] <= 0 and d["p_not_above_zero"] == 1.0
    # "perfect" is 1 on every resample, so the ratio is "half" itself, resample by resample
    r = b["ratios"]["half / perfect"]["AP50"]
    assert r == {"value": pytest.approx(ap50_half), "lo": h["lo"], "hi": h["hi"], "defined_share": 1.0}
    inverse = bootstrap_coco(ds, {"half": half, "perfect": perfect}, resamples=200, seed=1)
    r = inverse["ratios"]["perfect / half"]["AP50"]
    assert r["value"] == pytest.approx(1 / ap50_half) and r["lo"] == pytest.approx(1 / h["hi"])
    text = format_bootstrap(b)
    assert "half - perfect" in text and "200 resamples" in text
    # the same seed gives the same intervals
    assert bootstrap_coco(ds, {"half": half}, resamples=200, seed=1)["runs"]["half"] == b["runs"]["half"]


def test_a_resample_equals_cocoeval_on_the_dataset_with_repeated_frames():
    """Drawing frame 0 twice and frame 3 once must score like a dataset that holds those frames."""
    ds = _dataset()
    dets = _dets(ds, {0, 1}, shift=3.0)
    gt, ids = dataset_gt(ds)
    res = to_coco_results(ds, dets, ids)
    gt_s, (res_s,) = _resample(gt, _by_image(gt["annotations"]), [_by_image(res)], np.array([0, 0, 3]))
    got = _stats(gt_s, res_s, "bbox")
    f0, f3 = ds.frames[0], ds.frames[3]
    twin = Frame("f0b", f0.image_path, f0.width, f0.height, list(f0.objects))
    ds2 = Dataset(CATS, [f0, twin, f3])
    d0 = dets["f0"]
    dets2 = Detections.from_frames([d0, FrameDetections("f0b", d0.boxes, d0.scores, d0.labels), dets["f3"]])
    want = coco_evaluate(ds2, dets2, iou_types=("bbox",))["bbox"]["stats"]
    assert got.tolist() == pytest.approx([want["AP"], want["AP50"], want["AP75"]])
    assert 0 < want["AP50"] < 1


def test_bad_arguments():
    ds = _dataset(2)
    dets = _dets(ds, {0})
    with pytest.raises(EvaluationError, match="resamples"):
        bootstrap_coco(ds, {"a": dets}, resamples=5)
    with pytest.raises(EvaluationError, match="keypoints"):
        bootstrap_coco(ds, {"a": dets}, resamples=10, iou_type="keypoints")
    with pytest.raises(EvaluationError, match="cannot bootstrap segm"):
        bootstrap_coco(ds, {"a": dets}, resamples=10, iou_type="segm")  # ground truth has no masks
    with pytest.raises(EvaluationError, match="at least one"):
        bootstrap_coco(ds, {}, resamples=10)


def _box_rle(box, h: int = 100, w: int = 100) -> dict:
    from pycocotools import mask as mask_utils

    m = np.zeros((h, w), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    m[y1:y2, x1:x2] = 1
    rle = mask_utils.encode(m)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def test_segm_intervals_use_the_masks():
    base = _dataset()
    frames = [
        Frame(
            f.frame_id,
            f.image_path,
            f.width,
            f.height,
            [ObjectAnnotation(o.category_id, o.bbox, o.area, mask=_box_rle(o.bbox)) for o in f.objects],
        )
        for f in base.frames
    ]
    ds = Dataset(CATS, frames)
    boxed = _dets(ds, {0, 1, 2, 3}, shift=2.0)
    dets = Detections.from_frames(
        FrameDetections(fd.frame_id, fd.boxes, fd.scores, fd.labels, masks=[_box_rle(b) for b in fd.boxes])
        for fd in (boxed[f.frame_id] for f in ds.frames)
    )
    b = bootstrap_coco(ds, {"m": dets}, resamples=50, iou_type="segm")
    want = coco_evaluate(ds, dets, iou_types=("segm",))["segm"]["stats"]
    got = b["runs"]["m"]
    assert [got[s]["value"] for s in ("AP", "AP50", "AP75")] == pytest.approx(
        [want["AP"], want["AP50"], want["AP75"]]
    )
    assert b["iou_type"] == "segm" and got["AP"]["lo"] <= got["AP"]["value"] <= got["AP"]["hi"]


def test_arm_means_pair_resamples_and_average_their_runs():
    """An arm's value is the mean of its runs' values on every resample: an arm of one perfect and
    one half-right model sits halfway between the two single-model arms, on the full set and in
    each interval's ends; differences are paired against the first arm."""
    ds = _dataset()
    perfect, half = _dets(ds, set(range(6))), _dets(ds, {0, 1, 2})
    arms = {"perfect": {"p": perfect}, "mixed": {"p": perfect, "h": half}, "half": {"h": half}}
    b = bootstrap_arms(ds, arms, resamples=100, seed=3)
    single = bootstrap_coco(ds, {"perfect": perfect, "half": half}, resamples=100, seed=3)
    assert b["members"] == {"perfect": ["p"], "mixed": ["p", "h"], "half": ["h"]}
    h, m = single["runs"]["half"]["AP50"], b["runs"]["mixed"]["AP50"]
    assert b["runs"]["half"]["AP50"] == h  # same resamples as bootstrap_coco with the same seed
    assert m["value"] == pytest.approx((1.0 + h["value"]) / 2)
    assert m["lo"] == pytest.approx((1.0 + h["lo"]) / 2) and m["hi"] == pytest.approx((1.0 + h["hi"]) / 2)
    d = b["differences"]["mixed - perfect"]["AP50"]
    assert d["value"] == pytest.approx((h["value"] - 1.0) / 2) and d["hi"] <= 0
    with pytest.raises(EvaluationError):
        bootstrap_arms(ds, {"a": {"p": perfect}, "empty": {}}, resamples=10)
