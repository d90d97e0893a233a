"""The synthloop dataset folder: one JSON record per frame, written atomically after its files.

Layout::

    DIR/
      dataset.json          {"schema": "synthloop.dataset/1", "categories": [...], "info": {...}}
      recipe.yaml           the recipe that made the frames (synthetic datasets)
      images/000012.png     RGB (or .jpg, as the recipe says)
      instances/000012.png  uint16 instance ids, 0 = background (ObjectAnnotation.instance_id)
      depth/000012.npz      float32 key "depth": metres along the optical axis, inf = no hit
      records/000012.json   the frame record; its presence is what makes frame 12 complete

A frame counts as written only when ``records/<stem>.json`` exists; it is renamed into place
after the image, instance map and depth files, so a killed writer leaves at most orphan files
(overwritten by the next attempt) and never a record that points at missing data.

Records are canonical JSON (sorted keys, no timings, no timestamps), so the same frame rendered
twice gives byte-identical records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synthloop.atomic import atomic_save_image, atomic_write_json, atomic_write_with
from synthloop.dataset.types import Box3D, CameraModel, Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.jsonio import read_json
from synthloop.userfiles import inside_root

DATASET_SCHEMA = "synthloop.dataset/1"
FRAME_SCHEMA = "synthloop.frame/1"
MANIFEST = "dataset.json"


def frame_stem(frame_index: int) -> str:
    """File stem of a synthetic frame: the zero-padded frame index (``12 -> "000012"``)."""
    return f"{frame_index:06d}"


def _round(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


# ---------------------------------------------------------------- record (de)serialization
def category_to_dict(c: Category) -> dict[str, Any]:
    d = {
        "id": c.id,
        "name": c.name,
        "supercategory": c.supercategory,
        "keypoints": list(c.keypoints),
        "skeleton": [list(e) for e in c.skeleton],
    }
    if c.keypoint_sigmas:
        d["keypoint_sigmas"] = list(c.keypoint_sigmas)
    return d


def category_from_dict(d: dict[str, Any]) -> Category:
    return Category(
        id=int(d["id"]),
        name=str(d["name"]),
        supercategory=str(d.get("supercategory", "")),
        keypoints=tuple(d.get("keypoints", ())),
        skeleton=tuple((int(a), int(b)) for a, b in d.get("skeleton", ())),
        keypoint_sigmas=tuple(float(v) for v in d.get("keypoint_sigmas", ())),
    )


def object_to_record(obj: ObjectAnnotation) -> dict[str, Any]:
    """JSON form of one object (floats rounded to 1e-4 px / 1e-6 m so records are stable)."""
    rec: dict[str, Any] = {
        "category_id": obj.category_id,
        "bbox": [_round(v) for v in obj.bbox],
        "area": _round(obj.area),
        "iscrowd": bool(obj.iscrowd),
    }
    if obj.instance_id is not None:
        rec["instance_id"] = int(obj.instance_id)
    if obj.mask is not None:
        counts = obj.mask["counts"]
        rec["mask"] = {
            "size": [int(s) for s in obj.mask["size"]],
            "counts": counts.decode() if isinstance(counts, bytes) else counts,
        }
    if obj.keypoints is not None:
        rec["keypoints"] = [[_round(u), _round(v), int(vis)] for u, v, vis in obj.keypoints]
    if obj.bbox_amodal is not None:
        rec["bbox_amodal"] = [_round(v) for v in obj.bbox_amodal]
    if obj.occlusion is not None:
        rec["occlusion"] = _round(obj.occlusion, 6)
    if obj.truncation is not None:
        rec["truncation"] = _round(obj.truncation, 6)
    if obj.box3d is not None:
        b = obj.box3d
        rec["box3d"] = {
            "center": [_round(v, 6) for v in b.center],
            "dimensions": [_round(v, 6) for v in b.dimensions],
            "rotation_y": _round(b.rotation_y, 6),
            "corners": [[_round(v, 6) for v in c] for c in b.corners],
        }
    if obj.attributes:
        rec["attributes"] = obj.attributes
    return rec


def object_from_record(rec: dict[str, Any]) -> ObjectAnnotation:
    b3 = rec.get("box3d")
    return ObjectAnnotation(
        category_id=int(rec["category_id"]),
        bbox=tuple(float(v) for v in rec["bbox"]),  # type: ignore[arg-type]
        area=float(rec["area"]),
        mask=rec.get("mask"),
        iscrowd=bool(rec.get("iscrowd", False)),
        keypoints=(
            tuple((float(u), float(v), int(s)) for u, v, s in rec["keypoints"])
            if "keypoints" in rec
            else None
        ),
        bbox_amodal=tuple(rec["bbox_amodal"]) if "bbox_amodal" in rec else None,
        occlusion=rec.get("occlusion"),
        truncation=rec.get("truncation"),
        box3d=(
            Box3D(
                center=tuple(b3["center"]),
                dimensions=tuple(b3["dimensions"]),
                rotation_y=float(b3["rotation_y"]),
                corners=tuple(tuple(c) for c in b3["corners"]),
            )
            if b3
            else None
        ),
        instance_id=rec.get("instance_id"),
        attributes=dict(rec.get("attributes", {})),
    )


RECORD_FILES = ("image", "instance_map", "depth")  # record keys that name files of the frame


def record_file(root: Path, rec: dict[str, Any], key: str) -> Path | None:
    """The file ``rec[key]`` names, resolved; None when unset. A path that is not a str or leaves
    ``root`` (absolute, ``..``, a symlink out) raises ValueError."""
    rel = rec.get(key)
    if not rel:
        return None
    path = inside_root(root, rel) if isinstance(rel, str) and ".." not in Path(rel).parts else None
    if path is None:
        raise ValueError(f"{key} must be a path inside the dataset folder, got {rel!r}")
    return path


def frame_from_record(rec: dict[str, Any], root: Path) -> Frame:
    cam = rec.get("camera")
    image = record_file(root, rec, "image")
    if image is None:
        raise KeyError("image")
    return Frame(
        frame_id=str(rec["frame_id"]),
        image_path=image,
        width=int(rec["width"]),
        height=int(rec["height"]),
        objects=[object_from_record(o) for o in rec.get("objects", [])],
        source=str(rec.get("source", "synthetic")),
        scene_params=dict(rec.get("scene_params", {})),
        camera=CameraModel(K=cam["K"], world_to_cam=cam["world_to_cam"]) if cam else None,
        instance_map_path=record_file(root, rec, "instance_map"),
        depth_path=record_file(root, rec, "depth"),
        extra={k: rec[k] for k in ("frame_index", "seed", "recipe_hash", "recipe_name") if k in rec},
    )


# ---------------------------------------------------------------- writer
class DatasetWriter:
    """Writes frames into a dataset folder; each frame atomically, record last.

    ``categories`` and ``info`` go to ``dataset.json`` (written at construction; an existing
    manifest must agree on categories, so a resumed or appended job cannot mix label maps).
    """

    def __init__(self, root: str | Path, categories: Iterable[Category], info: dict[str, Any] | None = None):
        self.root = Path(root)
        self.categories = list(categories)
        self.info = dict(info or {})
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / MANIFEST
        cats = [category_to_dict(c) for c in self.categories]
        if manifest.exists():
            existing = read_manifest(self.root)
            if existing.get("categories") != cats:
                raise DatasetError(
                    "categories differ from the existing dataset's; use a new output folder",
                    path=str(manifest),
                    where="categories",
                )
        else:
            atomic_write_json(manifest, {"schema": DATASET_SCHEMA, "categories": cats, "info": self.info})

    def record_path(self, stem: str) -> Path:
        return self.root / "records" / f"{stem}.json"

    def is_complete(self, stem: str) -> bool:
        return read_complete_record(self.root, self.record_path(stem)) is not None

    def completed_stems(self) -> set[str]:
        d = self.root / "records"
        if not d.exists():
            return set()
        return {p.stem for p in d.glob("*.json") if read_complete_record(self.root, p) is not None}

    def write_frame(
        self,
        stem: str,
        *,
        rgb: np.ndarray,
        instance_ids: np.ndarray,
        depth: np.ndarray,
        record: dict[str, Any],
        image_format: str = "png",
        jpeg_quality: int = 92,
    ) -> Path:
        """Write image, instance map and depth, then the record (which gets the file names).

        ``rgb`` (H, W, 3) uint8; ``instance_ids`` (H, W) integer < 65536; ``depth`` (H, W) float
        metres. Returns the record path.
        """
        if instance_ids.max(initial=0) >= 2**16:
            raise ValueError("instance ids must fit in uint16")
        img_rel = f"images/{stem}.{'jpg' if image_format == 'jpg' else 'png'}"
        inst_rel = f"instances/{stem}.png"
        depth_rel = f"depth/{stem}.npz"
        kw = {"quality": jpeg_quality} if image_format == "jpg" else {"compress_level": 1}
        atomic_save_image(self.root / img_rel, Image.fromarray(rgb.astype(np.uint8), "RGB"), **kw)
        atomic_save_image(self.root / inst_rel, Image.fromarray(instance_ids.astype(np.uint16)))
        depth32 = depth.astype(np.float32)
        atomic_write_with(self.root / depth_rel, lambda fh: np.savez_compressed(fh, depth=depth32))
        full = {
            **record,
            "schema": FRAME_SCHEMA,
            "frame_id": stem,
            "image": img_rel,
            "instance_map": inst_rel,
            "depth": depth_rel,
        }
        return atomic_write_json(self.record_path(stem), full)


# ---------------------------------------------------------------- reader
def read_complete_record(root: Path, path: Path) -> dict[str, Any] | None:
    """The record at ``path`` when the frame is complete: the record parses into a dict and every
    file it names exists inside ``root``. None for a missing, truncated or corrupt record, or one
    whose image was deleted (such a frame is rendered again)."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(rec, dict) or not rec.get("image"):
        return None
    try:
        files = [record_file(root, rec, key) for key in RECORD_FILES]
    except ValueError:
        return None
    return rec if all(f is None or f.is_file() for f in files) else None


