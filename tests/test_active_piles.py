"""A weak region of high overlap with neighbours maps to touching piles (``arrangement``).

Toy world without images: real ground-truth rows whose detector misses every object that overlaps
a neighbour by box IoU > ``OVERLAP``; render rows sampled from a toy recipe, each object's measured
overlap high when the sampler put it in a pile (what the Blender test checks on real renders).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthloop.active.derive import derive
from synthloop.active.mining import MiningOptions
from synthloop.active.real_guided import map_region, mine_rows, pile_lever
from synthloop.fitting.space import DEFAULT_KNOBS, find_knobs
from synthloop.scenes.recipe import recipe_from_dict
from synthloop.scenes.sampler import sample_scene

torch.set_num_threads(1)
OVERLAP = 0.25
TOY = {
    "name": "toy",
    "resolution": [64, 48],
    "classes": [
        {
            "name": "nut",
            "count": {"uniform": [4, 8]},
            "shape": {"kind": "sphere", "dimensions": [0.03, 0.03, 0.03], "segments": 8},
            "material": {"hue": {"uniform": [0, 1]}},
        }
    ],
    "placement": {"area": [0.4, 0.3], "min_gap": 0.0},
}
PILES = {**TOY, "arrangement": {"pile_fraction": {"uniform": [0.0, 0.6]}, "pile_size": {"uniform": [2, 4]}}}


def real_rows(n: int = 160, seed: int = 0) -> list[dict]:
    """GT rows: overlap uniform on [0, 0.6] for half the objects, 0 for the rest; missed above OVERLAP."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        overlap = float(rng.uniform(0.0, 0.6)) if i % 2 else 0.0
        rows.append(
            {
                "kind": "gt",
                "frame_id": f"photo{i // 10}",
                "category": "nut",
                "matched": overlap <= OVERLAP,
                "best_iou": 0.0,
                "properties": {"overlap": overlap, "size": float(rng.uniform(0.05, 0.15))},
            }
        )
    return rows


def render_rows(recipe_data: dict, frames: int = 60, seed: int = 3) -> list[dict]:
    """One row per sampled labeled object; measured overlap in [0.2, 0.6] for piled objects, < 0.05 apart."""
    recipe = recipe_from_dict(recipe_data)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(frames):
        spec = sample_scene(recipe, seed, k)
        for o in spec.objects:
            piled = bool(o.params.get("in_pile", 0))
            overlap = float(rng.uniform(0.2, 0.6) if piled else rng.uniform(0.0, 0.05))
            rows.append(
                {
                    "kind": "render",
                    "frame_id": str(k),
                    "category": "nut",
                    "matched": True,
                    "properties": {"overlap": overlap, "size": float(rng.uniform(0.05, 0.15))},
                    "attributes": dict(o.params),
                    "scene_params": dict(spec.params),
                }
            )
    return rows


@pytest.fixture(scope="module")
def overlap_region():
    res = mine_rows(real_rows(), MiningOptions(min_support=5))
    assert res is not None
    region = next(r for r in res.regions if r.param == "prop.overlap")
    assert region.low >= OVERLAP - 0.1 and not region.at_min
    return region


def pile_share(dist, n: int = 2000, at_least: float = 0.5) -> float:
    return float(np.mean([dist.sample_float(np.random.default_rng(s)) >= at_least for s in range(n)]))


def test_planted_overlap_region_maps_through_the_renders_to_more_piles(overlap_region):
    m = map_region(overlap_region, render_rows(PILES), MiningOptions(min_support=10))
    assert m.in_region > 0
    params = {p.param for p in m.params}
    assert params & {"attr.in_pile", "scene.pile_fraction"}, [p.describe() for p in m.params]
    assert all(p.source != "pile lever" for p in m.params), "the renders' own parameters carry it"
    base = recipe_from_dict(PILES)
    d = derive(base, m.params, exploration=0.3)
    assert "arrangement.pile_fraction" in {c.path for c in d.changes}
    before = pile_share(base.arrangement.pile_fraction)
    after = pile_share(d.recipe.arrangement.pile_fraction)
    assert after > before + 0.3, (before, after)


@pytest.mark.parametrize("table", ["recall", "precision"])
def test_a_coverage_hole_in_overlap_raises_the_pile_fraction_of_a_recipe_without_piles(overlap_region, table):
    rows = render_rows(TOY, frames=20)
    assert max(r["properties"]["overlap"] for r in rows) < OVERLAP - 0.1  # nothing rendered overlaps
    m = map_region(overlap_region, rows, MiningOptions(), table=table)
    assert m.params and m.params[0].param == "scene.pile_fraction" and "piles" in m.note
    base = recipe_from_dict(TOY)
    d = derive(base, m.params, exploration=0.3)
    assert base.arrangement is None and d.recipe.arrangement is not None
    assert pile_share(d.recipe.arrangement.pile_fraction) > 0.6
    spec = sample_scene(d.recipe, 0, 0)
    assert "pile_fraction" in spec.params


def test_low_overlap_and_other_properties_get_no_pile_lever(overlap_region):
    low = type(overlap_region).from_dict(
        {**overlap_region.to_dict(), "low": 0.0, "high": 0.05, "at_min": True}
    )
    other = type(overlap_region).from_dict({**overlap_region.to_dict(), "param": "prop.size"})
    assert pile_lever(low) is None and pile_lever(other) is None and pile_lever(overlap_region) is not None


def test_arrangement_params_map_to_their_fields(overlap_region):
    base = recipe_from_dict(PILES)
    region = overlap_region.to_dict()

    def at(param, low, high, incl=False):
        return type(overlap_region).from_dict(
            {**region, "param": param, "low": low, "high": high, "high_inclusive": incl, "at_min": False}
        )

    d = derive(base, [at("scene.pile_size", 3.5, 4.0, True), at("scene.contact_gap", 0.0001, 0.0004)], 0.0)
    assert d.recipe.arrangement.pile_size.model_dump() == 4  # [3.5, 4] open above: up to the support's 4
    assert d.recipe.arrangement.contact_gap.model_dump() == {"uniform": [0.0001, 0.0004]}
    scattered = derive(base, [at("attr.in_pile", 0.0, 1.0)], 0.0).recipe.arrangement.pile_fraction
    assert scattered.model_dump() == {"uniform": [0, 0.5]}
    piled = derive(base, [at("attr.in_pile", 1.0, 1.0, True)], 0.0).recipe.arrangement.pile_fraction
    assert piled.model_dump() == {"uniform": [0.5, 1]}
    d = derive(base, [at("scene.piled_count", 3, 5)], 0.3)
    assert not d.changes and "placement" in d.unmapped[0].reason


def test_the_fit_space_lists_the_arrangement_distributions():
    assert {"arrangement.pile_fraction", "arrangement.pile_size", "arrangement.contact_gap"} <= set(
        DEFAULT_KNOBS
    )
    data = {**PILES, "arrangement": {**PILES["arrangement"], "contact_gap": {"uniform": [0.0, 0.002]}}}
    knobs, notes = find_knobs(recipe_from_dict(data))
    labels = {k.label for k in knobs}
    assert {"arrangement.pile_fraction", "arrangement.pile_size", "arrangement.contact_gap"} <= labels, notes
    for k in knobs:
        if k.label.startswith("arrangement."):
            assert all(d.low < d.start < d.high or d.low <= d.start <= d.high for d in k.dims)
    _, notes = find_knobs(recipe_from_dict(TOY))
    assert any("arrangement" in n for n in notes)
