"""Convex polygons in the plane: hulls, widths and the gap between two of them (pure numpy).

A polygon is a (K, 2) float64 array of its vertices in counter-clockwise order, no vertex
repeated (any unit: the callers use metres on the table plane). Object footprints seen from above
are convex hulls of their vertices' xy (:mod:`synthloop.scenes.piles`).
"""

from __future__ import annotations

import numpy as np

from synthloop.geometry.errors import GeometryError


def convex_hull(points: np.ndarray) -> np.ndarray:
    """(K, 2) counter-clockwise convex hull of (N, 2) points (Andrew's monotone chain; collinear
    points on the hull's edges left out). Fewer than 3 distinct points come back as they are."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        raise GeometryError("hull points must be finite", where="points")
    p = np.unique(p, axis=0)  # sorted by x, then y
    if len(p) < 3:
        return p

    def half(pts: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for q in pts:
            while len(out) >= 2:
                a, b = out[-2], out[-1]
                if (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0]) > 0:
                    break
                out.pop()
            out.append(q)
        return out

    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _normals(poly: np.ndarray) -> np.ndarray:
    """(K, 2) outward unit normals of a counter-clockwise polygon's edges (edge k: vertex k -> k+1)."""
    e = np.roll(poly, -1, axis=0) - poly
    n = np.stack([e[:, 1], -e[:, 0]], axis=1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)


def min_width(poly: np.ndarray) -> float:
    """The polygon's smallest extent over its edge normals (its width in its thinnest direction)."""
    proj = _normals(poly) @ poly.T
    return float((proj.max(axis=1) - proj.min(axis=1)).min())


def _point_segment_distances(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(P, K) distances of each point to each edge of ``poly``."""
    a = poly
    ab = np.roll(poly, -1, axis=0) - a
    ap = points[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300)[None], 0.0, 1.0)
    d = ap - t[..., None] * ab[None]
    return np.sqrt((d * d).sum(-1))


def polygon_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Signed gap between convex polygons ``a`` and ``b``: their exact distance when they are
    disjoint (> 0), otherwise the separating-axis separation over both polygons' edge normals
    (<= 0; minus the smallest push along one of those normals that would separate them)."""
    sep = -np.inf
    for p, q in ((a, b), (b, a)):
        n = _normals(p)
        s = ((n @ q.T).min(axis=1) - (n @ p.T).max(axis=1)).max()
        sep = max(sep, float(s))
    if sep <= 0.0:
        return sep
    d1 = _point_segment_distances(a, b).min()
    d2 = _point_segment_distances(b, a).min()
    return float(min(d1, d2))


def inside_rect(poly: np.ndarray, half_x: float, half_y: float) -> bool:
    """Whether every vertex lies in the centred rectangle ``[-half_x, half_x] x [-half_y, half_y]``."""
    return bool(np.all(np.abs(poly[:, 0]) <= half_x) and np.all(np.abs(poly[:, 1]) <= half_y))
