"""The gap: statistics on hand-made frames, compute_gap/HTML on z-buffer renders, real-folder errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import SynthloopError
from synthloop.gap.compute import GapOptions, compute_gap
from synthloop.gap.html import write_report
from synthloop.gap.stats import measure_dataset, normalised_differences, summarize_measurements
from synthloop.generators.generate import generate_frames
from synthloop.geometry.masks import mask_to_rle
from synthloop.importers.images import load_image_folder, load_labeled_or_folder
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_to_dict


def _frame(tmp: Path, name: str, boxes: list[tuple[int, int, int, int]], colour=(200, 30, 30)) -> Frame:
    w, h = 100, 80
    rgb = np.full((h, w, 3), 240, dtype=np.uint8)
    objs = []
    for x1, y1, x2, y2 in boxes:
        m = np.zeros((h, w), dtype=bool)
        m[y1:y2, x1:x2] = True
        rgb[m] = colour
        objs.append(
            ObjectAnnotation(category_id=1, bbox=(x1, y1, x2, y2), area=float(m.sum()), mask=mask_to_rle(m))
        )
    path = tmp / f"{name}.png"
    Image.fromarray(rgb).save(path)
    return Frame(frame_id=name, image_path=path, width=w, height=h, objects=objs)


def test_statistics_of_hand_made_frames(tmp_path):
    ds = Dataset(
        categories=[Category(1, "thing")],
        frames=[
            _frame(tmp_path, "a", [(10, 10, 30, 20)]),
            _frame(tmp_path, "b", [(0, 40, 10, 60), (50, 50, 60, 60)]),
        ],
    )
    m = measure_dataset(ds)
    s = summarize_measurements(m)
    assert m.objects["thing"]["rel_size"] == pytest.approx([0.2, 0.2, 0.1])
    assert m.objects["thing"]["aspect"] == pytest.approx([2.0, 2.0, 1.0])
    assert m.counts["thing"] == [1, 2]
    assert s["touching_border"] == pytest.approx(1 / 3)
    assert s["coverage"]["median"] == pytest.approx((200 / 8000 + 300 / 8000) / 2)
    hsv = s["classes"]["thing"]["hsv"]
    assert hsv["h_mean"] == pytest.approx(0.0, abs=1e-6) and hsv["s_mean"] == pytest.approx(170 / 200)
    assert s["background"]["value"]["mean"] == pytest.approx(240 / 255)
    diffs = normalised_differences(m, m)
    assert diffs and all(v == pytest.approx(0.0) for v in diffs.values())
    other = measure_dataset(
        Dataset(
            categories=[Category(1, "thing")],
            frames=[_frame(tmp_path, "c", [(10, 10, 50, 30)], (30, 30, 200))],
        )
    )
    shifted = normalised_differences(m, other)
    assert shifted["thing/rel_size"] > 1 and shifted["thing/hue"] > 1


def test_overlap_statistic_is_the_largest_box_iou_with_a_neighbour(tmp_path):
    """Two boxes sharing a 10x10 corner (IoU 100 / 700), one alone: the overlap samples, and a
    set of lone objects is one real spread away from touching pairs."""
    pair = [(10, 10, 30, 30), (20, 20, 40, 40)]
    ds = Dataset(
        categories=[Category(1, "thing")],
        frames=[_frame(tmp_path, "p", pair), _frame(tmp_path, "q", [(60, 10, 80, 30)])],
    )
    m = measure_dataset(ds, colour=False)
    assert m.objects["thing"]["overlap"] == pytest.approx([100 / 700, 100 / 700, 0.0])
    lone = measure_dataset(
        Dataset(categories=[Category(1, "thing")], frames=[_frame(tmp_path, "r", [(5, 5, 20, 20)])]),
        colour=False,
    )
    assert lone.objects["thing"]["overlap"] == [0.0]
    assert summarize_measurements(m)["classes"]["thing"]["overlap"]["max"] == pytest.approx(100 / 700)
    d = normalised_differences(m, lone)["thing/overlap"]
    spread = float(np.std([100 / 700, 100 / 700, 0.0]))
    assert d == pytest.approx(0.75 * (100 / 700) / spread, rel=0.05)  # W1 of matched quantiles


def _render(tmp: Path, name: str, recipe, frames: int, factory) -> Path:
    out = tmp / name
    res = generate_frames(recipe, 0, range(frames), out, renderer_factory=factory, quiet=True)
    assert not res.failed
    return out


def test_compute_gap_finds_a_planted_colour_hole_and_writes_the_report(
    tmp_path, zbuffer_renderer, colour_features
):
    base = load_recipe("shapes")
    data = recipe_to_dict(base)
    data["classes"][0]["material"]["hue"] = {"uniform": [0.6, 0.65]}  # real spheres are blue
    blue = recipe_from_dict(data)
    synth = load_dataset(_render(tmp_path, "synth", base, 6, zbuffer_renderer))
    real = load_dataset(_render(tmp_path, "real", blue, 4, zbuffer_renderer))
    rep = compute_gap(synth, real, colour_features, labeled=True, options=GapOptions(n_boot=20))
    assert rep.holes["sphere"]["fraction"] > 0.5  # no blue sphere among the synthetic crops
    assert rep.holes["box"]["fraction"] < rep.holes["sphere"]["fraction"]
    assert rep.kid_crops["sphere"].value > rep.kid_crops["box"].value
    assert rep.differences["sphere/hue"] > 1.0
    js, page = write_report(rep, tmp_path / "out")
    data = json.loads(js.read_text())
    assert data["kid"]["crops"]["sphere"]["value"] == pytest.approx(rep.kid_crops["sphere"].value)
    text = page.read_text()
    assert "coverage holes" in text and "data:image/png;base64," in text and "http" not in text
    # unlabeled real photos: image-level only
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in real.frames:
        shutil.copy(f.image_path, folder / f.image_path.name)
    photos, labeled = load_labeled_or_folder(folder)
    assert not labeled and len(photos.frames) == 4
    rep2 = compute_gap(synth, photos, colour_features, labeled=False, options=GapOptions(n_boot=10))
    assert rep2.kid_image is not None and rep2.kid_crops == {} and "image_value" in rep2.differences


def test_bad_real_folders(tmp_path):
    with pytest.raises(SynthloopError, match="no images"):
        load_image_folder(tmp_path)
    with pytest.raises(SynthloopError, match="cannot read image folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SynthloopError, match="cannot read image"):
        load_image_folder(tmp_path)
