"""Derivation: weak regions -> mixtures in the recipe; unmappable params are reported."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.active.derive import derive, derive_recipe, save_derivation
from synthloop.active.errors import ActiveError
from synthloop.active.mining import WeakRegion
from synthloop.scenes.distributions import Mixture
from synthloop.scenes.recipe import load_recipe, recipe_from_dict
from synthloop.scenes.sampler import sample_scene

# A fixed recipe (not a bundled one, which may change): class 0 has scale uniform [0.8, 1.2].
RECIPE = {
    "name": "shapes",
    "resolution": [64, 48],
    "camera": {
        "distance": {"uniform": [0.7, 0.9]},
        "elevation_deg": {"uniform": [55, 90]},
        "focal_length_mm": 35,
    },
    "lights": {"count": 1, "type": "SUN", "sun_strength": {"uniform": [2, 4]}},
    "classes": [
        {
            "name": "sphere",
            "count": {"uniform": [1, 2]},
            "shape": {"kind": "sphere", "dimensions": [0.06, 0.06, 0.06], "scale": {"uniform": [0.8, 1.2]}},
            "material": {"hue": {"uniform": [0, 0.1]}},
        },
        {
            "name": "box",
            "count": {"uniform": [1, 2]},
            "shape": {"kind": "box", "dimensions": [0.05, 0.04, 0.03]},
        },
        {
            "name": "cylinder",
            "count": {"choice": [0, 1]},
            "shape": {
                "kind": "cylinder",
                "dimensions": [0.05, 0.05, 0.06],
                "orientation": {"choice": ["upright", "lying"]},
            },
        },
    ],
}


def region(param: str, low=None, high=None, categories=None, high_inclusive=False) -> WeakRegion:
    return WeakRegion(
        param=param,
        kind="categorical" if categories else "numeric",
        support=50,
        support_fraction=0.1,
        recall_inside=0.2,
        recall_outside=0.8,
        overall_recall=0.75,
        ci_low=0.1,
        ci_high=0.3,
        ci_adjusted=(0.05, 0.4),
        confidence_adjusted=0.999,
        effect=0.55,
        effect_vs_outside=0.6,
        z=8.0,
        excess_failures=27.5,
        source="bins",
        weak=True,
        low=low,
        high=high,
        high_inclusive=high_inclusive,
        categories=categories,
    )


@pytest.fixture(scope="module")
def shapes():
    return recipe_from_dict(RECIPE)


def test_unmappable_params_are_reported_and_left_alone(shapes):
    regs = [
        region("object.occlusion", 0.5, 1.0, high_inclusive=True),
        region("attr.yaw_deg", 0, 90),
        region("scene.something_else", 0, 1),
        region("attr.scale", 5.0, 6.0),  # outside every class's scale support
    ]
    d = derive(shapes, regs)
    assert d.changes == []
    assert [u.param for u in d.unmapped] == [r.param for r in regs]
    assert "measured" in d.unmapped[0].reason and "outside the support" in d.unmapped[3].reason
    # nothing but the name changed
    assert d.recipe.model_copy(update={"name": shapes.name}) == shapes


def test_scene_params_map_to_their_fields(shapes):
    regs = [
        region("scene.camera_distance", 0.85, 1.5),
        region("scene.key_light_strength", 2.0, 2.5),  # SUN light -> lights.sun_strength
        region("scene.count_sphere", 2, 3),  # value 2 only ([2, 3) on an integer knob)
        region("scene.camera_elevation_deg", 80, 90, high_inclusive=True),
    ]
    d = derive(shapes, regs, exploration=0.25)
    got = {c.path: c.after for c in d.changes}
    assert set(got) == {"camera.distance", "lights.sun_strength", "classes[0].count", "camera.elevation_deg"}
    mix = d.recipe.camera.distance
    assert isinstance(mix, Mixture)
    assert mix.probabilities().tolist() == pytest.approx([0.25, 0.75])
    assert mix.components[1].dist.support().low == pytest.approx(0.85)
    assert mix.components[1].dist.support().high == pytest.approx(0.9)  # clipped to [0.7, 0.9]
    count = d.recipe.classes[0].count
    rng = np.random.default_rng(0)
    draws = np.array([count.sample_int(rng) for _ in range(2000)])
    assert set(draws.tolist()) <= {1, 2}
    assert (draws == 2).mean() == pytest.approx(0.25 * 0.5 + 0.75, abs=0.04)


def test_categorical_region_becomes_a_choice_mixture(shapes):
    d = derive(shapes, [region("attr.orientation", categories=["lying"])], exploration=0.5)
    assert [c.path for c in d.changes] == ["classes[2].shape.orientation"]  # only the cylinder varies it
    dist = d.recipe.classes[2].shape.orientation
    rng = np.random.default_rng(0)
    lying = np.mean([dist.sample_str(rng) == "lying" for _ in range(2000)])
    assert lying == pytest.approx(0.5 * 0.5 + 0.5, abs=0.04)


def test_saved_recipe_loads_samples_and_has_a_diff(shapes, tmp_path):
    d = derive(shapes, [region("attr.scale", 0.8, 0.9), region("object.area", 0, 100)], name="shapes-r1")
    paths = save_derivation(d, shapes, tmp_path)
    back = load_recipe(paths["recipe"])
    assert back == d.recipe and back.name == "shapes-r1"
    spec = sample_scene(back, seed=0, frame_index=5)
    assert spec.recipe_name == "shapes-r1" and spec.objects
    diff = paths["diff"].read_text()
    assert diff.startswith("--- shapes.yaml\n+++ shapes-r1.yaml")
    assert "-      uniform: [0.8, 1.2]" in diff and "+      mixture:" in diff
    assert "object.area" in paths["derivation"].read_text()


def test_repeated_derivation_stays_flat_and_exploration_is_checked(shapes):
    once = derive_recipe(shapes, [region("attr.scale", 0.8, 0.9)], 0.3)
    twice = derive_recipe(once, [region("attr.scale", 1.1, 1.2, high_inclusive=True)], 0.5)
    dist = twice.classes[0].shape.scale
    assert isinstance(dist, Mixture) and len(dist.components) == 3
    assert all(not isinstance(c.dist, Mixture) for c in dist.components)
    assert dist.probabilities().tolist() == pytest.approx([0.15, 0.35, 0.5])
    with pytest.raises(ActiveError):
        derive(shapes, [], exploration=1.5)
    assert derive_recipe(shapes, [region("attr.scale", 0.8, 0.9)], 1.0).classes == shapes.classes


def test_regions_at_the_observed_ends_extend_to_the_distribution_bounds(shapes):
    low_end = region("attr.scale", 0.8123, 0.9)
    low_end.at_min = True
    d = derive(shapes, [low_end])
    weak = d.recipe.classes[0].shape.scale.components[1].dist
    assert (weak.low, weak.high) == (0.8, 0.9)  # runs on to the support's low end
    # an unbounded (normal) knob keeps the observed end instead of going to -inf
    rec = recipe_from_dict({**RECIPE, "camera": {**RECIPE["camera"], "roll_deg": {"normal": [0, 5]}}})
    r = region("scene.camera_roll_deg", -12.5, -4.0)
    r.at_min = True
    weak = derive(rec, [r]).recipe.camera.roll_deg.components[1].dist
    assert (weak.low, weak.high) == (-12.5, -4.0)
    top = region("scene.count_sphere", 2, 2, high_inclusive=True)  # the largest count seen
    c = derive(shapes, [top]).recipe.classes[0].count.components[1].dist
    assert c.sample_int(np.random.default_rng(0)) == 2


def test_weak_class_gets_more_instances_per_frame(shapes):
    d = derive(shapes, [region("object.category", categories=["sphere"])], exploration=0.3)
    (ch,) = d.changes
    assert ch.path == "classes[0].count" and d.unmapped == []
    counts = d.recipe.classes[0].count
    assert isinstance(counts, Mixture)
    rng = np.random.default_rng(0)
    draws = np.array([counts.sample_int(rng) for _ in range(4000)])
    base = np.array([shapes.classes[0].count.sample_int(rng) for _ in range(4000)])
    assert draws.min() >= 1 and draws.max() <= 2
    assert (draws == 2).mean() > (base == 2).mean() + 0.2  # 0.7 of the mass on the upper half
    # a category that is not a class is reported, not guessed
    d = derive(shapes, [region("object.category", categories=["teapot"])])
    assert d.changes == [] and "teapot" in d.unmapped[0].reason


def test_a_field_that_only_makes_the_weak_category_is_left_alone(shapes):
    data = {**RECIPE, "classes": [{**RECIPE["classes"][1], "material": {"pattern": "wood"}}]}
    recipe = recipe_from_dict(data)
    d = derive(recipe, [region("attr.pattern", categories=["wood"])])
    assert d.changes == []
    assert "already produces only ['wood']" in d.unmapped[0].reason


def test_object_size_of_a_body_class_is_reported_not_a_crash():
    """People have no base dimensions (the body model sets their extents): a weak size region
    is unmapped with the reason; in a recipe with shapes as well, only the shapes' scales move."""
    people = load_recipe("people")
    d = derive(people, [region("attr.size_m", 0.5, 1.0)])
    assert d.changes == [] and "no class has base dimensions" in d.unmapped[0].reason
    mixed = people.model_copy(update={"classes": (*people.classes, recipe_from_dict(RECIPE).classes[0])})
    d = derive(mixed, [region("attr.size_m", 0.05, 0.07)])
    assert [c.path for c in d.changes] == [f"classes[{len(people.classes)}].shape.scale"]
