"""COCO instances JSON -> in-memory Dataset.

Reads polygons, compressed RLE, uncompressed RLE (crowd annotations; BlenderProc writes it for
every object) into the one mask form (compressed RLE, str counts); crowd objects stay crowd
(``iscrowd`` True, mask kept). Category ids are kept as they are (gaps allowed). COCO boxes
``[x, y, w, h]`` become xyxy ``(x, y, x + w, y + h)``; ``area`` is COCO's stored area (the mask's
pixel count or w*h when missing). Keypoints ``[u, v, vis, ...]`` become ``(u, v, vis)`` triples.
Missing image sizes are read from the image header. Fields synthloop's exporter adds
(``instance_id``, ``occlusion``, ``truncation``, ``bbox_amodal``, ``box3d``, ``attributes``) are read
back from the annotation's ``"synthloop"`` key (layout 2, ``bbox_amodal`` x, y, w, h) or, in files
of layout 1, from the annotation's top level (``bbox_amodal`` x1, y1, x2, y2); other unknown scalar
annotation fields go to ``attributes``. Categories' ``keypoint_sigmas`` are read when present.

Bad input raises one :class:`DatasetError` naming the file, the record
(``annotations[17] (id 42)``) and the field. With ``skip_invalid=True`` bad records are skipped
instead (an image's annotations go with it) and listed in ``ds.info["skipped"]`` as
``{"record", "field", "reason"}`` dicts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image

from synthloop.dataset.folder import is_synthloop_dataset
from synthloop.dataset.keypoints import check_sigmas
from synthloop.dataset.types import Box3D, Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.geometry.errors import GeometryError
from synthloop.geometry.masks import COORD_REACH, rle_area, rle_bbox_xyxy, segmentation_to_rle
from synthloop.jsonio import read_json
from synthloop.userfiles import inside_root

MAX_IMAGE_SIDE = 65_536  # pixels; larger images are refused (pycocotools, PIL and memory limits)

_KNOWN_ANN_KEYS = {
    "id",
    "image_id",
    "category_id",
    "bbox",
    "area",
    "iscrowd",
    "segmentation",
    "keypoints",
    "num_keypoints",
    "occlusion",
    "truncation",
    "bbox_amodal",
    "box3d",
    "attributes",
    "instance_id",
    "synthloop",
}


class _Invalid(Exception):
    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(reason)


class _Issues:
    """Raises a DatasetError for the first bad record, or records it when skipping."""

    def __init__(self, path: Path, skip: bool):
        self.path = path
        self.skip = skip
        self.skipped: list[dict[str, str]] = []

    def report(self, record: str, field: str, reason: str) -> None:
        if not self.skip:
            raise DatasetError(reason, path=str(self.path), where=f"{record}.{field}" if field else record)
        self.skipped.append({"record": record, "field": field, "reason": reason})


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _num(d: dict, key: str) -> float:
    v = d[key]
    if not _is_num(v):
        raise _Invalid(key, f"must be a finite number, got {v!r}")
    return float(v)


def _is_id(v: Any, *, str_ok: bool = True) -> bool:
    """A 64-bit int id (not a bool), or a str id when ``str_ok``."""
    is_int = isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63
    return is_int or (str_ok and isinstance(v, str))


def _label(kind: str, i: int, rec: Any) -> str:
    if isinstance(rec, dict) and "id" in rec:
        return f"{kind}[{i}] (id {str(rec['id'])[:40]})"
    return f"{kind}[{i}]"


def image_size(path: Path, *, full: bool = False) -> tuple[int, int]:
    """(width, height) from the image header; ``full`` decodes all pixels (finds truncated files).

    Raises OSError/ValueError for a missing, unreadable or decompression-bomb file.
    """
    try:
        with Image.open(path) as im:
            if full:
                im.load()
            return int(im.width), int(im.height)
    except Image.DecompressionBombError as e:
        raise ValueError(str(e)) from None


def _parse_category(i: int, c: Any) -> Category:
    if not isinstance(c, dict):
        raise _Invalid("", "must be an object")
    if "id" not in c:
        raise _Invalid("id", "missing")
    if not isinstance(c["id"], int) or isinstance(c["id"], bool) or not -(2**31) <= c["id"] < 2**31:
        raise _Invalid("id", f"must be a 32-bit integer, got {str(c['id'])[:40]}")
    if "name" not in c:
        raise _Invalid("name", "missing")
    kps = c.get("keypoints") or []
    if not isinstance(kps, list) or not all(isinstance(k, str) for k in kps):
        raise _Invalid("keypoints", "must be a list of names")
    skel = c.get("skeleton") or []
    try:
        skeleton = tuple((int(a), int(b)) for a, b in skel)
    except (TypeError, ValueError):
        raise _Invalid("skeleton", "must be a list of [i, j] pairs") from None
    if any(not (1 <= a <= len(kps) and 1 <= b <= len(kps)) for a, b in skeleton):
        raise _Invalid("skeleton", "indices must be 1-based keypoint indices")
    sigmas: tuple[float, ...] = ()
    if c.get("keypoint_sigmas") is not None:
        try:
            sigmas = check_sigmas(c["keypoint_sigmas"], len(kps))
        except ValueError as e:
            raise _Invalid("keypoint_sigmas", str(e)) from None
    return Category(
        id=int(c["id"]),
        name=str(c["name"]),
        supercategory=str(c.get("supercategory") or ""),
        keypoints=tuple(kps),
        skeleton=skeleton,
        keypoint_sigmas=sigmas,
    )


def images_root(json_path: Path, images_dir: Path | None) -> Path:
    """The folder every ``file_name`` must stay inside: ``images_dir`` when given, else the JSON's
    folder, or the dataset folder for the ``coco/annotations.json`` of a synthloop dataset (whose
    ``file_name`` entries are ``../images/...``)."""
    if images_dir is not None:
        return images_dir
    parent = json_path.parent
    return parent.parent if is_synthloop_dataset(parent.parent) else parent


def _resolve_image(file_name: str, dirs: list[Path], root: Path | None) -> Path:
    """The image file ``file_name`` names (first of ``dirs`` that has it). With a ``root``,
    absolute paths, ``..`` and symlinks that leave it are refused (path traversal)."""
    p = Path(file_name)
    if root is None:
        if p.is_absolute():
            return p
        for d in dirs:
            if (d / p).exists():
                return (d / p).resolve()
        return (dirs[0] / p).absolute()
    if p.is_absolute() or "\0" in file_name:
        raise _Invalid("file_name", f"must be a path relative to {root}, got {file_name!r}")
    found = [inside_root(root, d.relative_to(root) / p) for d in dirs]
    if None in found:
        raise _Invalid("file_name", f"leaves the images folder {root} (pass allow_outside_root to allow)")
    return next((q for q in found if q is not None and q.exists()), found[0])  # type: ignore[return-value]


def _parse_image(img: Any, dirs: list[Path], verify: bool, root: Path | None) -> tuple[Any, Path, int, int]:
    if not isinstance(img, dict):
        raise _Invalid("", "must be an object")
    if "id" not in img:
        raise _Invalid("id", "missing")
    if not isinstance(img["id"], int | str) or isinstance(img["id"], bool):
        raise _Invalid("id", f"must be an integer or string, got {img['id']!r}")
    fname = img.get("file_name")
    if not isinstance(fname, str) or not fname:
        raise _Invalid(
            "file_name", "missing" if fname is None else f"must be a non-empty string, got {fname!r}"
        )
    path = _resolve_image(fname, dirs, root)
    w, h = img.get("width"), img.get("height")
    if w is not None and h is not None:
        for key, v in (("width", w), ("height", h)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_IMAGE_SIDE:
                raise _Invalid(key, f"must be an integer in 1..{MAX_IMAGE_SIDE}, got {v!r}")
    if w is None or h is None or verify:
        try:
            hw, hh = image_size(path, full=verify)
        except (OSError, ValueError, SyntaxError) as e:
            what = "image file not found" if not path.exists() else f"unreadable or truncated image ({e})"
            raise _Invalid("file_name", f"{what}: {path}") from None
        if w is not None and h is not None and (hw, hh) != (w, h):
            raise _Invalid("width", f"image is {hw}x{hh} but the record says {w}x{h}")
        if not (0 < hw <= MAX_IMAGE_SIDE and 0 < hh <= MAX_IMAGE_SIDE):
            raise _Invalid("file_name", f"image is {hw}x{hh}, larger than {MAX_IMAGE_SIDE} pixels a side")
        w, h = hw, hh
    return img["id"], path, int(w), int(h)


def _parse_box3d(b: Any) -> Box3D:
    try:
        return Box3D(
            center=tuple(float(v) for v in b["center"]),  # type: ignore[arg-type]
            dimensions=tuple(float(v) for v in b["dimensions"]),  # type: ignore[arg-type]
            rotation_y=float(b["rotation_y"]),
            corners=tuple(tuple(float(v) for v in c) for c in b["corners"]),  # type: ignore[misc]
        )
    except (KeyError, TypeError, ValueError):
        raise _Invalid("box3d", "must have center, dimensions, rotation_y, corners") from None


def _parse_annotation(a: Any, width: int, height: int, cat: Category) -> ObjectAnnotation:
    if not isinstance(a, dict):
        raise _Invalid("", "must be an object")
    if "id" in a and not _is_id(a["id"]):
        raise _Invalid("id", f"must be an integer or string, got {str(a['id'])[:40]}")
    iscrowd = a.get("iscrowd", 0)
    if iscrowd not in (0, 1, True, False):
        raise _Invalid("iscrowd", f"must be 0 or 1, got {iscrowd!r}")
    try:
        rle = segmentation_to_rle(a.get("segmentation"), height, width)
    except GeometryError as e:
        raise _Invalid("segmentation", f"invalid ({e.message})") from None
    if "bbox" in a:
        bb = a["bbox"]
        if not isinstance(bb, list) or len(bb) != 4:
            n = len(bb) if isinstance(bb, list) else type(bb).__name__
            raise _Invalid("bbox", f"must be [x, y, w, h] (4 numbers), got {n}")
        if not all(_is_num(v) for v in bb):
            raise _Invalid("bbox", f"must be 4 finite numbers, got {bb!r}")
        x, y, w, h = (float(v) for v in bb)
        if w < 0 or h < 0:
            raise _Invalid("bbox", f"width and height must be >= 0, got {w}, {h}")
        if x > width or y > height or x + w < 0 or y + h < 0:
            raise _Invalid("bbox", f"lies wholly outside the {width}x{height} image: {bb!r}")
        reach = COORD_REACH * max(width, height)
        if not all(-reach <= v <= reach for v in (x, y, x + w, y + h)):
            raise _Invalid("bbox", f"corners must lie within +-{reach} pixels, got {bb!r}")
        bbox = (x, y, x + w, y + h)
    elif rle is not None:
        bbox = rle_bbox_xyxy(rle)
    else:
        raise _Invalid("bbox", "missing (and no segmentation to derive it from)")
    if "area" in a:
        area = _num(a, "area")
        if area < 0:
            raise _Invalid("area", f"must be >= 0, got {area}")
    else:
        area = float(rle_area(rle)) if rle is not None else (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])
    keypoints = None
    if a.get("keypoints") is not None:
        kp = a["keypoints"]
        if not isinstance(kp, list) or len(kp) % 3 or not all(_is_num(v) for v in kp):
            raise _Invalid("keypoints", "must be a flat list [u, v, visibility, ...] of numbers")
        if cat.keypoints and len(kp) != 3 * len(cat.keypoints):
            raise _Invalid(
                "keypoints", f"has {len(kp) // 3} points, category {cat.name!r} has {len(cat.keypoints)}"
            )
        if any(int(kp[i + 2]) not in (0, 1, 2) for i in range(0, len(kp), 3)):
            raise _Invalid("keypoints", "visibility must be 0, 1 or 2")
        keypoints = tuple((float(kp[i]), float(kp[i + 1]), int(kp[i + 2])) for i in range(0, len(kp), 3))
    extra, attributes = _synthloop_extras(a)
    for k, v in a.items():
        if k not in _KNOWN_ANN_KEYS and isinstance(v, str | int | float | bool) and k not in attributes:
            attributes[k] = v
    return ObjectAnnotation(
        category_id=cat.id,
        bbox=bbox,
        area=area,
        mask=rle,
        iscrowd=bool(iscrowd),
        keypoints=keypoints,
        attributes=attributes,
        **extra,
    )


def _synthloop_extras(a: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """ObjectAnnotation fields from the annotation's ``"synthloop"`` key (layout 2) or its top level
    (layout 1), and its attributes dict."""
    ns = a.get("synthloop")
    if ns is not None and not isinstance(ns, dict):
        raise _Invalid("synthloop", "must be an object")
    src, pre = (ns, "synthloop.") if ns is not None else (a, "")
    extra: dict[str, Any] = {}
    for key in ("occlusion", "truncation"):
        if src.get(key) is not None:
            if not _is_num(src[key]):
                raise _Invalid(pre + key, f"must be a finite number, got {src[key]!r}")
            extra[key] = float(src[key])
    if src.get("bbox_amodal") is not None:
        ba = src["bbox_amodal"]
        layout = "x, y, w, h" if ns is not None else "x1, y1, x2, y2"
        if not isinstance(ba, list) or len(ba) != 4 or not all(_is_num(v) for v in ba):
            raise _Invalid(pre + "bbox_amodal", f"must be 4 numbers ({layout})")
        x, y, u, v = (float(t) for t in ba)
        extra["bbox_amodal"] = (x, y, x + u, y + v) if ns is not None else (x, y, u, v)
    if src.get("box3d") is not None:
        extra["box3d"] = _parse_box3d(src["box3d"])
    if src.get("instance_id") is not None:
        if not isinstance(src["instance_id"], int) or isinstance(src["instance_id"], bool):
            raise _Invalid(pre + "instance_id", "must be an integer")
        extra["instance_id"] = int(src["instance_id"])
    attributes = dict(src["attributes"]) if isinstance(src.get("attributes"), dict) else {}
    return extra, attributes


def _checked_top_level(data: Any, path: Path) -> list:
    """The annotations list, after checking that ``data`` is an object with ``images`` and
    ``categories`` lists (a DatasetError naming the key otherwise)."""
    if not isinstance(data, dict):
        raise DatasetError("top level must be a JSON object", path=str(path))
    for key in ("images", "categories"):
        if key not in data:
            raise DatasetError("missing key", path=str(path), where=key)
        if not isinstance(data[key], list):
            raise DatasetError("must be a list", path=str(path), where=key)
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError("must be a list", path=str(path), where="annotations")
    return anns


def _categories(items: list, issues: _Issues) -> dict[int, Category]:
    """The valid categories by id; invalid or duplicate (id or name) entries are reported."""
    cats: dict[int, Category] = {}
    for i, c in enumerate(items):
        label = _label("categories", i, c)
        try:
            cat = _parse_category(i, c)
        except _Invalid as e:
            issues.report(label, e.field, e.reason)
            continue
        if cat.id in cats:
            issues.report(label, "id", f"duplicate category id {cat.id}")
            continue
        if any(c.name == cat.name for c in cats.values()):
            issues.report(label, "name", f"duplicate category name {cat.name!r}")
            continue
        cats[cat.id] = cat
    return cats


def _frames(
    items: list, dirs: list[Path], verify_images: bool, root: Path | None, source: str, issues: _Issues
) -> tuple[list[Frame], dict[Any, Frame], set[Any]]:
    """The frames of the valid images (dataset order), the frames by COCO image id, and the ids
    of the images that were skipped as invalid. Frame ids are the ``synthloop_frame_id`` where
    every image has a distinct one, else the image ids."""
    frames: list[Frame] = []
    by_image: dict[Any, Frame] = {}
    skipped: set[Any] = set()
    for i, img in enumerate(items):
        label = _label("images", i, img)
        try:
            image_id, img_path, w, h = _parse_image(img, dirs, verify_images, root)
        except _Invalid as e:
            issues.report(label, e.field, e.reason)
            if isinstance(img, dict) and _is_id(img.get("id")):
                skipped.add(img["id"])
            continue
        if image_id in by_image:
            issues.report(label, "id", f"duplicate image id {image_id!r}")
            continue
        fid = img.get("synthloop_frame_id")
        frame = Frame(
            frame_id=str(fid) if isinstance(fid, str) and fid else str(image_id),
            image_path=img_path,
            width=w,
            height=h,
            source=source,
            extra={"coco_image_id": image_id},
        )
        by_image[image_id] = frame
        frames.append(frame)
    if len({f.frame_id for f in frames}) != len(frames):  # synthloop ids clash: fall back to image ids
        for f in frames:
            f.frame_id = str(f.extra["coco_image_id"])
    return frames, by_image, skipped


def _annotation(
    a: Any,
    by_image: dict[Any, Frame],
    skipped_images: set[Any],
    cats: dict[int, Category],
    skip_invalid: bool,
) -> tuple[Frame, ObjectAnnotation]:
    """The frame annotation ``a`` belongs to and its parsed object; ``_Invalid`` naming the field
    otherwise (no such image, an image skipped as invalid, an unknown category, a bad value)."""
    if not isinstance(a, dict):
        raise _Invalid("", "must be an object")
    if "image_id" not in a:
        raise _Invalid("image_id", "missing")
    if not _is_id(a["image_id"]):
        raise _Invalid("image_id", f"must be an integer or string, got {a['image_id']!r}")
    owner = by_image.get(a["image_id"])
    if owner is None:
        if a["image_id"] in skipped_images and skip_invalid:
            raise _Invalid("image_id", f"its image {a['image_id']!r} was skipped")
        raise _Invalid("image_id", f"no image with id {a['image_id']!r}")
    if "category_id" not in a:
        raise _Invalid("category_id", "missing")
    ann_cat = cats.get(a["category_id"]) if _is_id(a["category_id"], str_ok=False) else None
    if ann_cat is None:
        raise _Invalid("category_id", f"category id {a['category_id']!r} is not in categories")
    return owner, _parse_annotation(a, owner.width, owner.height, ann_cat)


def coco_to_dataset(
    data: Any,
    json_path: str | Path,
    images_dir: str | Path | None = None,
    *,
    skip_invalid: bool = False,
    verify_images: bool = False,
    source: str = "coco",
    allow_outside_root: bool = False,
) -> Dataset:
    """Build a Dataset from an already-parsed COCO dict (``json_path`` names it in errors and
    anchors relative image paths). See :func:`load_coco`."""
    path = Path(json_path).absolute()
    issues = _Issues(path, skip_invalid)
    anns = _checked_top_level(data, path)
    dirs = [Path(images_dir).absolute()] if images_dir is not None else [path.parent, path.parent / "images"]
    root = None if allow_outside_root else images_root(path, dirs[0] if images_dir is not None else None)
    cats = _categories(data["categories"], issues)
    frames, by_image, skipped_images = _frames(data["images"], dirs, verify_images, root, source, issues)
    for i, a in enumerate(anns):
        label = _label("annotations", i, a)
        try:
            owner, obj = _annotation(a, by_image, skipped_images, cats, skip_invalid)
        except _Invalid as e:
            issues.report(label, e.field, e.reason)
            continue
        owner.objects.append(obj)

    info: dict[str, Any] = {"source_format": source, "source_path": str(path), "skipped": issues.skipped}
    if isinstance(data.get("info"), dict):
        info["coco_info"] = data["info"]
    return Dataset(
        categories=sorted(cats.values(), key=lambda c: c.id),
        frames=frames,
        name=path.stem,
        root=path.parent,
        info=info,
    )


def load_coco(
    json_path: str | Path,
    images_dir: str | Path | None = None,
    *,
    skip_invalid: bool = False,
    verify_images: bool = False,
    allow_outside_root: bool = False,
) -> Dataset:
    """Read a COCO instances JSON into a Dataset.

    Every ``file_name`` must stay inside the images root (:func:`images_root`): absolute paths,
    ``..`` and symlinks that leave it are refused, so a shared annotation file cannot pull
    ``~/.ssh/id_rsa`` into a dataset. ``allow_outside_root=True`` lifts that for trusted files.

    ``images_dir``: where ``file_name`` paths are relative to (default: the JSON's folder, else
    its ``images/`` subfolder, chosen per image). ``verify_images``: decode every image fully
    (finds missing, unreadable and truncated files); without it only images whose size is
    missing from the JSON are opened (header only). Frame ids are the image ids as str (or the
    ``synthloop_frame_id`` our exporter wrote).
    """
    path = Path(json_path).absolute()
    return coco_to_dataset(
        read_json(path, DatasetError),
        path,
        images_dir,
        skip_invalid=skip_invalid,
        verify_images=verify_images,
        allow_outside_root=allow_outside_root,
    )
