"""Colour conversions for the sampler (pure functions, no I/O).

* HSV values in recipes describe *display* colours (sRGB-encoded, as a colour picker shows them):
  h in turns [0, 1) (wrapped), s and v in [0, 1]. :func:`hsv_to_linear_rgb` converts them to the
  linear RGB that Blender's shader nodes expect (sRGB transfer function decoded, IEC 61966-2-1).
* Colour temperatures become linear RGB through the Planckian locus: CIE 1931 chromaticity
  (x, y) from the cubic-spline approximation of Kim et al. (2002, used by Kang et al.), valid for
  1667 K .. 25000 K (inputs are clamped to that range), then XYZ (Y = 1) -> linear sRGB (D65
  primaries), negative channels clipped to 0, normalised so the largest channel is 1. The
  approximation is within ~1e-3 in (x, y) of the exact locus; note that D65 is not on the
  locus, so 6500 K is slightly off neutral (a faint magenta/green shift of a few percent).
"""

from __future__ import annotations

import colorsys

import numpy as np

KELVIN_MIN = 1667.0
KELVIN_MAX = 25000.0

# XYZ (D65 white) -> linear sRGB, IEC 61966-2-1.
_XYZ_TO_SRGB = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ]
)


def srgb_to_linear(c: np.ndarray | float) -> np.ndarray:
    """Decode sRGB-encoded values in [0, 1] (any shape) to linear, same shape, float64."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray | float) -> np.ndarray:
    """Encode linear values in [0, 1] (any shape) to sRGB, same shape, float64."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def hsv_to_linear_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    """Display HSV (h in turns, wrapped; s, v clipped to [0, 1]) -> linear RGB in [0, 1]."""
    s = float(np.clip(s, 0.0, 1.0))
    v = float(np.clip(v, 0.0, 1.0))
    srgb = colorsys.hsv_to_rgb(float(h) % 1.0, s, v)
    r, g, b = (float(x) for x in srgb_to_linear(np.array(srgb)))
    return (r, g, b)


def planckian_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 (x, y) of a black body at ``kelvin`` (clamped to [1667, 25000] K)."""
    t = float(np.clip(kelvin, KELVIN_MIN, KELVIN_MAX))
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return (x, y)


def kelvin_to_linear_rgb(kelvin: float) -> tuple[float, float, float]:
    """Linear RGB (max channel = 1, all >= 0) of black-body light at ``kelvin``; see module doc."""
    x, y = planckian_xy(kelvin)
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    rgb = np.clip(_XYZ_TO_SRGB @ xyz, 0.0, None)
    rgb = rgb / rgb.max()
    r, g, b = (float(c) for c in rgb)
    return (r, g, b)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Display HSV of sRGB pixels: (..., 3) uint8 -> (..., 3) float64 with h in turns [0, 1),
    s and v in [0, 1] (the inverse of the recipe's HSV convention, ``colorsys`` per pixel)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    mx, mn = c.max(axis=-1), c.min(axis=-1)
    delta = mx - mn
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    safe = np.where(delta > 0, delta, 1.0)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    h = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    h = np.where(delta > 0, h / 6.0, 0.0) % 1.0
    return np.stack([h, s, mx], axis=-1)


def circular_mean(turns: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted circular mean in [0, 1) of angles in turns; NaN when empty or all weights are 0."""
    a = 2.0 * np.pi * np.asarray(turns, dtype=np.float64).reshape(-1)
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if a.size == 0 or w.sum() <= 0:
        return float("nan")
    return float((np.arctan2((w * np.sin(a)).sum(), (w * np.cos(a)).sum()) / (2.0 * np.pi)) % 1.0)
