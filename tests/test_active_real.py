"""Real-guided mining on tiny painted data (no Blender, no training: detections are injected).

Toy world: every object is a square painted in its sampled display HSV colour on a noisy grey
table. A fake detector misses the real objects whose hue lies in [HUE_LO, HUE_HI]; the renders
come from a toy recipe whose hue is uniform on [0, 1]. The pipeline must find the hue region on
the real split and derive a recipe that concentrates that hue range.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthloop.active.derive import derive
from synthloop.active.describe import describe_real, describe_renders
from synthloop.active.mining import MiningOptions
from synthloop.active.real_guided import (
    RealMiningOptions,
    derive_from_real,
    map_region,
    mine_real,
    mine_real_errors,
    mine_rows,
)
from synthloop.dataset.folder import DatasetWriter, frame_stem, load_dataset, object_to_record
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.geometry.masks import mask_to_rle
from synthloop.scenes.recipe import recipe_from_dict
from synthloop.scenes.sampler import sample_scene

torch.set_num_threads(1)
HUE_LO, HUE_HI = 0.55, 0.70
W, H, SIDE = 96, 72, 14
CATS = [Category(1, "sphere"), Category(2, "box")]
RECIPE = {
    "name": "painted",
    "resolution": [W, H],
    "camera": {"distance": {"uniform": [0.7, 0.9]}},
    "lights": {"count": 1, "type": "SUN", "sun_strength": {"uniform": [2, 4]}},
    "classes": [
        {
            "name": "sphere",
            "count": {"uniform": [2, 4]},
            "shape": {"kind": "sphere", "dimensions": [0.05, 0.05, 0.05], "scale": {"uniform": [0.8, 1.2]}},
            "material": {
                "hue": {"uniform": [0, 1]},
                "saturation": {"uniform": [0.6, 0.9]},
                "value": {"uniform": [0.6, 0.9]},
            },
        },
        {
            "name": "box",
            "count": {"uniform": [1, 3]},
            "shape": {"kind": "box", "dimensions": [0.05, 0.04, 0.03]},
            "material": {
                "hue": {"uniform": [0, 1]},
                "saturation": {"uniform": [0.6, 0.9]},
                "value": {"uniform": [0.6, 0.9]},
            },
        },
    ],
    "placement": {"area": [0.5, 0.5]},
}


def in_band(h: float) -> bool:
    return HUE_LO <= h <= HUE_HI


def paint(rng: np.random.Generator, colours: list[tuple[float, float, float]]):
    """(image, boxes, masks): squares of the given HSV colours on a grid over a noisy grey table."""
    img = np.clip(rng.normal(128, 6, (H, W, 3)), 0, 255).astype(np.uint8)
    boxes, masks = [], []
    for j, hsv in enumerate(colours):
        r, c = divmod(j, 4)
        x0, y0 = 4 + c * (SIDE + 8), 4 + r * (SIDE + 8)
        img[y0 : y0 + SIDE, x0 : x0 + SIDE] = (np.array(colorsys.hsv_to_rgb(*hsv)) * 255).round()
        m = np.zeros((H, W), dtype=bool)
        m[y0 : y0 + SIDE, x0 : x0 + SIDE] = True
        boxes.append((float(x0), float(y0), float(x0 + SIDE), float(y0 + SIDE)))
        masks.append(m)
    return img, boxes, masks


def real_split(root: Path, frames: int = 14, seed: int = 1, decoys: int = 0) -> Dataset:
    """Hand-built 'real' split: up to 12 objects per photo of random hue (the hue kept in attributes
    only for the fake detector), and ``decoys`` unlabeled gold squares (boxes in ``extra``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(frames):
        n = int(rng.integers(6, 13 - decoys))
        cols = [
            (float(rng.uniform()), float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.6, 0.9)))
            for _ in range(n)
        ]
        gold = [(float(rng.uniform(0.10, 0.14)), 0.8, 0.85) for _ in range(decoys)]
        img, boxes, masks = paint(rng, cols + gold)
        boxes, decoy_boxes, masks = boxes[:n], boxes[n:], masks[:n]
        path = root / f"photo{k}.png"
        Image.fromarray(img).save(path)
        objs = [
            ObjectAnnotation(
                1 + (j % 2), b, float(SIDE * SIDE), mask=mask_to_rle(m), attributes={"hue": c[0]}
            )
            for j, (b, m, c) in enumerate(zip(boxes, masks, cols, strict=True))
        ]
        out.append(Frame(f"photo{k}", path, W, H, objs, source="real", extra={"decoys": decoy_boxes}))
    return Dataset(CATS, out, name="real")


