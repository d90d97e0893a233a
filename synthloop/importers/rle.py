"""COCO mask encodings <-> the one in-memory form (compressed RLE, ``counts`` as str).

Pure functions over numpy arrays and pycocotools. Masks are (H, W) boolean arrays, row = y,
col = x; RLE dicts are ``{"size": [H, W], "counts": str}`` in pycocotools' column-major order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool/0-1 array -> compressed RLE with ``counts`` as str."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _for_pycocotools(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """Compressed RLE -> (H, W) bool array."""
    return mask_utils.decode(_for_pycocotools(rle)).astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    """Pixel count of a compressed RLE."""
    return int(mask_utils.area(_for_pycocotools(rle)))


def rle_bbox_xyxy(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    """Tight pixel box (x1, y1, x2, y2) of a compressed RLE (pixel i covers [i, i+1))."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_for_pycocotools(rle)))
    return (x, y, x + w, y + h)


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict[str, Any] | None:
    """A COCO ``segmentation`` value -> compressed RLE (str counts), or None when it is empty.

    Accepts polygons (list of flat [x, y, ...] lists; parts with < 3 points are dropped, the rest
    merged), uncompressed RLE (``counts`` a list of ints, as crowd annotations and BlenderProc
    write it) and compressed RLE (``counts`` a str). Raises ValueError/TypeError/KeyError on
    anything else (callers turn that into a DatasetError naming the record).
    """
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return None
    if isinstance(seg, list):
        polys = []
        for part in seg:
            if not isinstance(part, list) or not all(isinstance(v, int | float) for v in part):
                raise ValueError("polygon must be a list of numbers")
            if len(part) % 2:
                raise ValueError(f"polygon has an odd number of coordinates ({len(part)})")
            if len(part) >= 6:
                polys.append([float(v) for v in part])
        if not polys:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict):
        size = seg["size"]
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise ValueError("RLE size must be [height, width]")
        if [int(size[0]), int(size[1])] != [int(height), int(width)]:
            raise ValueError(f"RLE size {list(size)} differs from the image's [{height}, {width}]")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise ValueError("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != int(size[0]) * int(size[1]):
                raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not height*width")
            rle = mask_utils.frPyObjects(
                {"size": [int(size[0]), int(size[1])], "counts": counts}, height, width
            )
        elif isinstance(counts, str | bytes):
            rle = {"size": [int(size[0]), int(size[1])], "counts": counts}
            rle = _for_pycocotools(rle)
            mask_utils.area(rle)  # validates the string
        else:
            raise TypeError("RLE counts must be a list or a string")
    else:
        raise TypeError(f"segmentation must be a list or a dict, not {type(seg).__name__}")
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
