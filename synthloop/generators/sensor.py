"""The camera after the lens: sensor noise and JPEG compression on a rendered image.

A render is clean: no read noise, no compression blocks. Photos of the target domain have both
(fruits-nuts: phone JPEGs), and features that compare the two see it. :func:`apply_sensor` adds
them to the display-referred image, after every label was computed from the exact passes, so the
labels are unchanged. Pure function: the noise comes from the frame's own seed.

Conventions: images (H, W, 3) uint8 sRGB; noise in 8-bit levels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from synthloop.scenes.spec import SensorSpec


def add_noise(rgb: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` plus Gaussian noise of ``std`` 8-bit levels, independent per pixel and channel,
    rounded and clipped to [0, 255]."""
    if std <= 0:
        return rgb
    noisy = rgb.astype(np.float32) + rng.normal(0.0, std, rgb.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` encoded as a JPEG at ``quality`` (1-100, 4:2:0 chroma subsampling as cameras store
    it) and decoded again."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def apply_sensor(rgb: np.ndarray, sensor: SensorSpec) -> np.ndarray:
    """``rgb`` as the frame's sensor records it: noise (seeded by ``sensor.noise_seed``), then the
    JPEG round trip when ``sensor.jpeg_quality`` is set. Same input and spec, same output."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    out = add_noise(rgb, sensor.noise_std, np.random.default_rng(sensor.noise_seed))
    if sensor.jpeg_quality is not None:
        out = jpeg_round_trip(out, sensor.jpeg_quality)
    return out
