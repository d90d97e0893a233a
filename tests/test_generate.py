"""The first vertical slice end to end: recipe -> Blender -> annotations -> dataset folder -> COCO."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from synthloop.dataset.folder import load_dataset
from synthloop.exporters.coco import write_coco
from synthloop.generators.generate import default_renderer_factory, generate_dataset, generate_frames
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.registry import bundled_path
from synthloop.scenes.sampler import sample_scene

SEED = 3


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "ds"
    res = generate_dataset(
        load_recipe("shapes"), SEED, 3, out, renderer_factory=default_renderer_factory(1), quiet=True
    )
    assert res.complete and sorted(res.rendered) == [0, 1, 2]
    return out


def _records(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "records").glob("*.json"))}


def test_same_seed_same_specs():
    recipe = load_recipe("tabletop")
    for k in (0, 5, 11):
        assert sample_scene(recipe, SEED, k) == sample_scene(recipe, SEED, k)
    assert sample_scene(recipe, SEED, 1) != sample_scene(recipe, SEED + 1, 1)


@pytest.mark.blender
def test_rerun_and_single_frame_give_identical_records(shapes_run, tmp_path):
    again = tmp_path / "again"
    generate_dataset(
        load_recipe("shapes"), SEED, 3, again, renderer_factory=default_renderer_factory(1), quiet=True
    )
    assert _records(again) == _records(shapes_run)
    alone = tmp_path / "alone"
    generate_frames(
        load_recipe("shapes"), SEED, [2], alone, renderer_factory=default_renderer_factory(1), quiet=True
    )
    assert _records(alone) == {"000002.json": _records(shapes_run)["000002.json"]}
    # the rendered annotations are the same arrays too
    a = np.asarray(Image.open(shapes_run / "instances" / "000002.png"))
    b = np.asarray(Image.open(alone / "instances" / "000002.png"))
    assert np.array_equal(a, b)


@pytest.mark.blender
def test_resume_skips_complete_frames(shapes_run):
    before = {p: p.stat().st_mtime_ns for p in (shapes_run / "records").glob("*.json")}
    res = generate_dataset(
        load_recipe("shapes"), SEED, 3, shapes_run, renderer_factory=default_renderer_factory(1), quiet=True
    )
    assert res.rendered == [] and sorted(res.skipped) == [0, 1, 2]
    assert before == {p: p.stat().st_mtime_ns for p in (shapes_run / "records").glob("*.json")}


@pytest.mark.blender
def test_coco_export_round_trips_through_pycocotools(shapes_run, tmp_path):
    ds = load_dataset(shapes_run)
    ann_file = write_coco(ds, tmp_path / "coco", copy_images=False)
    coco = COCO(str(ann_file))
    assert {c["id"] for c in coco.loadCats(coco.getCatIds())} == {c.id for c in ds.categories}
    n_checked = 0
    for img in coco.loadImgs(coco.getImgIds()):
        frame = next(f for f in ds.frames if Path(f.image_path).name == Path(img["file_name"]).name)
        ids = np.asarray(Image.open(frame.instance_map_path)).astype(np.int64)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            assert ann["area"] > 0
            decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
            inst = ann.get("synthloop", {}).get("instance_id")  # COCO layout 2: extras under one key
            assert inst is not None
            assert np.array_equal(decoded, ids == inst)
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(decoded)
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert ann["area"] == decoded.sum()
            cat = coco.loadCats(ann["category_id"])[0]
            assert len(ann["keypoints"]) == 3 * len(cat["keypoints"])
            assert ann["num_keypoints"] == sum(1 for v in ann["keypoints"][2::3] if v > 0)
            n_checked += 1
    assert n_checked > 0
    # every visible labeled object of the instance maps is in the COCO file, hidden ones are not
    visible = sum(1 for f in ds.frames for o in f.objects if o.area > 0)
    assert visible == n_checked


# ---------------------------------------------------------------- bad input via the CLI
def _shapes_yaml() -> dict:
    return yaml.safe_load(bundled_path("shapes").read_text())


def _bad_variants(tmp_path: Path) -> dict[str, tuple[dict, str]]:
    base = _shapes_yaml()
    out = {}
    v = copy.deepcopy(base)
    v["classes"][0]["count"] = "many"
    out["wrong_type"] = (v, "classes[0].count")
    v = copy.deepcopy(base)
    v["classes"][0]["count"] = -2
    out["negative_count"] = (v, "classes[0].count")
    v = copy.deepcopy(base)
    v["classes"][1]["shape"]["kind"] = "dodecahedron"
    out["unknown_shape"] = (v, "classes[1].shape.kind")
    v = copy.deepcopy(base)
    v["classes"][0]["material"]["texture_folder"] = str(tmp_path / "no_such_textures")
    out["missing_texture_folder"] = (v, "classes[0].material.texture_folder")
    v = copy.deepcopy(base)
    v["classes"][0]["shape"] = {
        "kind": "mesh",
        "mesh_file": "meshes/missing.obj",
        "dimensions": [0.05, 0.05, 0.05],
    }
    out["missing_mesh"] = (v, "classes[0].shape.mesh_file")
    return out


@pytest.mark.parametrize(
    "case", ["wrong_type", "negative_count", "unknown_shape", "missing_texture_folder", "missing_mesh"]
)
def test_bad_recipe_cli_one_line_exit_2(tmp_path, case):
    data, field = _bad_variants(tmp_path)[case]
    recipe_file = tmp_path / f"{case}.yaml"
    recipe_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthloop.cli",
            "generate",
            "--recipe",
            str(recipe_file),
            "--frames",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(recipe_file) in lines[0] and field in lines[0], lines[0]
    assert not out.exists(), "no dataset folder may be created for a bad recipe"


def test_recipes_validate_cli(tmp_path):
    data, _ = _bad_variants(tmp_path)["unknown_shape"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthloop.cli",
            "recipes",
            "validate",
            str(bundled_path("tabletop")),
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "dodecahedron" in proc.stdout + proc.stderr


def test_generate_quiet_emits_json_lines(tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "q"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthloop.cli",
            "generate",
            "--recipe",
            "shapes",
            "--frames",
            "1",
            "--seed",
            "1",
            "--out",
            str(out),
            "--threads",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "end"
    assert (out / "coco" / "annotations.json").exists()
    assert json.loads((out / "dataset.json").read_text())["info"]["complete"] is True
