"""The loop with injected tiny fakes for render / train / evaluate: resumable per round, derived
recipes shift the rendered params towards the weak region, and the report is built."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from synthloop.active.errors import ActiveError
from synthloop.active.loop import EvalResult, LoopHooks, load_loop_spec, reset_round, run_loop
from synthloop.dataset.folder import DatasetWriter, frame_stem, load_dataset, object_to_record
from synthloop.dataset.types import Category, ObjectAnnotation
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.slices import compute_slices
from synthloop.scenes.recipe import recipe_from_dict, recipe_to_yaml
from synthloop.scenes.sampler import sample_scene

RECIPE = {
    "name": "spheres",
    "resolution": [32, 24],
    "camera": {"distance": {"uniform": [0.7, 0.9]}},
    "lights": {"count": 1, "type": "SUN", "sun_strength": {"uniform": [2, 4]}},
    "classes": [
        {
            "name": "sphere",
            "count": {"uniform": [2, 3]},
            "shape": {"kind": "sphere", "dimensions": [0.05, 0.05, 0.05], "scale": {"uniform": [0.8, 1.2]}},
            "material": {"hue": {"uniform": [0, 0.1]}},
        },
        {"name": "box", "count": 1, "shape": {"kind": "box", "dimensions": [0.05, 0.04, 0.03]}},
    ],
    "placement": {"area": [0.5, 0.5]},
}
SMALL = 0.9  # the fake detector misses spheres with scale < 0.9


class Fakes:
    """Render = sample scenes and write records with fake boxes; train = write a file; evaluate =
    detect every object except small spheres, then the real compute_slices."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {"render": [], "train": [], "evaluate": []}

    def render(self, recipe, seed, start, frames, work_dir: Path, spec) -> Path:
        self.calls["render"].append((recipe.name, seed, start, frames))
        out = work_dir / "data"
        cats = [Category(i + 1, c.name) for i, c in enumerate(recipe.classes)]
        w = DatasetWriter(out, cats)
        for k in range(start, start + frames):
            scene = sample_scene(recipe, seed, k)
            objs = [
                ObjectAnnotation(
                    o.category_id, (2.0 * j, 2.0, 2.0 * j + 6.0, 8.0), 36.0, attributes=dict(o.params)
                )
                for j, o in enumerate(scene.objects)
            ]
            rec = {
                "width": 32,
                "height": 24,
                "source": "synthetic",
                "scene_params": dict(scene.params),
                "objects": [object_to_record(o) for o in objs],
            }
            z = np.zeros((24, 32))
            w.write_frame(
                frame_stem(k),
                rgb=z.astype(np.uint8)[..., None].repeat(3, 2),
                instance_ids=z.astype(np.uint16),
                depth=z,
                record=rec,
            )
        return out

    def train(self, spec, datasets, out_dir: Path, init) -> Path:
        self.calls["train"].append(([str(d) for d in datasets], str(init) if init else None))
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / "model.ckpt"
        ckpt.write_text(json.dumps({"datasets": [str(d) for d in datasets]}))
        return ckpt

    def evaluate(self, ckpt: Path, dataset: Path, report_path: Path, spec) -> EvalResult:
        self.calls["evaluate"].append(str(dataset))
        ds = load_dataset(dataset)
        dets = Detections()
        for f in ds.frames:
            keep = [o for o in f.objects if not (o.category_id == 1 and o.attributes["scale"] < SMALL)]
            dets[f.frame_id] = FrameDetections(
                f.frame_id,
                np.array([o.bbox for o in keep]).reshape(-1, 4),
                np.full(len(keep), 0.9),
                np.array([o.category_id for o in keep], dtype=np.int64),
            )
        st = compute_slices(ds, dets)
        recall = float(np.mean([o["matched"] for o in st.objects]))
        return EvalResult({"recall": recall}, st)

    def hooks(self) -> LoopHooks:
        return LoopHooks(render=self.render, train=self.train, evaluate=self.evaluate)


def write_spec(tmp_path: Path, **over) -> Path:
    (tmp_path / "spheres.yaml").write_text(recipe_to_yaml(recipe_from_dict(RECIPE)))
    spec = {
        "name": "t",
        "recipe": "spheres.yaml",
        "seed": 3,
        "initial_frames": 15,
        "frames_per_round": 15,
        "rounds": 1,
        "exploration": 0.3,
        "val_frames": 40,
        "val_seed": 11,
        "mining": {"min_support": 5, "exclude": ["attr.size", "scene.requested_count_sphere"]},
    }
    spec.update(over)
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    fakes = Fakes()
    spec = write_spec(tmp)
    results = run_loop(spec, tmp / "out", hooks=fakes.hooks())
    return tmp, spec, fakes, results


