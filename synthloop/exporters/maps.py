"""Per-pixel map exports: depth PNG/NPY and semantic class-id PNGs (DIGITS segNet style).

Depth (``write_depth_pngs``)::

    OUT/<stem>.png   uint16, millimetres along the optical axis (camera z); 0 = no hit, not finite,
                     <= 0, or beyond 65.535 m
    OUT/<stem>.npy   float32 metres, exactly the frame's depth (inf = no hit)

Semantic (``write_semantic_pngs``)::

    OUT/labels/<stem>.png   class ids per pixel, 0 = background (uint8 when ids < 256, else uint16)
    OUT/colors/<stem>.png   RGB rendering of the same with the colormap
    OUT/colormap.txt        DIGITS colour map: line i = "R G B" of class id i (0 = background)
    OUT/colormap.json       [{"id", "name", "rgb": [r, g, b]}, ...]

Class ids come from the instance map plus each object's ``category_id`` (pixels of unlabeled
instances, e.g. distractors, are background); frames without an instance map paint their objects'
RLE masks in order (later objects on top). Crowd regions get their class too.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from synthloop.atomic import atomic_save_image, atomic_write_bytes, atomic_write_json, atomic_write_with
from synthloop.dataset.folder import load_depth, load_instance_map
from synthloop.dataset.staging import frame_stems, staged_dir
from synthloop.dataset.types import Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.geometry.masks import rle_to_mask

MAX_MM = 65535
MAX_SEMANTIC_ID = 65535  # uint16 class-id PNGs


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 millimetres (rounded); 0 where no hit or out of range."""
    d = np.asarray(depth, dtype=np.float64)
    mm = np.round(np.where(np.isfinite(d), d, 0.0) * 1000.0)
    valid = np.isfinite(d) & (d > 0) & (mm <= MAX_MM) & (mm >= 1)
    return np.where(valid, mm, 0).astype(np.uint16)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, the PASCAL VOC bit-interleaved palette (0 = black background)."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def semantic_map(frame: Frame) -> np.ndarray:
    """(H, W) int32 class ids of one frame (0 = background); see module docstring."""
    sem = np.zeros((frame.height, frame.width), dtype=np.int32)
    if frame.instance_map_path is not None and any(o.instance_id is not None for o in frame.objects):
        inst = load_instance_map(frame)
        lut = {int(o.instance_id): int(o.category_id) for o in frame.objects if o.instance_id is not None}
        ids = np.array(sorted(lut), dtype=np.int64)
        if ids.size:
            pos = np.searchsorted(ids, inst)
            pos = np.clip(pos, 0, ids.size - 1)
            hit = ids[pos] == inst
            cls = np.array([lut[i] for i in ids.tolist()], dtype=np.int32)
            sem = np.where(hit, cls[pos], 0).astype(np.int32)
        return sem
    for o in frame.objects:
        if o.mask is not None:
            sem[rle_to_mask(o.mask)] = int(o.category_id)
    return sem


def write_depth_pngs(ds: Dataset, out_dir: str | Path) -> list[Path]:
    """Write depth PNG (uint16 mm) + NPY (float32 m) for every frame with depth; returns the PNGs."""
    out_dir = Path(out_dir).absolute()
    written = []
    with staged_dir(out_dir) as tmp:
        for frame, stem in zip(ds.frames, frame_stems(ds), strict=True):
            if frame.depth_path is None:
                continue
            depth = load_depth(frame).astype(np.float32)
            atomic_save_image(tmp / f"{stem}.png", Image.fromarray(depth_to_mm(depth)), compress_level=1)
            atomic_write_with(tmp / f"{stem}.npy", partial(np.save, arr=depth))
            written.append(out_dir / f"{stem}.png")
    return written


def write_semantic_pngs(ds: Dataset, out_dir: str | Path) -> list[Path]:
    """Write class-id PNGs, colour PNGs and the colormap files; returns the class-id PNG paths.

    Category ids must lie in 1..65535 (0 is background; the PNGs are uint8, or uint16 above 255).
    """
    out_dir = Path(out_dir).absolute()
    for c in ds.categories:
        if not 1 <= c.id <= MAX_SEMANTIC_ID:
            raise DatasetError(
                f"category {c.name!r} has id {c.id}; semantic maps need ids in 1..{MAX_SEMANTIC_ID} "
                "(0 is background)",
                path=str(ds.root or ds.name),
                where="categories",
            )
    max_id = max((c.id for c in ds.categories), default=0)
    pal = palette(max_id + 1)
    names = {0: "background", **{c.id: c.name for c in ds.categories}}
    written = []
    with staged_dir(out_dir, markers=["colormap.json"]) as tmp:
        for frame, stem in zip(ds.frames, frame_stems(ds), strict=True):
            sem = semantic_map(frame)
            arr = sem.astype(np.uint8 if max_id < 256 else np.uint16)
            atomic_save_image(tmp / "labels" / f"{stem}.png", Image.fromarray(arr))
            color = pal[np.clip(sem, 0, max_id)]
            atomic_save_image(tmp / "colors" / f"{stem}.png", Image.fromarray(color, "RGB"))
            written.append(out_dir / "labels" / f"{stem}.png")
        txt = "".join(f"{r} {g} {b}\n" for r, g, b in pal.tolist())
        atomic_write_bytes(tmp / "colormap.txt", txt.encode())
        cmap = [
            {"id": i, "name": names.get(i, f"class_{i}"), "rgb": pal[i].tolist()} for i in range(max_id + 1)
        ]
        atomic_write_json(tmp / "colormap.json", cmap)
    return written
