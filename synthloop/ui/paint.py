"""The UI's pictures: frame overlays, depth colour maps, detections, thumbnails.

Overlays go through the project's painters, each called from exactly one function here, so the
rest of the UI never names them: :func:`paint_frame` (ground truth: translucent masks, boxes,
labels, keypoints + skeleton, colours per category id) and :func:`paint_detections` (a model's
detections).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image

from synthloop.dataset.types import Category, Frame
from synthloop.evaluation.detections import FrameDetections
from synthloop.overlays import annotation_marks, category_color, draw_detections, load_rgb, paint

THUMB_SIDE = 256
NO_HIT = (24, 24, 24)


def paint_frame(frame: Frame, cats: Mapping[int, Category]) -> Image.Image:
    """``frame``'s image with its ground truth drawn (RGB; small images are enlarged)."""
    return paint(load_rgb(frame), annotation_marks(frame, cats))


def class_colour(category_id: int) -> tuple[int, int, int]:
    """The RGB colour :func:`paint_frame` and :func:`paint_detections` give ``category_id``."""
    return category_color(category_id)


def paint_detections(rgb: np.ndarray, dets: FrameDetections, names: Mapping[int, str]) -> Image.Image:
    """(H, W, 3) uint8 image with ``dets`` (pixel x1, y1, x2, y2 boxes) drawn, labelled ``name score``."""
    return draw_detections(rgb, dets, names)


def turbo(x: np.ndarray) -> np.ndarray:
    """Turbo colour map (polynomial fit, Mikhailov 2019): x in [0, 1] (any shape) -> (..., 3) uint8."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    r = 0.13572138 + x * (
        4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943)))
    )
    g = 0.09140261 + x * (
        2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604)))
    )
    b = 0.10667330 + x * (
        12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973)))
    )
    return (np.clip(np.stack([r, g, b], -1), 0, 1) * 255).round().astype(np.uint8)


def paint_depth(depth: np.ndarray) -> Image.Image:
    """(H, W) depth in metres -> RGB turbo image, near = red, far = blue; range = 2nd..98th
    percentile of the finite positive values; no hit (inf, NaN, <= 0) is near-black."""
    d = np.asarray(depth, np.float64)
    ok = np.isfinite(d) & (d > 0)
    out = np.empty(d.shape + (3,), np.uint8)
    out[:] = NO_HIT
    if ok.any():
        lo, hi = np.percentile(d[ok], [2, 98])
        t = (d[ok] - lo) / max(hi - lo, 1e-9)
        out[ok] = turbo(1.0 - t)
    return Image.fromarray(out, "RGB")


def thumbnail(img: Image.Image, side: int = THUMB_SIDE) -> Image.Image:
    """A copy of ``img`` fitted inside ``side`` x ``side`` pixels (aspect kept)."""
    t = img.copy()
    t.thumbnail((side, side), Image.Resampling.LANCZOS)
    return t
