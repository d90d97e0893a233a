"""``synthloop recipes`` sub-commands: list, show (YAML / sampled SceneSpec JSON), validate."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from synthloop.commands.recipes import app
from synthloop.scenes.recipe import load_recipe, recipe_hash
from synthloop.scenes.sampler import sample_scene
from synthloop.scenes.spec import SceneSpec

runner = CliRunner()


def test_list_shows_bundled_recipes():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert "tabletop  (default)" in lines and "shapes" in lines


def test_show_prints_validated_yaml_that_loads_back(tmp_path):
    res = runner.invoke(app, ["show", "shapes"])
    assert res.exit_code == 0
    rec = load_recipe("shapes")
    assert res.stdout.startswith(f"# recipe_hash: {recipe_hash(rec)}")
    path = tmp_path / "copy.yaml"
    path.write_text(res.stdout)
    assert load_recipe(path) == rec
    assert yaml.safe_load(res.stdout)["name"] == "shapes"


def test_show_sample_prints_the_scene_spec_json():
    res = runner.invoke(app, ["show", "shapes", "--sample", "3:5"])
    assert res.exit_code == 0
    spec = SceneSpec.from_json_dict(json.loads(res.stdout))
    assert spec == sample_scene(load_recipe("shapes"), 3, 5)


def test_show_bad_sample_argument_is_one_line_exit_2():
    res = runner.invoke(app, ["show", "shapes", "--sample", "3-5"])
    assert res.exit_code == 2
    assert "SEED:FRAME" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_validate_reports_each_file_and_exits_2_on_any_error(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: g\nresolution: [8, 8]\n"
        "classes: [{name: a, shape: {kind: sphere, dimensions: [0.1, 0.1, 0.1]}}]\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\nresolution: [8, 8]\nclasses: [{name: a, shape: {kind: cube, dimensions: [1, 1, 1]}}]\n"
    )
    res = runner.invoke(app, ["validate", str(good), str(bad)])
    assert res.exit_code == 2
    assert res.stdout.strip() == f"{good}: ok ({recipe_hash(load_recipe(good))[:12]})"
    assert res.stderr.strip() == f"{bad}: classes[0].shape.kind: unknown shape 'cube'; expected one of " + (
        "ellipsoid, wrinkled_ellipsoid, dented_ellipsoid, teardrop, sphere, box, cylinder, mesh, body"
    )
    ok = runner.invoke(app, ["validate", str(good), "tabletop"])
    assert ok.exit_code == 0 and len(ok.stdout.splitlines()) == 2
