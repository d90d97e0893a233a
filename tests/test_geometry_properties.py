"""Measured object properties (pure numpy): each one on a hand-built image with a known answer."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from synthloop.geometry.errors import GeometryError
from synthloop.geometry.properties import PROPERTY_NAMES, geometry_properties, object_properties
from synthloop.scenes.color import circular_mean, rgb_to_hsv


def test_rgb_to_hsv_inverts_colorsys_and_hue_mean_wraps():
    rng = np.random.default_rng(0)
    hsv = rng.uniform(0.05, 1.0, (200, 3))
    rgb = (np.array([colorsys.hsv_to_rgb(*v) for v in hsv]) * 255.0).round().astype(np.uint8)
    ref = np.array([colorsys.rgb_to_hsv(*(c / 255.0)) for c in rgb.astype(float)])
    assert np.abs(rgb_to_hsv(rgb) - ref).max() < 1e-9
    assert rgb_to_hsv(rgb.reshape(10, 20, 3)).shape == (10, 20, 3)
    assert circular_mean(np.array([0.95, 0.05])) in (
        pytest.approx(0.0, abs=1e-9),
        pytest.approx(1.0, abs=1e-9),
    )
    assert np.isnan(circular_mean(np.array([0.2]), np.array([0.0])))


def test_geometry_of_boxes():
    boxes = np.array([[0, 10, 20, 20], [21, 10, 41, 20], [80, 60, 90, 70]], dtype=float)
    p = geometry_properties(boxes, 100, 100)
    assert p["size"][0] == pytest.approx(np.sqrt(200 / 10000))
    assert p["aspect"][0] == pytest.approx(2.0)
    assert p["border"][0] == 0.0  # touches the left edge
    assert p["border"][2] == pytest.approx(1.0)  # 10 px from the edge, long side 10
    assert p["clutter"].tolist() == [1.0, 1.0, 0.0]  # centres 21 px apart <= 1.5 * sqrt(200) = 21.2
    assert p["overlap"].tolist() == [0.0, 0.0, 0.0]
    q = geometry_properties(boxes[:1], 100, 100, context_boxes=boxes, self_index=[-1])
    assert q["overlap"][0] == pytest.approx(1.0) and q["clutter"][0] == 2.0  # itself counts: no self index


def test_colour_and_background_ring():
    img = np.full((60, 80, 3), 200, np.uint8)
    img[20:30, 20:30] = (255, 0, 0)  # red object on a flat light table
    img[20:30, 50:60] = (0, 0, 255)  # blue object on a striped dark table
    img[10:40, 40:70] = np.where(((np.arange(30) // 2) % 2 == 0)[:, None, None], 30, 90).astype(np.uint8)
    img[20:30, 50:60] = (0, 0, 255)
    mask = np.zeros((60, 80), bool)
    mask[20:30, 20:30] = True
    p = object_properties(img, np.array([[20, 20, 30, 30], [50, 20, 60, 30]], float), [mask, None])
    assert set(p) == set(PROPERTY_NAMES)
    assert p["hue"][0] == pytest.approx(0.0, abs=1e-6) and p["hue"][1] == pytest.approx(2 / 3, abs=1e-3)
    assert p["saturation"][0] == pytest.approx(1.0) and p["value"][1] == pytest.approx(1.0)
    assert p["bg_value"][0] == pytest.approx(200 / 255)
    assert p["bg_texture"][0] == pytest.approx(0.0, abs=1e-9)
    assert p["bg_value"][1] < 0.4 and p["bg_texture"][1] > 0.02
    big = np.kron(img, np.ones((2, 2, 1), np.uint8))  # the same scene at twice the resolution
    q2 = object_properties(
        big,
        np.array([[40, 40, 60, 60], [100, 40, 120, 60]], float),
        [np.kron(mask, np.ones((2, 2), bool)), None],
    )
    assert q2["bg_texture"][1] == pytest.approx(p["bg_texture"][1], rel=0.1)
    img[20:30, 20:30] = (255, 0, 8)  # a red just below hue 1: one interval with the reds above 0
    q = object_properties(img, np.array([[20, 20, 30, 30]], float), [mask])
    assert q["hue"][0] == pytest.approx(-8 / 255 / 6, abs=1e-6)


def test_bad_input_is_one_error():
    with pytest.raises(GeometryError, match="image"):
        object_properties(np.zeros((4, 4)), np.zeros((0, 4)))
    with pytest.raises(GeometryError, match="finite"):
        object_properties(np.zeros((4, 4, 3), np.uint8), np.array([[0, 0, np.nan, 1]]))
    with pytest.raises(GeometryError, match="masks"):
        object_properties(np.zeros((4, 4, 3), np.uint8), np.array([[0, 0, 1, 1]]), [np.ones((3, 3), bool)])
    empty = object_properties(np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4)))
    assert all(len(v) == 0 for v in empty.values())