def fake_detections(ds: Dataset) -> Detections:
    """Detect every object except those whose hue lies in the planted band; fire on every decoy."""
    dets = Detections()
    for f in ds.frames:
        keep = [o for o in f.objects if not in_band(o.attributes["hue"])]
        decoys = [tuple(b) for b in f.extra.get("decoys", [])]
        dets[f.frame_id] = FrameDetections(
            f.frame_id,
            np.array([o.bbox for o in keep] + decoys).reshape(-1, 4),
            np.full(len(keep) + len(decoys), 0.9),
            np.array([o.category_id for o in keep] + [1] * len(decoys), dtype=np.int64),
        )
    return dets


def render_folder(
    root: Path, frames: int = 40, seed: int = 5, start: int = 0, recipe=None, distractors: bool = False
) -> Path:
    """Renders of the toy recipe: sampled scenes painted with each object's sampled colour; with
    ``distractors``, two gold ``foil`` and one blue ``pebble`` square per frame, named in the
    record's scene and drawn in the instance map (as the generator records distractors)."""
    recipe = recipe or recipe_from_dict(RECIPE)
    rng = np.random.default_rng(seed + start)
    w = DatasetWriter(root, CATS)
    for k in range(start, start + frames):
        scene = sample_scene(recipe, seed, k)
        objs = [o for o in scene.objects if o.category_id is not None][: 9 if distractors else 12]
        extra = [("foil", 0.12), ("foil", 0.11), ("pebble", 0.6)] if distractors else []
        cols = [(o.params["hue"], o.params["saturation"], o.params["value"]) for o in objs]
        img, boxes, masks = paint(rng, cols + [(h + rng.uniform(-0.01, 0.01), 0.8, 0.85) for _, h in extra])
        inst = np.zeros((H, W), np.uint16)
        dis, named = [], []
        for j, ((group, _), b, m) in enumerate(
            zip(extra, boxes[len(objs) :], masks[len(objs) :], strict=True)
        ):
            inst[m] = 100 + j
            dis.append({"instance_id": 100 + j, "bbox": list(b), "area": SIDE * SIDE})
            named.append({"instance_id": 100 + j, "name": f"{group}_{j:03d}", "category_id": None})
        boxes, masks = boxes[: len(objs)], masks[: len(objs)]
        anns = [
            ObjectAnnotation(
                o.category_id, b, float(SIDE * SIDE), mask=mask_to_rle(m), attributes=dict(o.params)
            )
            for o, b, m in zip(objs, boxes, masks, strict=True)
        ]
        rec = {
            "width": W,
            "height": H,
            "source": "synthetic",
            "scene_params": dict(scene.params),
            "objects": [object_to_record(a) for a in anns],
            "scene": {"objects": named},
            "distractors": dis,
        }
        w.write_frame(frame_stem(k), rgb=img, instance_ids=inst, depth=np.zeros((H, W)), record=rec)
    return root


def write_real_folder(real: Dataset, root: Path) -> Path:
    """The hand-built real split as a dataset folder (what load_any reads)."""
    from PIL import Image

    w = DatasetWriter(root, CATS)
    for k, f in enumerate(real.frames):
        rgb = np.asarray(Image.open(f.image_path))
        rec = {"width": W, "height": H, "source": "real", "objects": [object_to_record(o) for o in f.objects]}
        w.write_frame(
            frame_stem(k),
            rgb=rgb,
            instance_ids=np.zeros((H, W), np.uint16),
            depth=np.zeros((H, W)),
            record=rec,
        )
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    real = real_split(tmp / "real")
    renders = render_folder(tmp / "renders")
    return tmp, real, renders


