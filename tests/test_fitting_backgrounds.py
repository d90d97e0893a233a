"""Target-domain backgrounds: holes filled only with the photo's own pixels, the object mask, the
metric scale of the textures, and `synthloop recipes backgrounds` end to end and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import synthloop.commands.recipes as recipes_cmd
from synthloop.cli import app
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.errors import SynthloopError
from synthloop.fitting.backgrounds import (
    fill_holes,
    metres_per_pixel,
    objects_mask,
    square_centre,
    table_outliers,
    texture_scale,
    with_backgrounds,
)
from synthloop.geometry.masks import mask_to_rle
from synthloop.scenes.recipe import load_recipe, yaml_comment


def _position_image(h: int, w: int) -> np.ndarray:
    """Each pixel's colour encodes its own position: R = y, G = x (h, w <= 256)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 7)], axis=-1).astype(np.uint8)


def _holes(h: int, w: int) -> np.ndarray:
    hole = np.zeros((h, w), dtype=bool)
    hole[20:40, 30:60] = True
    hole[70:90, 100:130] = True
    hole[0:10, 0:10] = True  # at the border
    return hole


def test_every_filled_pixel_is_a_real_pixel_from_outside_the_holes():
    h, w = 120, 160
    rgb, hole = _position_image(h, w), _holes(h, w)
    out = fill_holes(rgb, hole, np.random.default_rng(0), seam_px=0)
    assert np.array_equal(out[~hole], rgb[~hole])  # the rest is untouched
    src_y, src_x = out[hole][:, 0].astype(int), out[hole][:, 1].astype(int)
    assert not hole[src_y, src_x].any()  # each filled pixel came from a non-hole pixel
    assert (out[hole][:, 2] == 7).all()  # copied, not blended
    moved = (src_y != np.nonzero(hole)[0]) | (src_x != np.nonzero(hole)[1])
    assert moved.all()


def test_fill_is_seeded_and_seams_stay_near_the_holes():
    rng_img = np.random.default_rng(3)
    rgb = rng_img.integers(0, 100, size=(96, 128, 3), dtype=np.uint8)
    hole = _holes(96, 128)
    rgb[hole] = 255
    a = fill_holes(rgb, hole, np.random.default_rng(5), seam_px=2)
    b = fill_holes(rgb, hole, np.random.default_rng(5), seam_px=2)
    assert np.array_equal(a, b)
    assert a.max() < 255  # nothing of the removed objects is left
    near = np.zeros_like(hole)
    ys, xs = np.nonzero(hole)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            near[np.clip(ys + dy, 0, 95), np.clip(xs + dx, 0, 127)] = True
    assert np.array_equal(a[~near], rgb[~near])


def test_fill_refuses_a_photo_with_nothing_left_or_a_wrong_mask():
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    with pytest.raises(SynthloopError, match="nothing of the photo"):
        fill_holes(rgb, np.ones((10, 12), dtype=bool), np.random.default_rng(0))
    with pytest.raises(SynthloopError, match="does not match"):
        fill_holes(rgb, np.zeros((12, 10), dtype=bool), np.random.default_rng(0))


def _frame(objects: list[ObjectAnnotation], w: int = 200, h: int = 100) -> Frame:
    return Frame(frame_id="f", image_path=Path("/nonexistent.png"), width=w, height=h, objects=objects)


def test_objects_mask_uses_masks_or_boxes_and_grows_by_the_margin():
    m = np.zeros((100, 200), dtype=bool)
    m[10:20, 10:30] = True
    with_mask = ObjectAnnotation(category_id=1, bbox=(10, 10, 30, 20), area=200, mask=mask_to_rle(m))
    box_only = ObjectAnnotation(category_id=1, bbox=(100, 50, 120, 60), area=200)
    hole = objects_mask(_frame([with_mask, box_only]), dilate_px=0)
    assert hole.sum() == 200 + 200 and hole[15, 20] and hole[55, 110]
    grown = objects_mask(_frame([with_mask]), dilate_px=3)
    assert grown.sum() == (10 + 6) * (20 + 6)


def test_metric_scale_from_real_boxes_and_recipe_sizes():
    objs = [ObjectAnnotation(category_id=1, bbox=(0, 0, 100, 40), area=1.0) for _ in range(3)]
    objs.append(ObjectAnnotation(category_id=2, bbox=(0, 0, 10, 10), area=1.0))  # a class of no size
    real = Dataset(categories=[Category(1, "date"), Category(2, "other")], frames=[_frame(objs)])
    m_px = metres_per_pixel(real, {"date": 0.04})
    assert m_px == pytest.approx(0.0004)
    assert texture_scale(600, m_px) == pytest.approx(1 / 0.24)
    with pytest.raises(SynthloopError, match="known size"):
        metres_per_pixel(real, {"hazelnut": 0.02})
    with pytest.raises(SynthloopError):
        texture_scale(600, float("nan"))
    assert square_centre(np.zeros((60, 80, 3))).shape == (60, 60, 3)


