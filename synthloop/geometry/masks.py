"""Masks and boxes: COCO RLE encode/decode (pycocotools), tight boxes, box conversions and IoU.

Conventions (see :mod:`synthloop.dataset.types`): masks are bool arrays (H, W); RLE dicts are
``{"size": [H, W], "counts": str}`` in pycocotools' column-major compressed form; boxes are
``(x1, y1, x2, y2)`` in continuous pixel coordinates (pixel i covers [i, i+1)), so a mask whose
columns run 3..7 has x1 = 3, x2 = 8. COCO ``(x, y, w, h)`` is only used at the COCO boundary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from synthloop.geometry.errors import GeometryError

# Imported coordinates (polygon vertices, box corners) may lie at most this many image sizes from
# the origin: further out they are an error, and pycocotools would rasterise a 1e12-pixel outline.
COORD_REACH = 4


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a bool/0-1 mask (H, W): ``{"size": [H, W], "counts": str}``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise GeometryError(f"mask must be 2-D (H, W), got shape {m.shape}", where="mask")
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle["counts"].decode("ascii")}


def _to_compressed(rle: dict[str, Any]) -> dict[str, Any]:
    """pycocotools-ready compressed RLE (bytes counts) from str/bytes/uncompressed-list counts."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise GeometryError("RLE must be a dict with 'size' and 'counts'", where="mask")
    try:
        if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in rle["size"]):
            raise TypeError("not integers")
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"RLE size must be [height, width], got {rle['size']!r}", where="mask.size"
        ) from exc
    if h < 0 or w < 0:
        raise GeometryError(f"RLE size must be non-negative, got {[h, w]}", where="mask.size")
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        try:  # pycocotools does not check the string: a bad one decodes garbage memory
            rle_string_counts(counts, h, w)
            return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        except (ValueError, UnicodeEncodeError) as exc:
            raise GeometryError(f"invalid compressed RLE: {exc}", where="mask.counts") from None
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise GeometryError("uncompressed RLE counts must be integers", where="mask.counts")
        runs = [int(c) for c in counts]
        if any(c < 0 for c in runs) or sum(runs) != h * w:
            raise GeometryError(
                f"uncompressed RLE counts must be non-negative and sum to {h}*{w}={h * w}, got {sum(runs)}",
                where="mask.counts",
            )
        return mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    raise GeometryError(
        f"RLE counts must be str, bytes or a list, got {type(counts).__name__}", where="mask.counts"
    )


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Bool mask (H, W) of an RLE dict; counts may be str, bytes or an uncompressed list of runs."""
    comp = _to_compressed(rle)
    h, w = comp["size"]
    try:
        with warnings.catch_warnings():  # pycocotools' __array__ lacks numpy 2's copy keyword
            warnings.simplefilter("ignore", DeprecationWarning)
            m = mask_utils.decode(comp)
    except Exception as exc:  # pycocotools raises bare errors on corrupt counts
        raise GeometryError(f"cannot decode RLE counts: {exc}", where="mask.counts") from exc
    if m.shape != (h, w):
        raise GeometryError(f"decoded RLE has shape {m.shape}, expected {(h, w)}", where="mask.counts")
    return m.astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an RLE dict (any accepted counts form)."""
    return int(mask_utils.area(_to_compressed(rle)))


