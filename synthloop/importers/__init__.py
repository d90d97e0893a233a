"""Readers from ecosystem formats into the in-memory Dataset, and :func:`load_any` to auto-detect.

Detection order for ``load_any(path)``:

1. a folder with ``dataset.json``                     -> synthloop dataset folder
2. a ``.json`` file                                   -> COCO instances
3. a folder with ``coco_data/coco_annotations.json``  -> BlenderProc COCO writer output
4. a folder with ``image_2/ + label_2/`` or ``images/ + labels/`` (or under ``training/``) -> KITTI
5. a folder with ``annotations.json`` / ``instances*.json`` (one COCO file) -> COCO
6. a ``.hdf5`` file or a folder of them               -> BlenderProc HDF5 (converted into ``work_dir``)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from synthloop.dataset.folder import is_synthloop_dataset, load_dataset
from synthloop.dataset.types import Dataset
from synthloop.errors import DatasetError
from synthloop.importers.blenderproc import (
    find_blenderproc_coco,
    load_blenderproc_coco,
    load_blenderproc_hdf5,
)
from synthloop.importers.coco import image_size, load_coco
from synthloop.importers.kitti import find_kitti_root, load_kitti

__all__ = [
    "detect_format",
    "load_any",
    "load_blenderproc_coco",
    "load_blenderproc_hdf5",
    "load_coco",
    "load_kitti",
]


def detect_format(path: str | Path) -> str:
    """One of ``synthloop``, ``coco``, ``blenderproc-coco``, ``kitti``, ``blenderproc-hdf5``."""
    p = Path(path)
    if not p.exists():
        raise DatasetError("no such file or folder", path=str(p))
    if p.is_file():
        if p.suffix.lower() == ".json":
            return "coco"
        if p.suffix.lower() in (".hdf5", ".h5"):
            return "blenderproc-hdf5"
        raise DatasetError("unknown dataset file type (expected .json or .hdf5)", path=str(p))
    if is_synthloop_dataset(p):
        return "synthloop"
    if find_blenderproc_coco(p) is not None:
        return "blenderproc-coco"
    if find_kitti_root(p) is not None:
        return "kitti"
    if _coco_json_in(p) is not None:
        return "coco"
    if any(p.glob("*.hdf5")):
        return "blenderproc-hdf5"
    raise DatasetError(
        "cannot tell the dataset format (not a synthloop folder, COCO json, KITTI or BlenderProc folder)",
        path=str(p),
    )


def verify_frame_images(ds: Dataset) -> None:
    """Decode every frame's image fully; a missing, truncated or garbage file, or one whose size
    differs from the frame's, raises DatasetError naming it."""
    for f in ds.frames:
        try:
            size = image_size(Path(f.image_path), full=True)
        except (OSError, ValueError, SyntaxError) as e:
            raise DatasetError(
                f"unreadable or truncated image ({e})", path=str(f.image_path), where=f"frame {f.frame_id}"
            ) from None
        if size != (f.width, f.height):
            raise DatasetError(
                f"image is {size[0]}x{size[1]} but the record says {f.width}x{f.height}",
                path=str(f.image_path),
                where=f"frame {f.frame_id}",
            )


def _coco_json_in(folder: Path) -> Path | None:
    cands = [folder / "annotations.json"] if (folder / "annotations.json").is_file() else []
    cands = cands or sorted(folder.glob("instances*.json"))
    return cands[0] if len(cands) == 1 else None


def load_any(
    path: str | Path,
    *,
    skip_invalid: bool = False,
    verify_images: bool = False,
    work_dir: str | Path | None = None,
) -> Dataset:
    """Load any supported dataset (see module docstring). ``work_dir``: where BlenderProc HDF5
    frames are converted to a synthloop folder (default: a new temp folder, left in place)."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "synthloop":
        ds = load_dataset(p)
        if verify_images:
            verify_frame_images(ds)
        return ds
    if fmt == "coco":
        json_path = p if p.is_file() else _coco_json_in(p)
        return load_coco(json_path, skip_invalid=skip_invalid, verify_images=verify_images)  # type: ignore[arg-type]
    if fmt == "blenderproc-coco":
        return load_blenderproc_coco(p, skip_invalid=skip_invalid, verify_images=verify_images)
    if fmt == "kitti":
        return load_kitti(p, skip_invalid=skip_invalid, verify_images=verify_images)
    out = (
        Path(work_dir)
        if work_dir is not None
        else Path(tempfile.mkdtemp(prefix="synthloop-bproc-")) / "dataset"
    )
    return load_blenderproc_hdf5(p, out)