def test_cli_writes_a_recipe_with_the_textures_and_refuses_bad_input(tmp_path, data):
    out = tmp_path / "bg" / "with_tables.yaml"
    res = CliRunner().invoke(
        app, ["recipes", "backgrounds", "tabletop", "--real", str(data["real"]), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    rec = load_recipe(out)
    folder = Path(rec.support.material.texture_folder or "")
    assert folder == (tmp_path / "bg" / "with_tables_textures").resolve()
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == summary["images"] == 4
    w, h = Image.open(files[0]).size
    assert w == h
    assert rec.support.material.image_scale.sample_float(np.random.default_rng(0)) == pytest.approx(
        summary["image_scale"], rel=1e-3
    )
    assert out.read_text().startswith("# Support textures from")
    relit = tmp_path / "bg" / "relit.yaml"
    args = ["recipes", "backgrounds", "tabletop", "--real", str(data["real"]), "--out", str(relit)]
    assert CliRunner().invoke(app, [*args, "--relight"]).exit_code == 0
    assert "--relight`" in relit.read_text().splitlines()[0]
    relit_files = sorted((tmp_path / "bg" / "relit_textures").glob("*.jpg"))
    assert [f.name for f in relit_files] == [f.name for f in files]
    assert any(a.read_bytes() != b.read_bytes() for a, b in zip(files, relit_files, strict=True))
    # a held-out split and an unlabeled folder: one line, exit 2, nothing written
    for real, words in ((tmp_path / "val.json", "evaluation split"), (files[0].parent, "needs labeled")):
        bad = tmp_path / "bad" / "r.yaml"
        res = CliRunner().invoke(
            app, ["recipes", "backgrounds", "tabletop", "--real", str(real), "--out", str(bad)]
        )
        assert res.exit_code == 2 and words in res.output, res.output
        assert not bad.parent.exists() or not any(bad.parent.iterdir())


def test_cli_publishes_nothing_when_the_recipe_would_be_invalid(tmp_path, data, monkeypatch):
    """The recipe is validated against the staged textures; an invalid one leaves no texture
    folder and no recipe behind."""

    def bad_scale(recipe_dict: dict, folder: str, image_scale: float) -> dict:
        return with_backgrounds(recipe_dict, folder, -1.0)

    monkeypatch.setattr(recipes_cmd, "with_backgrounds", bad_scale)
    out = tmp_path / "bg" / "r.yaml"
    res = CliRunner().invoke(
        app, ["recipes", "backgrounds", "tabletop", "--real", str(data["real"]), "--out", str(out)]
    )
    assert res.exit_code == 2 and "image_scale" in res.output, res.output
    assert list((tmp_path / "bg").iterdir()) == []


def test_header_values_cannot_become_yaml():
    header = yaml_comment(["made from `x --real a\nname: injected`", "", "two\r\nlines"])
    assert all(line.startswith("#") for line in header.splitlines())
    assert yaml.safe_load(header + "name: kept\n") == {"name": "kept"}


def test_fill_works_on_a_strip_narrower_than_the_offsets():
    rgb = _position_image(12, 200)
    hole = np.zeros((12, 200), dtype=bool)
    hole[4:8, 90:110] = True
    out = fill_holes(rgb, hole, np.random.default_rng(1), seam_px=0)
    src_y, src_x = out[hole][:, 0].astype(int), out[hole][:, 1].astype(int)
    assert not hole[src_y, src_x].any()


def _lit_table(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A grainy grey table (its reflectance, around 0.5) under light that rises from 80 at the left
    edge to 240 at the right: the photo (uint8) and the light (H, W)."""
    grain = 0.5 + 0.05 * np.random.default_rng(2).standard_normal((h, w))
    light = np.broadcast_to(np.linspace(80.0, 240.0, w), (h, w))
    photo = np.clip(grain * light, 0, 255)[..., None].repeat(3, axis=2)
    return photo.astype(np.uint8), light


def test_relit_fill_matches_the_light_at_the_hole():
    h, w = 96, 256
    rgb, light = _lit_table(h, w)
    hole = np.zeros((h, w), dtype=bool)
    hole[30:60, 200:230] = True  # in the bright part: most sources are darker
    truth = (0.5 * light[hole]).mean()
    errs = {}
    for sigma in (None, 12.0):
        out = fill_holes(rgb, hole, np.random.default_rng(0), seam_px=0, light_sigma_px=sigma)
        assert np.array_equal(out[~hole], rgb[~hole])
        errs[sigma] = abs(out[hole].astype(float).mean() - truth)
    assert errs[12.0] < 0.3 * errs[None] and errs[12.0] < 4.0


def test_relit_fill_copies_no_piece_of_an_unlabeled_foil():
    h, w = 96, 256
    rgb, _ = _lit_table(h, w)
    rgb[40:56, 60:80] = (255, 200, 0)  # a gold foil sweet, not labeled
    hole = np.zeros((h, w), dtype=bool)
    hole[30:70, 120:160] = True
    flagged = table_outliers(rgb, ~hole, 12.0)
    assert flagged[40:56, 60:80].all() and flagged.mean() < 0.05  # the foil, not the grain
    for seed in range(4):
        out = fill_holes(rgb, hole, np.random.default_rng(seed), seam_px=0, light_sigma_px=12.0)
        filled = out[hole].astype(int)
        assert (filled[:, 0] - filled[:, 2] < 30).all()  # grey table only: no yellow foil pixel
        assert np.array_equal(out[40:56, 60:80], rgb[40:56, 60:80])  # the foil itself stays
