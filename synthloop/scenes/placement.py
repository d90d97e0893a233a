"""Resting poses and non-overlapping placement of objects on the table (pure, seeded functions).

Conventions: world +Z up, the table is the plane z = 0 centred at the origin, metres. An object's
local frame is centred on its bounding box with full extents ``dims = (dx, dy, dz)``; its world
transform is ``T(location) @ R(q)``, quaternions ``(w, x, y, z)`` (Hamilton, scalar first).

Orientations (before a yaw about world +Z):

* ``upright``: local axes = world axes (local +Z up).
* ``lying``: rotated +90 deg about local X, so local +Z points along world -Y and local Y is up
  (an elongated object modelled along its local Z lies on its side).
* ``upside_down``: rotated 180 deg about local X (local +Z points down).

Placement is rejection sampling with conservative footprint circles: an object's radius is half
the xy diagonal of its rotated bounding box; padded by ``min_gap / 2`` the circles of any two
placed objects are disjoint (so true footprints are at least ``min_gap`` apart), and the
unpadded circle lies inside the placement area ``[-ax/2, ax/2] x [-ay/2, ay/2]``. A negative
``min_gap`` lets the circles overlap by up to ``-min_gap`` (dense scenes of rounded objects, whose
footprints lie well inside their circles); the centre distance is still ``>= r_i + r_j + min_gap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from synthloop.geometry.transforms import quat_to_matrix

ORIENTATIONS = ("upright", "lying", "upside_down")
Quat = tuple[float, float, float, float]


def quat_axis_angle(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    """Unit quaternion (4,) ``(w, x, y, z)`` rotating by ``angle_rad`` about ``axis``."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    h = 0.5 * angle_rad
    return np.concatenate([[math.cos(h)], math.sin(h) * a])


def quat_mul(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hamilton product ``q1 * q2`` (apply ``q2`` first, then ``q1``), (4,) each."""
    w1, x1, y1, z1 = q1
    w2, x2, y2, z2 = q2
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def resting_quat(orientation: str, yaw_rad: float) -> Quat:
    """Quaternion ``(w, x, y, z)``: the ``orientation`` tilt, then a yaw about world +Z."""
    if orientation == "upright":
        tilt = np.array([1.0, 0.0, 0.0, 0.0])
    elif orientation == "lying":
        tilt = quat_axis_angle((1, 0, 0), math.pi / 2)
    elif orientation == "upside_down":
        tilt = quat_axis_angle((1, 0, 0), math.pi)
    else:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
    q = quat_mul(quat_axis_angle((0, 0, 1), yaw_rad), tilt)
    if q[0] < 0:
        q = -q
    w, x, y, z = (float(c) for c in q)
    return (w, x, y, z)


def rotated_extent(dims: Sequence[float], quat: Sequence[float]) -> np.ndarray:
    """World axis-aligned full extents (3,) of the local box ``dims`` (metres) rotated by ``quat``."""
    r = quat_to_matrix(quat)
    return np.abs(r) @ np.asarray(dims, dtype=np.float64)


def yaw_facing(
    position_xy: Sequence[float],
    target_xy: Sequence[float],
    offset_deg: float,
    forward_xy: Sequence[float] = (0.0, -1.0),
) -> float:
    """Yaw (degrees, about world +Z, in [0, 360)) that turns an object at ``position_xy`` whose
    local forward direction is ``forward_xy`` (its local frame's xy; a person faces -Y) towards
    ``target_xy``, then by ``offset_deg`` more, counter-clockwise seen from above. World metres."""
    theta = math.degrees(math.atan2(target_xy[1] - position_xy[1], target_xy[0] - position_xy[0]))
    forward = math.degrees(math.atan2(forward_xy[1], forward_xy[0]))
    return (theta + offset_deg - forward) % 360.0


def footprint_radius(dims: Sequence[float], quat: Sequence[float]) -> float:
    """Radius (metres) of the circle around the object's centre that contains its footprint.

    Half the xy diagonal of the rotated box: the largest horizontal distance of its 8 corners
    from the centre. Yaw about +Z does not change it."""
    half = 0.5 * np.asarray(dims, dtype=np.float64)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = (signs * half) @ quat_to_matrix(quat).T
    return float(np.max(np.hypot(corners[:, 0], corners[:, 1])))


def rest_height(dims: Sequence[float], quat: Sequence[float]) -> float:
    """Location z (metres) that puts the rotated box's lowest point on the table (z = 0)."""
    return float(0.5 * rotated_extent(dims, quat)[2])


def place_circles(
    radii: Sequence[float],
    area: tuple[float, float],
    min_gap: float,
    max_attempts: int,
    rng: np.random.Generator,
    obstacles: Sequence[tuple[float, float, float]] = (),
) -> list[tuple[float, float] | None]:
    """Place circles (in the given order) without overlap inside the centred rectangle ``area``.

    ``radii``: (N,) metres. Each circle gets up to ``max_attempts`` uniform draws of its centre
    inside ``[-ax/2 + r, ax/2 - r] x [-ay/2 + r, ay/2 - r]``; a draw is accepted when its distance
    to every placed centre is >= ``r_i + r_j + min_gap``. Returns the (x, y) centre per circle,
    or None where it did not fit (too big for the area, or no free spot found). Deterministic
    for a given generator state. ``obstacles``: circles ``(x, y, r)`` placed before (the same
    rule keeps the new circles clear of them).
    """
    ax, ay = float(area[0]), float(area[1])
    placed_xy: list[tuple[float, float]] = [(float(x), float(y)) for x, y, _ in obstacles]
    placed_r: list[float] = [float(r) for _, _, r in obstacles]
    out: list[tuple[float, float] | None] = []
    for r in radii:
        r = float(r)
        hx, hy = 0.5 * ax - r, 0.5 * ay - r
        if hx < 0 or hy < 0:
            out.append(None)
            continue
        # Draw all candidates at once: consumes a fixed amount of randomness per circle.
        cand = rng.uniform((-hx, -hy), (hx, hy), size=(max_attempts, 2))
        found = None
        if placed_xy:
            pts = np.asarray(placed_xy)
            need = np.asarray(placed_r) + r + min_gap
            d = np.linalg.norm(cand[:, None, :] - pts[None, :, :], axis=2)
            ok = np.all(d >= need[None, :], axis=1)
            idx = np.flatnonzero(ok)
            if idx.size:
                found = cand[idx[0]]
        else:
            found = cand[0]
        if found is None:
            out.append(None)
            continue
        xy = (float(found[0]), float(found[1]))
        placed_xy.append(xy)
        placed_r.append(r)
        out.append(xy)
    return out
