"""Dataset statistics: per-class counts, box-size and occlusion histograms (+ a rich table)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from synthloop.dataset.types import Dataset

COCO_SIZE_LIMITS = (32**2, 96**2)  # area < 32^2 small, < 96^2 medium, else large (COCO eval)
SIZE_BIN_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, 512)  # sqrt(area) in pixels; last bin open
OCCLUSION_BIN_EDGES = tuple(round(0.1 * i, 1) for i in range(11))


def coco_size(area: float) -> str:
    """COCO size class of an area in pixels: small / medium / large."""
    return "small" if area < COCO_SIZE_LIMITS[0] else "medium" if area < COCO_SIZE_LIMITS[1] else "large"


def _bin_label(edges: tuple, i: int, fmt: str = "{}") -> str:
    return f"[{fmt.format(edges[i])}, {fmt.format(edges[i + 1])})" if i + 1 < len(edges) else f">={edges[i]}"


def _size_bin(side: float) -> int:
    for i in range(len(SIZE_BIN_EDGES) - 1, -1, -1):
        if side >= SIZE_BIN_EDGES[i]:
            return i
    return 0


def dataset_stats(ds: Dataset) -> dict[str, Any]:
    """Counts and histograms of a dataset (JSON-able).

    Keys: ``frames``, ``objects``, ``frames_without_objects``, ``classes`` ({name: {id, objects,
    frames, crowd}}), ``coco_sizes`` ({small, medium, large}, by ``area`` in px), ``size_bins``
    ({"[a, b)": count} by sqrt(area) in px), ``occlusion`` ({"[0.0, 0.1)": count, ..., "unknown"};
    occlusion 1.0 falls in the last bin), ``truncated`` (objects with truncation > 0).
    """
    cats = ds.category_by_id()
    classes: dict[str, dict[str, int]] = {
        c.name: {"id": c.id, "objects": 0, "frames": 0, "crowd": 0}
        for c in sorted(ds.categories, key=lambda c: c.id)
    }
    sizes = {"small": 0, "medium": 0, "large": 0}
    size_bins = {_bin_label(SIZE_BIN_EDGES, i): 0 for i in range(len(SIZE_BIN_EDGES))}
    occ_bins = {_bin_label(OCCLUSION_BIN_EDGES, i, "{:.1f}"): 0 for i in range(10)}
    occ_bins["unknown"] = 0
    n_obj = n_empty = n_trunc = 0
    for f in ds.frames:
        if not f.objects:
            n_empty += 1
        seen: set[str] = set()
        for o in f.objects:
            name = cats[o.category_id].name if o.category_id in cats else f"<unknown id {o.category_id}>"
            entry = classes.setdefault(name, {"id": o.category_id, "objects": 0, "frames": 0, "crowd": 0})
            entry["objects"] += 1
            entry["crowd"] += int(o.iscrowd)
            if name not in seen:
                entry["frames"] += 1
                seen.add(name)
            n_obj += 1
            area = max(float(o.area), 0.0)
            sizes[coco_size(area)] += 1
            size_bins[_bin_label(SIZE_BIN_EDGES, _size_bin(math.sqrt(area)))] += 1
            if o.occlusion is None:
                occ_bins["unknown"] += 1
            else:
                i = min(int(math.floor(float(o.occlusion) * 10 + 1e-9)), 9)
                occ_bins[_bin_label(OCCLUSION_BIN_EDGES, max(i, 0), "{:.1f}")] += 1
            n_trunc += int((o.truncation or 0) > 0)
    return {
        "name": ds.name,
        "frames": len(ds.frames),
        "objects": n_obj,
        "frames_without_objects": n_empty,
        "classes": classes,
        "coco_sizes": sizes,
        "size_bins": size_bins,
        "occlusion": occ_bins,
        "truncated": n_trunc,
    }


def stats_tables(stats: dict[str, Any]) -> list[Table]:
    """Rich tables of :func:`dataset_stats` output: classes, sizes, occlusion."""
    t1 = Table(title=f"{stats['name'] or 'dataset'}: {stats['frames']} frames, {stats['objects']} objects")
    for col in ("id", "class", "objects", "frames", "crowd"):
        t1.add_column(col, justify="right" if col != "class" else "left")
    for name, c in stats["classes"].items():
        t1.add_row(str(c["id"]), name, str(c["objects"]), str(c["frames"]), str(c["crowd"]))
    t2 = Table(title="box size: COCO (area) and sqrt(area) px")
    t2.add_column("bin")
    t2.add_column("objects", justify="right")
    for k, v in {**stats["coco_sizes"], **stats["size_bins"]}.items():
        t2.add_row(k, str(v))
    t3 = Table(title="occlusion fraction")
    t3.add_column("bin")
    t3.add_column("objects", justify="right")
    for k, v in stats["occlusion"].items():
        t3.add_row(k, str(v))
    return [t1, t2, t3]
