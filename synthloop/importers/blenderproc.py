"""BlenderProc outputs -> Dataset: its COCO writer folder and its per-frame ``.hdf5`` files.

COCO writer (``bproc.writer.write_coco_annotations``): ``<out>/coco_data/coco_annotations.json``
with ``images/NNNNNN.png|jpg``. Its quirks, all handled by :func:`synthloop.importers.coco.load_coco`:
masks are *uncompressed* RLE (``counts`` a list, starting with 0 when the first pixel is set)
with ``iscrowd`` 0 (so they are not crowd); image ids start at 0; a category's ``name`` may be
its id (an int) when no label mapping was given; each annotation carries the instance's custom
properties (``idx``, ``name``, ...), which land in ``attributes``.

HDF5 writer (``bproc.writer.write_hdf5``): one ``<i>.hdf5`` per frame with ``colors`` (H, W, 3)
uint8, ``depth`` (H, W) float metres (background: a huge value), ``instance_segmaps`` (H, W) int
and ``instance_attribute_maps`` (JSON bytes: a list of ``{"idx", "category_id", "name", ...}``,
category_id 0 = background). These are converted into a synthloop dataset folder (the frames need
image files), with masks, boxes and areas computed from the instance map; depth beyond
``max_depth`` or non-finite becomes ``inf`` (no hit).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.dataset.folder import DatasetWriter, load_dataset, object_to_record
from synthloop.dataset.staging import staged_dir
from synthloop.dataset.types import Category, Dataset, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.geometry.masks import mask_to_rle
from synthloop.importers.coco import load_coco

COCO_JSON = "coco_annotations.json"


def find_blenderproc_coco(path: str | Path) -> Path | None:
    """The ``coco_annotations.json`` of a BlenderProc output folder (or its ``coco_data/``)."""
    p = Path(path)
    for cand in (p / "coco_data" / COCO_JSON, p / COCO_JSON):
        if cand.is_file():
            return cand
    return None


def load_blenderproc_coco(
    path: str | Path, *, skip_invalid: bool = False, verify_images: bool = False
) -> Dataset:
    """Read BlenderProc's COCO writer output (the output folder, ``coco_data/`` or the JSON)."""
    p = Path(path)
    json_path = p if p.is_file() else find_blenderproc_coco(p)
    if json_path is None:
        raise DatasetError(f"no coco_data/{COCO_JSON} found", path=str(p))
    ds = load_coco(json_path, skip_invalid=skip_invalid, verify_images=verify_images)
    ds.info["source_format"] = "blenderproc-coco"
    for f in ds.frames:
        f.source = "blenderproc"
    return ds


def hdf5_files(path: str | Path) -> list[Path]:
    """The ``.hdf5`` frames of a folder in numeric order (``2.hdf5`` before ``10.hdf5``), or [path]."""
    p = Path(path)
    if p.is_file():
        return [p]

    def key(q: Path) -> tuple[int, str]:
        return (int(q.stem), "") if re.fullmatch(r"\d+", q.stem) else (1 << 62, q.stem)

    return sorted(p.glob("*.hdf5"), key=key)


def _read(f: Any, key: str, path: Path) -> np.ndarray:
    if key not in f:
        raise DatasetError("missing dataset", path=str(path), where=key)
    return np.asarray(f[key][()])


