"""In-memory Dataset -> KITTI object-detection labels (+ calib), in KITTI or flat (TAO/DIGITS) layout.

Layouts::

    layout="kitti":  image_2/<stem>.<ext>  label_2/<stem>.txt  calib/<stem>.txt (frames with K)
    layout="flat":   images/<stem>.<ext>   labels/<stem>.txt                    (NVIDIA TAO / DIGITS)

Stems are the frame ids made file-safe (unique; ``_1``... on clashes).

Each label line has the 15 KITTI fields, space separated::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y

* ``type``: the category name, spaces -> ``_``; lower-cased by default (TAO lower-cases class
  names when it reads KITTI labels, so mixed case would not match its spec files).
* ``truncated``: ``ObjectAnnotation.truncation`` (fraction 0..1), 0 when unknown.
* ``occluded``: from the occlusion fraction: < 0.1 -> 0 (fully visible), < 0.5 -> 1 (partly),
  else 2 (largely occluded); unknown -> 3 (KITTI's "unknown"), or the imported KITTI level kept in
  ``attributes["kitti_occluded"]``.
* ``alpha``: observation angle ``wrap(rotation_y - atan2(x, z))`` of the box centre, in [-pi, pi].
* ``x1 y1 x2 y2``: the 2D pixel box (2 decimals), synthloop convention: pixel i covers [i, i+1).
* ``h w l`` (m), ``x y z`` (camera frame, OpenCV/KITTI axes, metres: the BOTTOM centre of the
  box), ``rotation_y`` (rad). KITTI boxes have their height axis along camera Y; the box written is
  the one with vertical axis = camera Y and yaw = ``Box3D.rotation_y`` that encloses the 8
  ``Box3D.corners``. It is exact when the object's up axis is the camera's -Y, and enclosing
  otherwise, so the 3D box projected with P2 always encloses the object's projection (and so its
  2D box). Objects without ``box3d`` (real data) get KITTI's "don't care" values:
  h w l = -1, x y z = -1000, rotation_y = -10, alpha = -10.
* Crowd objects (``iscrowd``) are written as ``DontCare`` lines (KITTI's regions to ignore; 2D box
  only, other fields -1 / -10 / -1000); DontCare boxes an importer kept in
  ``Frame.extra["kitti_dontcare"]`` are written back the same way.

Calib files (KITTI object format): P0..P3 = ``[K | 0]`` (one camera), R0_rect = I,
Tr_velo_to_cam = the axis swap from a KITTI velodyne frame (x fwd, y left, z up) to the camera
frame, Tr_imu_to_velo = [I | 0].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthloop.atomic import atomic_write_bytes
from synthloop.dataset.staging import frame_stems, link_or_copy, require_files, staged_dir
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError, SynthloopError

DONT_CARE_DIMS = (-1.0, -1.0, -1.0)
DONT_CARE_LOC = (-1000.0, -1000.0, -1000.0)
DONT_CARE_ANGLE = -10.0
OCCLUSION_THRESHOLDS = (0.1, 0.5)  # fraction < 0.1 -> 0, < 0.5 -> 1, else 2
LAYOUTS = {"kitti": ("image_2", "label_2"), "flat": ("images", "labels")}


# ---------------------------------------------------------------- pure geometry
def wrap_angle(a: float) -> float:
    """Wrap an angle (rad) into [-pi, pi)."""
    return (float(a) + math.pi) % (2 * math.pi) - math.pi


def rot_y(ry: float) -> np.ndarray:
    """3x3 rotation about camera +Y by ``ry`` rad (KITTI: x' = cos x + sin z, z' = -sin x + cos z)."""
    c, s = math.cos(ry), math.sin(ry)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def observation_angle(rotation_y: float, x: float, z: float) -> float:
    """KITTI alpha = wrap(rotation_y - atan2(x, z)) for an object centred at camera (x, ., z)."""
    return wrap_angle(rotation_y - math.atan2(x, z))


def kitti_box_from_corners(
    corners: np.ndarray, rotation_y: float
) -> tuple[tuple[float, float, float], np.ndarray]:
    """Smallest box with vertical axis = camera Y and yaw ``rotation_y`` that encloses ``corners``.

    ``corners``: (N, 3) points in the camera frame (OpenCV axes, metres). Returns
    ``((h, w, l), location)`` with ``location`` (3,) the BOTTOM centre (largest y: +Y is down),
    ``l`` along the box's local x (heading), ``w`` along local z, ``h`` along camera Y.
    """
    p = np.asarray(corners, dtype=np.float64).reshape(-1, 3)
    r = rot_y(rotation_y)
    local = p @ r  # rows: R^T p  (coordinates in the yawed frame)
    lo, hi = local.min(axis=0), local.max(axis=0)
    length, height, width = hi - lo
    bottom_local = np.array([(lo[0] + hi[0]) / 2, hi[1], (lo[2] + hi[2]) / 2])
    return (float(height), float(width), float(length)), r @ bottom_local


def kitti_corners(
    dims_hwl: Sequence[float], location: Sequence[float] | np.ndarray, rotation_y: float
) -> np.ndarray:
    """(8, 3) corners of a KITTI box (``location`` = bottom centre) in the camera frame."""
    h, w, length = (float(v) for v in dims_hwl)
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * (length / 2)
    y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * (w / 2)
    return (rot_y(rotation_y) @ np.stack([x, y, z])).T + np.asarray(location, dtype=np.float64)


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) camera points (z > 0) -> (N, 2) pixels (u, v) with ``P2 = [K | 0]``."""
    p = np.asarray(points, dtype=np.float64) @ np.asarray(K, dtype=np.float64).T
    return p[:, :2] / p[:, 2:3]


