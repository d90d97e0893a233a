"""Maps, split, stats, merge, overlays and the export/dataset CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from helpers import REAL, synthetic_dataset, write_synthetic_folder
from PIL import Image
from typer.testing import CliRunner

from synthloop.commands import dataset as dataset_cmd
from synthloop.commands import export as export_cmd
from synthloop.dataset.folder import load_dataset, load_depth, load_instance_map
from synthloop.dataset.merge import merge_datasets, write_dataset_folder
from synthloop.dataset.split import split_dataset
from synthloop.dataset.stats import dataset_stats, stats_tables
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import SynthloopError
from synthloop.exporters.coco import dataset_to_coco
from synthloop.exporters.maps import depth_to_mm, palette, write_depth_pngs, write_semantic_pngs
from synthloop.importers.coco import load_coco
from synthloop.overlays import category_color, write_annotation_overlays


def test_depth_pngs(tmp_path):
    ds = synthetic_dataset(tmp_path)
    paths = write_depth_pngs(ds, tmp_path / "depth")
    assert [p.name for p in paths] == ["000000.png", "000001.png"]
    png = np.asarray(Image.open(paths[0]))
    d = load_depth(ds.frames[0])
    assert png.dtype == np.uint16
    assert png[0, 0] == 0  # 70 m is beyond 65.535 m
    assert np.all(png[np.isinf(d)] == 0)
    hit = np.isfinite(d) & (d < 65)
    assert np.array_equal(png[hit], np.round(d[hit] * 1000).astype(np.uint16))
    assert np.array_equal(np.load(tmp_path / "depth" / "000000.npy"), d)
    assert depth_to_mm(np.array([[np.nan, -1.0, 0.0004, 65.535, 65.536]])).tolist() == [[0, 0, 0, 65535, 0]]


def test_semantic_pngs(tmp_path):
    ds = synthetic_dataset(tmp_path)
    write_semantic_pngs(ds, tmp_path / "sem")
    inst = load_instance_map(ds.frames[0])
    lab = np.asarray(Image.open(tmp_path / "sem" / "labels" / "000000.png"))
    assert lab.dtype == np.uint8
    assert np.all(lab[inst == 1] == 1) and np.all(lab[inst == 2] == 3)
    assert np.all(lab[(inst == 0) | (inst == 3)] == 0)  # background and the unlabeled distractor
    col = np.asarray(Image.open(tmp_path / "sem" / "colors" / "000000.png"))
    assert np.array_equal(col, palette(4)[lab])
    txt = (tmp_path / "sem" / "colormap.txt").read_text().splitlines()
    assert len(txt) == 4 and txt[0] == "0 0 0"
    cmap = json.loads((tmp_path / "sem" / "colormap.json").read_text())
    assert [(c["id"], c["name"]) for c in cmap] == [
        (0, "background"),
        (1, "Fig"),
        (2, "class_2"),
        (3, "hazel nut"),
    ]
    assert len({tuple(c["rgb"]) for c in cmap}) == 4


def _toy(n: int, name: str, cats: list[Category]) -> Dataset:
    return Dataset(categories=cats, frames=[Frame(f"{i}", f"/x/{i}.png", 4, 4) for i in range(n)], name=name)


def test_split_deterministic_and_complete():
    ds = _toy(20, "t", [Category(1, "a")])
    a, b = split_dataset(ds, fraction=0.25, seed=3)
    a2, b2 = split_dataset(ds, fraction=0.25, seed=3)
    ids = [f.frame_id for f in a.frames]
    assert len(ids) == 5 and ids == [f.frame_id for f in a2.frames]
    assert sorted(ids + [f.frame_id for f in b.frames], key=int) == [str(i) for i in range(20)]
    assert ids == sorted(ids, key=int)  # original order kept
    assert ids != [f.frame_id for f in split_dataset(ds, fraction=0.25, seed=4)[0].frames]
    assert len(split_dataset(ds, count=7)[0]) == 7
    with pytest.raises(SynthloopError):
        split_dataset(ds, fraction=0.5, count=3)
    with pytest.raises(SynthloopError):
        split_dataset(ds, count=21)


def test_stats(tmp_path):
    ds = synthetic_dataset(tmp_path)
    s = dataset_stats(ds)
    assert s["frames"] == 2 and s["objects"] == 5
    assert s["classes"]["Fig"] == {"id": 1, "objects": 3, "frames": 2, "crowd": 0}
    assert s["classes"]["hazel nut"]["crowd"] == 1
    # areas 400, 190, 0, 180, 512 -> all COCO "small" (< 1024)
    assert s["coco_sizes"] == {"small": 5, "medium": 0, "large": 0}
    # sqrt(area): 20, 13.8, 0, 13.4, 22.6
    assert (
        s["size_bins"]["[0, 8)"] == 1 and s["size_bins"]["[8, 16)"] == 2 and s["size_bins"]["[16, 32)"] == 2
    )
    assert s["occlusion"]["[0.0, 0.1)"] == 1 and s["occlusion"]["[0.3, 0.4)"] == 1
    assert (
        s["occlusion"]["[0.6, 0.7)"] == 1
        and s["occlusion"]["[0.9, 1.0)"] == 1
        and s["occlusion"]["unknown"] == 1
    )
    assert s["truncated"] == 1 and len(stats_tables(s)) == 3
    json.dumps(s)


def test_merge_unifies_categories_and_writes_folder(tmp_path):
    a = synthetic_dataset(tmp_path, "a")
    b = synthetic_dataset(tmp_path, "b")
    b.categories = [Category(1, "hazel nut", "nut"), Category(2, "date")]  # other ids for the same names
    for f in b.frames:
        for o in f.objects:
            o.category_id = {1: 2, 3: 1}[o.category_id]
    m = merge_datasets([a, b])
    assert [(c.id, c.name) for c in m.categories] == [(1, "Fig"), (2, "date"), (3, "hazel nut")]
    assert [f.frame_id for f in m.frames] == ["a_000000", "a_000001", "b_000000", "b_000001"]
    names = {c.id: c.name for c in m.categories}
    per_frame = [[names[o.category_id] for o in f.objects] for f in m.frames]
    assert per_frame[0] == ["Fig", "hazel nut", "Fig"] and per_frame[2] == ["date", "hazel nut", "date"]
    assert per_frame[1] == ["Fig", "hazel nut"] and per_frame[3] == ["date", "hazel nut"]
    out = write_dataset_folder(m, tmp_path / "merged")
    back = load_dataset(out)
    assert [f.frame_id for f in back.frames] == [f.frame_id for f in m.frames]
    assert back.categories == m.categories
    for f0, f1 in zip(m.frames, back.frames, strict=True):
        assert [(o.category_id, o.bbox, o.area, o.mask) for o in f0.objects] == [
            (o.category_id, o.bbox, o.area, o.mask) for o in f1.objects
        ]
        assert np.array_equal(load_instance_map(f0), load_instance_map(f1))
        assert f1.extra.get("seed") == 7 and f1.camera == f0.camera
    assert dataset_to_coco(back)["annotations"] == dataset_to_coco(m)["annotations"]


def test_merge_rejects_conflicting_keypoints(tmp_path):
    a = _toy(1, "a", [Category(1, "p", keypoints=("x",))])
    b = _toy(1, "b", [Category(1, "p", keypoints=("y",))])
    with pytest.raises(SynthloopError, match="keypoints"):
        merge_datasets([a, b])


def test_overlays_written_and_drawn(tmp_path):
    ds = synthetic_dataset(tmp_path)
    paths = write_annotation_overlays(ds, tmp_path / "ov")
    assert [p.name for p in paths] == ["000000.png", "000001.png"]
    im = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert im.shape == (384, 512, 3)  # 64x48 enlarged x8 (long side >= 480)
    src = np.asarray(Image.open(ds.frames[0].image_path)).repeat(8, 0).repeat(8, 1)
    inst = load_instance_map(ds.frames[0]).repeat(8, 0).repeat(8, 1)
    changed = np.any(im != src, axis=2)
    assert changed[inst == 1].mean() > 0.9  # the mask is tinted
    assert not changed[300:, :30].any()  # background away from every object is untouched
    assert np.all(im[120:200, 40] == category_color(1))  # left edge of the fig's box (x1 = 5 px * 8)
    assert not changed[:8, :8].any()  # the fully hidden object (area 0) is not drawn
    assert len(write_annotation_overlays(ds, tmp_path / "ov2", frames=["000001"])) == 1
    assert len(write_annotation_overlays(ds, tmp_path / "ov3", limit=1)) == 1
    with pytest.raises(SynthloopError, match="nope"):
        write_annotation_overlays(ds, tmp_path / "ov4", frames=["nope"])


@pytest.mark.skipif(not (REAL / "fruits-nuts").exists(), reason="fruits-nuts not present")
def test_overlay_real_image(tmp_path):
    ds = load_coco(REAL / "fruits-nuts" / "val.json")
    (p,) = write_annotation_overlays(ds, tmp_path / "ov", limit=1)
    assert Image.open(p).size == (800, 600)


# ---------------------------------------------------------------- CLI
def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(export_cmd.app, name="export")
    app.add_typer(dataset_cmd.app, name="dataset")
    return app


def test_cli_export_and_dataset_commands(tmp_path):
    src = write_synthetic_folder(tmp_path)
    r = CliRunner()
    res = r.invoke(_cli(), ["export", "coco", str(src), str(tmp_path / "coco")])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "coco" / "annotations.json").read_text())["annotations"]) == 4
    res = r.invoke(
        _cli(),
        [
            "export",
            "kitti",
            str(tmp_path / "coco" / "annotations.json"),
            str(tmp_path / "k"),
            "--layout",
            "flat",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k" / "labels" / "000000.txt").read_text().startswith("fig ")
    res = r.invoke(_cli(), ["dataset", "stats", str(tmp_path / "k"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["objects"] == 3  # the crowd region became DontCare
    res = r.invoke(_cli(), ["dataset", "show", str(src), "--out", str(tmp_path / "ov"), "--limit", "1"])
    assert res.exit_code == 0 and len(list((tmp_path / "ov").iterdir())) == 1
    res = r.invoke(_cli(), ["dataset", "show", str(src), "--out", str(tmp_path / "ovq"), "--quiet"])
    *events, summary = [json.loads(line) for line in res.stdout.splitlines()]  # every line is JSON
    assert res.exit_code == 0 and [e["event"] for e in events] == ["start", "frame", "frame", "end"]
    assert events[0]["total"] == 2 and events[-1] == {**events[-1], "completed": 2, "ok": True}
    assert summary == {"out": str(tmp_path / "ovq"), "overlays": 2}
    assert len(list((tmp_path / "ovq").iterdir())) == 2
    res = r.invoke(_cli(), ["dataset", "merge", str(src), str(tmp_path / "k"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert len(load_dataset(tmp_path / "m").frames) == 4


def test_cli_bad_input_one_line_exit_2_and_skip(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4},
            {"id": 42, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2], "area": 4},
        ],
    }
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(data))
    dst = tmp_path / "out"
    res = CliRunner().invoke(_cli(), ["export", "coco", str(src), str(dst)])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in res.output
    assert "bad.json" in err and "annotations[1] (id 42).bbox" in err
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    res = CliRunner().invoke(_cli(), ["export", "coco", str(src), str(dst), "--skip-invalid"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 invalid record" in res.stderr and "annotations[1] (id 42).bbox" in res.stderr
    assert len(json.loads((dst / "annotations.json").read_text())["annotations"]) == 1
