"""Placement: resting poses on z = 0, footprints, non-overlapping rejection sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthloop.geometry.transforms import quat_to_matrix
from synthloop.scenes.placement import (
    footprint_radius,
    place_circles,
    rest_height,
    resting_quat,
    rotated_extent,
    yaw_facing,
)

SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)


def rodrigues(axis, angle):
    """Independent rotation matrix (3, 3) about ``axis``."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def world_corners(dims, quat, location):
    return (SIGNS * 0.5 * np.asarray(dims)) @ quat_to_matrix(quat).T + np.asarray(location)


@pytest.mark.parametrize("yaw_deg", [0.0, 37.0, 90.0, 211.0])
def test_resting_quats_match_independent_rotations(yaw_deg):
    yaw = math.radians(yaw_deg)
    rz = rodrigues((0, 0, 1), yaw)
    assert np.allclose(quat_to_matrix(resting_quat("upright", yaw)), rz)
    assert np.allclose(quat_to_matrix(resting_quat("lying", yaw)), rz @ rodrigues((1, 0, 0), math.pi / 2))
    assert np.allclose(quat_to_matrix(resting_quat("upside_down", yaw)), rz @ rodrigues((1, 0, 0), math.pi))
    q = resting_quat("lying", yaw)
    assert abs(np.linalg.norm(q) - 1) < 1e-12 and q[0] >= 0


@pytest.mark.parametrize("orientation", ["upright", "lying", "upside_down"])
def test_rest_height_puts_lowest_corner_on_the_table(orientation):
    dims = (0.02, 0.03, 0.05)
    for yaw in np.linspace(0, 2 * math.pi, 7):
        q = resting_quat(orientation, yaw)
        z = rest_height(dims, q)
        corners = world_corners(dims, q, (0.1, -0.2, z))
        assert abs(corners[:, 2].min()) < 1e-12
        # The footprint circle contains every corner's xy.
        r = footprint_radius(dims, q)
        assert np.all(np.hypot(corners[:, 0] - 0.1, corners[:, 1] + 0.2) <= r + 1e-12)
    expected_height = {"upright": 0.05, "lying": 0.03, "upside_down": 0.05}[orientation]
    assert abs(rotated_extent(dims, resting_quat(orientation, 0.3))[2] - expected_height) < 1e-12


def test_footprint_radius_is_half_xy_diagonal_and_yaw_invariant():
    dims = (0.02, 0.03, 0.05)
    assert footprint_radius(dims, resting_quat("upright", 1.0)) == pytest.approx(0.5 * math.hypot(0.02, 0.03))
    assert footprint_radius(dims, resting_quat("lying", 2.0)) == pytest.approx(0.5 * math.hypot(0.02, 0.05))


def test_unknown_orientation():
    with pytest.raises(ValueError, match="unknown orientation"):
        resting_quat("sideways", 0.0)


def test_place_circles_no_overlap_inside_area_deterministic():
    radii = np.random.default_rng(3).uniform(0.01, 0.03, size=25)
    area, gap = (0.3, 0.2), 0.004
    out = place_circles(radii, area, gap, 100, np.random.default_rng(11))
    assert out == place_circles(radii, area, gap, 100, np.random.default_rng(11))
    placed = [(xy, r) for xy, r in zip(out, radii, strict=True) if xy is not None]
    assert 5 < len(placed) < 25  # crowded: some fit, some are dropped
    for (x, y), r in placed:
        assert abs(x) <= area[0] / 2 - r + 1e-12 and abs(y) <= area[1] / 2 - r + 1e-12
    for i in range(len(placed)):
        for j in range(i + 1, len(placed)):
            (p, ri), (q, rj) = placed[i], placed[j]
            assert math.dist(p, q) >= ri + rj + gap - 1e-12


def test_place_circles_drops_circles_larger_than_the_area():
    out = place_circles([0.2, 0.01], (0.3, 0.3), 0.0, 10, np.random.default_rng(0))
    assert out[0] is None and out[1] is not None


@pytest.mark.parametrize("offset", [0.0, 30.0, -120.0, 180.0])
@pytest.mark.parametrize("forward", [(0.0, -1.0), (1.0, 0.0)])
def test_yaw_facing_turns_the_forward_direction_towards_the_target_plus_the_offset(offset, forward):
    pos, target = (1.0, -2.0), (-3.0, 4.0)
    yaw = yaw_facing(pos, target, offset, forward)
    assert 0.0 <= yaw < 360.0
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    fx, fy = c * forward[0] - s * forward[1], s * forward[0] + c * forward[1]  # rotated about +Z
    to_target = math.atan2(target[1] - pos[1], target[0] - pos[0])
    turned = math.degrees(math.atan2(fy, fx) - to_target)
    assert (turned - offset + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-9)
