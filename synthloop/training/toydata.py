"""Tiny procedural datasets (coloured ellipses on noisy backgrounds) for tests and smoke runs.

Each object is a filled ellipse whose colour depends on its class; its mask is stored as COCO RLE,
its box is the tight box of the mask pixels (x1, y1, x2, y2, pixel i covers [i, i+1)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from synthloop.atomic import atomic_save_image
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation

CLASS_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40))


def make_toy_dataset(
    root: str | Path,
    num_frames: int = 4,
    width: int = 128,
    height: int = 96,
    class_names: tuple[str, ...] = ("date", "fig"),
    objects_per_frame: tuple[int, int] = (1, 3),
    size_range: tuple[int, int] = (20, 40),
    seed: int = 0,
    source: str = "synthetic",
    name: str = "toy",
) -> Dataset:
    """Write ``num_frames`` PNGs under ``root/images`` and return the matching :class:`Dataset`.

    Objects do not overlap (rejection sampling), so every mask is fully visible.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    cats = [Category(id=i + 1, name=n, supercategory=n) for i, n in enumerate(class_names)]
    frames = []
    for f in range(num_frames):
        bg = rng.integers(90, 150, size=3)
        img = np.clip(bg + rng.normal(0, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        label_img = np.zeros((height, width), np.int32)
        objs = []
        n = int(rng.integers(objects_per_frame[0], objects_per_frame[1] + 1))
        for _ in range(50):
            if len(objs) == n:
                break
            cls = int(rng.integers(0, len(cats)))
            ew, eh = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            x0 = int(rng.integers(0, width - ew))
            y0 = int(rng.integers(0, height - eh))
            one = Image.new("L", (width, height), 0)
            ImageDraw.Draw(one).ellipse((x0, y0, x0 + ew - 1, y0 + eh - 1), fill=1)
            m = np.asarray(one).astype(bool)
            if (label_img[m] != 0).any():
                continue
            label_img[m] = len(objs) + 1
            draw.ellipse((x0, y0, x0 + ew - 1, y0 + eh - 1), fill=CLASS_COLOURS[cls % len(CLASS_COLOURS)])
            ys, xs = np.nonzero(m)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            objs.append(
                ObjectAnnotation(
                    category_id=cats[cls].id,
                    bbox=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                    area=float(m.sum()),
                    mask=rle,
                    instance_id=len(objs) + 1,
                )
            )
        path = root / "images" / f"{f:06d}.png"
        atomic_save_image(path, pil)
        frames.append(
            Frame(frame_id=f"{f:06d}", image_path=path.resolve(), width=width, height=height, objects=objs,
                  source=source)
        )
    return Dataset(categories=cats, frames=frames, name=name, root=root.resolve())