def read_hdf5_frame(path: Path) -> dict[str, Any]:
    """One BlenderProc hdf5 frame -> {"colors", "depth" (or None), "instance_segmaps", "attributes"}."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            colors = _read(f, "colors", path)
            inst = _read(f, "instance_segmaps", path)
            raw = _read(f, "instance_attribute_maps", path)
            depth = np.asarray(f["depth"][()]) if "depth" in f else None
    except OSError as e:
        raise DatasetError(f"cannot read HDF5 file ({e})", path=str(path)) from None
    raw_b = raw.item() if raw.shape == () else raw.tobytes()
    try:
        attrs = json.loads(raw_b.decode() if isinstance(raw_b, bytes) else raw_b)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"invalid JSON ({e})", path=str(path), where="instance_attribute_maps") from None
    if not isinstance(attrs, list):
        raise DatasetError("must be a JSON list", path=str(path), where="instance_attribute_maps")
    if colors.ndim != 3 or colors.shape[2] not in (3, 4) or inst.shape != colors.shape[:2]:
        raise DatasetError(
            f"colors {colors.shape} and instance_segmaps {inst.shape} do not match",
            path=str(path),
            where="colors",
        )
    if colors.dtype != np.uint8:
        colors = np.clip(
            np.asarray(colors, dtype=np.float64) * (255.0 if colors.max() <= 1.0 else 1.0), 0, 255
        )
    return {
        "colors": colors[..., :3].astype(np.uint8),
        "depth": depth,
        "instance_segmaps": inst,
        "attributes": attrs,
    }


def objects_from_instance_map(
    inst: np.ndarray, attrs: list[dict[str, Any]], path: Path
) -> list[ObjectAnnotation]:
    """Objects of one frame: every attribute entry with category_id != 0 visible in ``inst``.

    ``inst`` (H, W) integer instance ids. Mask = ``inst == idx`` (compressed RLE), bbox its tight
    pixel box (xyxy, pixel i covers [i, i+1)), area its pixel count, instance_id = idx.
    """
    objs = []
    for k, a in enumerate(attrs):
        if not isinstance(a, dict) or "idx" not in a or "category_id" not in a:
            raise DatasetError(
                "entry needs idx and category_id", path=str(path), where=f"instance_attribute_maps[{k}]"
            )
        if int(a["category_id"]) == 0:
            continue
        m = inst == int(a["idx"])
        area = int(m.sum())
        if area == 0:
            continue
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        extra = {
            k2: v
            for k2, v in a.items()
            if k2 not in ("idx", "category_id") and isinstance(v, str | int | float)
        }
        objs.append(
            ObjectAnnotation(
                category_id=int(a["category_id"]),
                bbox=bbox,
                area=float(area),
                mask=mask_to_rle(m),
                instance_id=int(a["idx"]),
                attributes=extra,
            )
        )
    return objs


def load_blenderproc_hdf5(
    src: str | Path,
    out_dir: str | Path,
    *,
    category_names: Mapping[int, str] | None = None,
    max_depth: float = 1e4,
) -> Dataset:
    """Convert BlenderProc ``.hdf5`` frames (a folder or one file) into a synthloop dataset folder
    at ``out_dir`` (built in a temp sibling, published at the end) and load it.

    ``category_names``: {category_id: name}; default ``"class_<id>"``. Frame ids are the file
    stems zero-padded when numeric.
    """
    files = hdf5_files(src)
    if not files:
        raise DatasetError("no .hdf5 files", path=str(src))
    names = dict(category_names or {})
    frames = []
    cat_ids: set[int] = set()
    for p in files:
        fr = read_hdf5_frame(p)
        objs = objects_from_instance_map(fr["instance_segmaps"], fr["attributes"], p)
        cat_ids |= {o.category_id for o in objs}
        frames.append((p, fr, objs))
    cats = [Category(id=i, name=names.get(i, f"class_{i}")) for i in sorted(cat_ids | set(names))]
    with staged_dir(out_dir, markers=["dataset.json"]) as tmp:
        writer = DatasetWriter(
            tmp, cats, info={"source_format": "blenderproc-hdf5", "source_path": str(Path(src))}
        )
        for p, fr, objs in frames:
            stem = f"{int(p.stem):06d}" if p.stem.isdigit() else p.stem
            h, w = fr["instance_segmaps"].shape
            depth = fr["depth"]
            if depth is None:
                depth = np.full((h, w), np.inf, dtype=np.float32)
            depth = np.where(np.isfinite(depth) & (depth > 0) & (depth <= max_depth), depth, np.inf)
            writer.write_frame(
                stem,
                rgb=fr["colors"],
                instance_ids=fr["instance_segmaps"].astype(np.int64),
                depth=depth,
                record={
                    "width": int(w),
                    "height": int(h),
                    "source": "blenderproc",
                    "objects": [object_to_record(o) for o in objs],
                },
            )
    return load_dataset(out_dir)
