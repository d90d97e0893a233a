"""The one in-memory dataset type, for synthetic renders and imported real photos alike.

Training, evaluation and export never ask where a frame came from; ``Frame.source`` and
``Frame.scene_params`` (empty for real photos) travel with it.

Conventions:

* ``bbox`` fields are pixel boxes ``(x1, y1, x2, y2)`` as floats in continuous image coordinates:
  pixel (col=i, row=j) covers [i, i+1) x [j, j+1), so a mask whose columns run 3..7 has
  x1 = 3.0, x2 = 8.0. Conversion to COCO xywh / KITTI happens only at those boundaries.
* Category ids start at 1. Keypoints are ``(u, v, visibility)`` with COCO visibility
  0 = not labeled / outside the image (u = v = 0), 1 = labeled but occluded, 2 = visible;
  u, v in the same continuous pixel coordinates as boxes.
* Masks are COCO compressed RLE dicts ``{"size": [height, width], "counts": str}`` (pycocotools
  column-major order). ``iscrowd`` objects carry their crowd RLE.
* 3D values are in the OpenCV/KITTI camera frame: +X right, +Y down, +Z forward, metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BoxXYXY = tuple[float, float, float, float]
Keypoint = tuple[float, float, int]


@dataclass(frozen=True)
class Category:
    """A labeled class. ``skeleton`` pairs are 1-based keypoint indices (COCO).
    ``keypoint_sigmas``: OKS sigma per keypoint for COCO keypoint evaluation (empty = the defaults
    of :mod:`synthloop.dataset.keypoints`)."""

    id: int
    name: str
    supercategory: str = ""
    keypoints: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    keypoint_sigmas: tuple[float, ...] = ()


@dataclass(frozen=True)
class Box3D:
    """An oriented 3D box in the camera frame (OpenCV axes).

    ``center`` is the box centre (x, y, z) in metres; ``dimensions`` are (h, w, l) in metres
    (KITTI order: height along camera -Y when upright, width, length); ``rotation_y`` is the yaw
    around the camera Y axis in radians (KITTI); ``corners`` are the 8 corners (x, y, z) in the
    camera frame, exact for any orientation.
    """

    center: tuple[float, float, float]
    dimensions: tuple[float, float, float]
    rotation_y: float
    corners: tuple[tuple[float, float, float], ...]


@dataclass
class ObjectAnnotation:
    """One labeled object in one frame.

    ``bbox``: tight box of the visible pixels (x1, y1, x2, y2). ``bbox_amodal``: box of the full
    projected mesh, clipped to nothing (may extend past the image), None for real data.
    ``area``: visible pixel count (or COCO's area for imported data). ``occlusion`` and
    ``truncation`` are fractions in [0, 1] (None when unknown, e.g. real data).
    ``attributes``: per-object scalars (sampled params for synthetic objects, free-form for
    imported ones).
    """

    category_id: int
    bbox: BoxXYXY
    area: float
    mask: dict | None = None
    iscrowd: bool = False
    keypoints: tuple[Keypoint, ...] | None = None
    bbox_amodal: BoxXYXY | None = None
    occlusion: float | None = None
    truncation: float | None = None
    box3d: Box3D | None = None
    instance_id: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_keypoints(self) -> int:
        return sum(1 for _, _, v in self.keypoints or () if v > 0)


@dataclass
class CameraModel:
    """Pinhole camera: ``K`` 3x3 intrinsics (pixels, continuous coords as above) and
    ``world_to_cam`` 4x4 (OpenCV camera axes). Both as nested lists (JSON-able)."""

    K: list[list[float]]
    world_to_cam: list[list[float]]


@dataclass
class Frame:
    """One image with its objects.

    ``frame_id``: unique within the dataset (synthetic frames: the 6-digit frame index;
    imported: the source's image id or file stem). ``image_path`` is absolute.
    ``instance_map_path``: uint16 PNG of instance ids (0 = background) when available;
    ``depth_path``: float32 depth in metres (.npz key ``depth`` or .npy), z along the optical axis.
    """

    frame_id: str
    image_path: Path
    width: int
    height: int
    objects: list[ObjectAnnotation] = field(default_factory=list)
    source: str = "synthetic"
    scene_params: dict[str, Any] = field(default_factory=dict)
    camera: CameraModel | None = None
    instance_map_path: Path | None = None
    depth_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """Frames plus the categories their ``category_id`` values refer to."""

    categories: list[Category]
    frames: list[Frame]
    name: str = ""
    root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def category_by_id(self) -> dict[int, Category]:
        return {c.id: c for c in self.categories}

    def category_by_name(self) -> dict[str, Category]:
        return {c.name: c for c in self.categories}

    def __len__(self) -> int:
        return len(self.frames)
