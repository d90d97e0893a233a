"""Decoding raw outputs: DetectNet grid -> boxes in original-image pixels and dataset category ids."""

from __future__ import annotations

import numpy as np

from synthloop.deploy.decode import decode
from synthloop.geometry.masks import rle_to_mask
from synthloop.training.checkpoints import ModelDesc
from synthloop.training.rasterizer import RasterParams, rasterize


def desc(**kw):
    base = dict(
        family="detectnet_v2",
        backbone="resnet18",
        class_names=["date", "fig"],
        category_ids=[4, 9],
        input_width=128,
        input_height=96,
    )
    return ModelDesc(**(base | kw))


def test_detectnet_decode_inverts_the_rasterizer_and_scales_to_the_image():
    d = desc()
    boxes = np.array([[10.0, 20.0, 58.0, 70.0], [70.0, 8.0, 120.0, 40.0]])  # network-input pixels
    labels = np.array([1, 2])
    cov, bbox, _ = rasterize(boxes, labels, 2, 6, 8, 16, [RasterParams()] * 2, d.bbox_norm)
    logits = np.where(cov > 0, 8.0, -8.0)[None]
    fd = decode({"cov": logits, "bbox": bbox[None]}, d, (256, 192), "f")  # image 2x the input
    order = np.argsort(fd.labels)
    np.testing.assert_array_equal(fd.labels[order], [4, 9])  # training labels -> category ids
    np.testing.assert_allclose(fd.boxes[order], boxes * 2, atol=1e-3)
    assert (fd.scores > 0.99).all()


def test_detectnet_decode_orders_swapped_corners():
    from synthloop.training.postprocess import ClusterParams

    # L2 clustering keeps such boxes (IoU clustering drops zero-area ones before decoding)
    d = desc(class_names=["date"], category_ids=[1], cluster=[ClusterParams(distance="l2", eps=5.0)])
    boxes = np.array([[30.0, 30.0, 60.0, 50.0]])
    cov, bbox, _ = rasterize(boxes, np.array([1]), 1, 6, 8, 16, [RasterParams()], d.bbox_norm)
    bbox = bbox[:, [2, 3, 0, 1]]  # an untrained regressor may predict x2 < x1
    fd = decode({"cov": np.where(cov > 0, 8.0, -8.0)[None], "bbox": bbox[None]}, d, (128, 96), "f")
    assert len(fd) == 1
    np.testing.assert_allclose(fd.boxes[0], boxes[0], atol=1e-3)


def test_maskrcnn_decode_scales_boxes_and_masks():
    d = desc(family="mask_rcnn", input_width=40, input_height=30)
    masks = np.zeros((2, 1, 30, 40), np.float32)
    masks[0, 0, 10:20, 5:15] = 0.9
    raw = {
        "boxes": np.array([[5.0, 10.0, 15.0, 20.0], [0.0, 0.0, 40.0, 30.0]], np.float32),
        "labels": np.array([2, 1]),
        "scores": np.array([0.8, 0.1], np.float32),
        "masks": masks,
    }
    fd = decode(raw, d, (80, 60), "f", score_thr=0.5)
    assert len(fd) == 1 and fd.labels.tolist() == [9] and fd.keypoints is None
    np.testing.assert_allclose(fd.boxes[0], [10, 20, 30, 40])
    m = rle_to_mask(fd.masks[0])
    assert m.shape == (60, 80)
    ys, xs = np.nonzero(m)
    assert (
        abs(xs.min() - 10) <= 1
        and abs(xs.max() - 29) <= 1
        and abs(ys.min() - 20) <= 1
        and abs(ys.max() - 39) <= 1
    )


def test_keypointrcnn_decode_scales_boxes_and_keypoints():
    d = desc(family="keypoint_rcnn", input_width=40, input_height=30)
    kp = np.zeros((2, 17, 3), np.float32)
    kp[..., 0], kp[..., 1], kp[..., 2] = np.arange(17), 30 - np.arange(17), 1
    raw = {
        "boxes": np.array([[5.0, 10.0, 15.0, 20.0], [0.0, 0.0, 40.0, 30.0]], np.float32),
        "labels": np.array([2, 1]),
        "scores": np.array([0.8, 0.1], np.float32),
        "keypoints": kp,
        "keypoints_scores": np.zeros((2, 17), np.float32),
    }
    fd = decode(raw, d, (80, 60), "f", score_thr=0.5)
    assert (
        len(fd) == 1 and fd.labels.tolist() == [9] and fd.keypoints.shape == (1, 17, 3) and fd.masks is None
    )
    np.testing.assert_allclose(fd.boxes[0], [10, 20, 30, 40])
    np.testing.assert_allclose(fd.keypoints[0, :, 0], 2 * np.arange(17))
    np.testing.assert_allclose(fd.keypoints[0, :, 1], 2 * (30 - np.arange(17)))
    assert (fd.keypoints[0, :, 2] == 1).all()
