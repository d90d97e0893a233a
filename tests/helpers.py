"""Builders and constants shared by several test modules (no tests here; fixtures: conftest.py).

Sections: real data, hand-built I/O datasets, numpy-renderer scenes, active-learning rows, training
specs and checkpoints, mixing-experiment specs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml
from PIL import Image

from synthloop.dataset.folder import DatasetWriter, load_dataset, object_to_record
from synthloop.dataset.types import Box3D, Category, ObjectAnnotation
from synthloop.exporters.kitti import kitti_corners
from synthloop.geometry.camera import look_at_rotation
from synthloop.geometry.masks import mask_to_bbox, mask_to_rle
from synthloop.scenes.spec import (
    CameraSpec,
    CategorySpec,
    MaterialSpec,
    ObjectSpec,
    RenderSettings,
    SceneSpec,
    ShapeSpec,
    SupportSpec,
    WorldSpec,
)

# ---------------------------------------------------------------- real data (read-only, may be absent)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# ---------------------------------------------------------------- hand-built I/O datasets
IO_W, IO_H = 64, 48
K = [[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]]
IO_CATEGORIES = [
    Category(id=1, name="Fig", supercategory="fruit", keypoints=("stem", "tip"), skeleton=((1, 2),)),
    Category(id=3, name="hazel nut", supercategory="nut"),  # id gap on purpose, name with a space
]


def box3d(center, dims, ry) -> Box3D:
    h = dims[0]
    corners = kitti_corners(dims, (center[0], center[1] + h / 2, center[2]), ry)
    return Box3D(
        center=tuple(center), dimensions=tuple(dims), rotation_y=ry, corners=tuple(map(tuple, corners))
    )


def _io_obj(inst: np.ndarray, iid: int, cat: int, **kw) -> ObjectAnnotation:
    m = inst == iid
    bbox = mask_to_bbox(m) or (0.0, 0.0, 0.0, 0.0)
    return ObjectAnnotation(
        category_id=cat, bbox=bbox, area=float(m.sum()), mask=mask_to_rle(m), instance_id=iid, **kw
    )


def frames_arrays(seed: int = 0):
    """Two frames: (rgb, instance ids, depth, objects) each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IO_H, 0:IO_W]
    out = []
    # frame 0: a box (fig, keypoints, 3D), an ellipse (nut) partly behind a distractor (id 3),
    # a fully hidden fig (id 4).
    inst = np.zeros((IO_H, IO_W), np.int32)
    inst[10:30, 5:25] = 1
    inst[((xx - 45) / 12.0) ** 2 + ((yy - 25) / 9.0) ** 2 <= 1] = 2
    inst[20:40, 40:50] = 3
    objs = [
        _io_obj(
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
        _io_obj(
            inst, 2, 3, occlusion=0.35, truncation=0.0, box3d=box3d((0.25, 0.0, 2.5), (0.1, 0.2, 0.25), -2.0)
        ),
        _io_obj(inst, 4, 1, occlusion=1.0, truncation=0.0),  # fully hidden: area 0
    ]
    depth = np.where(inst > 0, 2.0 + inst * 0.1, np.inf).astype(np.float32)
    depth[0, 0] = 70.0  # beyond the 16-bit mm range
    out.append((rng.integers(0, 255, (IO_H, IO_W, 3), dtype=np.uint8), inst, depth, objs))
    # frame 1: a fig cut by the left border (truncated) and a crowd region of nuts.
    inst = np.zeros((IO_H, IO_W), np.int32)
    inst[5:20, 0:12] = 7
    inst[30:46, 30:62] = 8
    objs = [
        _io_obj(
            inst,
            7,
            1,
            keypoints=((0.0, 0.0, 0), (6.0, 10.0, 2)),
            occlusion=0.6,
            truncation=0.5,
            box3d=box3d((-0.9, -0.2, 1.8), (0.25, 0.3, 0.35), 1.2),
        ),
        _io_obj(inst, 8, 3, iscrowd=True),
    ]
    depth = np.where(inst > 0, 3.0, np.inf).astype(np.float32)
    out.append((rng.integers(0, 255, (IO_H, IO_W, 3), dtype=np.uint8), inst, depth, objs))
    return out


def write_synthetic_folder(root: Path, name: str = "synth") -> Path:
    """A synthloop dataset folder with the two frames of :func:`frames_arrays`."""
    folder = root / name
    w = DatasetWriter(folder, IO_CATEGORIES, info={"recipe": "test"})
    for i, (rgb, inst, depth, objs) in enumerate(frames_arrays()):
        w.write_frame(
            f"{i:06d}",
            rgb=rgb,
            instance_ids=inst,
            depth=depth,
            record={
                "width": IO_W,
                "height": IO_H,
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


# ---------------------------------------------------------------- numpy-renderer scenes
SCENE_W, SCENE_H = 160, 120
MAT = MaterialSpec(base_color_hsv=(0.1, 0.5, 0.5), base_color_rgb=(0.5, 0.4, 0.3))
CATS = (
    CategorySpec(id=1, name="nut", keypoints=("top", "bottom", "side", "far", "absent")),
    CategorySpec(id=2, name="tile"),
)


def camera(location=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), focal=36.0) -> CameraSpec:
    rot = look_at_rotation(location, target)
    return CameraSpec(
        location=location,
        rotation_world_from_cam=tuple(tuple(float(v) for v in r) for r in rot),
        look_at=target,
        focal_length_mm=focal,
    )


def obj(iid, shape, location, cat=2, quat=(1.0, 0.0, 0.0, 0.0), keypoints=None, params=None) -> ObjectSpec:
    return ObjectSpec(
        instance_id=iid,
        name=f"o{iid}",
        category_id=cat,
        shape=shape,
        material=MAT,
        location=location,
        rotation_quat_wxyz=quat,
        keypoints_local=keypoints or {},
        params=params or {},
    )


def scene(objects, cam=None) -> SceneSpec:
    return SceneSpec(
        recipe_name="test",
        recipe_hash="0" * 8,
        seed=0,
        frame_index=0,
        render=RenderSettings(width=SCENE_W, height=SCENE_H),
        camera=cam or camera(),
        lights=(),
        support=SupportSpec(size=(2.0, 2.0), material=MAT),
        world=WorldSpec(),
        categories=CATS,
        objects=tuple(objects),
    )


def tile(size=0.2, thick=0.01):
    return ShapeSpec(kind="box", dimensions=(size, size, thick))


def sphere_nut(iid, location, r=0.04, side=1.0):
    kps = {
        "top": (0.0, 0.0, r),  # faces the camera
        "bottom": (0.0, 0.0, -r),  # behind the nut itself
        "side": (side * r, 0.0, 0.0),  # on the equator: silhouette, grazing or hidden
        "far": (0.0, 0.0, 50.0),  # behind the camera (camera at z = 1)
    }
    shape = ShapeSpec(kind="sphere", dimensions=(2 * r, 2 * r, 2 * r), segments=64)
    return obj(iid, shape, location, cat=1, keypoints=kps)


# ---------------------------------------------------------------- active learning
FAIL_BELOW = 0.9  # objects with scale < 0.9 (of uniform [0.8, 1.2]) are mostly missed


def controlled_rows(n: int = 2000, seed: int = 0) -> list[dict]:
    """Per-object rows where failure depends only on the object's scale; light strength, hue,
    camera azimuth and pattern are noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        scale = float(rng.uniform(0.8, 1.2))
        fail = bool(rng.random() < (0.85 if scale < FAIL_BELOW else 0.1))
        rows.append(
            {
                "frame_id": f"{i // 3:06d}",
                "matched": not fail,
                "best_iou": 0.0 if fail else 0.8,
                "ignored": False,
                "category": "sphere",
                "area": 900.0,
                "occlusion": 0.0,
                "truncation": 0.0,
                "scene_params": {
                    "key_light_strength": float(rng.uniform(2, 4)),
                    "camera_azimuth_deg": float(rng.uniform(0, 360)),
                },
                "attributes": {
                    "scale": scale,
                    "hue": float(rng.uniform(0, 0.1)),
                    "pattern": str(rng.choice(["none", "wood", "marble"])),
                },
            }
        )
    return rows


# ---------------------------------------------------------------- training specs and checkpoints
def ddp_spec_dict(data, **over) -> dict:
    """The blend spec of the DDP-equivalence tests (frozen BatchNorm, 4 iterations on CPU)."""
    d = {
        "datasets": [
            {"kind": "synthetic", "paths": [str(data["synth"])]},
            {"kind": "real", "coco_json": str(data["real"])},
        ],
        "model": {"family": "detectnet_v2", "input_width": 96, "input_height": 64},
        # frozen BatchNorm: per-image computation, so 2 x 2 images equal 1 x 4 images
        "backbone": {"name": "resnet18", "weights": None, "freeze_bn": True},
        "augment": {"enabled": True, "hflip_prob": 0.5, "noise_prob": 0.5},
        "mix": {"schedule": "blend", "ratio": [1, 1], "real_fraction": 1.0},
        "optimizer": {"name": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 0.0},
        "lr_schedule": {"name": "soft_start_annealing"},
        "distributed": {"lr_scaling": "none"},
        "iterations": 4,
        "checkpoint_interval": 2,
        "batch_size": 2,
        "device": "cpu",
        "amp": False,
        "deterministic": True,
        "log_interval": 1,
        "seed": 11,
    }
    d.update(over)
    return d


def make_checkpoint(
    path: Path,
    family: str = "detectnet_v2",
    backbone: str = "resnet18",
    size=(64, 64),
    seed=0,
    spread=False,
    coverage_threshold: float = 0.3,
    category_ids=(3, 7),
    model_extra: dict | None = None,
):
    """A checkpoint in synthloop.training.loop's layout, from the training package's own builder.

    ``spread``: scale each conv filter by a seeded random factor so L1 norms differ (like trained nets).
    ``model_extra``: more ``model`` spec entries (e.g. small ``mask_rcnn`` / ``keypoint_rcnn`` heads)."""
    import torch  # torch loads only for the tests that build models

    from synthloop.training.build import build_model
    from synthloop.training.checkpoints import save_training_checkpoint
    from synthloop.training.spec import ExperimentSpec

    spec = ExperimentSpec.model_validate(
        {
            "datasets": [{"kind": "real", "coco_json": "unused.json"}],
            "model": {
                "family": family,
                "input_width": size[0],
                "input_height": size[1],
                "detectnet": {"cluster": {"*": {"coverage_threshold": coverage_threshold}}},
                **(model_extra or {}),
            },
            "backbone": {"name": backbone, "weights": None},
        }
    )
    torch.manual_seed(seed)
    anchors = [16, 32, 64, 128] if family in ("mask_rcnn", "keypoint_rcnn") else None
    model = build_model(spec, ["date", "fig"], tuple(anchors) if anchors else None, pretrained=False).eval()
    if spread:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_(torch.rand(m.out_channels, 1, 1, 1, generator=g) ** 2)
    save_training_checkpoint(
        path,
        model,
        spec.model_dump(mode="json"),
        schema="synthloop.checkpoint/1",
        classes=["date", "fig"],
        category_ids=list(category_ids),
        family=family,
        anchor_sizes=anchors,
    )
    return model


# ---------------------------------------------------------------- mixing experiments
def _plain_load(base: str | dict, base_dir: Path, source: str = "") -> dict[str, Any]:
    if isinstance(base, str):
        return yaml.safe_load((base_dir / base).read_text())
    return copy.deepcopy(base)


def _plain_with_mix(spec: dict, *, schedule: str, real_fraction: float, seed: int) -> dict:
    out = copy.deepcopy(spec)
    out.setdefault("mix", {}).update(schedule=schedule, real_fraction=real_fraction)
    out["seed"] = seed
    return out


def _plain_real_only(spec: dict, *, seed: int) -> dict:
    out = _plain_with_mix(spec, schedule="blend", real_fraction=1.0, seed=seed)
    out["datasets"] = [d for d in out["datasets"] if d["kind"] != "synthetic"]
    return out


# spec operations on plain dicts (no ExperimentSpec validation): the matrix logic under test is the
# same whatever the training package's spec model looks like
PLAIN = SimpleNamespace(
    load_spec_data=_plain_load,
    normalize_spec=lambda d, source="", where=None: copy.deepcopy(d),
    with_mix=_plain_with_mix,
    real_only=_plain_real_only,
)

BASE = {
    "model": "detectnet_v2",
    "epochs": 3,
    "datasets": [{"kind": "synthetic", "path": "syn"}, {"kind": "real", "path": "real.json"}],
    "mix": {"schedule": "blend", "real_fraction": 0.5},
}


# ---------------------------------------------------------------- render settings
# every option of a recipe's render: block set away from its default (the names are the fields)
NON_DEFAULT = {
    "samples": 24,
    "adaptive_sampling": True,
    "adaptive_threshold": 0.2,
    "adaptive_min_samples": 3,
    "denoise": True,
    "denoise_passes": "albedo",
    "denoise_prefilter": "none",
    "denoise_quality": "balanced",
    "denoise_mix": 0.4,
    "max_bounces": 5,
    "diffuse_bounces": 1,
    "glossy_bounces": 2,
    "transmission_bounces": 3,
    "transparent_bounces": 6,
    "clamp_direct": 4.0,
    "clamp_indirect": 2.5,
    "caustics": True,
    "light_tree": False,
    "persistent_data": True,
    "texture_limit": 256,
    "tile_size": 64,
}


def write_done_shard_frame(shard: Path, index: int) -> Path:
    """A frame that farm status counts as done in shard folder ``shard``: its image (a 4x4 PNG) and
    a record naming it (a complete frame's record parses and every file it names exists)."""
    stem = f"{index:06d}"
    (shard / "images").mkdir(parents=True, exist_ok=True)
    (shard / "records").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(shard / "images" / f"{stem}.png")
    rec = shard / "records" / f"{stem}.json"
    rec.write_text(f'{{"image": "images/{stem}.png", "objects": []}}')
    return rec
