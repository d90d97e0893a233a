"""Per-keypoint OKS sigmas (COCO keypoint evaluation), one home for their defaults.

A category's ``keypoint_sigmas`` (one per keypoint, in its keypoint order) say how precisely each
keypoint can be placed; pycocotools' COCOeval scores a predicted keypoint by
``exp(-d^2 / (2 * area * (2 * sigma)^2))``. Unknown sigmas default to COCO's 17 person sigmas for a
17-keypoint category and to :data:`DEFAULT_SIGMA` for every keypoint otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from synthloop.dataset.types import Category

# pycocotools' COCOeval defaults (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_PERSON_SIGMAS: tuple[float, ...] = tuple(
    v / 10.0
    for v in (
        0.26,
        0.25,
        0.25,
        0.35,
        0.35,
        0.79,
        0.79,
        0.72,
        0.72,
        0.62,
        0.62,
        1.07,
        1.07,
        0.87,
        0.87,
        0.89,
        0.89,
    )
)
DEFAULT_SIGMA = 0.05


def default_sigmas(num_keypoints: int) -> tuple[float, ...]:
    """COCO's person sigmas for 17 keypoints, else :data:`DEFAULT_SIGMA` each."""
    return COCO_PERSON_SIGMAS if num_keypoints == 17 else (DEFAULT_SIGMA,) * num_keypoints


def category_sigmas(cat: Category) -> tuple[float, ...]:
    """The category's own sigmas, or :func:`default_sigmas` for its keypoint count."""
    return cat.keypoint_sigmas or default_sigmas(len(cat.keypoints))


def check_sigmas(sigmas: Sequence[float], num_keypoints: int) -> tuple[float, ...]:
    """``sigmas`` as a tuple if there is one finite positive number per keypoint; else ValueError."""
    try:
        vals = tuple(float(s) for s in sigmas)
    except (TypeError, ValueError):
        raise ValueError("keypoint_sigmas must be a list of numbers") from None
    if len(vals) != num_keypoints:
        raise ValueError(f"keypoint_sigmas has {len(vals)} values for {num_keypoints} keypoints")
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError("keypoint_sigmas must be finite and > 0")
    return vals
