"""Overlay drawings a person can look at: one palette and one painter (PIL) for every caller.

``dataset show`` draws annotations, ``evaluate`` draws matched / missed / false detections and
``infer`` draws a model's detections; each turns what it shows into :class:`Mark` s and calls
:func:`paint`. Conventions:

* Boxes are pixel ``(x1, y1, x2, y2)`` floats of the original image (pixel i covers [i, i+1)),
  drawn on the pixels they cover; masks are RLE dicts of the original image's size; keypoints are
  ``(u, v, visibility)`` in pixels with COCO visibility 0 (not drawn) / 1 (hollow) / 2 (filled).
* Colours: :func:`category_color` gives each category id one colour everywhere (golden-ratio
  hues); :data:`GREEN` / :data:`RED` / :data:`ORANGE` mark matched / missed / false detections.
* With ``enlarge``, an image whose long side is under :data:`MIN_LONG_SIDE` px is enlarged by an
  integer factor (nearest neighbour) so small synthetic renders stay readable; marks scale with it.
  Masks are blended at native resolution first.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthloop.atomic import atomic_save_image
from synthloop.bodies.coco import COCO17_KEYPOINTS, COCO17_SKELETON
from synthloop.dataset.staging import frame_stems, staged_dir
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.geometry.masks import rle_to_mask

RGB = tuple[int, int, int]
MIN_LONG_SIDE = 480
MASK_ALPHA = 0.45
GREEN: RGB = (40, 200, 70)  # a detection matched to ground truth
RED: RGB = (235, 40, 40)  # ground truth no detection matched (drawn dashed)
ORANGE: RGB = (255, 150, 20)  # a detection matched to nothing


def category_color(cat_id: int) -> RGB:
    """A saturated RGB colour for a category id (golden-ratio hue steps)."""
    h = (int(cat_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass(frozen=True)
class Mark:
    """One thing to draw: a box with a label, and optionally a mask, keypoints and a skeleton.

    ``skeleton`` pairs are 1-based keypoint indices (COCO). ``dashed`` outlines the box in dashes.
    """

    box: Sequence[float]
    label: str
    color: RGB
    dashed: bool = False
    mask: dict[str, Any] | None = None
    keypoints: Sequence[tuple[float, float, int]] = ()
    skeleton: Sequence[tuple[int, int]] = ()


class DetectionArrays(Protocol):
    """What :func:`detection_marks` reads (e.g. a ``FrameDetections``): ``boxes`` (N, 4) xyxy
    pixels, ``scores`` (N,), ``labels`` (N,) category ids, ``masks`` N RLE dicts or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: list[dict] | None


def load_rgb(frame: Frame) -> Image.Image:
    """The frame's image as RGB; a file that cannot be read raises DatasetError naming it."""
    try:
        with Image.open(frame.image_path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"cannot read image ({e})", path=str(frame.image_path), where=frame.frame_id
        ) from None


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _blend_masks(base: Image.Image, marks: Sequence[Mark]) -> Image.Image:
    arr = np.asarray(base, dtype=np.float32).copy()
    for mk in marks:
        if mk.mask is None or list(mk.mask["size"]) != [base.height, base.width]:
            continue
        m = rle_to_mask(mk.mask)
        arr[m] = arr[m] * (1 - MASK_ALPHA) + np.array(mk.color, np.float32) * MASK_ALPHA
    return Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), "RGB")


