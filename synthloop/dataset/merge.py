"""Merge datasets (categories unified by name) and write any Dataset as a synthloop folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import FRAME_SCHEMA, MANIFEST, DatasetWriter, object_to_record
from synthloop.dataset.staging import (
    frame_stems,
    link_or_copy,
    require_files,
    safe_stem,
    staged_dir,
    unique_names,
)
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import DatasetError

_RECORD_EXTRA_KEYS = ("frame_index", "seed", "recipe_hash", "recipe_name")


def unify_categories(datasets: Sequence[Dataset]) -> tuple[list[Category], list[dict[int, int]]]:
    """Categories of all datasets unified by name, and per dataset a map old id -> new id.

    A name keeps the id it has in the first dataset that has it when that id is still free,
    else gets the next free id (so merging into a first dataset never renumbers it). The same
    name with different keypoints/skeleton raises DatasetError.
    """
    by_name: dict[str, Category] = {}
    used: set[int] = set()
    maps: list[dict[int, int]] = []
    for k, ds in enumerate(datasets):
        m: dict[int, int] = {}
        for c in sorted(ds.categories, key=lambda c: c.id):
            have = by_name.get(c.name)
            if have is None:
                new_id = c.id if c.id not in used and c.id >= 1 else max(used | {0}) + 1
                have = dataclasses.replace(c, id=new_id)
                by_name[c.name] = have
                used.add(new_id)
            elif (have.keypoints, have.skeleton) != (c.keypoints, c.skeleton):
                raise DatasetError(
                    f"category {c.name!r} has different keypoints/skeleton than in an earlier dataset",
                    path=str(ds.root or ds.name or f"dataset {k}"),
                    where=f"categories (id {c.id})",
                )
            m[c.id] = have.id
        maps.append(m)
    return sorted(by_name.values(), key=lambda c: c.id), maps


def merge_datasets(datasets: Sequence[Dataset], prefixes: Sequence[str] | None = None) -> Dataset:
    """One Dataset with the frames of all ``datasets`` (in order).

    Categories are unified by name (:func:`unify_categories`) and objects re-labeled. With more
    than one dataset every frame id becomes ``<prefix>_<frame_id>`` where the prefix is
    ``prefixes[k]`` or the dataset's name (file-safe, made unique; ``ds<k>`` when empty).
    """
    if not datasets:
        raise DatasetError("nothing to merge", where="merge")
    cats, maps = unify_categories(datasets)
    if prefixes is None:
        prefixes = unique_names([safe_stem(d.name) if d.name else f"ds{k}" for k, d in enumerate(datasets)])
    elif len(prefixes) != len(datasets):
        raise DatasetError("need one prefix per dataset", where="merge.prefixes")
    frames: list[Frame] = []
    for ds, m, prefix in zip(datasets, maps, prefixes, strict=True):
        for f in ds.frames:
            objs = []
            for o in f.objects:
                if o.category_id not in m:
                    raise DatasetError(
                        f"object category id {o.category_id} is not in the dataset's categories",
                        path=str(ds.root or ds.name),
                        where=f"frame {f.frame_id}",
                    )
                objs.append(dataclasses.replace(o, category_id=m[o.category_id]))
            fid = f"{prefix}_{f.frame_id}" if len(datasets) > 1 else f.frame_id
            frames.append(dataclasses.replace(f, frame_id=fid, objects=objs, extra=dict(f.extra)))
    if len({f.frame_id for f in frames}) != len(frames):
        raise DatasetError("frame ids are not unique after prefixing; pass distinct prefixes", where="merge")
    return Dataset(
        categories=cats,
        frames=frames,
        name="+".join(d.name for d in datasets if d.name) or "merged",
        info={"merged_from": [{"name": d.name, "root": str(d.root) if d.root else None} for d in datasets]},
    )


def frame_to_record(
    frame: Frame, image_rel: str, instance_rel: str | None, depth_rel: str | None, stem: str
) -> dict[str, Any]:
    """A synthloop frame record (the form ``folder.frame_from_record`` reads) for ``frame``."""
    rec: dict[str, Any] = {
        "schema": FRAME_SCHEMA,
        "frame_id": stem,
        "image": image_rel,
        "width": int(frame.width),
        "height": int(frame.height),
        "source": frame.source,
        "scene_params": frame.scene_params,
        "objects": [object_to_record(o) for o in frame.objects],
    }
    if instance_rel:
        rec["instance_map"] = instance_rel
    if depth_rel:
        rec["depth"] = depth_rel
    if frame.camera is not None:
        rec["camera"] = {"K": frame.camera.K, "world_to_cam": frame.camera.world_to_cam}
    for k in _RECORD_EXTRA_KEYS:
        if k in frame.extra:
            rec[k] = frame.extra[k]
    return rec


def write_dataset_folder(ds: Dataset, out: str | Path) -> Path:
    """Write ``ds`` as a synthloop dataset folder at ``out`` (images, instance maps and depth
    hard-linked or copied, one record per frame); built in a temp sibling, published at the end.

    File stems are the frame ids made file-safe (and unique); each record's ``frame_id`` is its
    stem, as :class:`DatasetWriter` writes it.
    """
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # Writing into it would keep its old frames next to the new ones.
        raise DatasetError("output folder exists and is not empty; choose a new one", path=str(out))
    stems = frame_stems(ds)
    for attr in ("image_path", "instance_map_path", "depth_path"):
        require_files(ds.frames, attr)
    with staged_dir(out, markers=[MANIFEST]) as tmp:
        DatasetWriter(tmp, ds.categories, info=ds.info)
        for f, stem in zip(ds.frames, stems, strict=True):
            img_rel = f"images/{stem}{Path(f.image_path).suffix.lower()}"
            link_or_copy(Path(f.image_path), tmp / img_rel)
            inst_rel = depth_rel = None
            if f.instance_map_path is not None:
                inst_rel = f"instances/{stem}.png"
                link_or_copy(Path(f.instance_map_path), tmp / inst_rel)
            if f.depth_path is not None:
                depth_rel = f"depth/{stem}{Path(f.depth_path).suffix.lower()}"
                link_or_copy(Path(f.depth_path), tmp / depth_rel)
            atomic_write_json(
                tmp / "records" / f"{stem}.json", frame_to_record(f, img_rel, inst_rel, depth_rel, stem)
            )
    return out
