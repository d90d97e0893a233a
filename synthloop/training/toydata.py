"""Tiny procedural datasets (coloured ellipses on noisy backgrounds) for tests and smoke runs.

Each object is a filled ellipse whose colour depends on its class; its mask is stored as COCO RLE,
its box is the tight box of the mask pixels (x1, y1, x2, y2, pixel i covers [i, i+1)).
:func:`make_toy_dataset` writes PNGs and returns an in-memory Dataset; :func:`write_toy_folder`
writes a synthloop dataset folder (images, instance maps, depth, records).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from synthloop.atomic import atomic_save_image
from synthloop.dataset.folder import DatasetWriter, frame_stem, object_to_record
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.geometry.masks import mask_to_rle

CLASS_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40))


def toy_frames(
    num_frames: int,
    width: int,
    height: int,
    num_classes: int,
    objects_per_frame: tuple[int, int],
    size_range: tuple[int, int],
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[ObjectAnnotation]]]:
    """Yield (rgb (H, W, 3) uint8, instance ids (H, W) uint16, objects) per frame; objects never overlap."""
    rng = np.random.default_rng(seed)
    for _ in range(num_frames):
        bg = rng.integers(90, 150, size=3)
        img = np.clip(bg + rng.normal(0, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        inst = np.zeros((height, width), np.uint16)
        objs: list[ObjectAnnotation] = []
        n = int(rng.integers(objects_per_frame[0], objects_per_frame[1] + 1))
        for _ in range(50):
            if len(objs) == n:
                break
            cls = int(rng.integers(0, num_classes))
            ew, eh = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            x0, y0 = int(rng.integers(0, width - ew)), int(rng.integers(0, height - eh))
            one = Image.new("L", (width, height), 0)
            ImageDraw.Draw(one).ellipse((x0, y0, x0 + ew - 1, y0 + eh - 1), fill=1)
            m = np.asarray(one).astype(bool)
            if (inst[m] != 0).any():
                continue
            inst[m] = len(objs) + 1
            draw.ellipse((x0, y0, x0 + ew - 1, y0 + eh - 1), fill=CLASS_COLOURS[cls % len(CLASS_COLOURS)])
            ys, xs = np.nonzero(m)
            rle = mask_to_rle(m)
            objs.append(
                ObjectAnnotation(
                    category_id=cls + 1,
                    bbox=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                    area=float(m.sum()),
                    mask=rle,
                    instance_id=len(objs) + 1,
                )
            )
        yield np.asarray(pil), inst, objs


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
    """Write ``num_frames`` PNGs under ``root/images`` and return the matching :class:`Dataset`."""
    root = Path(root)
    cats = [Category(id=i + 1, name=n, supercategory=n) for i, n in enumerate(class_names)]
    frames = []
    gen = toy_frames(num_frames, width, height, len(cats), objects_per_frame, size_range, seed)
    for f, (rgb, _, objs) in enumerate(gen):
        path = root / "images" / f"{f:06d}.png"
        atomic_save_image(path, Image.fromarray(rgb))
        frames.append(
            Frame(
                frame_id=f"{f:06d}",
                image_path=path.resolve(),
                width=width,
                height=height,
                objects=objs,
                source=source,
            )
        )
    return Dataset(categories=cats, frames=frames, name=name, root=root.resolve())


def write_toy_folder(
    root: str | Path,
    num_frames: int = 4,
    width: int = 128,
    height: int = 96,
    class_names: tuple[str, ...] = ("date", "fig"),
    objects_per_frame: tuple[int, int] = (1, 3),
    size_range: tuple[int, int] = (20, 40),
    seed: int = 0,
) -> Path:
    """Write a synthloop dataset folder of toy frames (via :class:`DatasetWriter`); returns ``root``."""
    cats = [Category(id=i + 1, name=n, supercategory=n) for i, n in enumerate(class_names)]
    writer = DatasetWriter(root, cats, info={"toy": True})
    gen = toy_frames(num_frames, width, height, len(cats), objects_per_frame, size_range, seed)
    for f, (rgb, inst, objs) in enumerate(gen):
        record = {
            "width": width,
            "height": height,
            "source": "synthetic",
            "objects": [object_to_record(o) for o in objs],
        }
        depth = np.where(inst > 0, 1.0, np.inf).astype(np.float32)
        writer.write_frame(frame_stem(f), rgb=rgb, instance_ids=inst, depth=depth, record=record)
    return Path(root)
