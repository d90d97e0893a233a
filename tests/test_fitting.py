"""Recipe fitting: the search space, the seeded search moving toward a planted target, journal resume
(nothing evaluated or rendered twice), and a Blender-free end-to-end fit on z-buffer renders."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthloop.commands.recipes import refuse_held_out
from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Category, Dataset
from synthloop.errors import SynthloopError
from synthloop.fitting.fit import (
    FitSettings,
    candidates_of,
    check_classes,
    fit_recipe,
    fitted_header,
    fitted_name,
    select_confirmed,
    write_fitted,
)
from synthloop.fitting.objective import objective
from synthloop.fitting.search import Journal, run_search
from synthloop.fitting.space import (
    DEFAULT_KNOBS,
    build_recipe,
    find_knobs,
    knob_value,
    start_params,
    with_dormant_arrangement,
)
from synthloop.generators.generate import generate_frames
from synthloop.scenes.recipe import (
    MaterialConfig,
    field_range,
    load_recipe,
    recipe_from_dict,
    recipe_hash,
    recipe_to_dict,
)
from synthloop.scenes.sampler import sample_scene

TARGET = 0.64  # planted camera distance centre (the shapes recipe has 0.525)
KEY = "camera.distance:centre"


def test_space_reports_what_cannot_be_fitted_and_starts_at_the_original():
    rec = load_recipe("tabletop")
    knobs, notes = find_knobs(rec, ["camera.distance", "classes[*].count", "world.value", "nope.x"])
    assert [k.label for k in knobs] == [
        "camera.distance", "classes[date].count", "classes[fig].count", "classes[hazelnut].count"
    ]  # fmt: skip
    assert any("world.value: cannot be fitted (a constant)" in n for n in notes)
    assert any(n.startswith("nope.x: no such parameter") for n in notes)
    same = build_recipe(recipe_to_dict(rec), knobs, start_params(knobs), source="t")
    assert recipe_hash(same) == recipe_hash(rec)
    hazel = knobs[3]  # count uniform [0, 5]: a narrow setting near 0 still holds an integer
    d = knob_value(hazel, {hazel.dims[0].name: 0.2})
    assert d["uniform"][0] <= 0 <= d["uniform"][1] or d["uniform"][0] == d["uniform"][1] == 0.0


def test_a_knob_pattern_selects_a_class_by_its_name_as_labels_print_it():
    """`classes[hazelnut].x` (the label a fit prints) selects that class, like `classes[2].x`."""
    rec = load_recipe("tabletop")
    by_name, _ = find_knobs(rec, ["classes[hazelnut].material.roughness", "classes[fig].count"])
    by_index, _ = find_knobs(rec, ["classes[2].material.roughness", "classes[1].count"])
    assert [k.label for k in by_name] == ["classes[hazelnut].material.roughness", "classes[fig].count"]
    assert [k.path for k in by_name] == [k.path for k in by_index]
    knobs, notes = find_knobs(rec, ["classes[walnut].count"])
    assert knobs == [] and notes[0].startswith("classes[walnut].count: no such parameter")
    with pytest.raises(SynthloopError, match="bad knob pattern"):
        find_knobs(rec, ["classes[hazel nut].count"])


def test_the_camera_sensor_can_be_fitted_inside_its_valid_ranges():
    d = recipe_to_dict(load_recipe("shapes"))
    d["camera"]["sensor"] = {"noise_std": {"uniform": [0, 4]}, "jpeg_quality": {"uniform": [85, 95]}}
    rec = recipe_from_dict(d)
    knobs, notes = find_knobs(rec, ["camera.sensor.noise_std", "camera.sensor.jpeg_quality"])
    assert not notes and [k.label for k in knobs] == ["camera.sensor.noise_std", "camera.sensor.jpeg_quality"]
    for ends in ("low", "high"):
        params = {dim.name: getattr(dim, ends) for k in knobs for dim in k.dims}
        sensor = build_recipe(recipe_to_dict(rec), knobs, params, source="t").camera.sensor
        assert sensor is not None and sensor.jpeg_quality is not None
        q = sensor.jpeg_quality.support()
        assert 1 <= q.low <= q.high <= 100 and sensor.noise_std.support().low >= 0


def test_every_numeric_material_field_can_be_fitted_near_its_lower_bound():
    """A narrow range near 0 makes the search reach below 0; the space must clip it to each field's
    valid range (a field missing from the space's bounds is reported as not fittable)."""
    d = recipe_to_dict(load_recipe("tabletop"))
    material = d["classes"][2]["material"]
    fields = [f for f in MaterialConfig.model_fields if f not in ("pattern", "texture_folder")]
    assert {"cap_fraction", "cap_rim", "cap_value_scale", "color2_value_scale", "roughness"} <= set(fields)
    for field in fields:
        material[field] = {"uniform": [0.02, 0.1]}
    rec = recipe_from_dict(d)
    knobs, notes = find_knobs(rec, [f"classes[hazelnut].material.{f}" for f in fields])
    assert not notes and len(knobs) == len(fields)
    low = {dim.name: dim.low for k in knobs for dim in k.dims}
    build_recipe(recipe_to_dict(rec), knobs, low, source="t")  # validates


@pytest.mark.parametrize(
    "path",
    [
        ("camera", "fov_deg"),
        ("camera", "elevation_deg"),
        ("camera", "distance"),
        ("classes", 0, "count"),
        ("classes", 0, "material", "roughness"),
        ("classes", 0, "material", "bump_scale"),
        ("classes", 0, "shape", "wrinkle_amplitude"),
        ("lights", "color_temperature_k"),
        ("arrangement", "pile_size"),
    ],
)
def test_the_declared_range_of_a_field_is_what_its_validators_accept(path):
    """field_range reads the bounds from the recipe model, so a value at each declared end validates,
    a value just beyond it does not, and an integer field refuses a fraction."""
    valid = field_range(path)
    d = recipe_to_dict(load_recipe("tabletop"))
    d["arrangement"] = {"pile_fraction": 0.0, "pile_size": 3, "contact_gap": 0.0}

    def check(value: float) -> None:
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        recipe_from_dict(copy.deepcopy(d))

    inside = [valid.low + (1e-6 if valid.low_open else 0.0)] + (
        [valid.high] if math.isfinite(valid.high) else []
    )
    for value in inside:
        check(value)
    outside = [valid.low - 1.0] if math.isfinite(valid.low) else []
    outside += [valid.low] if valid.low_open else []
    outside += [valid.high + 1.0] if math.isfinite(valid.high) else []
    outside += [valid.low + 1.5] if valid.integer else []
    assert outside, "every field here has a bound"
    for value in outside:
        with pytest.raises(SynthloopError):
            check(value)


def test_a_recipe_without_piles_is_fitted_from_a_dormant_arrangement():
    """The dormant block renders the original scenes, its pile fraction is searched over [0, 1]
    from 0, and a high setting piles objects."""
    rec = load_recipe("tabletop")
    assert rec.arrangement is None
    assert with_dormant_arrangement(rec, ["camera.distance"]) is rec
    dormant = with_dormant_arrangement(rec, DEFAULT_KNOBS)
    for f in range(3):
        a, b = sample_scene(rec, 7, f), sample_scene(dormant, 7, f)
        assert [o.location for o in a.objects] == [o.location for o in b.objects]
        assert a.camera == b.camera
    knobs, notes = find_knobs(dormant, ["arrangement.pile_fraction"])
    assert not notes
    (dim,) = knobs[0].dims
    assert (dim.low, dim.high, dim.start) == (0.0, 1.0, 0.0)
    piled = build_recipe(recipe_to_dict(dormant), knobs, {dim.name: 0.9}, source="t")
    assert piled.arrangement is not None
    assert sum(int(o.params["in_pile"]) for f in range(3) for o in sample_scene(piled, 7, f).objects) >= 4


def test_confirmation_keeps_the_trial_that_stays_good_on_fresh_renders():
    """A fluke (best in the search, worse than the original on new renders) loses to a trial that
    is good on both; with no candidate better on the new renders the original (trial 0) is kept."""
    fluke = {"trial": 7, "search": 0.70, "confirmed": 1.25}
    steady = {"trial": 3, "search": 0.85, "confirmed": 0.90}
    assert select_confirmed([fluke, steady]) == 3
    assert select_confirmed([fluke]) == 0
    assert select_confirmed([]) == 0
    assert select_confirmed([steady, {**steady, "trial": 9}]) == 3


def _toy_evaluate(calls: list[int]):
    def evaluate(n: int, params: dict[str, float]) -> dict:
        calls.append(n)
        return {"kid_image": (params[KEY] - TARGET) ** 2 + 1e-4}

    return evaluate


def test_search_moves_a_parameter_toward_a_planted_target(tmp_path):
    knobs, _ = find_knobs(load_recipe("shapes"), ["camera.distance"])
    start = knobs[0].dims[0].start
    calls: list[int] = []
    res = run_search(knobs, _toy_evaluate(calls), budget=25, seed=0, journal=Journal(tmp_path / "j"))
    assert calls == list(range(25)) and res.baseline.objective == pytest.approx(1.0)
    best = res.best.params[KEY]
    assert abs(best - TARGET) < abs(start - TARGET) / 4
    assert res.best.objective < 0.1
    again = run_search(knobs, _toy_evaluate([]), budget=25, seed=0, journal=Journal(tmp_path / "k"))
    assert [t.params for t in again.trials] == [t.params for t in res.trials]  # seeded


def test_a_killed_search_resumes_without_evaluating_done_trials(tmp_path):
    knobs, _ = find_knobs(load_recipe("shapes"), ["camera.distance", "classes[*].count"])
    journal = Journal(tmp_path / "j")
    calls: list[int] = []

    def dies_at_7(n, params):
        if n == 7:
            raise KeyboardInterrupt
        return _toy_evaluate(calls)(n, params)

    with pytest.raises(KeyboardInterrupt):
        run_search(knobs, dies_at_7, budget=12, seed=3, journal=journal)
    asked_7 = [r for r in journal.records() if r["number"] == 7][0]["params"]
    with open(journal.path, "a") as fh:
        fh.write('{"event": "tell", "numb')  # a line torn by the kill
    resumed: list[int] = []
    seen: dict[int, dict] = {}

    def record(n, params):
        seen[n] = params
        return _toy_evaluate(resumed)(n, params)

    res = run_search(knobs, record, budget=12, seed=3, journal=journal)
    assert resumed == [7, 8, 9, 10, 11] and res.evaluated == resumed
    assert seen[7] == asked_7  # the interrupted trial is re-asked with its own parameters
    assert [t.number for t in res.trials] == list(range(12))


def test_objective_is_relative_to_the_original():
    base = {"kid_image": 0.2, "kid_crops": {"a": 10.0, "b": 4.0}, "stats": 0.5}
    assert objective(base, base) == pytest.approx(1.0)
    half = {"kid_image": 0.1, "kid_crops": {"a": 5.0, "b": 2.0}, "stats": 0.25}
    assert objective(half, base) == pytest.approx(0.5)
    missing = {"kid_image": 0.1, "kid_crops": {"a": 5.0, "b": None}, "stats": 0.25}
    assert objective(missing, base) > objective(half, base)


def test_fit_end_to_end_on_zbuffer_renders_resumes_without_rendering(
    tmp_path, zbuffer_renderer, colour_features
):
    shapes = load_recipe("shapes")
    data = recipe_to_dict(shapes)
    data["camera"]["distance"] = {"uniform": [0.35, 0.4]}  # the "real" photos are closer
    real_dir = tmp_path / "real"
    generate_frames(
        recipe_from_dict(data), 9, range(4), real_dir, renderer_factory=zbuffer_renderer, quiet=True
    )
    real = load_dataset(real_dir)
    settings = FitSettings(budget=4, frames=3, size=(64, 48), knobs=("camera.distance", "lights.nope"))
    kwargs = dict(labeled=True, settings=settings, journal_dir=tmp_path / "journal", embed=colour_features)
    zbuffer_renderer.renders = 0
    outcome = fit_recipe(shapes, real, renderer_factory=zbuffer_renderer, **kwargs)
    rendered = zbuffer_renderer.renders
    candidates = candidates_of(outcome.search, settings.rerank)
    assert [r["trial"] for r in outcome.confirmed] == [t.number for t in candidates]
    assert rendered == 4 * 3 + 3 * (1 + len(candidates))  # trials + the original and candidates again
    assert outcome.selected.number == select_confirmed(outcome.confirmed)
    assert any("lights.nope" in n for n in outcome.notes)
    out = write_fitted(outcome, tmp_path / "fitted.yaml", fitted_header(outcome, "shapes", "real", settings))
    text = out.read_text()
    assert text.startswith("# Fitted by `synthloop recipes fit shapes") and "Selected: trial" in text
    fitted = load_recipe(out)
    assert fitted.name == "shapes_fitted" and fitted.resolution == shapes.resolution
    assert fitted_name(fitted.name) == "shapes_fitted"  # fitting it again keeps the name
    again = fit_recipe(shapes, real, renderer_factory=zbuffer_renderer, **kwargs)
    assert zbuffer_renderer.renders == rendered and again.search.evaluated == []
    assert json.loads((tmp_path / "journal" / "meta.json").read_text())["frames"] == 3
    with pytest.raises(SynthloopError, match="another fit"):
        other = FitSettings(budget=4, frames=5, size=(64, 48))
        fit_recipe(shapes, real, renderer_factory=zbuffer_renderer, **{**kwargs, "settings": other})


def test_bad_real_inputs():
    shapes = load_recipe("shapes")
    wrong = Dataset(categories=[Category(1, "sphere"), Category(2, "cone")], frames=[])
    with pytest.raises(SynthloopError, match=r"not in the real data: box, cylinder; not in the recipe: cone"):
        check_classes(shapes, wrong, "train.json")
    for held_out in ("val.json", "fruits-nuts/test.json", "instances_val2017.json"):
        with pytest.raises(SynthloopError, match="evaluation split"):
            refuse_held_out(Path(held_out))
    refuse_held_out(Path("fruits-nuts/train.json"))


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, zbuffer_renderer):
    from typer.testing import CliRunner

    from synthloop.cli import app

    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(photo)
    coco = {
        "images": [{"id": 1, "file_name": "p.png", "width": 16, "height": 12}],
        "annotations": [],
        "categories": [{"id": 1, "name": "sphere"}, {"id": 2, "name": "cone"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))
    out = tmp_path / "fitted.yaml"
    (tmp_path / "empty").mkdir()
    synth = str(tmp_path / "synth")
    generate_frames(load_recipe("shapes"), 0, range(1), synth, renderer_factory=zbuffer_renderer, quiet=True)
    fit = ["recipes", "fit", "shapes", "--budget", "2", "--out", str(out), "--real"]
    cases = [
        ([*fit, str(tmp_path / "train.json")], "not in the recipe: cone"),
        ([*fit, str(tmp_path / "val.json")], "evaluation split"),
        (["gap", synth, str(tmp_path / "missing")], "no such file or folder"),
        (["gap", synth, str(tmp_path / "empty")], "no images"),
        (["gap", str(tmp_path / "empty"), synth], "no images"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
