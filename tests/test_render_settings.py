"""The recipe's ``render:`` block: presets, validation, what reaches the SceneSpec (no Blender)."""

from __future__ import annotations

import pytest
from helpers import NON_DEFAULT

from synthloop.errors import RecipeError
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_hash, recipe_to_yaml
from synthloop.scenes.render_config import (
    LEGACY,
    QUALITY_PRESETS,
    RenderConfig,
    preset_options,
    preview_render,
)
from synthloop.scenes.sampler import sample_scene
from synthloop.scenes.spec import RenderOptions, RenderSettings

# a value for every render option that differs from both the spec defaults and every preset


def _recipe(render: dict | None = None):
    data = {
        "name": "r",
        "resolution": [64, 48],
        "classes": [{"name": "a", "shape": {"kind": "sphere", "dimensions": [0.05, 0.05, 0.05]}}],
    }
    if render is not None:
        data["render"] = render
    return recipe_from_dict(data, source="r.yaml")


def test_non_default_values_cover_every_option():
    defaults = {name: f.default for name, f in RenderOptions.model_fields.items()}
    option_fields = set(defaults) - {"engine", "image_format", "jpeg_quality"}
    assert set(NON_DEFAULT) == option_fields
    for name, value in NON_DEFAULT.items():
        assert value != defaults[name], name


@pytest.mark.parametrize("quality", sorted(QUALITY_PRESETS))
def test_every_option_goes_from_recipe_to_scene_spec(quality):
    recipe = _recipe({"quality": quality, **NON_DEFAULT})
    spec = sample_scene(recipe, 0, 0)
    for name, value in NON_DEFAULT.items():
        assert getattr(spec.render, name) == value, name
    assert (spec.render.width, spec.render.height) == (64, 48)
    assert spec.render.bounces() == {
        "max_bounces": 5,
        "diffuse_bounces": 1,
        "glossy_bounces": 2,
        "transmission_bounces": 3,
        "transparent_max_bounces": 6,
    }


def test_preset_fills_missing_fields_and_explicit_fields_win():
    assert _recipe().render.quality == "standard"
    for quality, preset in QUALITY_PRESETS.items():
        r = _recipe({"quality": quality}).render
        assert {k: getattr(r, k) for k in preset} == preset
    r = _recipe({"quality": "preview", "samples": 7}).render
    assert r.samples == 7 and r.denoise == QUALITY_PRESETS["preview"]["denoise"]
    assert preset_options("preview") == QUALITY_PRESETS["preview"]
    assert preset_options("preview") is not QUALITY_PRESETS["preview"]


def test_stored_recipe_round_trips_with_resolved_fields():
    recipe = _recipe({"quality": "preview", "tile_size": 128})
    import yaml

    data = yaml.safe_load(recipe_to_yaml(recipe))
    assert data["render"]["samples"] == QUALITY_PRESETS["preview"]["samples"]
    again = recipe_from_dict(data, source="again.yaml")
    assert again == recipe and recipe_hash(again) == recipe_hash(recipe)
    assert recipe_hash(_recipe({"quality": "legacy"})) != recipe_hash(_recipe({"quality": "standard"}))


def test_denoise_mix_at_its_default_leaves_hashes_unchanged():
    """The mix is left out of stored recipes and scene specs while it is 1 (fully denoised), so a
    recipe or frame written before it existed keeps its hash; any other value enters both."""
    plain = _recipe({"quality": "preview"})
    assert "denoise_mix" not in plain.render.model_dump()
    assert "denoise_mix" not in sample_scene(plain, 0, 0).to_json_dict()["render"]
    assert recipe_hash(_recipe({"quality": "preview", "denoise_mix": 1.0})) == recipe_hash(plain)
    mixed = _recipe({"quality": "preview", "denoise_mix": 0.6})
    assert recipe_hash(mixed) != recipe_hash(plain)
    assert sample_scene(mixed, 0, 0).render.denoise_mix == 0.6
    assert sample_scene(mixed, 0, 0).to_json_dict()["render"]["denoise_mix"] == 0.6


