"""KITTI exporter/importer: geometry, text round trip, layouts, bad lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import K, synthetic_dataset
from PIL import Image

from synthloop.dataset.types import Box3D
from synthloop.errors import DatasetError
from synthloop.exporters.kitti import (
    format_label_line,
    kitti_box_from_corners,
    kitti_corners,
    label_fields,
    observation_angle,
    occlusion_level,
    project,
    wrap_angle,
    write_kitti,
)
from synthloop.importers.kitti import load_kitti, parse_calib_K


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


@pytest.mark.parametrize("seed", range(6))
def test_kitti_box_encloses_2d_box_and_alpha(seed):
    rng = np.random.default_rng(seed)
    ry = float(rng.uniform(-math.pi, math.pi))
    tilt = 0.0 if seed == 0 else float(rng.uniform(-0.6, 0.6))  # seed 0: upright object (exact case)
    dims = rng.uniform(0.2, 1.0, 3)  # object's own extents (l, h, w) along local x, y, z
    center = np.array([rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), rng.uniform(3, 6)])
    local = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * dims / 2
    R = _rot("y", ry) @ _rot("x", tilt) @ _rot("z", 0.5 * tilt)
    corners = local @ R.T + center
    uv = project(np.array(K), corners)
    box2d = (uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max())  # tightest possible 2D box
    (h, w, l_), loc = kitti_box_from_corners(corners, ry)
    kc = kitti_corners((h, w, l_), loc, ry)
    kuv = project(np.array(K), kc)
    eps = 1e-9
    assert kuv[:, 0].min() <= box2d[0] + eps and kuv[:, 1].min() <= box2d[1] + eps
    assert kuv[:, 0].max() >= box2d[2] - eps and kuv[:, 1].max() >= box2d[3] - eps
    if tilt == 0.0:  # exact: same dimensions and bottom centre
        assert np.allclose([h, w, l_], [dims[1], dims[2], dims[0]])
        assert np.allclose(loc, center + [0, dims[1] / 2, 0])
    obj_box = Box3D(tuple(center), (h, w, l_), ry, tuple(map(tuple, corners)))
    from synthloop.dataset.types import ObjectAnnotation

    f = label_fields(ObjectAnnotation(category_id=1, bbox=box2d, area=1.0, box3d=obj_box), "x")
    alpha = f[3]
    assert alpha == pytest.approx(wrap_angle(ry - math.atan2(loc[0], loc[2])))
    assert -math.pi <= alpha <= math.pi
    assert f[14] == pytest.approx(wrap_angle(ry))


def test_alpha_and_occlusion_levels():
    assert observation_angle(0.0, 0.0, 5.0) == pytest.approx(0.0)
    assert observation_angle(0.0, 5.0, 5.0) == pytest.approx(-math.pi / 4)
    assert observation_angle(3.0, -5.0, 0.1) == pytest.approx(wrap_angle(3.0 - math.atan2(-5.0, 0.1)))
    assert [occlusion_level(v) for v in (0.0, 0.099, 0.1, 0.49, 0.5, 1.0, None)] == [0, 0, 1, 1, 2, 2, 3]


def _read_labels(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_write_then_parse_gives_same_numbers(tmp_path):
    ds = synthetic_dataset(tmp_path)
    out = write_kitti(ds, tmp_path / "kitti")
    assert sorted(p.name for p in out.iterdir()) == ["calib", "image_2", "label_2"]
    lines = _read_labels(out / "label_2" / "000000.txt")
    assert len(lines) == 2  # the fully hidden fig is left out
    assert all(len(t) == 15 for t in lines)
    assert lines[0][0] == "fig" and lines[1][0] == "hazel_nut"  # lower-cased, spaces -> _
    assert lines[0][1:3] == ["0.00", "0"] and lines[1][2] == "1"  # occlusion 0.35 -> 1
    assert lines[0][4:8] == ["5.00", "10.00", "25.00", "30.00"]
    b = ds.frames[0].objects[0].box3d
    assert [float(v) for v in lines[0][8:11]] == pytest.approx(b.dimensions, abs=0.005)
    assert [float(v) for v in lines[0][11:14]] == pytest.approx(
        (b.center[0], b.center[1] + b.dimensions[0] / 2, b.center[2]), abs=0.005
    )
    K2 = parse_calib_K(out / "calib" / "000000.txt")
    assert np.allclose(K2, K)
    calib = (out / "calib" / "000000.txt").read_text()
    assert [line.split(":")[0] for line in calib.splitlines()] == [
        "P0",
        "P1",
        "P2",
        "P3",
        "R0_rect",
        "Tr_velo_to_cam",
        "Tr_imu_to_velo",
    ]
    lines1 = _read_labels(out / "label_2" / "000001.txt")
    assert lines1[0][1:3] == ["0.50", "2"]
    assert lines1[1] == ["DontCare", "-1.00", "-1", "-10.00", "30.00", "30.00", "62.00", "46.00"] + [
        "-1.00"
    ] * 3 + ["-1000.00"] * 3 + ["-10.00"]  # the crowd region
    ds2 = load_kitti(out)
    assert [c.name for c in ds2.categories] == ["fig", "hazel_nut"]
    assert np.allclose(ds2.frames[0].camera.K, K)
    out2 = write_kitti(ds2, tmp_path / "kitti2")
    for stem in ("000000", "000001"):
        assert (out2 / "label_2" / f"{stem}.txt").read_text() == (out / "label_2" / f"{stem}.txt").read_text()
    o = ds2.frames[0].objects[1]
    assert o.bbox == (33.0, 16.0, 58.0, 34.0) and o.attributes["kitti_occluded"] == 1


def test_flat_layout_no_3d_and_keep_case(tmp_path):
    ds = synthetic_dataset(tmp_path)
    for f in ds.frames:
        f.camera = None
        for o in f.objects:
            o.box3d = None
            o.occlusion = None
    out = write_kitti(ds, tmp_path / "flat", layout="flat", lowercase=False)
    assert sorted(p.name for p in out.iterdir()) == ["images", "labels"]
    t = _read_labels(out / "labels" / "000000.txt")[0]
    assert t[0] == "Fig" and t[2] == "3" and t[3] == "-10.00"
    assert t[8:] == ["-1.00"] * 3 + ["-1000.00"] * 3 + ["-10.00"]
    ds2 = load_kitti(out)
    assert ds2.info["layout"] == "flat" and ds2.frames[0].objects[0].box3d is None
    assert (ds2.frames[0].width, ds2.frames[0].height) == (64, 48)


def _kitti_folder(tmp_path, text: str):
    root = tmp_path / "k"
    (root / "image_2").mkdir(parents=True)
    (root / "label_2").mkdir()
    Image.new("RGB", (40, 30)).save(root / "image_2" / "000001.png")
    (root / "label_2" / "000001.txt").write_text(text)
    return root


GOOD = "Car 0.00 0 -1.58 1.00 2.00 30.00 20.00 1.50 1.60 3.90 1.0 1.5 10.0 -1.57\n"


@pytest.mark.parametrize(
    "bad,where",
    [
        ("Car 0.00 0 -1.58 1.00 2.00 30.00\n", "line 2: expected 15 fields"),
        (
            "Car 0.00 0 -1.58 1.00 zz 30.00 20.00 1.50 1.60 3.90 1.0 1.5 10.0 -1.57\n",
            "line 2.y1: not a number",
        ),
        ("Car 0.00 7 -1.58 1.00 2.00 30.00 20.00 1.50 1.60 3.90 1.0 1.5 10.0 -1.57\n", "line 2.occluded"),
    ],
)
def test_bad_label_lines(tmp_path, bad, where):
    root = _kitti_folder(tmp_path, GOOD + bad + "DontCare -1 -1 -10 5 5 8 8 -1 -1 -1 -1000 -1000 -1000 -10\n")
    with pytest.raises(DatasetError) as ei:
        load_kitti(root)
    msg = str(ei.value)
    assert "\n" not in msg and "label_2/000001.txt" in msg and where in msg, msg
    ds = load_kitti(root, skip_invalid=True)
    assert len(ds.frames[0].objects) == 1 and len(ds.info["skipped"]) == 1  # DontCare is not an object
    assert ds.info["skipped"][0]["record"] == "000001.txt line 2"
    assert ds.frames[0].extra["kitti_dontcare"] == [[5.0, 5.0, 8.0, 8.0]]
    o = ds.frames[0].objects[0]
    assert o.box3d is not None and o.box3d.dimensions == (1.5, 1.6, 3.9)
    assert o.box3d.center == pytest.approx((1.0, 0.75, 10.0))


def test_kitti_type_mapping_and_missing_image(tmp_path):
    root = _kitti_folder(tmp_path, GOOD)
    ds = load_kitti(root, categories={"Car": 4})
    assert [(c.id, c.name) for c in ds.categories] == [(4, "Car")] and ds.frames[0].objects[
        0
    ].category_id == 4
    with pytest.raises(DatasetError, match="line 1.type"):
        load_kitti(root, categories={"Van": 1})
    (root / "label_2" / "000002.txt").write_text(GOOD)
    with pytest.raises(DatasetError, match="000002.txt: no image"):
        load_kitti(root)


def test_format_label_line_precision():
    line = format_label_line(["car", 0.123, 1, 0.5, 1.004, 2.006, 3, 4, 1, 2, 3, 4, 5, 6, -7])
    assert line.split() == [
        "car",
        "0.12",
        "1",
        "0.50",
        "1.00",
        "2.01",
        "3.00",
        "4.00",
        "1.00",
        "2.00",
        "3.00",
        "4.00",
        "5.00",
        "6.00",
        "-7.00",
    ]
