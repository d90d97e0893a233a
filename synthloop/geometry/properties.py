"""Measured object properties: the same numbers for a real photo's objects and a render's, pure numpy.

A real ground-truth object, a false positive and a rendered object are described by what can be
measured in the image, so a weak region found on real photos can be looked up among renders.
For one image (H, W, 3) uint8 sRGB, objects given as xyxy pixel boxes (pixel i covers [i, i+1))
and optional (H, W) bool masks, each object gets:

* ``size``: ``sqrt(box area / image area)`` (relative linear size; resolution independent).
* ``aspect``: box long side / short side (>= 1; objects lie at any yaw, so w/h would mix in
  orientation).
* ``hue`` / ``saturation`` / ``value``: colour of the pixels under the mask (the box where no mask
  is given), display HSV as in recipes: hue in turns, the saturation-weighted circular mean (the
  hue of grey pixels is noise), wrapped into [``HUE_CUT`` - 1, ``HUE_CUT``) = [-0.25, 0.75) so
  that reds (dates, red-brown skins) form one interval around 0 instead of two ends (-0.05 is
  the recipe's 0.95); saturation and value plain means in [0, 1].
* ``overlap``: the largest box IoU with a neighbour (the other context objects of the image).
* ``border``: the box's gap to the nearest image edge in units of its long side, clipped to
  [0, ``BORDER_CLIP``]; 0 = touching the edge (a truncation proxy that needs no amodal box).
* ``clutter``: how many neighbours have their box centre within ``clutter_k`` object sizes
  (``sqrt(w h)``) of this object's centre.
* ``bg_value``: mean HSV value of the background ring: the box grown by ``ring`` object sizes on
  each side, clipped to the image, minus every context object's pixels (masks, else boxes) and
  the object's own, eroded by one pixel (the pixels touching an object are left out).
* ``bg_texture``: mean gradient magnitude of the luma ``0.299 R + 0.587 G + 0.114 B`` in [0, 1]
  over the same ring, per 1 % of the image size (central differences per pixel times
  ``sqrt(W H) / 100``, so the same table seen at 640x480 and 800x600 scores alike): 0 on a flat
  table, larger on cloth, wood grain, clutter (and sensor noise).

Empty samples give NaN (a box outside the image, a ring covered by neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthloop.geometry.errors import GeometryError
from synthloop.geometry.masks import box_iou
from synthloop.scenes.color import circular_mean, rgb_to_hsv

PROPERTY_NAMES = (
    "size",
    "aspect",
    "hue",
    "saturation",
    "value",
    "overlap",
    "border",
    "clutter",
    "bg_value",
    "bg_texture",
)
BORDER_CLIP = 2.0
HUE_CUT = 0.75
DEFAULT_CLUTTER_K = 1.5
DEFAULT_RING = 0.5


def wrap_hue(turns: float) -> float:
    """A hue in turns moved into [``HUE_CUT`` - 1, ``HUE_CUT``) (module docstring); NaN stays NaN."""
    h = float(turns) % 1.0
    return h - 1.0 if h >= HUE_CUT else h


def _check(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise GeometryError(f"image must be (H, W, 3), got shape {img.shape}", where="image")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(b).all():
        raise GeometryError("boxes must be finite", where="boxes")
    return img, b


def box_region(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel rows/cols ``(r0, r1, c0, c1)`` of the pixels whose centres lie in ``box``
    (xyxy, continuous), clipped to the image; may be empty (r0 >= r1 or c0 >= c1)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, c1 = int(np.ceil(x1 - 0.5)), int(np.ceil(x2 - 0.5))
    r0, r1 = int(np.ceil(y1 - 0.5)), int(np.ceil(y2 - 0.5))
    return max(0, r0), min(height, r1), max(0, c0), min(width, c1)


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the pixels of :func:`box_region`."""
    m = np.zeros((height, width), dtype=bool)
    r0, r1, c0, c1 = box_region(box, height, width)
    if r0 < r1 and c0 < c1:
        m[r0:r1, c0:c1] = True
    return m


