"""The bundled ``tabletop`` recipe stays statistically close to its real target domain.

Blender-free: frames are sampled as SceneSpecs and every object's mesh is projected with the
spec's pinhole camera (:mod:`synthloop.geometry.camera`); occlusion is ignored (objects never
overlap on the table, and the camera looks almost straight down).

The real reference numbers come from the fruits-nuts *training* split only
(``../shared/data/real/fruits-nuts/train.json``: 8 photos, 800x600, 73 objects; the
evaluation split val.json is never used), measured by ``benchmarks/domain_gap.py`` with the same
definitions: relative size = the box's long side / image width; counts per image including
images without the class. ``test_reference_numbers_match_the_real_training_split`` re-measures
them when the data is present, so the constants below cannot drift from their source.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.gap import stats as gap_stats
from synthloop.geometry.camera import intrinsics, project, world_to_cam_cv
from synthloop.geometry.masks import mask_to_rle
from synthloop.geometry.meshes import mesh_cache
from synthloop.geometry.transforms import object_to_world, transform_points
from synthloop.scenes.placement import footprint_radius
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.sampler import sample_scene

REPO = Path(__file__).resolve().parents[1]
REAL_TRAIN = REPO.parent / "shared" / "data" / "real" / "fruits-nuts" / "train.json"

# fruits-nuts train.json (benchmarks/domain_gap.py): box long side / image width, per class.
REAL_REL_SIZE = {  # (q1, median, q3)
    "date": (0.187, 0.202, 0.222),
    "fig": (0.150, 0.169, 0.203),
    "hazelnut": (0.096, 0.105, 0.117),
}
REAL_COUNT_MEAN = {"date": 4.00, "fig": 2.50, "hazelnut": 2.62}  # objects per image
REAL_TOTAL_MEAN = 9.12  # labeled objects per image (range 2-13)
REAL_TOTAL_RANGE = (2, 13)
REAL_FIG_ASPECT_MEDIAN = 1.51  # box long/short side: figs mostly lie on their side, tapered
REAL_TOUCHING_BORDER = 1 / 73  # objects whose box comes within 2 px of the image border
BORDER_LIMIT = 0.1  # synthetic share allowed (randomized arrangements; the real share is 1 object)

SIZE_TOL = 0.20  # |synthetic median / real median - 1|
COUNT_TOL = 0.25  # |synthetic mean / real mean - 1|
FRAMES = 40
SEED = 0


def projected_box(spec, obj, max_segments: int = 24) -> tuple[float, float, float, float]:
    """Box (x1, y1, x2, y2) of the object's projected mesh vertices, not clipped (pixels).

    The mesh is rebuilt with at most ``max_segments`` (speed): its 3D extents are the shape's
    dimensions at any resolution; the projected box moves by ~1 px (at most ~4 px of 640, i.e.
    < 1 % of the width, measured against full-resolution meshes)."""
    w, h = spec.render.width, spec.render.height
    mesh = mesh_cache(obj.shape.model_copy(update={"segments": min(obj.shape.segments, max_segments)}))
    verts = transform_points(object_to_world(obj.location, obj.rotation_quat_wxyz), mesh.vertices)
    uv, z = project(intrinsics(spec.camera, w, h), world_to_cam_cv(spec.camera), verts)
    assert np.all(z > 0), "object behind the camera"
    return float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max())


@pytest.fixture(scope="module")
def sampled():
    """Per-class relative sizes and aspects, per-frame counts, border contacts of FRAMES frames."""
    recipe = load_recipe("tabletop")
    names = [c.name for c in recipe.classes]
    rel = {n: [] for n in names}
    aspect = {n: [] for n in names}
    counts = {n: [] for n in names}
    totals, border, n_obj = [], 0, 0
    for i in range(FRAMES):
        spec = sample_scene(recipe, SEED, i)
        w, h = spec.render.width, spec.render.height
        per = dict.fromkeys(names, 0)
        for obj in spec.objects:
            if obj.category_id is None:
                continue
            x1, y1, x2, y2 = projected_box(spec, obj)
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if cx2 <= cx1 or cy2 <= cy1:
                continue  # entirely outside the image: not an object of this frame
            name = names[obj.category_id - 1]
            bw, bh = cx2 - cx1, cy2 - cy1
            rel[name].append(max(bw, bh) / w)
            aspect[name].append(max(bw, bh) / min(bw, bh))
            per[name] += 1
            n_obj += 1
            border += int(x1 < 0.5 or y1 < 0.5 or x2 > w - 0.5 or y2 > h - 0.5)
        for n in names:
            counts[n].append(per[n])
        totals.append(sum(per.values()))
    return {"rel": rel, "aspect": aspect, "counts": counts, "totals": totals, "border": border / n_obj}


@pytest.mark.parametrize("name", sorted(REAL_REL_SIZE))
def test_median_relative_size_matches_real(sampled, name):
    med = float(np.median(sampled["rel"][name]))
    assert abs(med / REAL_REL_SIZE[name][1] - 1) <= SIZE_TOL, (name, med)


@pytest.mark.parametrize("name", sorted(REAL_REL_SIZE))
def test_relative_size_distribution_covers_the_real_quartiles(sampled, name):
    # Randomization is the point: the synthetic spread must reach past the real inter-quartile range.
    q1, _, q3 = REAL_REL_SIZE[name]
    lo, hi = np.percentile(sampled["rel"][name], [10, 90])
    assert lo < q1 and hi > q3, (name, lo, hi)


@pytest.mark.parametrize("name", sorted(REAL_COUNT_MEAN))
def test_objects_per_image_per_class_match_real(sampled, name):
    mean = float(np.mean(sampled["counts"][name]))
    assert abs(mean / REAL_COUNT_MEAN[name] - 1) <= COUNT_TOL, (name, mean)


def test_total_objects_per_image_match_and_vary(sampled):
    totals = np.asarray(sampled["totals"])
    assert abs(totals.mean() / REAL_TOTAL_MEAN - 1) <= COUNT_TOL, totals.mean()
    # sparse and crowded tables both occur (real: 2 .. 13 labeled objects)
    assert totals.min() <= REAL_TOTAL_RANGE[0] + 3 and totals.max() >= REAL_TOTAL_RANGE[1] - 3, totals
    assert len(set(totals.tolist())) >= 5


def test_figs_look_elongated_and_are_seen_both_ways(sampled):
    asp = np.asarray(sampled["aspect"]["fig"])
    assert np.median(asp) >= 0.8 * REAL_FIG_ASPECT_MEDIAN, np.median(asp)
    assert np.mean(asp < 1.15) >= 0.15  # some figs stand upright (round from above)


def test_objects_stay_inside_the_photo(sampled):
    # Real photos frame the whole table-top arrangement: 1 of 73 boxes touches the border.
    assert sampled["border"] <= BORDER_LIMIT, sampled["border"]


def test_dense_placement_never_makes_meshes_touch():
    # The recipe lets the conservative footprint circles overlap by -min_gap (placement.min_gap < 0).
    # Safe as long as every mesh keeps -min_gap / 2 of margin inside its circle: its true
    # footprint (the circle through its farthest vertex, horizontally) then never meets another's.
    recipe = load_recipe("tabletop")
    allowance = -recipe.placement.min_gap
    assert allowance > 0
    for i in range(6):
        spec = sample_scene(recipe, SEED + 1, i)
        circles = []
        for obj in spec.objects:
            mesh = mesh_cache(obj.shape)
            verts = transform_points(object_to_world(obj.location, obj.rotation_quat_wxyz), mesh.vertices)
            centre = np.asarray(obj.location[:2])
            rho = float(np.hypot(*(verts[:, :2] - centre).T).max())
            margin = footprint_radius(obj.shape.dimensions, obj.rotation_quat_wxyz) - rho
            assert margin >= allowance / 2, (i, obj.name, margin)
            circles.append((centre, rho))
        for a in range(len(circles)):
            for b in range(a + 1, len(circles)):
                (p, ra), (q, rb) = circles[a], circles[b]
                assert np.linalg.norm(p - q) >= ra + rb, (i, a, b)


def test_min_gap_may_be_negative_within_its_bound():
    from synthloop.errors import RecipeError
    from synthloop.scenes.recipe import MIN_GAP_LOWEST, recipe_from_dict, recipe_to_dict

    data = recipe_to_dict(load_recipe("tabletop"))
    data["placement"]["min_gap"] = MIN_GAP_LOWEST
    assert recipe_from_dict(data).placement.min_gap == MIN_GAP_LOWEST
    data["placement"]["min_gap"] = MIN_GAP_LOWEST - 0.001
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(data, source="r.yaml")
    assert err.value.where == "placement.min_gap" and str(err.value).startswith("r.yaml: placement.min_gap:")


# -------------------------------------------------------------------------- reference numbers
def _real_reference(path: Path) -> dict:
    data = json.loads(path.read_text())
    widths = {img["id"]: img["width"] for img in data["images"]}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    rel = {n: [] for n in cats.values()}
    per_image = {img["id"]: dict.fromkeys(cats.values(), 0) for img in data["images"]}
    aspects = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        name = cats[a["category_id"]]
        rel[name].append(max(w, h) / widths[a["image_id"]])
        per_image[a["image_id"]][name] += 1
        if name == "fig":
            aspects.append(max(w, h) / min(w, h))
    return {
        "rel": {n: tuple(float(v) for v in np.percentile(r, [25, 50, 75])) for n, r in rel.items()},
        "count": {n: float(np.mean([p[n] for p in per_image.values()])) for n in cats.values()},
        "total": float(np.mean([sum(p.values()) for p in per_image.values()])),
        "fig_aspect": float(np.median(aspects)),
    }


@pytest.mark.skipif(not REAL_TRAIN.is_file(), reason=f"real training split not found: {REAL_TRAIN}")
def test_reference_numbers_match_the_real_training_split():
    ref = _real_reference(REAL_TRAIN)
    for name, quartiles in REAL_REL_SIZE.items():
        assert ref["rel"][name] == pytest.approx(quartiles, abs=1e-3)
        assert ref["count"][name] == pytest.approx(REAL_COUNT_MEAN[name], abs=0.01)
    assert ref["total"] == pytest.approx(REAL_TOTAL_MEAN, abs=0.01)
    assert ref["fig_aspect"] == pytest.approx(REAL_FIG_ASPECT_MEDIAN, abs=0.01)


# -------------------------------------------------------------------------- benchmark helpers
def test_hsv_and_circular_statistics():
    import colorsys

    dg = gap_stats
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    ours = dg.rgb_to_hsv(rgb)
    ref = np.array([colorsys.rgb_to_hsv(*(c / 255.0)) for c in rgb])
    assert np.allclose(ours, ref, atol=1e-12)
    # red hues either side of 0 average to 0, not 0.5
    mean, std = dg.circular_mean_std(np.array([0.98, 0.02]))
    assert min(mean, 1 - mean) < 1e-9 and 0.015 < std < 0.025
    mean, _ = dg.circular_mean_std(np.array([0.1, 0.9, 0.3]), np.array([1.0, 0.0, 1.0]))
    assert mean == pytest.approx(0.2)


def test_domain_stats_on_a_known_image(tmp_path):
    from PIL import Image

    dg = gap_stats
    w, h = 40, 20
    rgb = np.full((h, w, 3), 200, dtype=np.uint8)  # grey background, value 200/255
    rgb[2:6, 4:12] = (255, 0, 0)  # red object 8x4 px
    img = tmp_path / "a.png"
    Image.fromarray(rgb).save(img)
    grey = tmp_path / "b.png"
    Image.fromarray(np.full((h, w, 3), 200, dtype=np.uint8)).save(grey)
    mask = np.zeros((h, w), dtype=bool)
    mask[2:6, 4:12] = True
    obj = ObjectAnnotation(category_id=1, bbox=(4.0, 2.0, 12.0, 6.0), area=32.0, mask=mask_to_rle(mask))
    ds = Dataset(
        categories=[Category(1, "date"), Category(2, "fig")],
        frames=[Frame("a", img, w, h, objects=[obj]), Frame("b", grey, w, h, objects=[])],
    )
    st = dg.summarize_measurements(dg.measure_dataset(ds))
    date = st["classes"]["date"]
    assert date["rel_size"]["median"] == pytest.approx(8 / 40)
    assert date["aspect"]["median"] == pytest.approx(2.0)
    assert date["count"]["mean"] == pytest.approx(0.5) and st["classes"]["fig"]["count"]["mean"] == 0
    assert st["coverage"]["max"] == pytest.approx(32 / 800) and st["coverage"]["min"] == 0
    assert (
        date["hsv"]["s_mean"] == pytest.approx(1.0)
        and min(date["hsv"]["h_mean"], 1 - date["hsv"]["h_mean"]) < 1e-9
    )
    assert st["background"]["value"]["median"] == pytest.approx(200 / 255)
    checks = dg.gap_checks(st, st)
    assert checks["date"]["rel_size_ok"] and checks["total"]["count_mean_ratio"] == pytest.approx(1.0)
    assert math.isnan(st["classes"]["fig"]["rel_size"]["median"])
