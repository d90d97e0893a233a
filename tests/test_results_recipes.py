"""The recipes under docs/results/recipes, which the results quote by path, still load and sample
(a schema change that broke one would make its documented command fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.sampler import sample_scene

RECIPES = sorted((Path(__file__).resolve().parents[1] / "docs" / "results" / "recipes").glob("*.yaml"))


def test_the_results_have_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_results_recipe_loads_and_samples(path):
    recipe = load_recipe(path)
    spec = sample_scene(recipe, 100, 0)
    assert spec.params["object_count"] > 0
    if recipe.camera.sensor is not None:
        assert spec.sensor is not None and spec.params["sensor_jpeg_quality"] == spec.sensor.jpeg_quality