def _with_str_counts(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def rle_bbox_xyxy(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    """Tight pixel box ``(x1, y1, x2, y2)`` of an RLE (pixel i covers [i, i+1)); zeros when empty."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_to_compressed(rle)))
    return (x, y, x + w, y + h)


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict[str, Any] | None:
    """A COCO ``segmentation`` value -> compressed RLE (str counts), or None when it is empty.

    Accepts polygons (a list of flat ``[x, y, ...]`` pixel lists; parts with < 3 points are
    dropped, the rest merged), uncompressed RLE (``counts`` a list of ints, as crowd annotations
    and BlenderProc write it) and compressed RLE (``counts`` a str). The RLE ``size`` must be
    ``[height, width]``. Anything else raises :class:`GeometryError` naming what is wrong.
    """
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return None
    if isinstance(seg, list):
        # pycocotools rasterises the outline: a NaN or a 1e12 coordinate crashes it or allocates
        # tens of GB. Coordinates must be finite and within COORD_REACH image sizes.
        reach = COORD_REACH * max(int(height), int(width))
        for part in seg:
            if not isinstance(part, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in part
            ):
                raise GeometryError("polygon must be a list of numbers", where="segmentation")
            if len(part) % 2:
                raise GeometryError(
                    f"polygon has an odd number of coordinates ({len(part)})", where="segmentation"
                )
            if not all(math.isfinite(v) and -reach <= v <= reach for v in part):
                raise GeometryError(
                    f"polygon coordinates must be finite and within +-{reach} pixels", where="segmentation"
                )
        polys = [part for part in seg if len(part) >= 6]
        return polygons_to_rle(polys, height, width) if polys else None
    if not isinstance(seg, dict):
        raise GeometryError(
            f"segmentation must be a list or a dict, not {type(seg).__name__}", where="segmentation"
        )
    comp = _to_compressed(seg)
    if list(comp["size"]) != [int(height), int(width)]:
        raise GeometryError(
            f"RLE size {list(comp['size'])} differs from the image's [{height}, {width}]",
            where="segmentation.size",
        )
    try:
        mask_utils.area(comp)  # validates a compressed string
    except Exception as exc:  # pycocotools raises bare errors on corrupt counts
        raise GeometryError(f"cannot decode RLE counts: {exc}", where="segmentation.counts") from exc
    return _with_str_counts(comp)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict[str, Any]:
    """Union of COCO polygons (each a flat ``[x1, y1, x2, y2, ...]`` list in pixels) as one RLE.

    Rasterized by pycocotools (its own rule: roughly, pixels whose centre is inside). Polygons
    with fewer than 3 points are ignored; no valid polygon gives an empty mask.
    """
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not polys:
        return mask_to_rle(np.zeros((height, width), dtype=bool))
    return _with_str_counts(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))


def mask_to_bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box ``(x1, y1, x2, y2)`` of a mask's pixels (x2 = max col + 1), None when empty."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise GeometryError(f"mask must be 2-D (H, W), got shape {m.shape}", where="mask")
    cols = np.flatnonzero(m.any(axis=0))
    if len(cols) == 0:
        return None
    rows = np.flatnonzero(m.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _boxes(b: Any) -> tuple[np.ndarray, bool]:
    arr = np.asarray(b, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise GeometryError(f"boxes must have a last dimension of 4, got shape {arr.shape}", where="box")
    return arr, arr.ndim == 1


def xyxy_to_xywh(box: Any) -> Any:
    """``(x1, y1, x2, y2)`` -> COCO ``(x, y, w, h)``. A single box gives a tuple, (N, 4) an array."""
    arr, single = _boxes(box)
    out = np.concatenate([arr[..., :2], arr[..., 2:] - arr[..., :2]], axis=-1)
    return tuple(float(v) for v in out) if single else out


def xywh_to_xyxy(box: Any) -> Any:
    """COCO ``(x, y, w, h)`` -> ``(x1, y1, x2, y2)``. A single box gives a tuple, (N, 4) an array."""
    arr, single = _boxes(box)
    out = np.concatenate([arr[..., :2], arr[..., :2] + arr[..., 2:]], axis=-1)
    return tuple(float(v) for v in out) if single else out


def box_area(boxes: Any) -> np.ndarray:
    """Areas (N,) of xyxy boxes (N, 4); inverted boxes count as 0."""
    arr, _ = _boxes(boxes)
    arr = arr.reshape(-1, 4)
    return np.clip(arr[:, 2] - arr[:, 0], 0, None) * np.clip(arr[:, 3] - arr[:, 1], 0, None)


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU (N, M) of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4); 0 where the union is empty."""
    aa, _ = _boxes(a)
    bb, _ = _boxes(b)
    aa, bb = aa.reshape(-1, 4), bb.reshape(-1, 4)
    lt = np.maximum(aa[:, None, :2], bb[None, :, :2])
    rb = np.minimum(aa[:, None, 2:], bb[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(aa)[:, None] + box_area(bb)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def rle_string_counts(counts: str | bytes, height: int, width: int) -> list[int]:
    """Decode a compressed-RLE ``counts`` string (pycocotools' LEB128-like 6-bit code) and check
    it: characters in ``'0'..'o'``, no cut-off run, every run >= 0, runs summing to
    ``height * width``. Raises ValueError otherwise (pycocotools would read garbage memory)."""
    s = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("compressed RLE string is cut off")
            c = s[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE has an invalid character at {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError(f"compressed RLE run {len(runs)} is negative ({x})")
        runs.append(x)
    if sum(runs) != height * width:
        raise ValueError(f"compressed RLE runs sum to {sum(runs)}, not height*width = {height * width}")
    return runs