def occlusion_level(occlusion: float | None) -> int:
    """Occlusion fraction -> KITTI level: < 0.1 -> 0, < 0.5 -> 1, else 2; None -> 3 (unknown)."""
    if occlusion is None:
        return 3
    lo, hi = OCCLUSION_THRESHOLDS
    return 0 if occlusion < lo else 1 if occlusion < hi else 2


def kitti_type(name: str, lowercase: bool = True) -> str:
    """Category name -> KITTI type token (no whitespace; lower-cased unless ``lowercase=False``)."""
    t = "_".join(str(name).split())
    return t.lower() if lowercase else t


def label_fields(obj: ObjectAnnotation, type_name: str) -> list[float | int | str]:
    """The 15 KITTI fields of one object (see module docstring), unformatted."""
    trunc = float(obj.truncation) if obj.truncation is not None else 0.0
    if obj.occlusion is None and isinstance(obj.attributes.get("kitti_occluded"), int):
        occ = int(obj.attributes["kitti_occluded"])
    else:
        occ = occlusion_level(obj.occlusion)
    x1, y1, x2, y2 = (float(v) for v in obj.bbox)
    if obj.box3d is not None:
        b = obj.box3d
        corners = np.asarray(b.corners, dtype=np.float64) if b.corners else None
        if corners is None or corners.shape != (8, 3):
            corners = kitti_corners(
                b.dimensions, np.asarray(b.center) + [0, b.dimensions[0] / 2, 0], b.rotation_y
            )
        dims, loc = kitti_box_from_corners(corners, b.rotation_y)
        ry = wrap_angle(b.rotation_y)
        alpha = observation_angle(ry, loc[0], loc[2])
        xyz = tuple(float(v) for v in loc)
    else:
        dims, xyz, ry = DONT_CARE_DIMS, DONT_CARE_LOC, DONT_CARE_ANGLE
        alpha = float(obj.attributes.get("kitti_alpha", DONT_CARE_ANGLE))
    return [type_name, trunc, occ, alpha, x1, y1, x2, y2, *dims, *xyz, ry]