def band_share(dist, n: int = 4000) -> float:
    x = np.asarray([dist.sample_float(np.random.default_rng(s)) for s in range(n)]) % 1.0
    return float(np.mean((x >= HUE_LO) & (x <= HUE_HI)))


def test_properties_measure_the_painted_colour(world):
    _, real, _ = world
    gt, _ = describe_real(real, fake_detections(real))
    hue_err = [
        abs(r["properties"]["hue"] - real.frames[0].objects[r["object_index"]].attributes["hue"])
        for r in gt
        if r["frame_id"] == "photo0"
    ]
    assert max(min(e, 1 - e) for e in hue_err) < 0.01
    assert all(0 < r["properties"]["size"] < 0.3 for r in gt)


def test_mining_a_real_split_finds_the_planted_misses(world):
    _, real, _ = world
    gt, dets = describe_real(real, fake_detections(real))
    missed = [r for r in gt if not r["matched"]]
    assert missed and all(
        in_band(real.frames[int(r["frame_id"][5:])].objects[r["object_index"]].attributes["hue"])
        for r in missed
    )
    res = mine_rows(gt, MiningOptions(min_support=5))
    assert res is not None and res.regions, "the planted hue band must come out as a weak region"
    top = res.regions[0]
    assert top.param == "prop.hue"
    assert top.low >= HUE_LO - 0.08 and top.high <= HUE_HI + 0.08
    assert top.recall_inside < 0.3 < res.overall_recall
    assert all(r["matched"] for r in dets)  # the fake detector makes no false positive


def test_region_maps_back_to_the_sampled_hue_and_the_recipe_concentrates_it(world):
    _, real, renders = world
    result, rows = mine_real_errors(real, fake_detections(real), load_dataset(renders))
    hue = [m for m in result.mappings if m.region.param == "prop.hue"]
    assert hue and hue[0].in_region > 0
    params = [p.param for p in hue[0].params]
    assert "attr.hue" in params, params
    p = hue[0].params[params.index("attr.hue")]
    assert abs(p.low - HUE_LO) < 0.08 and abs(p.high - HUE_HI) < 0.08
    base = recipe_from_dict(RECIPE)
    d = derive_from_real(base, result, exploration=0.3)
    assert {c.path for c in d.changes} >= {"classes[0].material.hue", "classes[1].material.hue"}
    before = band_share(base.classes[0].material.hue)
    after = band_share(d.recipe.classes[0].material.hue)
    assert before < 0.2 and after > 0.6, (before, after)
    assert len(rows["renders"]) > 100


def test_a_region_no_render_reaches_is_reported_as_a_coverage_hole(world):
    _, real, renders = world
    rows = describe_renders(load_dataset(renders))
    gt, _ = describe_real(real, fake_detections(real))
    res = mine_rows(gt, MiningOptions(min_support=5))
    region = res.regions[0]
    far = type(region).from_dict(
        {
            **region.to_dict(),
            "param": "prop.size",
            "low": 0.9,
            "high": 1.0,
            "at_min": False,
            "high_inclusive": False,
        }
    )
    m = map_region(far, rows, MiningOptions())
    assert m.in_region == 0 and not m.params and "coverage hole" in m.note


