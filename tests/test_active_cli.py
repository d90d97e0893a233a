"""``synthloop active`` commands: mine -> derive round trip, one-line errors with exit code 2."""

from __future__ import annotations

import json

import typer
import yaml
from helpers import controlled_rows
from typer.testing import CliRunner

from synthloop.commands.active import app as active_app
from synthloop.evaluation.slices import SliceTable
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_to_yaml

app = typer.Typer()
app.add_typer(active_app, name="active")
runner = CliRunner()

RECIPE = {
    "name": "spheres",
    "resolution": [32, 24],
    "classes": [
        {
            "name": "sphere",
            "shape": {"kind": "sphere", "dimensions": [0.05] * 3, "scale": {"uniform": [0.8, 1.2]}},
        }
    ],
}


def test_mine_then_derive(tmp_path):
    st = SliceTable(objects=controlled_rows(1500), slices=[], binnings={}, min_iou={"1": 0.5})
    st.save(tmp_path / "slices.json")
    r = runner.invoke(
        app, ["active", "mine", str(tmp_path / "slices.json"), "--out", str(tmp_path / "weak.json")]
    )
    assert r.exit_code == 0, r.output
    weak = json.loads((tmp_path / "weak.json").read_text())
    assert weak["regions"][0]["param"] == "attr.scale"
    (tmp_path / "spheres.yaml").write_text(recipe_to_yaml(recipe_from_dict(RECIPE)))
    r = runner.invoke(
        app,
        [
            "active",
            "derive",
            str(tmp_path / "spheres.yaml"),
            str(tmp_path / "weak.json"),
            "--out",
            str(tmp_path / "d"),
            "--exploration",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "changed classes[0].shape.scale" in r.output
    rec = load_recipe(tmp_path / "d" / "recipe.yaml")
    comps = yaml.safe_load((tmp_path / "d" / "recipe.yaml").read_text())["classes"][0]["shape"]["scale"]
    assert [c["weight"] for c in comps["mixture"]] == [0.5, 0.5]
    assert rec.name == "spheres-derived"


def test_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "weak.json").write_text("{}")
    r = runner.invoke(
        app, ["active", "derive", "shapes", str(tmp_path / "weak.json"), "--out", str(tmp_path / "d")]
    )
    assert r.exit_code == 2
    assert "weak.json" in r.output and "schema" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["active", "report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "loop folder not found" in r.output
    bad = tmp_path / "loop.yaml"
    bad.write_text("recipe: shapes\ninitial_frames: 0\nframes_per_round: 1\nrounds: 1\nval_frames: 1\n")
    r = runner.invoke(app, ["active", "run", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "initial_frames" in r.output and len(r.output.strip().splitlines()) == 1
