"""KITTI object labels (KITTI ``image_2/label_2[/calib]`` or flat ``images/labels`` layout) -> Dataset.

Each frame is an image; its label file (same stem, ``.txt``) may be missing (no objects). Lines
have the 15 KITTI fields (an optional 16th is a score, kept in ``attributes["score"]``);
``DontCare`` lines are not objects: their boxes go to ``Frame.extra["kitti_dontcare"]`` (the KITTI
exporter writes them back). Per object:

* ``bbox`` = (x1, y1, x2, y2); ``area`` = box area (KITTI has no masks); ``truncation`` = the
  truncated field; ``occlusion`` stays None (KITTI gives only a level) and the level goes to
  ``attributes["kitti_occluded"]`` (so a re-export writes the same level).
* 3D fields that are not KITTI's don't-care values (dims -1, location -1000) become a
  :class:`Box3D` (centre = bottom centre - h/2 along Y, corners from the KITTI box); otherwise
  the alpha is kept in ``attributes["kitti_alpha"]``.
* ``calib/<stem>.txt`` (KITTI layout): ``CameraModel.K`` = P2[:, :3]; ``world_to_cam`` = identity
  (KITTI object calib has no world frame).

Categories: the type names sorted, ids from 1; or ``categories`` = {type name: id}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.dataset.types import Box3D, CameraModel, Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.exporters.kitti import DONT_CARE_ANGLE, LAYOUTS, kitti_corners
from synthloop.geometry.masks import COORD_REACH
from synthloop.importers.coco import image_size
from synthloop.userfiles import read_user_text

FIELD_NAMES = (
    "type",
    "truncated",
    "occluded",
    "alpha",
    "x1",
    "y1",
    "x2",
    "y2",
    "h",
    "w",
    "l",
    "x",
    "y",
    "z",
    "rotation_y",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class _LineError(Exception):
    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(reason)


def find_kitti_root(root: str | Path) -> tuple[Path, str] | None:
    """(folder holding the image/label dirs, layout) for ``root`` (or its ``training/``), else None."""
    root = Path(root)
    for base in (root, root / "training"):
        for layout, (img, lbl) in LAYOUTS.items():
            if (base / img).is_dir() and (base / lbl).is_dir():
                return base, layout
    return None


def parse_label_line(line: str) -> dict[str, Any]:
    """One KITTI label line -> dict of the 15 named fields (+ ``score``); raises _LineError."""
    parts = line.split()
    if len(parts) < 15:
        raise _LineError(
            "", f"expected 15 fields (type truncated occluded alpha bbox dims location ry), got {len(parts)}"
        )
    if len(parts) > 16:
        raise _LineError("", f"expected 15 or 16 fields, got {len(parts)}")
    out: dict[str, Any] = {"type": parts[0]}
    for name, tok in zip(FIELD_NAMES[1:], parts[1:15], strict=True):
        try:
            v = float(tok)
        except ValueError:
            raise _LineError(name, f"not a number: {tok!r}") from None
        if not np.isfinite(v):
            raise _LineError(name, f"not a finite number: {tok!r}")
        out[name] = v
    if len(parts) == 16:
        try:
            out["score"] = float(parts[15])
        except ValueError:
            raise _LineError("score", f"not a number: {parts[15]!r}") from None
        if not np.isfinite(out["score"]):
            raise _LineError("score", f"not a finite number: {parts[15]!r}")
    if not (0.0 <= out["truncated"] <= 1.0 or out["truncated"] == -1.0):
        raise _LineError("truncated", f"must be in [0, 1] (or -1), got {parts[1]}")
    if out["occluded"] not in (0, 1, 2, 3):
        raise _LineError("occluded", f"must be 0, 1, 2 or 3, got {parts[2]}")
    if out["x2"] < out["x1"] or out["y2"] < out["y1"]:
        raise _LineError("x2", "box has x2 < x1 or y2 < y1")
    return out


def _dontcare_box(toks: list[str]) -> list[float] | None:
    """The x1 y1 x2 y2 box (fields 5-8) of a ``DontCare`` line, or None when it is not one."""
    try:
        box = [float(v) for v in toks[4:8]]
    except ValueError:
        return None
    ok = len(box) == 4 and all(np.isfinite(box)) and box[2] >= box[0] and box[3] >= box[1]
    return box if ok else None


def parse_calib_K(path: Path) -> list[list[float]]:
    """K (3x3) = the first 3 columns of the ``P2`` row of a KITTI object calib file."""
    for n, line in enumerate(read_user_text(path, DatasetError).splitlines(), start=1):
        if line.startswith("P2:"):
            vals = line.split(":", 1)[1].split()
            try:
                P = np.array([float(v) for v in vals], dtype=np.float64)
            except ValueError:
                raise DatasetError("P2 has a non-number", path=str(path), where=f"line {n}") from None
            if not np.isfinite(P).all():
                raise DatasetError("P2 has a non-finite number", path=str(path), where=f"line {n}")
            if P.size != 12:
                raise DatasetError(
                    f"P2 must have 12 numbers, got {P.size}", path=str(path), where=f"line {n}"
                )
            return P.reshape(3, 4)[:, :3].tolist()
    raise DatasetError("no P2 row", path=str(path))


def _object(f: dict[str, Any], category_id: int) -> ObjectAnnotation:
    bbox = (f["x1"], f["y1"], f["x2"], f["y2"])
    dims = (f["h"], f["w"], f["l"])
    loc = (f["x"], f["y"], f["z"])
    attributes: dict[str, Any] = {"kitti_occluded": int(f["occluded"])}
    if "score" in f:
        attributes["score"] = f["score"]
    box3d = None
    if min(dims) > 0 and loc != (-1000.0, -1000.0, -1000.0):
        corners = kitti_corners(dims, loc, f["rotation_y"])
        box3d = Box3D(
            center=(loc[0], loc[1] - dims[0] / 2, loc[2]),
            dimensions=dims,
            rotation_y=f["rotation_y"],
            corners=tuple(tuple(float(v) for v in c) for c in corners),  # type: ignore[misc]
        )
    elif f["alpha"] != DONT_CARE_ANGLE:
        attributes["kitti_alpha"] = f["alpha"]
    return ObjectAnnotation(
        category_id=category_id,
        bbox=bbox,
        area=(bbox[2] - bbox[0]) * (bbox[3] - bbox[1]),
        truncation=f["truncated"],
        box3d=box3d,
        attributes=attributes,
    )


def _label_rows(
    lbl: Path,
    w: int,
    h: int,
    categories: Mapping[str, int] | None,
    fail: Callable[[Path, str, str], None],
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """The parsed object lines of label file ``lbl`` of a ``w`` x ``h`` image (each with its
    ``_where``), and its DontCare boxes (x1, y1, x2, y2 pixels). A bad line goes to ``fail(path,
    where, reason)``, which raises or records it; its line is skipped."""
    rows: list[dict[str, Any]] = []
    dontcare: list[list[float]] = []
    for n, line in enumerate(read_user_text(lbl, DatasetError).splitlines(), start=1):
        if not line.strip():
            continue
        if line.split()[0] == "DontCare":  # ignore regions: not objects; kept in frame.extra
            box = _dontcare_box(line.split())
            if box is None:
                fail(lbl, f"line {n}", "DontCare line needs a finite box x1 y1 x2 y2 in fields 5-8")
            else:
                dontcare.append(box)
            continue
        try:
            f = parse_label_line(line)
        except _LineError as e:
            fail(lbl, f"line {n}" + (f".{e.field}" if e.field else ""), e.reason)
            continue
        if categories is not None and f["type"] not in categories:
            fail(lbl, f"line {n}.type", f"type {f['type']!r} is not in the given categories")
            continue
        reach = COORD_REACH * max(w, h)
        if not all(-reach <= f[k] <= reach for k in ("x1", "y1", "x2", "y2")):
            fail(lbl, f"line {n}.x1", f"box corners must lie within +-{reach} pixels of the image")
            continue
        f["_where"] = (lbl, n)
        rows.append(f)
    return rows, dontcare


@dataclass
class _Failures:
    """Bad input of one folder: one :class:`DatasetError` naming the file and ``where``, or (with
    ``skip``) a row of ``skipped`` (record, field, reason), and the reader goes on."""

    skip: bool
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, path: Path, where: str, reason: str) -> None:
        if not self.skip:
            raise DatasetError(reason, path=str(path), where=where or None)
        record, _, name = where.partition(".")
        self.skipped.append(
            {"record": f"{path.name}" + (f" {record}" if record else ""), "field": name, "reason": reason}
        )


@dataclass(frozen=True)
class _LabelledImage:
    """One image of the folder (size in pixels) and its label file's rows and DontCare boxes."""

    stem: str
    image: Path
    width: int
    height: int
    rows: list[dict[str, Any]]
    dontcare: list[list[float]]


