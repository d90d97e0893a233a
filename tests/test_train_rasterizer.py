"""DetectNet_v2 rasterizer -> decoder round trips (no network) and DBSCAN post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.geometry.masks import box_iou
from synthloop.training.postprocess import ClusterParams, cluster_class, detectnet_postprocess
from synthloop.training.rasterizer import RasterParams, decode_boxes, rasterize

STRIDE = 16


def _roundtrip(boxes, labels, n_cls, gh, gw, raster, cluster):
    cov, bbox, weight = rasterize(
        np.array(boxes), np.array(labels), n_cls, gh, gw, STRIDE, raster, bbox_norm=35.0
    )
    return cov, bbox, weight, detectnet_postprocess(cov, bbox, STRIDE, cluster, bbox_norm=35.0)


def _match(expected_boxes, expected_labels, got):
    """Each expected box has exactly one detection of its label at the same coordinates."""
    assert len(got["boxes"]) == len(expected_boxes)
    for b, lab in zip(expected_boxes, expected_labels, strict=True):
        d = np.abs(got["boxes"] - np.array(b)).max(1)
        k = int(np.argmin(d))
        assert d[k] < 1e-4, (b, got["boxes"][k])
        assert got["labels"][k] == lab


@pytest.mark.parametrize("distance", ["iou", "l2"])
def test_roundtrip_recovers_gt_boxes_exactly(distance):
    boxes = [
        [10.3, 12.1, 50.7, 40.2],
        [60.0, 50.0, 75.5, 90.0],
        [100.0, 5.0, 127.0, 30.0],
        [2.0, 60.0, 20.0, 95.0],
        [140.0, 40.0, 190.0, 92.0],
    ]
    labels = [1, 2, 1, 2, 3]
    raster = [
        RasterParams(),
        RasterParams(cov_center_y=0.4, cov_radius_x=0.6),
        RasterParams(bbox_min_radius=1.0),
    ]
    eps = 0.05 if distance == "iou" else 1.0
    cluster = [ClusterParams(distance=distance, eps=eps, coverage_threshold=0.5)] * 3
    cov, bbox, weight, got = _roundtrip(boxes, labels, 3, 6, 13, raster, cluster)
    _match(boxes, labels, got)
    # confidence "max" of binary coverage is 1; every object covers at least one cell
    assert np.allclose(got["scores"], 1.0)
    assert all(cov[lab - 1].sum() >= 1 for lab in labels)


def test_tiny_box_still_gets_a_cell_and_is_recovered():
    boxes = [[33.0, 17.0, 36.0, 19.0]]  # 3x2 px, far smaller than a 16 px cell
    cov, bbox, weight, got = _roundtrip(
        boxes, [1], 1, 4, 4, [RasterParams(bbox_min_radius=0.0)], [ClusterParams()]
    )
    assert cov.sum() == 1
    _match(boxes, [1], got)


def test_coverage_ellipse_geometry_and_dormant_ring():
    # a 96x96 box centred on cell (3, 3)'s corner region: radius 48 px = 3 cells
    box = [[8.0, 8.0, 104.0, 104.0]]
    cov, bbox, weight = rasterize(
        np.array(box), np.array([1]), 1, 10, 10, STRIDE, [RasterParams(deadzone_radius=0.5)]
    )
    cx = (np.arange(10) + 0.5) * STRIDE
    d = np.sqrt(((cx[None, :] - 56) / 48) ** 2 + ((cx[:, None] - 56) / 48) ** 2)
    assert np.array_equal(cov[0] == 1, d <= 1)
    assert np.array_equal(weight[0] == 0, (d > 1) & (d <= 2))  # 1 / deadzone_radius = 2
    assert np.all(bbox[0][:, cov[0] == 0] == 0)
    # decoded boxes of every covered cell are the GT box
    dec = decode_boxes(bbox, STRIDE)[0][cov[0] == 1]
    assert np.abs(dec - np.array(box[0])).max() < 1e-4


def test_overlap_smaller_object_owns_shared_cells():
    big, small = [0.0, 0.0, 120.0, 120.0], [40.0, 40.0, 72.0, 72.0]
    cov, bbox, _ = rasterize(np.array([small, big]), np.array([1, 1]), 1, 8, 8, STRIDE, [RasterParams()])
    dec = decode_boxes(bbox, STRIDE)[0]
    # the cell at the small box's centre decodes to the small box
    assert np.abs(dec[3, 3] - np.array(small)).max() < 1e-4
    got = detectnet_postprocess(cov, bbox, STRIDE, [ClusterParams(eps=0.05)])
    _match([big, small], [1, 1], got)


def test_cluster_weighted_mean_and_confidence_modes():
    a = np.array([[10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0], [200.0, 200.0, 240.0, 240.0]])
    cov = np.array([0.9, 0.3, 0.6])
    b, s = cluster_class(a, cov, ClusterParams(eps=0.3, confidence="sum"))
    order = np.argsort(b[:, 0])
    b, s = b[order], s[order]
    assert np.allclose(b[0], [(10 * 0.9 + 12 * 0.3) / 1.2, 10, (50 * 0.9 + 52 * 0.3) / 1.2, 50])
    assert np.allclose(s, [1.2, 0.6])
    _, s_max = cluster_class(a, cov, ClusterParams(eps=0.3, confidence="max"))
    assert np.allclose(sorted(s_max), [0.6, 0.9])
    # min_samples=2 turns the lone box into DBSCAN noise
    b2, _ = cluster_class(a, cov, ClusterParams(eps=0.3, min_samples=2))
    assert len(b2) == 1


def test_threshold_drops_low_coverage_cells():
    cov, bbox, _ = rasterize(
        np.array([[10.0, 10.0, 60.0, 60.0]]), np.array([1]), 1, 5, 5, STRIDE, [RasterParams()]
    )
    got = detectnet_postprocess(cov * 0.2, bbox, STRIDE, [ClusterParams(coverage_threshold=0.3)])
    assert len(got["boxes"]) == 0


def test_box_iou():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])
