"""Slices: per-object outcomes, size/occlusion/scene-param bins, slice recall/AP, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.slices import SliceTable, compute_slices, numeric_or_categorical_binning

CATS = [Category(1, "nut")]
LARGE = (0.0, 0.0, 120.0, 120.0)  # area 14400 >= 96^2
SMALL = (150.0, 150.0, 160.0, 160.0)  # area 100 < 32^2


def _obj(box, occlusion=None, **attrs) -> ObjectAnnotation:
    return ObjectAnnotation(
        1, box, (box[2] - box[0]) * (box[3] - box[1]), occlusion=occlusion, truncation=0.0, attributes=attrs
    )


def _frame(i: int, objects) -> Frame:
    params = {"light": float(i), "bg": "wood" if i % 2 else "marble", "n_lamps": 1 + i % 2}
    return Frame(f"{i:06d}", Path(f"/nonexistent/{i}.png"), 200, 200, objects, scene_params=params)


def _fd(fid: str, rows) -> FrameDetections:
    return FrameDetections(
        fid,
        np.array([r[0] for r in rows], dtype=np.float32).reshape(-1, 4),
        np.array([r[1] for r in rows], dtype=np.float32),
        np.ones(len(rows), dtype=np.int64),
    )


def test_small_objects_all_missed() -> None:
    frames = [_frame(i, [_obj(LARGE, 0.0, hue=i / 10), _obj(SMALL, 0.6, hue=i / 10)]) for i in range(6)]
    ds = Dataset(CATS, frames)
    dets = Detections.from_frames([_fd(f.frame_id, [(LARGE, 0.9)]) for f in frames])
    t = compute_slices(ds, dets)
    size = t.by_group("size")
    assert set(size) == {"small", "large"}
    assert (size["small"].recall, size["small"].ap, size["small"].num_gt) == (0.0, 0.0, 6)
    assert (size["large"].recall, size["large"].ap, size["large"].num_gt) == (1.0, 1.0, 6)
    occ = t.by_group("occlusion")
    assert occ["[0, 0.1)"].recall == 1.0 and occ["[0.5, 1]"].recall == 0.0
    assert t.by_group("truncation")["[0, 0.05)"].recall == 0.5
    # per-object rows
    assert len(t.objects) == 12
    large_rows = [r for r in t.objects if r["slices"]["size"] == "large"]
    assert all(r["matched"] and r["iou"] == 1.0 and r["det_index"] == 0 for r in large_rows)
    small_rows = [r for r in t.objects if r["slices"]["size"] == "small"]
    assert all(not r["matched"] and r["det_index"] is None and r["best_iou"] == 0.0 for r in small_rows)
    assert small_rows[0]["scene_params"]["bg"] == "marble" and "hue" in small_rows[0]["attributes"]
    assert "attr.hue" in t.binnings
    # worst slices first
    assert t.worst("recall")[0].recall == 0.0


def _scene_case() -> tuple[Dataset, Detections]:
    """8 frames, light = 0..7, one large object each; found only where light >= 4 (score 0.9);
    one small false positive (score 0.95) in the light = 7 frame."""
    frames = [_frame(i, [_obj(LARGE, 0.0)]) for i in range(8)]
    rows = {i: [(LARGE, 0.9)] if i >= 4 else [] for i in range(8)}
    rows[7].append(((180.0, 180.0, 190.0, 190.0), 0.95))
    dets = Detections.from_frames([_fd(f"{i:06d}", r) for i, r in rows.items()])
    return Dataset(CATS, frames), dets


def test_scene_param_quantile_bins() -> None:
    ds, dets = _scene_case()
    t = compute_slices(ds, dets, n_bins=4)
    b = t.binnings["scene.light"]
    assert b.method == "quantile" and b.edges == [0.0, 1.75, 3.5, 5.25, 7.0]
    light = t.by_group("scene.light")
    assert list(light) == ["[0, 1.75)", "[1.75, 3.5)", "[3.5, 5.25)", "[5.25, 7]"]
    assert [s.num_gt for s in light.values()] == [2, 2, 2, 2]
    assert [s.recall for s in light.values()] == [0.0, 0.0, 1.0, 1.0]
    # the false positive lands in its frame's bin only: [5.25, 7] ranks FP, TP, TP with 2 GT:
    # recall 0, 1/2, 1 and precision 0, 1/2, 2/3 -> envelope 2/3 over [0, 1] -> AP 2/3.
    assert light["[3.5, 5.25)"].ap == 1.0
    assert light["[5.25, 7]"].ap == pytest.approx(2 / 3) and light["[5.25, 7]"].num_dets == 3
    # categorical params by value; few distinct numeric values are categorical too
    bg = t.by_group("scene.bg")
    assert (bg["marble"].recall, bg["wood"].recall) == (0.5, 0.5)
    assert t.binnings["scene.n_lamps"].method == "categorical"
    assert set(t.by_group("scene.n_lamps")) == {"1", "2"}
    # size: the small false positive goes to 'small' (no GT there); 'large' has 4 TP of 8 GT, no FP,
    # so its AP equals its recall, 1/2
    size = t.by_group("size")
    assert (
        size["large"].ap == 0.5
        and size["large"].num_dets == 4
        and size["small"].num_gt == 0
        and size["small"].ap is None
    )
    # occlusion: a false positive has no occlusion value, so it counts in every occlusion bin:
    # FP, then 4 TP of 8 GT -> precision at recall 1/2 is 4/5 -> AP 0.4
    assert t.by_group("occlusion")["[0, 0.1)"].ap == pytest.approx(0.4)


def test_fixed_width_bins_and_explicit_edges() -> None:
    ds, dets = _scene_case()
    t = compute_slices(ds, dets, n_bins=2, scene_binning="fixed")
    assert t.binnings["scene.light"].edges == [0.0, 3.5, 7.0]
    assert [s.recall for s in t.by_group("scene.light").values()] == [0.0, 1.0]
    t2 = compute_slices(ds, dets, param_edges={"light": [0, 5, 10]})
    light = t2.by_group("scene.light")
    assert (light["[0, 5)"].num_gt, light["[0, 5)"].recall) == (5, pytest.approx(1 / 5))
    assert (light["[5, 10]"].num_gt, light["[5, 10]"].recall) == (3, 1.0)


def test_unknown_bins_and_score_threshold() -> None:
    ds, dets = _scene_case()
    ds.frames[0].objects[0].occlusion = None
    ds.frames[0].scene_params.pop("light")
    t = compute_slices(ds, dets, score_thr=0.95)
    assert t.by_group("occlusion")["unknown"].num_gt == 1
    assert t.by_group("scene.light")["unknown"].num_gt == 1
    # no true positive has score >= 0.95: recall is 0 everywhere though matches exist
    assert all(s.recall in (0.0, None) for s in t.slices)
    assert sum(r["det_index"] is not None for r in t.objects) == 4


def test_binning_helper() -> None:
    b = numeric_or_categorical_binning("g", "scene_param", "frame", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert b.edges == [0.0, pytest.approx(5 / 3), pytest.approx(10 / 3), 5.0]
    assert [b.assign(v) for v in (0.0, 1.7, 5.0, 99.0, -1.0, None)] == [
        b.labels[0],
        b.labels[1],
        b.labels[2],
        b.labels[2],
        b.labels[0],
        "unknown",
    ]
    c = numeric_or_categorical_binning("g", "scene_param", "frame", [True, False, None], 4)
    assert c.method == "categorical" and c.assign(True) == "True"


def test_slice_table_json_round_trip(tmp_path: Path) -> None:
    ds, dets = _scene_case()
    ds.frames[0].objects[0].attributes["tint"] = np.float32(0.25)  # numpy scalars become plain JSON
    t = compute_slices(ds, dets)
    text = t.to_json()
    back = SliceTable.from_json(text)
    assert back.to_dict() == json.loads(text) == t.to_dict()
    assert back.by_group("scene.light")["[5.25, 7]"].ap == pytest.approx(2 / 3)
    assert back.binnings["size"].edges[-1] == float("inf")
    assert back.binnings["size"].assign(50.0**2) == "medium"
    p = t.save(tmp_path / "slices.json")
    assert SliceTable.load(p).to_dict() == t.to_dict()
    assert not list(tmp_path.glob(".tmp-*"))


def test_duplicate_goes_to_the_slice_of_the_gt_it_duplicates() -> None:
    # GT 100x100 (area 10000: large). TP = the GT box (0.9); duplicate 100x60 (IoU 0.6, own area 6000
    # would be 'medium') at 0.8 -> counted as a FP of 'large': TP, FP with 1 GT -> AP 1, 2 dets.
    gt = (0.0, 0.0, 100.0, 100.0)
    ds = Dataset(CATS, [_frame(0, [_obj(gt, 0.0)])])
    dets = Detections.from_frames([_fd("000000", [(gt, 0.9), ((0.0, 0.0, 100.0, 60.0), 0.8)])])
    size = compute_slices(ds, dets).by_group("size")
    assert set(size) == {"large"} and size["large"].num_dets == 2 and size["large"].ap == 1.0
    # the same box without the TP before it is a plain TP (IoU 0.6 >= 0.5) in 'large'
    dets2 = Detections.from_frames([_fd("000000", [((0.0, 0.0, 100.0, 60.0), 0.8)])])
    assert compute_slices(ds, dets2).by_group("size")["large"].recall == 1.0
    # a FP far from any GT uses its own box area: 60x60 = 3600 -> 'medium'
    dets3 = Detections.from_frames([_fd("000000", [(gt, 0.9), ((130.0, 130.0, 190.0, 190.0), 0.95)])])
    size3 = compute_slices(ds, dets3).by_group("size")
    assert size3["medium"].num_dets == 1 and size3["large"].ap == 1.0
