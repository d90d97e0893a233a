"""Hand-built datasets for the I/O tests (no renderer needed). Holds no tests itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthloop.dataset.folder import DatasetWriter, load_dataset, object_to_record
from synthloop.dataset.types import Box3D, Category, ObjectAnnotation
from synthloop.exporters.kitti import kitti_corners
from synthloop.geometry.masks import mask_to_rle

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
W, H = 64, 48
K = [[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]]
CATEGORIES = [
    Category(id=1, name="Fig", supercategory="fruit", keypoints=("stem", "tip"), skeleton=((1, 2),)),
    Category(id=3, name="hazel nut", supercategory="nut"),  # id gap on purpose, name with a space
]


def box3d(center, dims, ry) -> Box3D:
    h = dims[0]
    corners = kitti_corners(dims, (center[0], center[1] + h / 2, center[2]), ry)
    return Box3D(
        center=tuple(center), dimensions=tuple(dims), rotation_y=ry, corners=tuple(map(tuple, corners))
    )


def _obj(inst: np.ndarray, iid: int, cat: int, **kw) -> ObjectAnnotation:
    m = inst == iid
    if m.any():
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    else:
        bbox = (0.0, 0.0, 0.0, 0.0)
    return ObjectAnnotation(
        category_id=cat, bbox=bbox, area=float(m.sum()), mask=mask_to_rle(m), instance_id=iid, **kw
    )


def frames_arrays(seed: int = 0):
    """Two frames: (rgb, instance ids, depth, objects) each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    # frame 0: a box (fig, keypoints, 3D), an ellipse (nut) partly behind a distractor (id 3),
    # a fully hidden fig (id 4).
    inst = np.zeros((H, W), np.int32)
    inst[10:30, 5:25] = 1
    inst[((xx - 45) / 12.0) ** 2 + ((yy - 25) / 9.0) ** 2 <= 1] = 2
    inst[20:40, 40:50] = 3
    objs = [
        _obj(
            inst,
            1,
            1,
            keypoints=(
                (7.5, 11.5, 2),
                (20.0, 28.0, 1),
            ),
            occlusion=0.0,
            truncation=0.0,
            box3d=box3d((-0.3, 0.05, 2.0), (0.2, 0.3, 0.4), 0.3),
            attributes={"scale": 1.25},
        ),
        _obj(
            inst, 2, 3, occlusion=0.35, truncation=0.0, box3d=box3d((0.25, 0.0, 2.5), (0.1, 0.2, 0.25), -2.0)
        ),
        _obj(inst, 4, 1, occlusion=1.0, truncation=0.0),  # fully hidden: area 0
    ]
    depth = np.where(inst > 0, 2.0 + inst * 0.1, np.inf).astype(np.float32)
    depth[0, 0] = 70.0  # beyond the 16-bit mm range
    out.append((rng.integers(0, 255, (H, W, 3), dtype=np.uint8), inst, depth, objs))
    # frame 1: a fig cut by the left border (truncated) and a crowd region of nuts.
    inst = np.zeros((H, W), np.int32)
    inst[5:20, 0:12] = 7
    inst[30:46, 30:62] = 8
    objs = [
        _obj(
            inst,
            7,
            1,
            keypoints=((0.0, 0.0, 0), (6.0, 10.0, 2)),
            occlusion=0.6,
            truncation=0.5,
            box3d=box3d((-0.9, -0.2, 1.8), (0.25, 0.3, 0.35), 1.2),
        ),
        _obj(inst, 8, 3, iscrowd=True),
    ]
    depth = np.where(inst > 0, 3.0, np.inf).astype(np.float32)
    out.append((rng.integers(0, 255, (H, W, 3), dtype=np.uint8), inst, depth, objs))
    return out


def write_synthetic_folder(root: Path, name: str = "synth") -> Path:
    """A synthloop dataset folder with the two frames of :func:`frames_arrays`."""
    folder = root / name
    w = DatasetWriter(folder, CATEGORIES, info={"recipe": "test"})
    for i, (rgb, inst, depth, objs) in enumerate(frames_arrays()):
        w.write_frame(
            f"{i:06d}",
            rgb=rgb,
            instance_ids=inst,
            depth=depth,
            record={
                "width": W,
                "height": H,
                "source": "synthetic",
                "camera": {"K": K, "world_to_cam": np.eye(4).tolist()},
                "objects": [object_to_record(o) for o in objs],
                "frame_index": i,
                "seed": 7,
            },
        )
    return folder


def synthetic_dataset(root: Path, name: str = "synth"):
    return load_dataset(write_synthetic_folder(root, name))
