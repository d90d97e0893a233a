"""Touching piles of objects on the table (pure, seeded functions; see ``Recipe.arrangement``).

Conventions as in :mod:`synthloop.scenes.placement`: world +Z up, table plane z = 0, metres. Every
object rests on the table (its location z is its rest height), so two objects are disjoint when
their *footprints* -- the convex hulls of their posed vertices' xy, centred on the object's
location -- are disjoint (:func:`footprint`). A pile grows one object at a time:

1. its first object is placed like a scattered one (a uniform draw inside the placement area
   whose footprint circle keeps ``min_gap`` to every placed object's circle);
2. each next object picks a random member of the pile and a random direction, starts where its
   circle clears that member's, and slides straight towards the member's centre until its
   footprint comes within ``contact_gap`` of any placed footprint (a scan in steps of half its
   smallest width, so no footprint can be jumped over, then bisection): it then touches at least
   one object at a footprint gap of ``contact_gap`` (to within ``GAP_TOL``) and overlaps none.
   A slide that starts blocked, or ends with the footprint outside the placement area, is
   retried (:data:`ATTACH_TRIES` tries at most); an object that finds no contact is not in a pile.

Touching footprints mean touching silhouettes seen from above (the widest points of rounded fruit
lying side by side), so neighbours overlap in boxes and, seen at an angle, occlude each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from synthloop.geometry.polygons import convex_hull, inside_rect, min_width, polygon_gap
from synthloop.geometry.transforms import quat_to_matrix
from synthloop.scenes.placement import place_circles

GAP_TOL = 1e-6  # metres: how far past contact_gap the bisection may stop
ATTACH_TRIES = 64  # slides tried per object (at most max_attempts)
_BISECT = 24
_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def footprint(vertices: np.ndarray, quat: Sequence[float]) -> np.ndarray:
    """(K, 2) counter-clockwise convex footprint of local-frame ``vertices`` (N, 3), metres,
    posed by ``quat`` (w, x, y, z), relative to the object's location."""
    posed = np.asarray(vertices, dtype=np.float64) @ quat_to_matrix(quat).T
    return convex_hull(posed[:, :2])


def box_footprint(dims: Sequence[float], quat: Sequence[float]) -> np.ndarray:
    """The footprint of the posed bounding box of full extents ``dims`` (metres)."""
    return footprint(_SIGNS * 0.5 * np.asarray(dims, dtype=np.float64), quat)


def pile_sizes(n_objects: int, fraction: float, draw_size: Callable[[], int]) -> tuple[list[int], list[int]]:
    """(sizes of the piles, sizes drawn). ``round(fraction * n_objects)`` objects go into piles of
    sizes drawn with ``draw_size`` (each >= 2) until they are used up: the last pile takes what is
    left, and a last single object joins the pile before it. At least one size is drawn (so a
    frame always records one); fewer than 2 piled objects make no pile."""
    n = int(round(min(max(fraction, 0.0), 1.0) * n_objects))
    drawn: list[int] = []
    sizes: list[int] = []
    left = n
    while True:
        s = max(2, int(draw_size()))
        drawn.append(s)
        if left < 2:
            break
        take = min(s, left)
        sizes.append(take)
        left -= take
        if left == 1:
            sizes[-1] += 1
            left = 0
        if left == 0:
            break
    return sizes, drawn


class _Placed:
    """The footprints placed so far: centres (N, 2), circle radii (N,), world polygons."""

    def __init__(self) -> None:
        self.centres = np.zeros((0, 2))
        self.radii = np.zeros(0)
        self.poly: list[np.ndarray] = []

    def add(self, xy: np.ndarray, r: float, poly: np.ndarray) -> int:
        self.centres = np.vstack([self.centres, np.asarray(xy, dtype=np.float64)[None]])
        self.radii = np.append(self.radii, float(r))
        self.poly.append(poly + xy)
        return len(self.poly) - 1

    def clear_of(self, poly: np.ndarray, xy: np.ndarray, r: float, gap: float) -> bool:
        """Whether ``poly`` (centred) at ``xy`` keeps at least ``gap`` from every placed footprint
        (only those whose circles come closer than ``gap`` are tested polygon to polygon)."""
        near = np.linalg.norm(self.centres - xy, axis=1) - r - self.radii < gap
        moved = poly + xy
        return all(polygon_gap(moved, self.poly[j]) >= gap for j in np.flatnonzero(near))


