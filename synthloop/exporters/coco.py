"""In-memory Dataset -> COCO instances JSON (+ the images beside it).

The dict and its exact rules (boxes, RLE masks, areas, ids, the namespaced ``synthloop`` extras of
layout :data:`COCO_LAYOUT`, keypoint sigmas) are :func:`synthloop.dataset.coco_dict.coco_instances`,
the builder evaluation scores against too; this module names the images uniquely and writes the
folder atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_json
from synthloop.dataset.coco_dict import COCO_LAYOUT, FIFTYONE_RESERVED, NAMESPACE, coco_instances
from synthloop.dataset.staging import link_or_copy, require_files, staged_dir, unique_names
from synthloop.dataset.types import Dataset

__all__ = [
    "COCO_LAYOUT",
    "FIFTYONE_RESERVED",
    "NAMESPACE",
    "dataset_to_coco",
    "image_file_names",
    "write_coco",
]


def image_file_names(ds: Dataset) -> list[str]:
    """Unique file names for the frames' images (the original base name; ``_1``... on clashes)."""
    return unique_names([Path(f.image_path).name for f in ds.frames])


def dataset_to_coco(ds: Dataset, file_names: list[str] | None = None) -> dict[str, Any]:
    """The COCO instances dict of a dataset (:func:`synthloop.dataset.coco_dict.coco_instances`).

    ``file_names``: each frame's ``file_name`` (default: :func:`image_file_names`).
    """
    return coco_instances(ds, file_names if file_names is not None else image_file_names(ds))


def write_coco(
    ds: Dataset,
    out_dir: str | Path,
    *,
    copy_images: bool = True,
    file_name: str = "annotations.json",
) -> Path:
    """Write ``out_dir/<file_name>`` (and ``out_dir/images/`` when ``copy_images``); return the JSON path.

    With ``copy_images`` the images are hard-linked (or copied) into ``images/`` under unique
    names and ``file_name`` entries are relative to ``images/``; without it ``file_name`` is the
    image's path relative to ``out_dir``. The folder is built in a temp sibling and published at
    the end (the JSON last), so an error never leaves a half-written export.
    """
    out_dir = Path(out_dir).absolute()
    if copy_images:
        require_files(ds.frames)
        names = image_file_names(ds)
    else:
        import os

        names = [os.path.relpath(Path(f.image_path).absolute(), out_dir) for f in ds.frames]
    with staged_dir(out_dir, markers=[file_name]) as tmp:
        coco = dataset_to_coco(ds, names)
        if copy_images:
            for frame, name in zip(ds.frames, names, strict=True):
                link_or_copy(Path(frame.image_path), tmp / "images" / name)
        atomic_write_json(tmp / file_name, coco)
    return out_dir / file_name