def luma_gradient(image: np.ndarray) -> np.ndarray:
    """(H, W) gradient magnitude of the luma in [0, 1] (``np.gradient``: central differences)."""
    y = np.asarray(image, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    gy, gx = np.gradient(y)
    return np.hypot(gx, gy)


def geometry_properties(
    boxes: np.ndarray,
    width: int,
    height: int,
    context_boxes: np.ndarray | None = None,
    self_index: Sequence[int] | None = None,
    clutter_k: float = DEFAULT_CLUTTER_K,
) -> dict[str, np.ndarray]:
    """``size``, ``aspect``, ``overlap``, ``border``, ``clutter`` (each (N,)) of xyxy ``boxes`` in a
    ``width`` x ``height`` image (module docstring). Neighbours are ``context_boxes`` (M, 4) (default:
    ``boxes`` themselves); ``self_index[i]`` is the context row that *is* object i (-1: none), which
    is left out of its neighbours (default: the identity when the context is ``boxes``)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    ctx = b if context_boxes is None else np.asarray(context_boxes, dtype=np.float64).reshape(-1, 4)
    if self_index is None:
        self_index = list(range(n)) if context_boxes is None else [-1] * n
    idx = np.asarray(self_index, dtype=np.int64).reshape(-1)
    if len(idx) != n:
        raise GeometryError(f"{len(idx)} self indices for {n} boxes", where="self_index")
    w = np.clip(b[:, 2] - b[:, 0], 0, None)
    h = np.clip(b[:, 3] - b[:, 1], 0, None)
    side = np.sqrt(w * h)
    size = side / np.sqrt(float(width) * float(height))
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(np.minimum(w, h) > 0, np.maximum(w, h) / np.minimum(w, h), np.nan)
        gap = np.minimum.reduce([b[:, 0], b[:, 1], width - b[:, 2], height - b[:, 3]])
        border = np.clip(np.where(np.maximum(w, h) > 0, gap / np.maximum(w, h), np.nan), 0.0, BORDER_CLIP)
    others = np.ones((n, len(ctx)), dtype=bool)
    rows = np.flatnonzero(idx >= 0)
    others[rows, idx[rows]] = False
    iou = box_iou(b, ctx) if len(ctx) else np.zeros((n, 0))
    overlap = np.where(others, iou, 0.0).max(axis=1, initial=0.0)
    cb = (b[:, :2] + b[:, 2:]) / 2.0
    cc = (ctx[:, :2] + ctx[:, 2:]) / 2.0
    dist = np.sqrt(((cb[:, None, :] - cc[None, :, :]) ** 2).sum(-1))
    clutter = ((dist <= clutter_k * side[:, None]) & others).sum(axis=1).astype(np.float64)
    return {"size": size, "aspect": aspect, "overlap": overlap, "border": border, "clutter": clutter}


def object_properties(
    image: np.ndarray,
    boxes: np.ndarray,
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    context_boxes: np.ndarray | None = None,
    context_masks: Sequence[np.ndarray | None] | None = None,
    self_index: Sequence[int] | None = None,
    clutter_k: float = DEFAULT_CLUTTER_K,
    ring: float = DEFAULT_RING,
) -> dict[str, np.ndarray]:
    """All :data:`PROPERTY_NAMES` (each an (N,) float64 array) of the objects of one image.

    ``image``: (H, W, 3) uint8 sRGB; ``boxes``: (N, 4) xyxy pixels; ``masks``: N (H, W) bool masks
    or None entries (colour then comes from the box). Neighbours (``overlap``, ``clutter``, and
    the pixels kept out of the background ring) are the ``context_boxes`` / ``context_masks``
    (default: the objects themselves); ``self_index`` as in :func:`geometry_properties`.
    """
    img, b = _check(image, boxes)
    hgt, wid = img.shape[:2]
    n = len(b)
    masks = list(masks) if masks is not None else [None] * n
    if len(masks) != n:
        raise GeometryError(f"{len(masks)} masks for {n} boxes", where="masks")
    if context_boxes is None:
        ctx_b, ctx_m = b, masks
    else:
        ctx_b = np.asarray(context_boxes, dtype=np.float64).reshape(-1, 4)
        ctx_m = list(context_masks) if context_masks is not None else [None] * len(ctx_b)
    out = geometry_properties(b, wid, hgt, context_boxes, self_index, clutter_k)
    hsv = rgb_to_hsv(img)
    grad = luma_gradient(img)
    scale = np.sqrt(float(wid) * float(hgt)) / 100.0  # per pixel -> per 1 % of the image size
    occupied = np.zeros((hgt, wid), dtype=bool)
    for bx, m in zip(ctx_b, ctx_m, strict=True):
        occupied |= _pixels(m, bx, hgt, wid)
    cols = {k: np.full(n, np.nan) for k in ("hue", "saturation", "value", "bg_value", "bg_texture")}
    for i in range(n):
        own = _pixels(masks[i], b[i], hgt, wid)
        if own.any():
            px = hsv[own]
            cols["hue"][i] = wrap_hue(circular_mean(px[:, 0], px[:, 1]))
            cols["saturation"][i] = float(px[:, 1].mean())
            cols["value"][i] = float(px[:, 2].mean())
        grow = ring * float(out["size"][i]) * np.sqrt(float(wid) * float(hgt))
        r0, r1, c0, c1 = box_region(b[i] + np.array([-grow, -grow, grow, grow]), hgt, wid)
        if r0 >= r1 or c0 >= c1:
            continue
        bg = erode(~(occupied[r0:r1, c0:c1] | own[r0:r1, c0:c1]))
        if bg.any():
            cols["bg_value"][i] = float(hsv[r0:r1, c0:c1, 2][bg].mean())
            cols["bg_texture"][i] = float(grad[r0:r1, c0:c1][bg].mean()) * scale
    out.update(cols)
    return {k: out[k] for k in PROPERTY_NAMES}


def erode(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 4-neighbours inside the array are all set (so a background pixel
    next to an object, whose central difference sees the object's edge, is left out)."""
    m = np.asarray(mask, dtype=bool)
    e = m.copy()
    e[1:, :] &= m[:-1, :]
    e[:-1, :] &= m[1:, :]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def _pixels(mask: np.ndarray | None, box: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask is None:
        return box_mask(box, height, width)
    m = np.asarray(mask, dtype=bool)
    if m.shape != (height, width):
        raise GeometryError(f"mask has shape {m.shape}, image is {(height, width)}", where="masks")
    return m