def test_mine_real_writes_a_derived_recipe_and_refuses_foreign_classes(world, tmp_path):
    tmp, real, renders = world
    real_dir = write_real_folder(real, tmp_path / "realds")
    pool = tmp_path / "pool"
    pool.mkdir()
    for f in real.frames[:4]:
        (pool / f.image_path.name).write_bytes(f.image_path.read_bytes())

    def predict(ckpt, ds):
        if ds.name == "pool":
            return Detections(
                {f.frame_id: FrameDetections(f.frame_id, [[4, 4, 18, 18]], [0.3], [1]) for f in ds.frames}
            )
        return fake_detections(ds)

    opts = RealMiningOptions(pool_top=2)
    paths = mine_real(
        "model.pt",
        real_dir,
        renders,
        tmp_path / "out",
        recipe=recipe_from_dict(RECIPE),
        pool=pool,
        options=opts,
        predict=predict,
    )
    import json

    from synthloop.active.mining import load_weak_regions
    from synthloop.scenes.recipe import load_recipe

    assert any(r.param == "attr.hue" for r in load_weak_regions(paths["weak_regions"]))
    derived = load_recipe(paths["recipe"])
    assert band_share(derived.classes[0].material.hue) > 0.6
    rm = json.loads(paths["real_mining"].read_text())
    assert len(rm["pool_images"]) == 2 and rm["summary"]["recall"] < 1.0
    objs = json.loads(paths["objects"].read_text())
    assert {r["outcome"] for r in objs["pool"]} == {"uncertain"}

    from synthloop.active.errors import ActiveError

    other = tmp_path / "other"
    DatasetWriter(other, [Category(1, "walnut")])
    with pytest.raises(ActiveError, match="walnut"):
        mine_real("model.pt", other, renders, tmp_path / "out2", predict=predict)


class LoopFakes:
    """Loop hooks: render = painted toy scenes; train = a file; evaluate = detect everything on the
    synthetic val set; predict = the hue-band-blind fake detector on the real split."""

    def __init__(self) -> None:
        self.predicted: list[str] = []

    def render(self, recipe, seed, start, frames, work_dir: Path, spec) -> Path:
        return render_folder(work_dir / "data", frames, seed, start, recipe)

    def train(self, spec, datasets, out_dir: Path, init) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.ckpt").write_text("fake")
        return out_dir / "model.ckpt"

    def evaluate(self, ckpt, dataset: Path, report_path: Path, spec):
        from synthloop.active.loop import EvalResult
        from synthloop.evaluation.slices import compute_slices

        ds = load_dataset(dataset)
        dets = Detections(
            {
                f.frame_id: FrameDetections(
                    f.frame_id,
                    np.array([o.bbox for o in f.objects]).reshape(-1, 4),
                    np.full(len(f.objects), 0.9),
                    np.array([o.category_id for o in f.objects], dtype=np.int64),
                )
                for f in ds.frames
            }
        )
        return EvalResult({"recall": 1.0}, compute_slices(ds, dets))

    def predict(self, ckpt, ds):
        self.predicted.append(ds.name)
        return fake_detections(ds) if ds.name != "pool" else Detections()

    def hooks(self):
        from synthloop.active.loop import LoopHooks

        return LoopHooks(render=self.render, train=self.train, evaluate=self.evaluate, predict=self.predict)


