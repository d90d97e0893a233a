"""The objective of a recipe fit: a weighted sum of gap components, relative to the original recipe.

Components of one trial (:data:`Components`, JSON-able, from :func:`components_of`):

* ``kid_image``: whole-image KID (:mod:`synthloop.gap.kid`) of the trial's proxy renders vs the
  real photos;
* ``kid_crops``: ``{class: KID}`` of the per-class object crops (labeled real data only);
* ``stats``: the mean of the normalised statistic differences (1-Wasserstein / real std, see
  :func:`synthloop.gap.stats.normalised_differences`; labeled real data only; image-level
  value/saturation always).

Objective, with the original recipe's components (trial 0) as the baseline B and weights w:

    J = (w_image * kid_image / B.kid_image
         + w_crops * mean_c(kid_crops[c] / B.kid_crops[c])
         + w_stats * stats / B.stats) / (sum of the weights of the components present)

so J = 1 for the original recipe and J = 0.5 means the gap halved on average. Each baseline is
floored at :data:`FLOOR` (a KID can be ~0 or negative). A class without enough crops in a trial
(KID undefined) scores :data:`MISSING` for that class. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthloop.gap.compute import GapReport

Components = dict[str, Any]
FLOOR = 1e-4
MISSING = 2.0


@dataclass(frozen=True)
class ObjectiveWeights:
    image: float = 1.0
    crops: float = 1.0
    stats: float = 1.0


def _ratio(v: float | None, b: float | None) -> float | None:
    if b is None or not math.isfinite(b):
        return None
    if v is None or not math.isfinite(v):
        return MISSING
    return v / max(b, FLOOR)


def objective(comps: Components, baseline: Components, w: ObjectiveWeights = ObjectiveWeights()) -> float:
    """J of ``comps`` against ``baseline`` (see the module docstring); inf if nothing is comparable."""
    terms: list[tuple[float, float]] = []
    r = _ratio(comps.get("kid_image"), baseline.get("kid_image"))
    if r is not None:
        terms.append((w.image, r))
    crops = baseline.get("kid_crops") or {}
    raw = [_ratio((comps.get("kid_crops") or {}).get(c), b) for c, b in crops.items()]
    ratios: list[float] = [x for x in raw if x is not None]
    if ratios:
        terms.append((w.crops, float(np.mean(ratios))))
    r = _ratio(comps.get("stats"), baseline.get("stats"))
    if r is not None:
        terms.append((w.stats, r))
    total = sum(wt for wt, _ in terms)
    if not terms or total <= 0:
        return math.inf
    return float(sum(wt * v for wt, v in terms) / total)


def components_of(report: GapReport) -> Components:
    """Components of a :class:`~synthloop.gap.compute.GapReport`."""
    diffs = [v for v in report.differences.values() if math.isfinite(v)]
    return {
        "kid_image": report.kid_image.value if report.kid_image else None,
        "kid_crops": {c: (k.value if k else None) for c, k in report.kid_crops.items()},
        "stats": float(np.mean(diffs)) if diffs else None,
        "differences": dict(report.differences),
    }