def test_rounds_render_new_frames_from_the_derived_recipe(finished):
    tmp, _, fakes, results = finished
    assert [r["round"] for r in results] == [0, 1]
    # val set (own seed), round 0 (indices 0..14), round 1 (15..29) from the derived recipe
    assert fakes.calls["render"] == [("spheres", 11, 0, 40), ("spheres", 3, 0, 15), ("spheres-r1", 3, 15, 15)]
    (d0, init0), (d01, init1) = fakes.calls["train"]
    assert init0 is None and len(d0) == 1  # round 0 trains on its own data
    assert d01[0] == d0[0] and len(d01) == 2  # round 1 on the union, fine-tuned from round 0
    assert init1.endswith("round_000/train/model.ckpt")
    out = tmp / "out"
    weak = json.loads((out / "round_000" / "weak_regions.json").read_text())
    assert weak["regions"][0]["param"] == "attr.scale"
    diff = (out / "round_001" / "recipe.diff").read_text()
    assert "-      uniform: [0.8, 1.2]" in diff and "+      mixture:" in diff

    # the derived round renders far more small spheres than round 0
    def small_share(k):
        p = json.loads((out / f"round_{k:03d}" / "params.json").read_text())["attr"]["scale"]
        s = np.array([v for v in p if v != 1.0])  # spheres only (boxes have scale 1)
        return float((s < SMALL).mean())

    assert small_share(1) > small_share(0) + 0.25
    for k in (0, 1):
        assert (out / f"round_{k:03d}" / "DONE").exists()


def test_finished_rounds_are_not_redone(finished):
    tmp, spec, fakes, results = finished
    again = Fakes()
    res2 = run_loop(spec, tmp / "out", hooks=again.hooks())
    assert again.calls == {"render": [], "train": [], "evaluate": []}
    assert res2 == results


def test_a_killed_round_resumes_at_its_step(tmp_path):
    fakes = Fakes()
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_loop(spec, out, hooks=fakes.hooks())
    # round 1 died after training: no DONE, no metrics -> only evaluation runs again
    (out / "round_001" / "DONE").unlink()
    again = Fakes()
    run_loop(spec, out, hooks=again.hooks())
    assert again.calls["render"] == [] and again.calls["train"] == [] and len(again.calls["evaluate"]) == 1
    # reset round 1 entirely: it is rendered and trained again, fine-tuned from round 0
    reset_round(out, 1)
    third = Fakes()
    run_loop(spec, out, hooks=third.hooks())
    assert [c[2] for c in third.calls["render"]] == [15]
    assert third.calls["train"][0][1].endswith("round_000/train/model.ckpt")


def test_random_arm_and_spec_checks(tmp_path):
    fakes = Fakes()
    spec = write_spec(tmp_path, arm="random", retrain="scratch")
    run_loop(spec, tmp_path / "out", hooks=fakes.hooks())
    assert [c[0] for c in fakes.calls["render"]] == ["spheres"] * 3
    assert fakes.calls["train"][1][1] is None
    assert not (tmp_path / "out" / "round_001" / "recipe.diff").exists()
    # a different spec in the same folder is refused
    spec2 = write_spec(tmp_path, arm="random", retrain="scratch", frames_per_round=5)
    with pytest.raises(ActiveError, match="different loop spec"):
        run_loop(spec2, tmp_path / "out", hooks=fakes.hooks())
    bad = write_spec(tmp_path, val_seed=3)
    with pytest.raises(ActiveError, match="val_seed"):
        load_loop_spec(bad)


