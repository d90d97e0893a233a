"""RLE encode/decode, tight boxes, polygon rasterization, box conversions and IoU."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.geometry.errors import GeometryError
from synthloop.geometry.masks import (
    box_iou,
    mask_to_bbox,
    mask_to_rle,
    polygons_to_rle,
    rle_area,
    rle_bbox_xyxy,
    rle_to_mask,
    segmentation_to_rle,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (13, 1), (40, 31), (64, 64)])
def test_rle_round_trip_exact(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = rng.random(shape) < density
        rle = mask_to_rle(mask)
        assert rle["size"] == list(shape)
        assert isinstance(rle["counts"], str)
        back = rle_to_mask(rle)
        assert back.dtype == bool and back.shape == shape
        assert np.array_equal(back, mask)
        assert rle_area(rle) == int(mask.sum())
        assert np.array_equal(rle_to_mask({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE by hand: column-major runs, starting with a (possibly empty) run of 0s."""
    flat = mask.T.reshape(-1).astype(int)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return counts


def test_rle_uncompressed_list_counts():
    mask = np.zeros((5, 4), dtype=bool)
    mask[1:3, 1] = True
    mask[0, 3] = True
    counts = uncompressed_counts(mask)
    assert counts == [6, 2, 7, 1, 4]
    assert np.array_equal(rle_to_mask({"size": [5, 4], "counts": counts}), mask)
    assert rle_area({"size": [5, 4], "counts": counts}) == 3
    with pytest.raises(GeometryError, match="mask.counts"):
        rle_to_mask({"size": [5, 4], "counts": [6, 2]})
    with pytest.raises(GeometryError):
        rle_to_mask({"counts": "abc"})


def test_segmentation_to_rle_every_coco_form():
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:4, 2:7] = True
    rle = mask_to_rle(mask)
    runs = uncompressed_counts(mask)
    for seg in (rle, {"size": [6, 8], "counts": runs}):
        out = segmentation_to_rle(seg, 6, 8)
        assert isinstance(out["counts"], str) and np.array_equal(rle_to_mask(out), mask)
    assert rle_bbox_xyxy(rle) == mask_to_bbox(mask) == (2.0, 1.0, 7.0, 4.0)
    assert segmentation_to_rle(None, 6, 8) is None and segmentation_to_rle([[1, 2, 3, 4]], 6, 8) is None
    poly = segmentation_to_rle([[2, 1, 7, 1, 7, 4, 2, 4]], 6, 8)
    assert rle_area(poly) > 0 and poly["size"] == [6, 8]


@pytest.mark.parametrize(
    "seg",
    [
        [[1, 2, 3]],
        [["a", 1, 2, 3, 4, 5]],
        {"size": [6, 9], "counts": ""},
        {"size": [6, 8], "counts": [1, 2]},
        {"size": [6, 8], "counts": [-1, 49]},
        {"size": [6, 8], "counts": 3.5},
        "polygon",
    ],
)
def test_segmentation_to_rle_rejects_bad_input(seg):
    with pytest.raises(GeometryError):
        segmentation_to_rle(seg, 6, 8)


def test_mask_to_bbox_hand_cases():
    m = np.zeros((10, 12), dtype=bool)
    assert mask_to_bbox(m) is None
    m[2, 3] = True
    assert mask_to_bbox(m) == (3.0, 2.0, 4.0, 3.0)
    m[5:8, 3:8] = True
    assert mask_to_bbox(m) == (3.0, 2.0, 8.0, 8.0)
    full = np.ones((4, 6), dtype=bool)
    assert mask_to_bbox(full) == (0.0, 0.0, 6.0, 4.0)


def test_polygons_to_rle_rectangle_and_union():
    h, w = 40, 50
    rect = [10, 5, 30, 5, 30, 25, 10, 25]  # 20 x 20 pixels
    rle = polygons_to_rle([rect], h, w)
    assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
    assert abs(rle_area(rle) - 400) <= 41  # within one pixel row/column of the exact area
    bbox = mask_to_bbox(rle_to_mask(rle))
    assert np.allclose(bbox, (10, 5, 30, 25), atol=1.0)
    other = [35, 30, 45, 30, 45, 38, 35, 38]
    both = rle_to_mask(polygons_to_rle([rect, other], h, w))
    assert both.sum() == rle_to_mask(rle).sum() + rle_to_mask(polygons_to_rle([other], h, w)).sum()
    assert rle_area(polygons_to_rle([], h, w)) == 0


def test_box_conversions():
    assert xyxy_to_xywh((1, 2, 4, 8)) == (1.0, 2.0, 3.0, 6.0)
    assert xywh_to_xyxy((1, 2, 3, 6)) == (1.0, 2.0, 4.0, 8.0)
    boxes = np.random.default_rng(0).uniform(0, 100, size=(7, 4))
    boxes[:, 2:] += boxes[:, :2]
    assert np.allclose(xywh_to_xyxy(xyxy_to_xywh(boxes)), boxes)
    assert xyxy_to_xywh(boxes).shape == (7, 4)


def test_box_iou_hand_cases():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    assert np.allclose(iou[0], [1.0, 50 / 150, 0.0, 25 / 100])
    assert np.allclose(iou[1], 0.0)
    assert np.allclose(box_iou(b, b).diagonal(), 1.0)
    assert np.allclose(box_iou(a, b), box_iou(b, a).T)
