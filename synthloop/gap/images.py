"""Image access for the gap: read a frame's RGB, bring it to a working width, cut object crops.

Conventions: images are (H, W, 3) uint8 sRGB; boxes are pixel x1, y1, x2, y2 floats of the image
they were measured on. Both sides of a comparison are first resized to one *working width*
(default: the smaller of the two sides' median widths) so that sharpness and noise at different
resolutions do not pass for a domain gap.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from synthloop.dataset.types import Frame
from synthloop.errors import SynthloopError

CROP_CONTEXT = 0.15  # fraction of the box's long side added as context on every side


def load_rgb(frame: Frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``frame``; SynthloopError (one line, with the path) if unreadable or
    not the size its record says."""
    try:
        with Image.open(frame.image_path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise SynthloopError(f"cannot read image: {err}", path=str(frame.image_path)) from None
    if rgb.shape[:2] != (frame.height, frame.width):
        raise SynthloopError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]}, record says {frame.width}x{frame.height}",
            path=str(frame.image_path),
        )
    return rgb


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` resized to (height, width, 3) uint8 (PIL box filter down, bilinear up)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    down = width < rgb.shape[1]
    im = Image.fromarray(rgb).resize(
        (width, height), Image.Resampling.BOX if down else Image.Resampling.BILINEAR
    )
    return np.asarray(im)


def to_width(rgb: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """``rgb`` scaled (aspect kept) to ``width`` pixels wide, and the scale factor applied."""
    scale = width / rgb.shape[1]
    height = max(1, round(rgb.shape[0] * scale))
    return resize(rgb, width, height), scale


def square_window(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    """Integer square window (x1, y1, x2, y2) around ``box`` with :data:`CROP_CONTEXT` context,
    shifted (and if need be shrunk) to lie inside a ``w`` x ``h`` image."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * CROP_CONTEXT)
    side = int(round(min(max(side, 2.0), w, h)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(round(min(max(cx - side / 2.0, 0), w - side)))
    top = int(round(min(max(cy - side / 2.0, 0), h - side)))
    return left, top, left + side, top + side


def crop(rgb: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(size, size, 3) uint8 square crop of ``rgb`` around pixel box ``box`` (see :func:`square_window`)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = square_window(box, w, h)
    return resize(np.ascontiguousarray(rgb[y1:y2, x1:x2]), size, size)
