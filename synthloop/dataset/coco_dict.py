"""In-memory Dataset -> the COCO instances dict: what the COCO exporter writes and what evaluation
scores against (one builder).

The COCO core is exact: ``bbox`` is ``[x, y, w, h]`` from the xyxy pixel box (x = x1, w = x2 - x1,
rounded to 1e-6), ``segmentation`` is compressed RLE with ``counts`` as str (the object's stored
mask, or encoded from the frame's instance map when only that exists), ``area`` is the mask's
pixel count for synthetic frames and the stored area for imported ones (COCO's own polygon
areas) or for objects without a mask, ``iscrowd`` 0/1, category ids as in the dataset (from 1),
image ids = frame order from 1, annotation ids from 1.

Objects with zero area (fully hidden, empty mask) are left out. What COCO has no slot for goes
under ONE namespaced key per annotation, ``"synthloop": {instance_id, occlusion, truncation,
bbox_amodal, box3d, attributes}`` (layout :data:`COCO_LAYOUT`, recorded in
``info.synthloop_coco_layout``), so COCO readers that turn extra keys into label attributes
(FiftyOne's importer with default arguments) see one plain dict attribute and no name that clashes
with theirs (:data:`FIFTYONE_RESERVED`). ``bbox_amodal`` is ``[x, y, w, h]`` like ``bbox`` (it may
extend past the image). Layout 1 (before) put these keys at the top level with ``bbox_amodal`` as
x1, y1, x2, y2; :mod:`synthloop.importers.coco` reads both. Each image carries
``synthloop_frame_id``. Categories with keypoints carry ``keypoint_sigmas`` (OKS sigmas, the
category's own or the defaults of :mod:`synthloop.dataset.keypoints`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import synthloop
from synthloop.dataset.folder import load_instance_map
from synthloop.dataset.keypoints import category_sigmas
from synthloop.dataset.types import Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.geometry.masks import mask_to_rle, rle_area

_ND = 6  # decimals kept for box coordinates (float noise of x2 - x1 never shows)
COCO_LAYOUT = 2
NAMESPACE = "synthloop"
# attribute names FiftyOne's Detection/Label already uses (an annotation key with one of these names
# makes `fiftyone.utils.coco` fail or overwrite a field); synthloop writes none of them at top level
FIFTYONE_RESERVED = frozenset(
    # fiftyone.core.labels.Detection's fields and read-only properties (FiftyOne 1.x), and "instance"
    {
        "_cls",
        "_id",
        "attributes",
        "bounding_box",
        "confidence",
        "field_names",
        "has_mask",
        "id",
        "index",
        "instance",
        "instance_id",
        "label",
        "mask",
        "mask_path",
        "tags",
    }
)


def _box_xywh(bbox: tuple[float, float, float, float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return [round(x1, _ND), round(y1, _ND), round(x2 - x1, _ND), round(y2 - y1, _ND)]


def category_to_coco(c) -> dict[str, Any]:
    d: dict[str, Any] = {"id": int(c.id), "name": c.name, "supercategory": c.supercategory}
    if c.keypoints:
        d["keypoints"] = list(c.keypoints)
        d["skeleton"] = [[int(a), int(b)] for a, b in c.skeleton]
        d["keypoint_sigmas"] = [float(v) for v in category_sigmas(c)]
    return d


def _object_mask(frame: Frame, obj: ObjectAnnotation, inst_cache: dict[str, np.ndarray]) -> dict | None:
    if obj.mask is not None:
        counts = obj.mask["counts"]
        return {
            "size": [int(s) for s in obj.mask["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
    if obj.instance_id is not None and frame.instance_map_path is not None:
        if frame.frame_id not in inst_cache:
            inst_cache.clear()  # keep one frame's map in memory
            inst_cache[frame.frame_id] = load_instance_map(frame)
        return mask_to_rle(inst_cache[frame.frame_id] == int(obj.instance_id))
    return None


def annotation_to_coco(
    frame: Frame, obj: ObjectAnnotation, inst_cache: dict[str, np.ndarray] | None = None
) -> dict[str, Any] | None:
    """One object -> a COCO annotation dict without ``id``/``image_id``; None when zero-area."""
    rle = _object_mask(frame, obj, inst_cache if inst_cache is not None else {})
    if rle is not None:
        mask_area = rle_area(rle)
        if mask_area == 0:
            return None
        area = float(mask_area) if frame.source == "synthetic" or obj.area <= 0 else float(obj.area)
    else:
        area = float(obj.area)
    if not area > 0:
        return None
    ann: dict[str, Any] = {
        "category_id": int(obj.category_id),
        "bbox": _box_xywh(obj.bbox),
        "area": area,
        "iscrowd": int(bool(obj.iscrowd)),
        "segmentation": rle if rle is not None else [],
    }
    if obj.keypoints is not None:
        flat: list[float] = []
        for u, v, vis in obj.keypoints:
            flat += [0, 0, 0] if int(vis) == 0 else [float(u), float(v), int(vis)]
        ann["keypoints"] = flat
        ann["num_keypoints"] = obj.num_keypoints
    extras = synthloop_extras(obj)
    if extras:
        ann[NAMESPACE] = extras
    return ann


def synthloop_extras(obj: ObjectAnnotation) -> dict[str, Any]:
    """What COCO has no slot for, for the annotation's ``"synthloop"`` key (layout 2)."""
    ext: dict[str, Any] = {}
    if obj.instance_id is not None:
        ext["instance_id"] = int(obj.instance_id)  # pixel value in the frame's instance map
    if obj.occlusion is not None:
        ext["occlusion"] = float(obj.occlusion)
    if obj.truncation is not None:
        ext["truncation"] = float(obj.truncation)
    if obj.bbox_amodal is not None:
        ext["bbox_amodal"] = _box_xywh(obj.bbox_amodal)
    if obj.box3d is not None:
        b = obj.box3d
        ext["box3d"] = {
            "center": [float(v) for v in b.center],
            "dimensions": [float(v) for v in b.dimensions],
            "rotation_y": float(b.rotation_y),
            "corners": [[float(v) for v in c] for c in b.corners],
        }
    if obj.attributes:
        ext["attributes"] = obj.attributes
    return ext