def _dashed_rect(draw: ImageDraw.ImageDraw, box: Sequence[float], color: RGB, width: int, dash: int) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = max(math.hypot(bx - ax, by - ay), 1e-9)
        for k in range(max(1, int(length // (2 * dash))) + 1):
            t0, t1 = min(1.0, 2 * k * dash / length), min(1.0, (2 * k + 1) * dash / length)
            if t1 > t0:
                a, b = (ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)
                draw.line([a, b], fill=color, width=width)


def _label(
    draw: ImageDraw.ImageDraw, x1: float, y1: float, text: str, color: RGB, font: Any, lw: int
) -> None:
    """``text`` on a box of ``color`` above ``(x1, y1)`` (inside the box when there is no room)."""
    tb = draw.textbbox((x1, y1), text, font=font)
    th, tw = tb[3] - tb[1], tb[2] - tb[0]
    ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
    draw.rectangle([x1, ty, x1 + tw + 2 * lw, ty + th + 2 * lw], fill=color)
    ink = (0, 0, 0) if sum(color) > 300 else (255, 255, 255)
    draw.text((x1 + lw, ty + lw - (tb[1] - y1)), text, fill=ink, font=font)


def _keypoints(draw: ImageDraw.ImageDraw, mk: Mark, s: int, lw: int) -> None:
    pts = [(u * s, v * s, vis) for u, v, vis in mk.keypoints]
    for a, b in mk.skeleton:
        if 1 <= a <= len(pts) and 1 <= b <= len(pts) and pts[a - 1][2] > 0 and pts[b - 1][2] > 0:
            draw.line([pts[a - 1][:2], pts[b - 1][:2]], fill=mk.color, width=lw)
    r = 2 * lw + 1
    for u, v, vis in pts:
        if vis == 2:
            draw.ellipse([u - r, v - r, u + r, v + r], fill=(255, 255, 255), outline=(0, 0, 0))
        elif vis == 1:
            draw.ellipse([u - r, v - r, u + r, v + r], outline=(255, 255, 255), width=lw)


def paint(
    base: Image.Image, marks: Sequence[Mark], *, enlarge: bool = True, header: str | None = None
) -> Image.Image:
    """``base`` (RGB) with ``marks`` drawn in order (masks first, then boxes, labels, keypoints).

    With ``enlarge`` the result is ``base`` enlarged by ``s = ceil(MIN_LONG_SIDE / long side)``
    (at least 1); without, it has ``base``'s size. ``header`` adds a black bar with that text above
    the image, so the image part then starts ``result.height - base.height * s`` rows down.
    """
    s = max(1, math.ceil(MIN_LONG_SIDE / max(base.width, base.height))) if enlarge else 1
    img = _blend_masks(base, marks)
    if s > 1:
        img = img.resize((base.width * s, base.height * s), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    lw = max(2, round(max(img.width, img.height) / 400))
    font = _font(max(10, round(max(img.width, img.height) / 60)))
    for mk in marks:
        x1, y1, x2, y2 = (float(v) * s for v in mk.box)
        box = [x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)]
        if mk.dashed:
            _dashed_rect(draw, box, mk.color, lw, dash=3 * lw)
        else:
            draw.rectangle(box, outline=mk.color, width=lw)
        _label(draw, x1, y1, mk.label, mk.color, font, lw)
        _keypoints(draw, mk, s, lw)
    if header is None:
        return img
    tb = draw.textbbox((0, 0), header, font=font)
    bar = int(tb[3] - tb[1]) + 4 * lw
    canvas = Image.new("RGB", (img.width, img.height + bar), (0, 0, 0))
    canvas.paste(img, (0, bar))
    ImageDraw.Draw(canvas).text((2 * lw, 2 * lw - tb[1]), header, fill=(255, 255, 255), font=font)
    return canvas


def annotation_marks(frame: Frame, cats: Mapping[int, Category]) -> list[Mark]:
    """Marks of a frame's annotations in category colours; fully hidden objects (area 0) left out."""
    marks = []
    for o in frame.objects:
        if not o.area > 0:
            continue
        cat = cats.get(o.category_id)
        label = cat.name if cat else f"id {o.category_id}"
        if o.iscrowd:
            label += " (crowd)"
        if o.occlusion is not None:
            label += f" occ {o.occlusion:.2f}"
        kps = tuple((float(u), float(v), int(vis)) for u, v, vis in o.keypoints or ())
        skel = tuple(cat.skeleton) if cat else ()
        marks.append(Mark(o.bbox, label, category_color(o.category_id), False, o.mask, kps, skel))
    return marks


def detection_keypoints(
    dets: DetectionArrays, i: int, skeleton: Sequence[tuple[int, int]] | None = None
) -> tuple[tuple[tuple[float, float, int], ...], tuple[tuple[int, int], ...]]:
    """Detection ``i``'s predicted keypoints as ``(u, v, 2)`` marks (none when the detections carry
    no ``keypoints`` (N, K, 3) array) and the skeleton to draw them with: ``skeleton`` if given, else
    COCO's person skeleton for 17 keypoints, else none."""
    kp = getattr(dets, "keypoints", None)
    if kp is None or i >= len(kp):
        return (), ()
    pts = tuple((float(u), float(v), 2) for u, v, *_ in np.asarray(kp[i], np.float64))
    if skeleton is None:
        skeleton = COCO17_SKELETON if len(pts) == len(COCO17_KEYPOINTS) else ()
    return pts, tuple(skeleton)


def detection_marks(dets: DetectionArrays, names: Mapping[int, str] | None = None) -> list[Mark]:
    """Marks of detections in category colours, labelled ``name score``; predicted keypoints with
    their skeleton (:func:`detection_keypoints`) when the detections carry them."""
    masks: list[dict | None] = list(dets.masks) if dets.masks else [None] * len(dets.scores)
    return [
        Mark(
            box,
            f"{(names or {}).get(int(lab), str(int(lab)))} {float(sc):.2f}",
            category_color(int(lab)),
            False,
            m,
            *detection_keypoints(dets, i),
        )
        for i, (box, sc, lab, m) in enumerate(zip(dets.boxes, dets.scores, dets.labels, masks, strict=True))
    ]


def draw_detections(
    rgb: np.ndarray, dets: DetectionArrays, names: Mapping[int, str] | None = None
) -> Image.Image:
    """(H, W, 3) uint8 image + detections -> PIL RGB image of the same size with masks, boxes and
    ``name score`` labels."""
    return paint(Image.fromarray(np.asarray(rgb, np.uint8)), detection_marks(dets, names), enlarge=False)


def select_frames(ds: Dataset, frames: Sequence[str] | None = None, limit: int | None = None) -> list[Frame]:
    """The frames of ``ds`` with the ids ``frames`` (default all, in order), at most ``limit`` of
    them: what :func:`write_annotation_overlays` draws. Unknown frame ids raise DatasetError."""
    if frames is None:
        chosen = list(ds.frames)
    else:
        by_id = {f.frame_id: f for f in ds.frames}
        missing = [fid for fid in frames if fid not in by_id]
        if missing:
            src = ds.info.get("source_path") or ds.root or ds.name
            raise DatasetError(f"no frame with id {missing[0]!r}", path=str(src), where="frames")
        chosen = [by_id[fid] for fid in frames]
    return chosen if limit is None else chosen[: max(0, limit)]


def write_annotation_overlays(
    ds: Dataset,
    out_dir: str | Path,
    frames: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    on_frame: Callable[[], None] | None = None,
) -> list[Path]:
    """Write ``out_dir/<stem>.png`` annotation overlays for ``frames`` (frame ids; default all, in
    order), at most ``limit`` of them; the folder is published when complete. ``on_frame`` is
    called after each overlay is written (a progress bar's advance). Returns the paths. Unknown
    frame ids raise DatasetError."""
    stems = dict(zip((f.frame_id for f in ds.frames), frame_stems(ds), strict=True))
    chosen = select_frames(ds, frames, limit)
    cats = ds.category_by_id()
    out_dir = Path(out_dir).absolute()
    written = []
    with staged_dir(out_dir) as tmp:
        for f in chosen:
            atomic_save_image(tmp / f"{stems[f.frame_id]}.png", paint(load_rgb(f), annotation_marks(f, cats)))
            written.append(out_dir / f"{stems[f.frame_id]}.png")
            if on_frame is not None:
                on_frame()
    return written