def format_label_line(fields: Sequence[float | int | str]) -> str:
    """KITTI text: type, truncated and all floats with 2 decimals, occluded as int."""
    t, trunc, occ, *rest = fields
    return " ".join([str(t), f"{float(trunc):.2f}", str(int(occ)), *(f"{float(v):.2f}" for v in rest)])


VELO_TO_CAM = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


def calib_text(K: Sequence[Sequence[float]]) -> str:
    """A KITTI object calib file for one pinhole camera with intrinsics ``K`` (3x3)."""
    P = np.hstack([np.asarray(K, dtype=np.float64).reshape(3, 3), np.zeros((3, 1))])
    imu = np.hstack([np.eye(3), np.zeros((3, 1))])

    def row(name: str, m: np.ndarray) -> str:
        return name + ": " + " ".join(f"{v:.12e}" for v in m.ravel())

    lines = [row(f"P{i}", P) for i in range(4)]
    lines += [row("R0_rect", np.eye(3)), row("Tr_velo_to_cam", VELO_TO_CAM), row("Tr_imu_to_velo", imu)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- writer
def frame_label_text(frame: Frame, cats: dict[int, Category], lowercase: bool = True) -> str:
    """All label lines of one frame (zero-area objects left out)."""
    lines = []
    for obj in frame.objects:
        if not obj.area > 0:
            continue
        cat = cats.get(obj.category_id)
        if cat is None:
            raise DatasetError(
                f"category id {obj.category_id} is not in the dataset's categories",
                where=f"frame {frame.frame_id} category_id",
            )
        if obj.iscrowd:  # a crowd region is what KITTI calls DontCare: 2D box only
            x1, y1, x2, y2 = obj.bbox
            lines.append(
                format_label_line(["DontCare", -1, -1, -10, x1, y1, x2, y2, -1, -1, -1, *DONT_CARE_LOC, -10])
            )
            continue
        lines.append(format_label_line(label_fields(obj, kitti_type(cat.name, lowercase))))
    for x1, y1, x2, y2 in frame.extra.get("kitti_dontcare", []):  # imported DontCare regions
        lines.append(
            format_label_line(["DontCare", -1, -1, -10, x1, y1, x2, y2, -1, -1, -1, *DONT_CARE_LOC, -10])
        )
    return "".join(line + "\n" for line in lines)


def write_kitti(ds: Dataset, out_dir: str | Path, *, layout: str = "kitti", lowercase: bool = True) -> Path:
    """Write the dataset as KITTI labels (see module docstring); returns ``out_dir``.

    Built in a temp sibling folder and published at the end; an error leaves no partial output.
    """
    if layout not in LAYOUTS:
        raise SynthloopError(f"unknown KITTI layout {layout!r} (use 'kitti' or 'flat')", where="layout")
    img_dir, lbl_dir = LAYOUTS[layout]
    out_dir = Path(out_dir).absolute()
    cats = ds.category_by_id()
    require_files(ds.frames)
    with staged_dir(out_dir) as tmp:
        for frame, stem in zip(ds.frames, frame_stems(ds), strict=True):
            suffix = Path(frame.image_path).suffix.lower() or ".png"
            link_or_copy(Path(frame.image_path), tmp / img_dir / f"{stem}{suffix}")
            atomic_write_bytes(
                tmp / lbl_dir / f"{stem}.txt", frame_label_text(frame, cats, lowercase).encode()
            )
            if layout == "kitti" and frame.camera is not None:
                atomic_write_bytes(tmp / "calib" / f"{stem}.txt", calib_text(frame.camera.K).encode())
    return out_dir


__all__ = [
    "calib_text",
    "format_label_line",
    "kitti_box_from_corners",
    "kitti_corners",
    "label_fields",
    "observation_angle",
    "occlusion_level",
    "write_kitti",
    "wrap_angle",
]
