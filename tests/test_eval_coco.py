"""COCO metrics parity: synthloop's coco_evaluate vs pycocotools run directly on the original JSON."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.coco_metrics import BOX_STAT_NAMES, KP_STAT_NAMES, coco_evaluate
from synthloop.evaluation.detections import Detections, EvaluationError, FrameDetections, to_coco_results

COCO128 = REAL / "coco128" / "instances.json"

needs_coco128 = pytest.mark.skipif(not COCO128.exists(), reason=f"real data not found at {COCO128}")


def _box_rle(box: np.ndarray, h: int, w: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    rle = mask_utils.merge(mask_utils.frPyObjects([[x1, y1, x2, y1, x2, y2, x1, y2]], h, w))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def perturbed_detections(gt: dict, seed: int) -> dict[int, FrameDetections]:
    """GT boxes jittered (sd 8% of size), 20% dropped, a few duplicates, 0-3 false boxes per image,
    uniform random scores; masks are the detection boxes rasterized. Keyed by COCO image id."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    by_img: dict[int, list] = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        by_img[a["image_id"]].append(a)
    out = {}
    for img in gt["images"]:
        h, w = img["height"], img["width"]
        boxes, labels = [], []
        for a in by_img[img["id"]]:
            if rng.random() < 0.2:
                continue
            x, y, bw, bh = a["bbox"]
            j = rng.normal(0.0, 0.08, 4) * np.array([bw, bh, bw, bh])
            x1, y1 = np.clip([x + j[0], y + j[1]], 0, [w - 1, h - 1])
            x2, y2 = max(x1 + 1, x + bw + j[2]), max(y1 + 1, y + bh + j[3])
            boxes.append([x1, y1, min(x2, w), min(y2, h)])
            labels.append(a["category_id"])
            if rng.random() < 0.1:  # duplicate
                boxes.append(boxes[-1])
                labels.append(labels[-1])
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
            bw, bh = rng.uniform(4, w - x1), rng.uniform(4, h - y1)
            boxes.append([x1, y1, x1 + bw, y1 + bh])
            labels.append(int(rng.choice(cat_ids)))
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out[img["id"]] = FrameDetections(
            frame_id=str(img["id"]),
            boxes=b,
            scores=rng.uniform(0.01, 1.0, len(b)).astype(np.float32),
            labels=np.asarray(labels, dtype=np.int64),
            masks=[_box_rle(bb, h, w) for bb in b],
        )
    return out


def direct_results(dets: dict[int, FrameDetections], iou_type: str) -> list[dict]:
    """COCO results written independently of synthloop (float32 xyxy -> float64 xywh)."""
    res = []
    for img_id, fd in dets.items():
        for i in range(len(fd)):
            x1, y1, x2, y2 = (float(v) for v in fd.boxes[i])
            r = {"image_id": img_id, "category_id": int(fd.labels[i]), "score": float(fd.scores[i])}
            if iou_type == "bbox":
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                r["segmentation"] = dict(fd.masks[i])
            res.append(r)
    return res


def direct_cocoeval(gt_path: Path, results: list[dict], iou_type: str, **params) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(copy.deepcopy(results))
        E = COCOeval(gt, dt, iou_type)
        for k, v in params.items():
            setattr(E.params, k, v)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats


def _coco128_dataset() -> Dataset:
    from synthloop.importers.coco import load_coco

    return load_coco(COCO128)


@needs_coco128
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_coco128_bbox_and_segm(seed: int) -> None:
    gt = json.loads(COCO128.read_text())
    dets_by_img = perturbed_detections(gt, seed)
    ds = _coco128_dataset()
    assert {f.frame_id for f in ds.frames} == {str(i) for i in dets_by_img}
    dets = Detections.from_frames(dets_by_img.values())
    ours = coco_evaluate(ds, dets, iou_types=("bbox", "segm", "keypoints"))
    assert "keypoints" in ours["skipped"]  # coco128 has no keypoints
    for iou_type in ("bbox", "segm"):
        ref = direct_cocoeval(COCO128, direct_results(dets_by_img, iou_type), iou_type)
        got = np.array([ours[iou_type]["stats"][n] for n in BOX_STAT_NAMES])
        assert np.array_equal(got, ref), (iou_type, got, ref)
        assert 0.2 < ref[1] < 0.95  # AP50: the perturbation is neither trivial nor hopeless
        assert "Average Precision" in ours[iou_type]["summary_text"]
    # per-class AP averages to the overall AP over classes with GT (how COCOeval's AP is defined)
    pc = [v["AP"] for v in ours["bbox"]["per_class"].values() if v["AP"] is not None]
    assert np.isclose(np.mean(pc), ours["bbox"]["stats"]["AP"])


@needs_coco128
def test_parity_coco128_subsets_and_area_ranges() -> None:
    gt = json.loads(COCO128.read_text())
    dets_by_img = perturbed_detections(gt, 7)
    ds = _coco128_dataset()
    dets = Detections.from_frames(dets_by_img.values())
    img_sub = sorted(dets_by_img)[::3]
    cat_sub = [1, 3, 62]
    rng = [[0, 1e10], [0, 48**2], [48**2, 128**2], [128**2, 1e10]]
    ours = coco_evaluate(
        ds,
        dets,
        iou_types=("bbox",),
        img_ids=[str(i) for i in img_sub],
        cat_ids=cat_sub,
        area_rng={"small": (0, 48**2), "medium": (48**2, 128**2), "large": (128**2, 1e10), "all": (0, 1e10)},
    )
    ref = direct_cocoeval(
        COCO128, direct_results(dets_by_img, "bbox"), "bbox", imgIds=img_sub, catIds=cat_sub, areaRng=rng
    )
    got = np.array([ours["bbox"]["stats"][n] for n in BOX_STAT_NAMES])
    assert np.array_equal(got, ref)
    assert set(ours["bbox"]["per_class"]) == {"person", "car", "chair"}
    assert ours["bbox"]["num_images"] == len(img_sub)