def read_manifest(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise DatasetError("not a synthloop dataset folder (no dataset.json)", path=str(root))
    data = read_json(path, DatasetError)
    if not isinstance(data, dict):
        raise DatasetError("must be a JSON object", path=str(path))
    return data


def iter_records(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """All frame records, sorted by stem; a bad one raises DatasetError naming it."""
    out = []
    for p in sorted((Path(root) / "records").glob("*.json")):
        rec = read_json(p, DatasetError, "frame record")
        if not isinstance(rec, dict):
            raise DatasetError("a frame record must be a JSON object", path=str(p))
        out.append((p, rec))
    return out


def load_dataset(root: str | Path) -> Dataset:
    """Read a synthloop dataset folder into the in-memory :class:`Dataset`."""
    root = Path(root).resolve()
    manifest = read_manifest(root)
    cats = [category_from_dict(c) for c in manifest.get("categories", [])]
    frames = []
    for path, rec in iter_records(root):
        try:
            frames.append(frame_from_record(rec, root))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"malformed frame record ({type(e).__name__}: {e})", path=str(path)) from None
    return Dataset(categories=cats, frames=frames, name=root.name, root=root, info=manifest.get("info", {}))


def is_synthloop_dataset(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).exists()


def load_depth(frame: Frame) -> np.ndarray:
    """(H, W) float32 depth in metres for a frame that has one."""
    if frame.depth_path is None:
        raise DatasetError("frame has no depth", where=frame.frame_id)
    if frame.depth_path.suffix == ".npz":
        with np.load(frame.depth_path) as z:
            return z["depth"]
    return np.load(frame.depth_path)


def load_instance_map(frame: Frame) -> np.ndarray:
    """(H, W) int32 instance ids for a frame that has an instance map."""
    if frame.instance_map_path is None:
        raise DatasetError("frame has no instance map", where=frame.frame_id)
    return np.asarray(Image.open(frame.instance_map_path)).astype(np.int32)
