"""The sensor after the render: seeded noise of the asked level, the JPEG round trip, the recipe
knobs that draw them per frame, and that labels and clean recipes are unchanged by it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from synthloop.errors import RecipeError
from synthloop.generators.generate import render_one
from synthloop.generators.sensor import add_noise, apply_sensor, jpeg_round_trip
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_hash, recipe_to_dict
from synthloop.scenes.sampler import sample_scene
from synthloop.scenes.spec import SensorSpec


def _grey(h: int = 96, w: int = 128) -> np.ndarray:
    return np.full((h, w, 3), 128, dtype=np.uint8)


def test_noise_has_the_asked_level_and_is_seeded():
    rgb = _grey()
    noisy = add_noise(rgb, 4.0, np.random.default_rng(0))
    diff = noisy.astype(float) - rgb
    assert diff.std() == pytest.approx(4.0, rel=0.05) and abs(diff.mean()) < 0.1
    assert np.array_equal(noisy, add_noise(rgb, 4.0, np.random.default_rng(0)))
    assert add_noise(rgb, 0.0, np.random.default_rng(0)) is rgb
    bright = add_noise(np.full_like(rgb, 254), 8.0, np.random.default_rng(1))
    assert bright.dtype == np.uint8 and bright.max() == 255  # clipped, not wrapped


def test_jpeg_round_trip_loses_more_at_lower_quality():
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
    err = {q: np.abs(jpeg_round_trip(rgb, q).astype(float) - rgb).mean() for q in (30, 95)}
    assert 0 < err[95] < err[30]
    assert jpeg_round_trip(rgb, 95).shape == rgb.shape


def test_apply_sensor_is_a_pure_function_of_image_and_spec():
    rgb = _grey()
    spec = SensorSpec(noise_std=3.0, jpeg_quality=80, noise_seed=7)
    a, b = apply_sensor(rgb, spec), apply_sensor(rgb, spec)
    assert np.array_equal(a, b) and not np.array_equal(a, rgb)
    assert not np.array_equal(a, apply_sensor(rgb, spec.model_copy(update={"noise_seed": 8})))
    assert np.array_equal(apply_sensor(rgb, SensorSpec()), rgb)
    with pytest.raises(ValueError, match="uint8"):
        apply_sensor(rgb.astype(np.float32), spec)


def _with_sensor(sensor: dict) -> dict:
    d = copy.deepcopy(recipe_to_dict(load_recipe("shapes")))
    d["camera"]["sensor"] = sensor
    return d


def test_recipe_draws_a_sensor_per_frame_and_a_clean_recipe_is_unchanged():
    clean = load_recipe("shapes")
    knobs = {"noise_std": {"uniform": [1, 3]}, "jpeg_quality": {"uniform": [80, 95]}}
    noisy = recipe_from_dict(_with_sensor(knobs))
    assert recipe_hash(noisy) != recipe_hash(clean)
    assert "sensor" not in recipe_to_dict(clean)["camera"]
    a, b = sample_scene(noisy, 3, 0), sample_scene(noisy, 3, 1)
    assert a.sensor is not None and b.sensor is not None
    assert 1 <= a.sensor.noise_std <= 3 and 80 <= a.sensor.jpeg_quality <= 95
    assert a.sensor.noise_seed != b.sensor.noise_seed
    assert a.params["sensor_noise_std"] == a.sensor.noise_std
    assert a.params["sensor_jpeg_quality"] == a.sensor.jpeg_quality
    assert a.camera == sample_scene(clean, 3, 0).camera  # the sensor draws from its own stream
    spec = sample_scene(clean, 3, 0)
    assert spec.sensor is None and "sensor" not in spec.to_json_dict()


@pytest.mark.parametrize(
    "sensor, field",
    [
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"jpeg_quality": 85.5}, "jpeg_quality"),
        ({"noise_std": -1}, "noise_std"),
        ({"noise_std": 1000}, "noise_std"),
        ({"gain": 2}, ": unknown key .gain"),
    ],
)
def test_bad_sensor_values_name_the_field(sensor, field):
    with pytest.raises(RecipeError, match=rf"camera\.sensor(\.|){field}"):
        recipe_from_dict(_with_sensor(sensor))


def test_render_one_degrades_the_image_but_not_the_labels(zbuffer_renderer):
    recipe = recipe_from_dict(_with_sensor({"noise_std": 5, "jpeg_quality": 70}))
    spec = sample_scene(recipe, 0, 0)
    clean = spec.model_copy(update={"sensor": None})
    got, ann = render_one(zbuffer_renderer(), spec)
    ref, ref_ann = render_one(zbuffer_renderer(), clean)
    assert not np.array_equal(got.rgb, ref.rgb)
    assert np.abs(got.rgb.astype(float) - ref.rgb).mean() < 10
    assert ann == ref_ann and "sensor" in got.timings