def coco_instances(ds: Dataset, file_names: list[str]) -> dict[str, Any]:
    """The COCO instances dict of a dataset (see module docstring for the exact rules); image ``i``
    (id ``i + 1``) is frame ``i``, its ``file_name`` ``file_names[i]``."""
    names = file_names
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    inst_cache: dict[str, np.ndarray] = {}
    cat_ids = {c.id for c in ds.categories}
    for image_id, (frame, fname) in enumerate(zip(ds.frames, names, strict=True), start=1):
        images.append(
            {
                "id": image_id,
                "file_name": fname,
                "width": int(frame.width),
                "height": int(frame.height),
                "synthloop_frame_id": frame.frame_id,
            }
        )
        for k, obj in enumerate(frame.objects):
            if obj.category_id not in cat_ids:
                raise DatasetError(
                    f"category id {obj.category_id} is not in the dataset's categories",
                    path=str(ds.root or ds.name or "dataset"),
                    where=f"frame {frame.frame_id} objects[{k}].category_id",
                )
            ann = annotation_to_coco(frame, obj, inst_cache)
            if ann is None:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {
            "description": ds.name or "synthloop dataset",
            "version": synthloop.__version__,
            "synthloop_version": synthloop.__version__,
            "synthloop_coco_layout": COCO_LAYOUT,
        },
        "licenses": [],
        "categories": [category_to_coco(c) for c in sorted(ds.categories, key=lambda c: c.id)],
        "images": images,
        "annotations": annotations,
    }
