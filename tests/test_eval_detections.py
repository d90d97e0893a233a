"""Detections type: validation, atomic JSON round trip, COCO results conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.evaluation.detections import (
    Detections,
    DetectionsError,
    EvaluationError,
    FrameDetections,
    to_coco_results,
)


def _rle(h: int, w: int, box: tuple[int, int, int, int]) -> dict:
    m = np.zeros((h, w), np.uint8, order="F")
    m[box[1] : box[3], box[0] : box[2]] = 1
    return mask_utils.encode(m)  # counts as bytes, as pycocotools returns it


def _sample() -> Detections:
    rng = np.random.default_rng(0)
    a = FrameDetections(
        "000001",
        boxes=[[1.5, 2.25, 10.0, 20.0], [0, 0, 3, 3]],
        scores=[0.9, 0.1],
        labels=[2, 1],
        masks=[_rle(30, 40, (1, 2, 10, 20)), _rle(30, 40, (0, 0, 3, 3))],
        keypoints=rng.uniform(0, 30, (2, 3, 3)),
    )
    return Detections.from_frames([a, FrameDetections.empty("000002")])


def test_json_round_trip_is_exact_and_atomic(tmp_path: Path) -> None:
    dets = _sample()
    p = dets.save(tmp_path / "dets.json")
    back = Detections.load(p)
    assert list(back) == ["000001", "000002"]
    a, b = dets["000001"], back["000001"]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert b.boxes.dtype == np.float32 and b.labels.dtype == np.int64
    assert b.masks == a.masks and isinstance(b.masks[0]["counts"], str)
    assert mask_utils.area(b.masks[0]) == 9 * 18
    assert len(back["000002"]) == 0 and back["000002"].boxes.shape == (0, 4)
    assert p.read_bytes() == back.save(tmp_path / "again.json").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))


def test_validation_errors_name_the_place(tmp_path: Path) -> None:
    with pytest.raises(DetectionsError, match="frame 'x'.*lengths differ"):
        FrameDetections("x", [[0, 0, 1, 1]], [0.5, 0.6], [1])
    with pytest.raises(DetectionsError, match="x2 >= x1"):
        FrameDetections("x", [[5, 0, 1, 1]], [0.5], [1])
    with pytest.raises(DetectionsError, match="integer"):
        FrameDetections("x", [[0, 0, 1, 1]], [0.5], [1.5])
    with pytest.raises(DetectionsError, match="keypoints"):
        FrameDetections("x", [[0, 0, 1, 1]], [0.5], [1], keypoints=np.zeros((1, 3)))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"schema": "synthloop.detections/1", "frames": [{"frame_id": "a", "scores": [1]}]})
    )
    with pytest.raises(DetectionsError, match=r"bad\.json: frames\[0\]"):
        Detections.load(bad)
    bad.write_text("{")
    with pytest.raises(DetectionsError, match="invalid JSON"):
        Detections.load(bad)
    with pytest.raises(DetectionsError, match="not found"):
        Detections.load(tmp_path / "missing.json")


def test_to_coco_results_ids_and_xywh() -> None:
    ds = Dataset(
        [Category(1, "a"), Category(2, "b")],
        [Frame("000002", Path("/x/2.png"), 40, 30), Frame("000001", Path("/x/1.png"), 40, 30)],
    )
    res = to_coco_results(ds, _sample())
    # image ids 1..N in frame order: frame "000001" is the second frame -> image id 2
    assert [r["image_id"] for r in res] == [2, 2]
    assert res[0]["bbox"] == [1.5, 2.25, 8.5, 17.75]
    assert res[0]["category_id"] == 2 and res[0]["score"] == pytest.approx(0.9)
    assert len(res[0]["keypoints"]) == 9 and res[0]["segmentation"]["size"] == [30, 40]
    with pytest.raises(EvaluationError, match="not in the dataset"):
        to_coco_results(Dataset(ds.categories, ds.frames[:1]), _sample())
