"""Recipes: loading, one-line errors naming file and field, paths, hashing, YAML round trip."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthloop.errors import RecipeError
from synthloop.scenes.distributions import Mixture, Uniform, uniform
from synthloop.scenes.recipe import (
    SHAPE_KINDS,
    Recipe,
    load_recipe,
    recipe_from_dict,
    recipe_hash,
    recipe_to_yaml,
    save_recipe,
)
from synthloop.scenes.registry import list_bundled

MINIMAL = {
    "name": "mini",
    "resolution": [64, 48],
    "classes": [
        {
            "name": "ball",
            "count": {"uniform": [1, 3]},
            "shape": {"kind": "sphere", "dimensions": [0.05, 0.05, 0.05]},
        },
        {"name": "brick", "shape": {"kind": "box", "dimensions": [0.04, 0.02, 0.01]}},
    ],
}


def write(tmp_path: Path, data, name="r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    text = str(exc.value)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: "), text
    return text


def mutated(**paths):
    """A copy of MINIMAL with dotted-path keys set, e.g. ``classes.1.shape.kind='cube'``."""
    data = copy.deepcopy(MINIMAL)
    for dotted, value in paths.items():
        keys = [int(k) if k.isdigit() else k for k in dotted.split("__")]
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return data


def test_minimal_recipe_gets_defaults(tmp_path):
    rec = load_recipe(write(tmp_path, MINIMAL))
    assert rec.name == "mini" and rec.resolution == (64, 48)
    assert rec.render.engine == "CYCLES" and rec.placement.area == (0.4, 0.3)
    assert isinstance(rec.classes[0].count, Uniform)
    assert rec.classes[1].count.support().values == (1.0,)


def test_unknown_shape_names_class_index_and_choices(tmp_path):
    text = error_of(tmp_path, mutated(classes__1__shape__kind="cube"))
    assert "classes[1].shape.kind: unknown shape 'cube'; expected one of " in text
    assert all(k in text for k in SHAPE_KINDS)


def test_wrong_type_names_field_and_value(tmp_path):
    text = error_of(tmp_path, mutated(resolution=["abc", 48]))
    assert ": resolution[0]: " in text and "integer" in text and "'abc'" in text
    text = error_of(tmp_path, mutated(classes__0__count="many"))
    assert ": classes[0].count: expected a number" in text


def test_negative_count(tmp_path):
    text = error_of(tmp_path, mutated(classes__0__count=-3))
    assert ": classes[0].count: must be in [0, 256], got -3" in text
    text = error_of(tmp_path, mutated(classes__0__count={"uniform": [-2, 3]}))
    assert ": classes[0].count: values must lie in [0, 256]" in text


def test_unknown_key_and_missing_field(tmp_path):
    text = error_of(tmp_path, mutated(camera={"distanse": 1.0}))
    assert text.endswith(": camera: unknown key 'distanse'")
    data = copy.deepcopy(MINIMAL)
    del data["classes"][0]["shape"]["dimensions"]
    assert error_of(tmp_path, data).endswith(": classes[0].shape: missing required field 'dimensions'")


def test_bad_distribution_inside_recipe(tmp_path):
    text = error_of(tmp_path, mutated(camera={"distance": {"uniform": [2, 1]}}))
    assert ": camera.distance.uniform: uniform low 2 > high 1" in text
    text = error_of(tmp_path, mutated(camera={"elevation_deg": {"normal": [80, 10]}}))
    assert ": camera.elevation_deg: " in text and "low/high" in text
    text = error_of(tmp_path, mutated(lights={"type": {"choice": ["SUN", "LASER"]}}))
    assert ": lights.type: unknown light type 'LASER'" in text


def test_yaml_syntax_error_has_line_number(tmp_path):
    text = error_of(tmp_path, "name: x\nresolution: [64, 48\nclasses: []\n")
    assert "line 3" in text and "YAML syntax error" in text


def test_top_level_must_be_a_mapping(tmp_path):
    assert "mapping" in error_of(tmp_path, "- a\n- b\n")


def test_missing_texture_folder_and_empty_folder(tmp_path):
    text = error_of(tmp_path, mutated(support={"material": {"texture_folder": "textures"}}))
    assert ": support.material.texture_folder: texture folder not found: " in text
    assert str(tmp_path / "textures") in text  # resolved against the recipe's folder
    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "notes.txt").write_text("no images here")
    text = error_of(tmp_path, mutated(support={"material": {"texture_folder": "textures"}}))
    assert "texture folder has no images" in text


def test_missing_mesh_file(tmp_path):
    shape = {"kind": "mesh", "dimensions": [0.1, 0.1, 0.1], "mesh_file": ["meshes/a.obj", "meshes/gone.obj"]}
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "a.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    text = error_of(tmp_path, mutated(classes__0__shape=shape))
    assert ": classes[0].shape.mesh_file: mesh file not found: " in text and "gone.obj" in text
    no_file = dict(shape, mesh_file=None)
    assert "kind 'mesh' needs mesh_file" in error_of(tmp_path, mutated(classes__0__shape=no_file))


def test_relative_paths_resolve_against_recipe_folder(tmp_path, monkeypatch):
    sub = tmp_path / "recipes"
    (sub / "meshes").mkdir(parents=True)
    (sub / "meshes" / "a.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (sub / "tex").mkdir()
    (sub / "tex" / "wood.png").write_bytes(b"\x89PNG")
    data = mutated(
        classes__0__shape={"kind": "mesh", "dimensions": [0.1, 0.1, 0.1], "mesh_file": "meshes/a.obj"},
        support={"material": {"texture_folder": "tex"}},
    )
    path = write(sub, data)
    monkeypatch.chdir(tmp_path)  # cwd is not the recipe folder
    rec = load_recipe(path)
    assert rec.classes[0].shape.mesh_file == (str((sub / "meshes" / "a.obj").resolve()),)
    assert rec.support.material.texture_folder == str((sub / "tex").resolve())
    # The dumped YAML holds absolute paths, so it loads from anywhere.
    assert load_recipe(write(tmp_path, recipe_to_yaml(rec), "copy.yaml")) == rec


def test_skeleton_and_duplicate_names(tmp_path):
    data = mutated(classes__0__keypoints={"top": [0, 0, 1]}, classes__0__skeleton=[["top", "tail"]])
    assert "classes[0]: skeleton[0] names keypoint 'tail'" in error_of(tmp_path, data)
    data = mutated(classes__1__name="ball")
    assert error_of(tmp_path, data).endswith(": classes[1].name: duplicate name 'ball'")
    data = mutated(classes__0__keypoints={"top": [0, 0, 1.5]})
    assert ": classes[0].keypoints.top[2]: " in error_of(tmp_path, data)


def test_missing_file_and_unknown_bundled_name(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="bundled: .*tabletop"):
        load_recipe("no_such_recipe")


@pytest.mark.parametrize("name", ["tabletop", "shapes"])
def test_bundled_recipes_load_round_trip_and_hash_stably(name, tmp_path):
    assert name in list_bundled()
    rec = load_recipe(name)
    assert rec.name == name
    h = recipe_hash(rec)
    assert len(h) == 64 and h == recipe_hash(load_recipe(name))
    again = load_recipe(save_recipe(rec, tmp_path / f"{name}.yaml"))
    assert again == rec and recipe_hash(again) == h
    # Stable across processes (no dependence on hash randomization or object ids).
    code = (
        "from synthloop.scenes.recipe import load_recipe, recipe_hash; "
        f"print(recipe_hash(load_recipe('{name}')))"
    )
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == h


def test_hash_ignores_key_order_and_int_vs_float_but_not_values(tmp_path):
    base = recipe_hash(recipe_from_dict(MINIMAL))
    reordered = dict(reversed(list(copy.deepcopy(MINIMAL).items())))
    reordered["resolution"] = [64, 48]
    assert recipe_hash(recipe_from_dict(reordered)) == base
    floats = mutated(
        classes__1__shape__dimensions=[0.04, 0.02, 0.01], classes__0__count={"uniform": [1.0, 3.0]}
    )
    assert recipe_hash(recipe_from_dict(floats)) == base
    assert recipe_hash(recipe_from_dict(mutated(classes__0__count={"uniform": [1, 4]}))) != base
    # Keypoint order is meaningful (COCO order) and changes the hash.
    a = recipe_from_dict(mutated(classes__0__keypoints={"top": [0, 0, 1], "bottom": [0, 0, -1]}))
    b = recipe_from_dict(mutated(classes__0__keypoints={"bottom": [0, 0, -1], "top": [0, 0, 1]}))
    assert recipe_hash(a) != recipe_hash(b)


def test_derived_recipe_with_mixture_round_trips(tmp_path):
    rec = load_recipe("shapes")
    cam = rec.camera.model_copy(
        update={"elevation_deg": Mixture.of([(0.7, rec.camera.elevation_deg), (0.3, uniform(55, 60))])}
    )
    derived = Recipe.model_validate({**rec.model_dump(), "name": "shapes-weak", "camera": cam.model_dump()})
    assert isinstance(derived.camera.elevation_deg, Mixture)
    text = recipe_to_yaml(derived)
    assert "mixture" in text
    assert load_recipe(write(tmp_path, text)) == derived
    assert recipe_hash(derived) != recipe_hash(rec)