def load_kitti(
    root: str | Path,
    *,
    skip_invalid: bool = False,
    categories: Mapping[str, int] | None = None,
    verify_images: bool = False,
) -> Dataset:
    """Read a KITTI-layout or flat-layout folder (see module docstring).

    Bad lines (too few fields, non-numbers, unknown type with a given ``categories`` map) raise
    one :class:`DatasetError` naming the label file and line; ``skip_invalid=True`` skips them and
    lists them in ``ds.info["skipped"]``. Unreadable images always raise (or are skipped).
    """
    found = find_kitti_root(root)
    if found is None:
        raise DatasetError(
            "not a KITTI folder (needs image_2/ + label_2/ or images/ + labels/)", path=str(root)
        )
    base, layout = found
    base = base.resolve()
    fail = _Failures(skip_invalid)
    parsed = _read_labels(base, layout, categories, verify_images, fail)
    names = dict(categories) if categories is not None else _category_ids(parsed)
    cats = [Category(id=int(i), name=t) for t, i in sorted(names.items(), key=lambda kv: kv[1])]
    calib_dir = base / "calib"
    frames = []
    for p in parsed:
        calib = calib_dir / f"{p.stem}.txt"
        camera = None
        if layout == "kitti" and calib.exists():
            camera = CameraModel(K=parse_calib_K(calib), world_to_cam=np.eye(4).tolist())
        frames.append(_frame(p, names, camera))
    return Dataset(
        categories=cats,
        frames=frames,
        name=base.name,
        root=base,
        info={"source_format": "kitti", "layout": layout, "source_path": str(base), "skipped": fail.skipped},
    )