def test_report_shows_rounds_histograms_and_weak_slices(finished):
    from synthloop.active.report import build_report, print_loop_report, write_report

    tmp, _, _, results = finished
    out = tmp / "out"
    paths = write_report(out)
    rep = json.loads(paths["json"].read_text())
    assert [m["round"] for m in rep["rounds"]] == [0, 1]
    h = rep["histograms"]["attr.scale"]
    assert h["kind"] == "numeric" and len(h["edges"]) == 11
    below = [i for i in range(10) if h["edges"][i + 1] <= SMALL + 1e-9]
    share = {k: sum(h["rounds"][k]["fraction"][i] for i in below) for k in ("0", "1")}
    assert share["1"] > share["0"]
    ws = [w for w in rep["weak_slices"] if w["round"] == 0 and w["param"] == "attr.scale"]
    assert ws and ws[0]["recall_by_round"]["0"]["recall"] == 0.0  # the fake never detects small spheres
    assert set(ws[0]["recall_by_round"]) == {"0", "1"}
    page = paths["html"].read_text()
    assert "attr.scale" in page and "<svg" not in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == len(rep["histograms"])  # one matplotlib figure per parameter
    with Image.open(io.BytesIO(base64.b64decode(pngs[0]))) as im:
        assert im.width > 100 and len(np.unique(np.asarray(im.convert("L")))) > 5  # not blank
    from rich.console import Console

    console = Console(record=True, width=200)
    print_loop_report(build_report(out), console)
    assert "top weak region" in console.export_text()
    from typer.testing import CliRunner

    from synthloop.commands.active import app

    r = CliRunner().invoke(app, ["report", str(out), "--bins", "5"])
    assert r.exit_code == 0 and f"wrote {out / 'report.json'}" in r.output, r.output
    assert len(json.loads((out / "report.json").read_text())["histograms"]["attr.scale"]["edges"]) == 6


def test_training_spec_swaps_in_the_loop_datasets(tmp_path):
    from synthloop.active.loop import label_map, training_spec
    from synthloop.dataset.types import Dataset

    base = tmp_path / "exp.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "name": "base",
                "datasets": [
                    {"kind": "synthetic", "paths": ["old_data"], "class_mapping": {"dattel": "date"}},
                    {"kind": "real", "coco_json": "real/train.json", "images_dir": "real/images"},
                ],
                "epochs": 2,
                "batch_size": 4,
            }
        )
    )
    spec = load_loop_spec(write_spec(tmp_path, train="exp.yaml"))
    exp = training_spec(spec, [tmp_path / "r0", tmp_path / "r1"])
    synth, real = exp.datasets
    assert synth.kind == "synthetic" and synth.paths == [str(tmp_path / "r0"), str(tmp_path / "r1")]
    assert synth.class_mapping == {"dattel": "date"}
    assert real.kind == "real" and real.coco_json == str(tmp_path / "real" / "train.json")
    assert exp.epochs == 2 and exp.batch_size == 4
    ds = Dataset([Category(3, "fig"), Category(5, "date")], [])
    assert label_map(["date", "fig", "nut"], ds) == {1: 5, 2: 3}
    assert label_map(None, ds) == {3: 3, 5: 5}
    assert label_map(["date", "nut"], ds, [7, 9]) == {7: 5}  # the run's own category ids


def test_backbone_weights_from_a_checkpoint_load_into_a_new_backbone(tmp_path):
    import torch

    from synthloop.active.loop import backbone_weights_from_checkpoint
    from synthloop.training.backbones import build_backbone
    from synthloop.training.loop import CHECKPOINT_SCHEMA

    torch.set_num_threads(1)
    body = build_backbone("resnet18", None).body.state_dict()
    model = {f"backbone.body.{k}": v + 1.0 if v.is_floating_point() else v for k, v in body.items()}
    model["head.weight"] = torch.zeros(3)
    ck = {"schema": CHECKPOINT_SCHEMA, "spec": {"backbone": {"name": "resnet18"}}, "model": model}
    torch.save(ck, tmp_path / "last.pt")
    out = backbone_weights_from_checkpoint(tmp_path / "last.pt", tmp_path / "bb.pt")
    sd = torch.load(out, weights_only=True)
    assert set(sd) == set(body)
    bb = build_backbone("resnet18", out)  # the training package accepts the file as backbone.weights
    w = bb.body.state_dict()["conv1.weight"]
    assert torch.equal(w, model["backbone.body.conv1.weight"])
    ck["model"] = {"head.weight": torch.zeros(3)}
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ActiveError, match="no resnet18 backbone"):
        backbone_weights_from_checkpoint(tmp_path / "bad.pt", tmp_path / "bb2.pt")


def test_compare_lists_both_arms(finished, tmp_path):
    from synthloop.active.report import compare_loops

    tmp, *_ = finished
    fakes = Fakes()
    run_loop(write_spec(tmp_path, arm="random"), tmp_path / "rand", hooks=fakes.hooks())
    rows = compare_loops([tmp / "out", tmp_path / "rand"])
    assert [(r["arm"], r["round"], r["frames_total"]) for r in rows] == [
        ("active", 0, 15),
        ("active", 1, 30),
        ("random", 0, 15),
        ("random", 1, 30),
    ]
    assert all(0.0 <= r["val_recall"] <= 1.0 for r in rows)