def test_spec_defaults_reproduce_the_legacy_render():
    """A SceneSpec stored before the new options existed renders as it did."""
    old = {"width": 8, "height": 6, "engine": "CYCLES", "samples": 16, "denoise": False, "max_bounces": 4}
    settings = RenderSettings.model_validate(old)
    assert {k: getattr(settings, k) for k in LEGACY} == LEGACY
    assert settings.bounces()["transparent_max_bounces"] == 4
    assert settings.clamp_indirect == 10.0 and settings.light_tree and not settings.caustics
    zero = RenderSettings(width=8, height=6, max_bounces=0)
    assert zero.bounces() == {
        "max_bounces": 0,
        "diffuse_bounces": 0,
        "glossy_bounces": 0,
        "transmission_bounces": 0,
        "transparent_max_bounces": 1,
    }


@pytest.mark.parametrize(
    ("render", "where", "words"),
    [
        ({"samples": 0}, "render.samples", "greater than or equal to 1"),
        ({"adaptive_threshold": 0}, "render.adaptive_threshold", "greater than 0"),
        ({"adaptive_threshold": 1.5}, "render.adaptive_threshold", "less than or equal to 1"),
        ({"adaptive_sampling": True, "samples": 8, "adaptive_min_samples": 9}, "render", "exceeds samples"),
        ({"denoise_passes": "normal"}, "render.denoise_passes", "albedo_normal"),
        ({"denoise_prefilter": "slow"}, "render.denoise_prefilter", "accurate"),
        ({"denoise_mix": 1.5}, "render.denoise_mix", "less than or equal to 1"),
        ({"denoise": True, "denoise_mix": ".nan"}, "render.denoise_mix", "finite"),
        ({"quality": "standard", "denoise_mix": 0.5}, "render", "needs denoise: true"),
        ({"diffuse_bounces": -1}, "render.diffuse_bounces", "greater than or equal to 0"),
        ({"clamp_indirect": ".nan"}, "render.clamp_indirect", "finite"),
        ({"clamp_direct": -1}, "render.clamp_direct", "greater than or equal to 0"),
        ({"texture_limit": 300}, "render.texture_limit", "one of 0, 128"),
        ({"tile_size": 4}, "render.tile_size", "greater than or equal to 8"),
        ({"quality": "ultra"}, "render.quality", "'standard', 'denoised', 'preview' or 'legacy'"),
        ({"device": "gpu"}, "render.device", "'cpu', 'cuda', 'optix' or 'auto'"),
        ({"light_tree": "maybe"}, "render.light_tree", "boolean"),
        ({"tiles": 64}, "render", "unknown key 'tiles'"),
    ],
)
def test_invalid_render_values_are_one_line_errors(render, where, words):
    import yaml

    render = {k: (yaml.safe_load(v) if v == ".nan" else v) for k, v in render.items()}
    with pytest.raises(RecipeError) as e:
        _recipe(render)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"r.yaml: {where}: ") and words in msg, msg


def test_preview_render_is_cheaper_and_keeps_the_device():
    standard = _recipe({"device": "auto"}).render
    preview = preview_render(standard)
    assert preview.quality == "preview" and preview.device == "auto"
    assert preview.samples <= standard.samples and preview.max_bounces <= standard.max_bounces
    assert preview_render(standard, samples=2).samples == 2
    assert RenderConfig().options() == {
        k: v for k, v in RenderConfig().model_dump().items() if k not in ("quality", "device")
    }


def test_bundled_recipes_use_the_preset_defaults():
    """The bundled tabletop recipe takes its render options from the ``standard`` preset."""
    tabletop = load_recipe("tabletop").render
    assert tabletop.quality == "standard"
    assert {k: getattr(tabletop, k) for k in QUALITY_PRESETS["standard"]} == QUALITY_PRESETS["standard"]