def _read_labels(
    base: Path, layout: str, categories: Mapping[str, int] | None, verify_images: bool, fail: _Failures
) -> list[_LabelledImage]:
    """Every image of the folder (sorted by stem) with its parsed label file (none: no objects); a
    label file without an image and an unreadable image go to ``fail``."""
    img_dir, lbl_dir = (base / d for d in LAYOUTS[layout])
    images = {p.stem: p for p in sorted(img_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    for lbl in sorted(lbl_dir.glob("*.txt")):
        if lbl.stem not in images:
            fail(lbl, "", f"no image {lbl.stem}.* in {img_dir}")
    parsed = []
    for stem, img_path in sorted(images.items()):
        try:
            w, h = image_size(img_path, full=verify_images)
        except (OSError, ValueError, SyntaxError) as e:
            fail(img_path, "", f"unreadable or truncated image ({e})")
            continue
        lbl = lbl_dir / f"{stem}.txt"
        rows, dontcare = (
            _label_rows(lbl, w, h, categories, fail) if lbl.exists() or lbl.is_symlink() else ([], [])
        )
        parsed.append(_LabelledImage(stem, img_path, w, h, rows, dontcare))
    return parsed


def _category_ids(parsed: list[_LabelledImage]) -> dict[str, int]:
    """Ids 1, 2, ... for the object types found, in sorted order (no ``categories`` map given)."""
    types = sorted({row["type"] for p in parsed for row in p.rows})
    return {t: i for i, t in enumerate(types, start=1)}


def _frame(p: _LabelledImage, names: Mapping[str, int], camera: CameraModel | None) -> Frame:
    """The dataset frame of one labelled image (DontCare boxes kept in ``extra``)."""
    return Frame(
        frame_id=p.stem,
        image_path=p.image,
        width=p.width,
        height=p.height,
        objects=[_object(row, names[row["type"]]) for row in p.rows],
        source="kitti",
        camera=camera,
        extra={"kitti_dontcare": p.dontcare} if p.dontcare else {},
    )