def _attach(
    poly: np.ndarray,
    r: float,
    members: list[int],
    placed: _Placed,
    gap: float,
    half: tuple[float, float],
    tries: int,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A centre where ``poly`` touches the pile ``members`` (module docstring, step 2), or None."""
    step = 0.5 * max(min_width(poly), 1e-6)
    for _ in range(tries):
        anchor = members[int(rng.integers(len(members)))]
        theta = float(rng.uniform(0.0, 2.0 * math.pi))
        u = np.array([math.cos(theta), math.sin(theta)])
        c = placed.centres[anchor]
        s_ok = float(placed.radii[anchor]) + r + gap + step
        if not placed.clear_of(poly, c + s_ok * u, r, gap):
            continue
        s_bad = s_ok - step
        while s_bad > 0.0 and placed.clear_of(poly, c + s_bad * u, r, gap):
            s_ok, s_bad = s_bad, s_bad - step
        if s_bad <= 0.0 and placed.clear_of(poly, c, r, gap):
            continue  # nothing stops it, not even the anchor (a footprint without its centre)
        s_bad = max(s_bad, 0.0)
        for _ in range(_BISECT):
            if s_ok - s_bad <= GAP_TOL:
                break
            mid = 0.5 * (s_ok + s_bad)
            if placed.clear_of(poly, c + mid * u, r, gap):
                s_ok = mid
            else:
                s_bad = mid
        xy = c + s_ok * u
        if inside_rect(poly + xy, *half):
            return xy
    return None


def place_piles(
    footprints: Sequence[np.ndarray],
    radii: Sequence[float],
    piles: Sequence[Sequence[int]],
    area: tuple[float, float],
    contact_gap: float,
    min_gap: float,
    max_attempts: int,
    rng: np.random.Generator,
) -> tuple[list[tuple[float, float] | None], list[bool]]:
    """Place the piles (module docstring), one after the other.

    ``footprints[i]``: object i's centred footprint (K, 2); ``radii[i]``: a circle around its
    centre containing it (the scatter rule's footprint radius); ``piles``: object indices per
    pile, in growing order. Returns per object its centre (x, y) or None (not placed: left for
    the scatter step) and whether it is in a pile (it touches another piled object). A first
    object whose pile gets no second one is placed, not in a pile."""
    n = len(footprints)
    xy: list[tuple[float, float] | None] = [None] * n
    in_pile = [False] * n
    placed = _Placed()
    half = (0.5 * float(area[0]), 0.5 * float(area[1]))
    for pile in piles:
        if not pile:
            continue
        first = pile[0]
        obstacles = [
            (float(c[0]), float(c[1]), float(rj)) for c, rj in zip(placed.centres, placed.radii, strict=True)
        ]
        seed = place_circles([radii[first]], area, min_gap, max_attempts, rng, obstacles=obstacles)[0]
        if seed is None:
            continue
        members = [placed.add(np.array(seed), radii[first], footprints[first])]
        xy[first] = seed
        for i in pile[1:]:
            tries = min(max_attempts, ATTACH_TRIES)
            pos = _attach(footprints[i], radii[i], members, placed, contact_gap, half, tries, rng)
            if pos is None:
                continue
            members.append(placed.add(pos, radii[i], footprints[i]))
            xy[i] = (float(pos[0]), float(pos[1]))
            in_pile[i] = in_pile[first] = True
    return xy, in_pile
