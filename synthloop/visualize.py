"""Overlay drawings a person can look at: translucent masks, boxes, labels, keypoints + skeleton.

PIL only. Colours are per category (golden-ratio hues), so the same class has the same colour in
every image. Images whose long side is under 480 px are enlarged by an integer factor (nearest
neighbour) so small synthetic renders stay readable; annotations are scaled with them.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthloop.atomic import atomic_save_image
from synthloop.dataset.staging import staged_dir
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.exporters.kitti import frame_stems
from synthloop.geometry.masks import rle_to_mask

MIN_LONG_SIDE = 480
MASK_ALPHA = 0.45


def category_color(cat_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a category id (golden-ratio hue steps)."""
    h = (cat_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_overlay(frame: Frame, cats: dict[int, Category]) -> Image.Image:
    """One frame's image with its annotations drawn on it (RGB)."""
    try:
        with Image.open(frame.image_path) as im:
            base = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"cannot read image ({e})", path=str(frame.image_path), where=frame.frame_id
        ) from None
    s = max(1, math.ceil(MIN_LONG_SIDE / max(base.width, base.height)))
    arr = np.asarray(base, dtype=np.float32)
    for o in frame.objects:  # translucent masks, blended in numpy at native resolution
        if o.mask is None or list(o.mask["size"]) != [base.height, base.width]:
            continue
        m = rle_to_mask(o.mask)
        arr[m] = arr[m] * (1 - MASK_ALPHA) + np.array(category_color(o.category_id)) * MASK_ALPHA
    img = Image.fromarray(arr.round().astype(np.uint8), "RGB")
    if s > 1:
        img = img.resize((base.width * s, base.height * s), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    lw = max(2, round(max(img.width, img.height) / 400))
    font = _font(max(10, round(max(img.width, img.height) / 60)))
    for o in frame.objects:
        if not o.area > 0:  # fully hidden: nothing to show
            continue
        col = category_color(o.category_id)
        cat = cats.get(o.category_id)
        x1, y1, x2, y2 = (float(v) * s for v in o.bbox)
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=col, width=lw)
        label = cat.name if cat else f"id {o.category_id}"
        if o.iscrowd:
            label += " (crowd)"
        if o.occlusion is not None:
            label += f" occ {o.occlusion:.2f}"
        tb = draw.textbbox((x1, y1), label, font=font)
        th, tw = tb[3] - tb[1], tb[2] - tb[0]
        ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
        draw.rectangle([x1, ty, x1 + tw + 2 * lw, ty + th + 2 * lw], fill=col)
        draw.text((x1 + lw, ty + lw - (tb[1] - y1)), label, fill=(0, 0, 0), font=font)
        if o.keypoints:
            pts = [(u * s, v * s, vis) for u, v, vis in o.keypoints]
            for a, b in cat.skeleton if cat else ():
                if 1 <= a <= len(pts) and 1 <= b <= len(pts) and pts[a - 1][2] > 0 and pts[b - 1][2] > 0:
                    draw.line([pts[a - 1][:2], pts[b - 1][:2]], fill=col, width=lw)
            r = 2 * lw + 1
            for u, v, vis in pts:
                if vis == 2:
                    draw.ellipse([u - r, v - r, u + r, v + r], fill=(255, 255, 255), outline=(0, 0, 0))
                elif vis == 1:
                    draw.ellipse([u - r, v - r, u + r, v + r], outline=(255, 255, 255), width=lw)
    return img


def draw_overlays(
    ds: Dataset, out_dir: str | Path, frames: Sequence[str] | None = None, *, limit: int | None = None
) -> list[Path]:
    """Write ``out_dir/<stem>.png`` overlays for ``frames`` (frame ids; default all, in order),
    at most ``limit`` of them. Returns the written paths. Unknown frame ids raise DatasetError."""
    stems = dict(zip((f.frame_id for f in ds.frames), frame_stems(ds), strict=True))
    if frames is None:
        chosen = list(ds.frames)
    else:
        by_id = {f.frame_id: f for f in ds.frames}
        missing = [fid for fid in frames if fid not in by_id]
        if missing:
            src = ds.info.get("source_path") or ds.root or ds.name
            raise DatasetError(f"no frame with id {missing[0]!r}", path=str(src), where="frames")
        chosen = [by_id[fid] for fid in frames]
    if limit is not None:
        chosen = chosen[: max(0, limit)]
    cats = ds.category_by_id()
    out_dir = Path(out_dir).absolute()
    written = []
    with staged_dir(out_dir) as tmp:
        for f in chosen:
            atomic_save_image(tmp / f"{stems[f.frame_id]}.png", render_overlay(f, cats))
            written.append(out_dir / f"{stems[f.frame_id]}.png")
    return written
