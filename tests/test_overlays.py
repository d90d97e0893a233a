"""The one overlay painter: one palette for annotations and detections, sizes, dashed outlines."""

from __future__ import annotations

import numpy as np
from PIL import Image

from synthloop.evaluation.detections import FrameDetections
from synthloop.geometry.masks import mask_to_rle
from synthloop.overlays import RED, Mark, category_color, draw_detections, paint


def test_detections_use_the_category_palette_and_keep_the_image_size():
    rgb = np.full((60, 90, 3), 40, np.uint8)
    mask = np.zeros((60, 90), bool)
    mask[30:50, 50:80] = True
    fd = FrameDetections(
        "f",
        [[10, 20, 40, 50], [50, 30, 80, 50]],
        [0.9, 0.8],
        [1, 3],
        [mask_to_rle(np.zeros_like(mask)), mask_to_rle(mask)],
    )
    a = np.asarray(draw_detections(rgb, fd, {1: "date", 3: "hazelnut"}))
    assert a.shape == rgb.shape  # no enlargement: the overlay lines up with the input pixels
    assert np.all(a[35, 10] == category_color(1))  # left edge of box 1 in category 1's colour
    tinted = a[40, 65].astype(int)  # inside the mask of box 2: blended towards category 3's colour
    expected = 0.55 * 40 + 0.45 * np.array(category_color(3))
    assert np.abs(tinted - expected).max() <= 1
    assert category_color(1) != category_color(3)


def test_paint_enlarges_small_images_and_dashes_on_request():
    base = Image.new("RGB", (40, 30), (0, 0, 0))
    solid = np.asarray(paint(base, [Mark((5, 5, 35, 25), "a", RED)]))
    dashed = np.asarray(paint(base, [Mark((5, 5, 35, 25), "a", RED, dashed=True)], header="x"))
    s = solid.shape[1] // 40
    assert s == 12 and solid.shape[0] == 30 * s and dashed.shape[0] > 30 * s  # header bar on top
    bar = dashed.shape[0] - 30 * s
    col_solid = np.all(solid[int(12 * s) : int(22 * s), 5 * s] == RED, axis=1)
    col_dashed = np.all(dashed[bar + int(12 * s) : bar + int(22 * s), 5 * s] == RED, axis=1)
    assert col_solid.all() and col_dashed.any() and not col_dashed.all()