def test_real_guided_loop_renders_more_of_the_real_weak_region(world, tmp_path):
    import json

    import yaml

    from synthloop.active.errors import ActiveError
    from synthloop.active.loop import run_loop
    from synthloop.scenes.recipe import recipe_to_yaml

    _, real, _ = world
    write_real_folder(real, tmp_path / "real_train")
    (tmp_path / "painted.yaml").write_text(recipe_to_yaml(recipe_from_dict(RECIPE)))
    spec = {
        "name": "real-guided",
        "recipe": "painted.yaml",
        "seed": 3,
        "initial_frames": 40,
        "frames_per_round": 20,
        "rounds": 1,
        "val_frames": 4,
        "val_seed": 11,
        "mine_on": "real",
        "real_train": "real_train",
        "real_mining": {"min_support": 5, "exclude": ["attr.size"]},
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    fakes = LoopFakes()
    results = run_loop(path, tmp_path / "out", hooks=fakes.hooks())
    assert [m["round"] for m in results] == [0, 1]
    r0 = results[0]
    assert r0["real_train"]["recall"] < 0.95 and any(
        "prop.hue" in w for w in r0["real_train"]["weak_regions"]
    )
    assert any(w.startswith("attr.hue") for w in r0["weak_regions"])
    r1 = tmp_path / "out" / "round_001"
    assert "classes[0].material.hue" in results[1]["derived_changes"]
    hues = [o.attributes["hue"] for f in load_dataset(r1 / "data").frames for o in f.objects]
    share = float(np.mean([in_band(h) for h in hues]))
    assert share > 0.5, share  # 0.15 under the initial recipe
    assert (tmp_path / "out" / "round_000" / "render_properties.json").exists()
    assert json.loads((tmp_path / "out" / "round_000" / "real_mining.json").read_text())["mappings"]
    from synthloop.active.report import write_report

    page = write_report(tmp_path / "out")["html"].read_text()
    assert "real train R/P" in page and "prop.hue in" in page
    assert run_loop(path, tmp_path / "out", hooks=fakes.hooks()) == results  # finished: read back

    for bad, msg in (
        ({"real_train": None}, "needs real_train"),
        ({"real_eval": "real_train"}, "never steer"),
    ):
        path.write_text(yaml.safe_dump({**spec, **bad}))
        with pytest.raises(ActiveError, match=msg):
            run_loop(path, tmp_path / "bad", hooks=fakes.hooks())


def test_cli_mine_real_bad_input_is_one_line_exit_2(world, tmp_path):
    import typer
    from typer.testing import CliRunner

    from synthloop.commands.active import app as active_app

    _, _, renders = world
    app = typer.Typer()
    app.add_typer(active_app, name="active")
    other = tmp_path / "other"
    DatasetWriter(other, [Category(1, "walnut")])
    args = [
        "active",
        "mine-real",
        "m.pt",
        "--real",
        str(other),
        "--renders",
        str(renders),
        "--out",
        str(tmp_path / "o"),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "walnut" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(app, [*args, "--adjust", "holm"])
    assert r.exit_code == 2 and "adjust" in r.output and "Traceback" not in r.output


def test_false_positives_map_to_the_distractor_group_that_looks_like_them(tmp_path):
    real = real_split(tmp_path / "real", decoys=2)
    _, dets = describe_real(real, fake_detections(real))
    assert sum(not r["matched"] for r in dets) == 2 * len(real.frames)
    res = mine_rows(dets, MiningOptions(min_support=5))
    hue = [r for r in res.regions if r.param == "prop.hue"]
    assert hue and hue[0].low < 0.14 and hue[0].high > 0.10 and hue[0].high - hue[0].low < 0.2
    assert hue[0].failures_inside >= 10
    rows = describe_renders(load_dataset(render_folder(tmp_path / "renders", 30, distractors=True)))
    kinds = {r["category"] for r in rows if r["kind"] == "distractor"}
    assert kinds == {"foil", "pebble"}
    m = map_region(hue[0], rows, MiningOptions(min_support=10), table="precision")
    assert m.params and m.params[0].param == "object.category" and m.params[0].categories == ["foil"]
    with_foil = recipe_from_dict(
        {
            **RECIPE,
            "distractors": [
                {
                    "name": "foil",
                    "count": {"uniform": [0, 4]},
                    "shape": {"kind": "box", "dimensions": [0.03, 0.02, 0.01]},
                },
                {"name": "pebble", "count": 1, "shape": {"kind": "sphere", "dimensions": [0.02] * 3}},
            ],
        }
    )
    d = derive(with_foil, m.params, 0.3)
    assert [c.path for c in d.changes] == ["distractors[0].count"]


def test_a_red_region_across_hue_zero_lands_on_the_recipe_range():
    from synthloop.active.mining import WeakRegion

    red = {**RECIPE, "classes": [{**RECIPE["classes"][0], "material": {"hue": {"uniform": [0.96, 1.02]}}}]}
    fields = dict(support=20, support_fraction=0.2, recall_inside=0.1, recall_outside=0.9, overall_recall=0.8)
    fields.update(ci_low=0.0, ci_high=0.3, ci_adjusted=(0.0, 0.4), confidence_adjusted=0.99, effect=0.7)
    fields.update(effect_vs_outside=0.8, z=5.0, excess_failures=14.0, source="tree", weak=True)
    region = WeakRegion("attr.hue", "numeric", low=-0.03, high=0.015, **fields)
    d = derive(recipe_from_dict(red), [region], 0.0)
    assert d.recipe.classes[0].material.hue.model_dump() == {"uniform": [0.97, 1.015]}
