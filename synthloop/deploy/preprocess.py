"""Image loading and resizing to a model's fixed input, shared by every backend.

Network input: float32 RGB in [0, 1], shape (3, H, W) with (W, H) = the model's
``input_width`` x ``input_height``; the image is resized (bilinear, aspect ratio not kept, like the
training augmentation's ``Resize`` and :class:`synthloop.training.predictor.Predictor`: OpenCV's
``INTER_LINEAR``, no antialiasing. PIL's bilinear antialiases when it shrinks, which blurs the input
the network sees compared with training; on fruits-nuts val, 800x600 photos shrunk to 512x384, it
cost 3.5 points AP50). Boxes predicted in input pixels map back to the original image
by ``scale = (orig_w / W, orig_h / H)`` (continuous pixel coordinates, pixel i covers [i, i+1)).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from synthloop.deploy.errors import DeployError


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; an undecodable or missing file raises DeployError."""
    p = Path(path)
    if not p.is_file():
        raise DeployError("image not found", path=str(p), where="image")
    try:
        with Image.open(p) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise DeployError(
            f"cannot decode image ({type(e).__name__}: {e})".splitlines()[0], path=str(p), where="image"
        ) from None


def to_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H0, W0, 3) uint8 -> (3, height, width) float32 in [0, 1] (bilinear resize, as in training)."""
    if rgb.shape[:2] != (height, width):
        import cv2

        rgb = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def load_input(path: str | os.PathLike, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(network input (3, height, width) float32, original (width, height)) of an image file."""
    rgb = read_rgb(path)
    return to_input(rgb, width, height), (rgb.shape[1], rgb.shape[0])
