"""Touching piles: polygon math, pile placement, the recipe's ``arrangement`` field in the sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthloop.errors import RecipeError
from synthloop.geometry.meshes import build_mesh
from synthloop.geometry.polygons import convex_hull, min_width, polygon_gap
from synthloop.geometry.transforms import quat_to_matrix
from synthloop.scenes.piles import GAP_TOL, footprint, pile_sizes, place_piles
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_hash
from synthloop.scenes.sampler import sample_scene

# The bundled tabletop recipe's hash: a recipe without ``arrangement`` dumps (and hashes) as before
# the field existed, so its frames keep their spec hashes.
TABLETOP_HASH = "874ec48fecbc"

TOY = {
    "name": "toy",
    "resolution": [64, 48],
    "camera": {"distance": 0.4},
    "classes": [
        {
            "name": "egg",
            "count": {"uniform": [3, 7]},
            "shape": {
                "kind": "ellipsoid",
                "dimensions": [{"uniform": [0.02, 0.03]}, 0.02, {"uniform": [0.03, 0.05]}],
                "segments": 12,
                "orientation": {"choice": ["upright", "lying"]},
            },
        },
        {
            "name": "brick",
            "count": {"uniform": [1, 4]},
            "shape": {"kind": "box", "dimensions": [0.03, 0.015, 0.012]},
        },
    ],
    "placement": {"area": [0.3, 0.25], "min_gap": 0.0},
}


def square(cx: float, cy: float, half: float = 0.5) -> np.ndarray:
    return np.array(
        [[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]]
    )


def ellipse(a: float, b: float, angle: float, k: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, k, endpoint=False)
    p = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    c, s = math.cos(angle), math.sin(angle)
    return p @ np.array([[c, s], [-s, c]])


def test_hull_and_gap_of_known_polygons():
    rng = np.random.default_rng(0)
    pts = np.concatenate([square(0, 0), rng.uniform(-0.4, 0.4, (50, 2)), [[0.5, 0.0]]])
    hull = convex_hull(pts)
    assert len(hull) == 4 and {tuple(p) for p in hull} == {tuple(p) for p in square(0, 0)}
    x, y = hull[:, 0], hull[:, 1]
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # counter-clockwise
    assert polygon_gap(square(0, 0), square(1.3, 0)) == pytest.approx(0.3)
    assert polygon_gap(square(0, 0), square(1.5, 1.5)) == pytest.approx(math.sqrt(0.5))  # corners
    assert polygon_gap(square(0, 0), square(0.8, 0)) == pytest.approx(-0.2)
    assert polygon_gap(square(0, 0), square(1.0, 0)) == pytest.approx(0.0)
    assert min_width(ellipse(3, 1, 0.7, 64)) == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize("seed", range(12))
def test_piled_objects_touch_at_the_contact_gap_and_never_overlap(seed):
    rng = np.random.default_rng(seed)
    n = 10
    fps = [
        ellipse(rng.uniform(0.01, 0.025), rng.uniform(0.006, 0.012), rng.uniform(0, math.pi))
        for _ in range(n)
    ]
    radii = [float(np.linalg.norm(f, axis=1).max()) for f in fps]
    gap = float(rng.uniform(0.0, 0.003))
    piles = [list(range(0, 4)), list(range(4, 10))]
    xy, in_pile = place_piles(fps, radii, piles, (0.25, 0.2), gap, 0.0, 500, np.random.default_rng(seed))
    assert sum(in_pile) >= 8
    placed = [i for i in range(n) if xy[i] is not None]
    world = {i: fps[i] + np.asarray(xy[i]) for i in placed}
    for i in placed:
        assert np.all(np.abs(world[i]) <= (0.125 + 1e-12, 0.1 + 1e-12))
        gaps = [polygon_gap(world[i], world[j]) for j in placed if j != i]
        assert min(gaps) >= gap - 1e-9, "no two footprints come closer than the contact gap"
        if in_pile[i]:
            assert min(gaps) <= gap + GAP_TOL + 1e-9, "a piled object touches another"
    assert xy == place_piles(fps, radii, piles, (0.25, 0.2), gap, 0.0, 500, np.random.default_rng(seed))[0]


def test_pile_sizes_use_up_the_piled_objects():
    for n in range(0, 15):
        for frac in (0.0, 0.1, 0.5, 0.77, 1.0):
            draws = iter([3, 2, 5, 4] * 10)
            sizes, drawn = pile_sizes(n, frac, lambda d=draws: next(d))
            assert sum(sizes) == (round(frac * n) if round(frac * n) >= 2 else 0)
            assert all(s >= 2 for s in sizes) and drawn


def mesh_footprints(spec):
    return [
        footprint(build_mesh(o.shape).vertices, o.rotation_quat_wxyz) + np.array(o.location[:2])
        for o in spec.objects
    ]


@pytest.mark.parametrize("seed", range(6))
def test_sampled_piles_touch_rest_on_the_table_and_do_not_interpenetrate(seed):
    recipe = recipe_from_dict(
        {
            **TOY,
            "arrangement": {"pile_fraction": {"uniform": [0.6, 1.0]}, "contact_gap": {"uniform": [0, 0.002]}},
        }
    )
    touching = planned = 0
    for frame in range(4):
        spec = sample_scene(recipe, seed, frame)
        gap = spec.params["contact_gap"]
        n = round(spec.params["pile_fraction"] * len(spec.objects))
        planned += n if n >= 2 else 0
        assert 0.6 <= spec.params["pile_fraction"] <= 1.0 and 0 <= gap <= 0.002
        fps = mesh_footprints(spec)
        piled = [o.params["in_pile"] for o in spec.objects]
        assert spec.params["piled_count"] == sum(piled)
        for i, o in enumerate(spec.objects):
            v = build_mesh(o.shape).vertices
            z = (v @ quat_to_matrix(o.rotation_quat_wxyz).T)[:, 2] + o.location[2]
            assert abs(z.min()) < 1e-9, "every object rests on the table"
            gaps = [polygon_gap(fps[i], fps[j]) for j in range(len(fps)) if j != i]
            if not gaps:
                continue
            assert min(gaps) >= -1e-9, "no interpenetration"
            if piled[i]:
                assert gap - 1e-9 <= min(gaps) <= gap + GAP_TOL + 1e-9
                touching += 1
    assert touching >= 0.9 * planned > 0


def test_absent_arrangement_keeps_todays_frames_and_zero_piles_keeps_the_positions():
    tabletop = load_recipe("tabletop")
    assert recipe_hash(tabletop).startswith(TABLETOP_HASH)
    spec = sample_scene(tabletop, 3, 1)
    assert "pile_fraction" not in spec.params and all("in_pile" not in o.params for o in spec.objects)
    plain = recipe_from_dict(TOY)
    flat = recipe_from_dict({**TOY, "arrangement": {"pile_fraction": 0.0}})
    for frame in range(5):
        a, b = sample_scene(plain, 2, frame), sample_scene(flat, 2, frame)
        assert [o.location for o in a.objects] == [o.location for o in b.objects]
        assert b.params["piled_count"] == 0 and all(o.params["in_pile"] == 0 for o in b.objects)
        assert a.params.items() <= b.params.items()


@pytest.mark.parametrize(
    "arrangement, where",
    [
        ({"pile_fraction": 1.5}, "arrangement.pile_fraction"),
        ({"pile_fraction": float("nan")}, "arrangement.pile_fraction"),
        ({"contact_gap": -0.001}, "arrangement.contact_gap"),
        ({"contact_gap": float("inf")}, "arrangement.contact_gap"),
        ({"pile_size": 1}, "arrangement.pile_size"),
        ({"pile_size": {"uniform": [2.2, 2.8]}}, "arrangement.pile_size"),
        ({"piles": 3}, "arrangement"),
    ],
)
def test_bad_arrangement_is_one_line_naming_file_and_field(arrangement, where):
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({**TOY, "arrangement": arrangement}, source="toy.yaml")
    msg = str(e.value)
    assert msg.startswith(f"toy.yaml: {where}") and "\n" not in msg