def _kp_dataset(rng: np.random.Generator) -> tuple[Dataset, Detections, dict]:
    """Two 17-keypoint persons per frame; detections = GT keypoints + noise. Returns (ds, dets, GT dict)."""
    names = tuple(f"k{i}" for i in range(17))
    cats = [Category(1, "person", keypoints=names)]
    frames, images, anns, det_frames = [], [], [], []
    for f in range(4):
        objs, boxes, kps = [], [], []
        for _ in range(2):
            x1, y1 = rng.uniform(0, 100, 2)
            bw, bh = rng.uniform(40, 90, 2)
            pts = np.stack([rng.uniform(x1, x1 + bw, 17), rng.uniform(y1, y1 + bh, 17)], 1)
            vis = rng.choice([0, 1, 2], 17, p=[0.2, 0.3, 0.5])
            kp = tuple(
                (0.0, 0.0, 0) if v == 0 else (float(u), float(w), int(v))
                for (u, w), v in zip(pts, vis, strict=True)
            )
            box = (float(x1), float(y1), float(x1 + bw), float(y1 + bh))
            objs.append(ObjectAnnotation(1, box, float(bw * bh), keypoints=kp))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": f + 1,
                    "category_id": 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                    "keypoints": [float(v) for k in kp for v in k],
                    "num_keypoints": int(sum(v > 0 for v in vis)),
                }
            )
            boxes.append(box)
            kps.append(np.concatenate([pts + rng.normal(0, 3, pts.shape), np.ones((17, 1))], 1))
        frames.append(Frame(str(100 + f), Path(f"/nonexistent/{f}.png"), 200, 200, objs))
        images.append({"id": f + 1, "width": 200, "height": 200, "file_name": f"{f}.png"})
        det_frames.append(
            FrameDetections(str(100 + f), boxes, rng.uniform(0.3, 1, 2), [1, 1], keypoints=np.stack(kps))
        )
    cat_d = [{"id": 1, "name": "person", "supercategory": "", "keypoints": list(names), "skeleton": []}]
    gt = {"images": images, "annotations": anns, "categories": cat_d}
    return Dataset(cats, frames), Detections.from_frames(det_frames), gt


def test_keypoints_parity_on_constructed_data(tmp_path: Path) -> None:
    ds, dets, gt = _kp_dataset(np.random.default_rng(3))
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    ours = coco_evaluate(ds, dets, iou_types=("bbox", "keypoints", "segm"))
    assert "segm" in ours["skipped"]
    res = [{k: v for k, v in r.items() if k != "segmentation"} for r in to_coco_results(ds, dets)]
    ref = direct_cocoeval(gt_path, res, "keypoints")
    got = np.array([ours["keypoints"]["stats"][n] for n in KP_STAT_NAMES])
    assert np.array_equal(got, ref)
    assert 0.0 < ref[0] < 1.0


def test_no_detections_gives_zero_ap_and_bad_input_raises() -> None:
    ds, _, _ = _kp_dataset(np.random.default_rng(0))
    out = coco_evaluate(ds, Detections(), iou_types=("bbox",))
    assert out["bbox"]["stats"]["AP"] == 0.0 and out["bbox"]["stats"]["AR100"] == 0.0
    bad = Detections.from_frames([FrameDetections("100", [[0, 0, 5, 5]], [0.9], [7])])
    with pytest.raises(EvaluationError, match="7"):
        coco_evaluate(ds, bad, iou_types=("bbox",))
    with pytest.raises(EvaluationError, match="nope"):
        coco_evaluate(ds, Detections.from_frames([FrameDetections.empty("nope")]))
    with pytest.raises(EvaluationError, match="iou type"):
        coco_evaluate(ds, Detections(), iou_types=("boxes",))


def test_keypoints_use_each_categorys_sigmas(tmp_path: Path) -> None:
    """A category's keypoint_sigmas replace pycocotools' person defaults (parity with COCOeval given
    the same sigmas); categories with different keypoint counts evaluate together."""
    ds, dets, gt = _kp_dataset(np.random.default_rng(3))
    sigmas = tuple(np.linspace(0.05, 0.2, 17))
    ds.categories = [dataclasses.replace(ds.categories[0], keypoint_sigmas=sigmas)]
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    res = [{k: v for k, v in r.items() if k != "segmentation"} for r in to_coco_results(ds, dets)]
    ours = coco_evaluate(ds, dets, iou_types=("keypoints",))
    got = np.array([ours["keypoints"]["stats"][n] for n in KP_STAT_NAMES])
    assert np.array_equal(got, direct_cocoeval(gt_path, res, "keypoints", kpt_oks_sigmas=np.array(sigmas)))
    assert not np.array_equal(got, direct_cocoeval(gt_path, res, "keypoints"))  # the sigmas matter
    # a second class with 3 keypoints and its own sigmas, evaluated in the same run
    tri = Category(2, "tri", keypoints=("a", "b", "c"), keypoint_sigmas=(0.1, 0.1, 0.1))
    ds.categories.append(tri)
    box = (10.0, 10.0, 60.0, 60.0)
    kp = ((20.0, 20.0, 2), (40.0, 30.0, 2), (30.0, 50.0, 2))
    ds.frames[0].objects.append(ObjectAnnotation(2, box, 2500.0, keypoints=kp))
    out = coco_evaluate(ds, dets, iou_types=("keypoints",))
    assert not out["notes"]  # every category has its sigmas: no default guessed
    assert out["keypoints"]["per_class"]["person"]["AP"] == pytest.approx(got[0], abs=1e-9)
