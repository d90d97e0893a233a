"""``synthloop geometry mesh|preview`` and the pure functions behind them."""

from __future__ import annotations

import json

import numpy as np
import trimesh
from helpers import SCENE_H as H
from helpers import SCENE_W as W
from helpers import obj, scene, sphere_nut, tile
from PIL import Image
from typer.testing import CliRunner

from synthloop.commands.geometry import app
from synthloop.geometry.meshes import build_mesh, mesh_to_obj
from synthloop.geometry.preview import preview_frame
from synthloop.scenes.spec import ShapeSpec

runner = CliRunner()


def test_mesh_to_obj_round_trip(tmp_path):
    mesh = build_mesh(ShapeSpec(kind="teardrop", dimensions=(0.02, 0.02, 0.03), taper=1.0))
    path = tmp_path / "m.obj"
    path.write_text(mesh_to_obj(mesh))
    loaded = trimesh.load(path, force="mesh", process=False)
    assert np.allclose(loaded.vertices, mesh.vertices, atol=1e-9)
    assert np.array_equal(loaded.faces, mesh.faces)


def test_mesh_command_writes_obj_and_reports_errors(tmp_path):
    out = tmp_path / "box.obj"
    res = runner.invoke(
        app, ["mesh", "box", "--dims", "0.1", "0.2", "0.3", "--set", "bevel=0.01", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "watertight=True" in res.output
    loaded = trimesh.load(out, force="mesh", process=False)
    assert np.allclose(loaded.extents, (0.1, 0.2, 0.3))
    bad = runner.invoke(app, ["mesh", "box", "--dims", "0.1", "0.2", "0.3", "--set", "bevel", "-o", str(out)])
    assert bad.exit_code == 2 and "--set" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["mesh", "cone", "--dims", "1", "1", "1", "-o", str(out)])
    assert bad.exit_code == 2 and "shape.kind" in bad.output


def test_preview_frame_draws_objects_and_annotations():
    spec = scene([sphere_nut(1, (0.0, 0.0, 0.0)), obj(2, tile(0.05), (0.25, 0.0, 0.0), cat=None)])
    img, ann = preview_frame(spec)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    (nut,) = ann.objects
    x1, y1, x2, y2 = (int(v) for v in nut.bbox)
    assert (img[y1, x1:x2] == 255).all()  # white box edge
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert (0, 255, 0) in colours and (255, 0, 0) in colours  # visible and occluded keypoints
    assert tuple(img[60, 80]) == (255, 0, 0)  # "bottom" (occluded) is drawn over "top" at the centre
    inner = img[y1 + 3 : y2 - 3, x1 + 3 : x2 - 3].reshape(-1, 3).astype(int)
    assert inner[:, 0].mean() > inner[:, 2].mean()  # the nut's brownish material, not grey
    assert len(ann.distractors) == 1


def test_preview_command_from_spec_and_record(tmp_path):
    spec = scene([sphere_nut(1, (0.0, 0.0, 0.0))])
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec.to_json_dict()))
    rec_path = tmp_path / "000000.json"
    rec_path.write_text(json.dumps({"frame_index": 0, "scene": spec.to_json_dict()}))
    for src in (spec_path, rec_path):
        out = tmp_path / f"{src.stem}.png"
        res = runner.invoke(app, ["preview", str(src), "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert "instance 1 category 1" in res.output
        assert Image.open(out).size == (W, H)
    res = runner.invoke(app, ["preview", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "missing.json" in res.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"scene": {"seed": 1}}))
    res = runner.invoke(app, ["preview", str(broken), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "broken.json" in res.output
