"""Overlay detections on an image (PIL), like detectnet-console: translucent masks, boxes, labels.

Boxes are pixel ``x1, y1, x2, y2`` (continuous coordinates, pixel i covers [i, i+1)), drawn on the
pixels they cover; each category gets a fixed colour from :data:`PALETTE` (by category id).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthloop.evaluation.detections import FrameDetections
from synthloop.geometry.masks import rle_to_mask

PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
)


def colour(category_id: int) -> tuple[int, int, int]:
    """Fixed RGB colour of a category id."""
    return PALETTE[(int(category_id) - 1) % len(PALETTE)]


def draw_detections(
    rgb: np.ndarray,
    dets: FrameDetections,
    names: Mapping[int, str] | None = None,
    mask_alpha: float = 0.45,
    line_width: int = 2,
) -> Image.Image:
    """(H, W, 3) uint8 image + detections -> PIL RGB image with masks, boxes and ``name score`` labels."""
    img = np.asarray(rgb, np.uint8).copy()
    if dets.masks:
        out = img.astype(np.float32)
        for m, lab in zip(dets.masks, dets.labels, strict=True):
            on = rle_to_mask(m)
            if on.shape != img.shape[:2]:
                continue
            out[on] = (1 - mask_alpha) * out[on] + mask_alpha * np.array(colour(int(lab)), np.float32)
        img = out.clip(0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    for box, score, lab in zip(dets.boxes, dets.scores, dets.labels, strict=True):
        c = colour(int(lab))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=c, width=line_width)
        text = f"{(names or {}).get(int(lab), str(int(lab)))} {float(score):.2f}"
        tx, ty = x1, max(0.0, y1 - 12)
        left, top, right, bottom = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=c)
        draw.text((tx, ty), text, fill=(0, 0, 0) if sum(c) > 450 else (255, 255, 255), font=font)
    return pil
