"""Transforms and the pinhole camera: quaternions, Blender<->OpenCV axes, K, projection."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.dataset.types import CameraModel
from synthloop.geometry.camera import (
    BLENDER_TO_CV,
    cam_axes_blender_to_cv,
    camera_model,
    intrinsics,
    look_at_rotation,
    project,
    world_to_cam_cv,
)
from synthloop.geometry.errors import GeometryError
from synthloop.geometry.transforms import (
    invert_rigid,
    matrix_to_quat,
    object_to_world,
    quat_to_matrix,
    transform_points,
)
from synthloop.scenes.spec import CameraSpec


def make_camera(location, target, focal=50.0, sensor=36.0) -> CameraSpec:
    rot = look_at_rotation(location, target)
    return CameraSpec(
        location=tuple(location),
        rotation_world_from_cam=tuple(tuple(float(v) for v in row) for row in rot),
        look_at=tuple(target),
        focal_length_mm=focal,
        sensor_width_mm=sensor,
    )


def random_quats(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_quaternion_known_rotations():
    assert np.allclose(quat_to_matrix((1, 0, 0, 0)), np.eye(3))
    s = np.sqrt(0.5)
    rz90 = quat_to_matrix((s, 0, 0, s))  # +90 deg about Z: x -> y, y -> -x
    assert np.allclose(rz90 @ [1, 0, 0], [0, 1, 0])
    assert np.allclose(rz90 @ [0, 1, 0], [-1, 0, 0])
    rx180 = quat_to_matrix((0, 2, 0, 0))  # unnormalised input is normalised
    assert np.allclose(rx180, np.diag([1, -1, -1]))


def test_quaternion_matrix_round_trip_and_orthonormal():
    for q in random_quats(50):
        r = quat_to_matrix(q)
        assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)
        q2 = matrix_to_quat(r)
        assert np.allclose(q2, q if q[0] >= 0 else -q, atol=1e-10)
        assert np.allclose(quat_to_matrix(-q), r)


def test_quaternion_rejects_zero():
    with pytest.raises(GeometryError):
        quat_to_matrix((0, 0, 0, 0))


def test_object_to_world_and_inverse():
    q = random_quats(1, seed=3)[0]
    t = object_to_world((1.0, -2.0, 0.5), q)
    pts = np.random.default_rng(1).normal(size=(10, 3))
    world = transform_points(t, pts)
    assert np.allclose(world, pts @ quat_to_matrix(q).T + [1.0, -2.0, 0.5])
    assert np.allclose(transform_points(invert_rigid(t), world), pts)
    assert np.allclose(invert_rigid(t) @ t, np.eye(4))


def test_blender_to_cv_round_trip_and_meaning():
    assert np.allclose(BLENDER_TO_CV @ BLENDER_TO_CV, np.eye(3))
    for q in random_quats(10, seed=5):
        r = quat_to_matrix(q)
        assert np.allclose(cam_axes_blender_to_cv(cam_axes_blender_to_cv(r)), r)
        pose = object_to_world((1, 2, 3), q)
        back = cam_axes_blender_to_cv(cam_axes_blender_to_cv(pose))
        assert np.allclose(back, pose)
        assert np.allclose(cam_axes_blender_to_cv(pose)[:3, 3], [1, 2, 3])
    # Blender camera forward (-Z) and up (+Y) are OpenCV +Z and -Y.
    r_cv = cam_axes_blender_to_cv(np.eye(3))
    assert np.allclose(r_cv @ [0, 0, 1], [0, 0, -1])  # CV forward (+Z) is Blender camera -Z
    assert np.allclose(r_cv @ [0, 1, 0], [0, -1, 0])  # CV down (+Y) is Blender camera -Y


def test_intrinsics_horizontal_fit_and_centre():
    cam = make_camera((0, 0, 2), (0, 0, 0), focal=50.0, sensor=36.0)
    K = intrinsics(cam, 640, 480)
    assert np.isclose(K[0, 0], 50.0 / 36.0 * 640)
    assert K[0, 0] == K[1, 1]
    assert (K[0, 2], K[1, 2]) == (320.0, 240.0)
    K2 = intrinsics(cam, 301, 199)  # odd sizes: the centre of the middle pixel (150 -> 150.5)
    assert (K2[0, 2], K2[1, 2]) == (150.5, 99.5)


def test_straight_down_camera_projects_look_at_to_centre_and_known_points():
    cam = make_camera((0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    assert np.allclose(np.asarray(cam.rotation_world_from_cam), np.eye(3))  # looking down world -Z
    K = intrinsics(cam, 640, 480)
    T = world_to_cam_cv(cam)
    uv, z = project(K, T, np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    f = K[0, 0]
    assert np.allclose(z, 2.0)
    assert np.allclose(uv[0], [320.0, 240.0])
    assert np.allclose(uv[1], [320.0 + f * 0.05, 240.0])  # world +X is image right
    assert np.allclose(uv[2], [320.0, 240.0 - f * 0.05])  # world +Y is image up (Blender up hint)


def test_oblique_camera_look_at_centre_and_up_is_up():
    cam = make_camera((0.7, -1.1, 0.9), (0.05, 0.1, 0.02), focal=35.0)
    K = intrinsics(cam, 320, 240)
    T = world_to_cam_cv(cam)
    uv, z = project(K, T, np.array([cam.look_at, (0.05, 0.1, 0.3)]))
    assert np.allclose(uv[0], [160.0, 120.0])
    assert np.isclose(z[0], np.linalg.norm(np.subtract(cam.location, cam.look_at)))
    assert uv[1, 1] < uv[0, 1]  # a point above the target appears higher in the image


def blender_world_to_camera_view(cam: CameraSpec, p, width, height):
    """Independent re-derivation of Blender's projection (bpy_extras world_to_camera_view, sensor fit
    horizontal): normalised frame coordinates in Blender camera space, then pixels with row 0 at top."""
    r = np.asarray(cam.rotation_world_from_cam)
    co = r.T @ (np.asarray(p) - np.asarray(cam.location))  # Blender camera coordinates
    half_w = cam.sensor_width_mm / cam.focal_length_mm / 2.0  # frame half-width at unit depth
    half_h = half_w * height / width
    x = (co[0] / -co[2]) / (2 * half_w) + 0.5
    y = (co[1] / -co[2]) / (2 * half_h) + 0.5
    return np.array([x * width, (1.0 - y) * height]), -co[2]


def test_projection_matches_blender_formula():
    cam = make_camera((0.4, -0.6, 0.5), (0.0, 0.0, 0.0), focal=42.0)
    K = intrinsics(cam, 200, 150)
    T = world_to_cam_cv(cam)
    pts = np.random.default_rng(7).uniform(-0.2, 0.2, size=(20, 3))
    uv, z = project(K, T, pts)
    for p, got_uv, got_z in zip(pts, uv, z, strict=True):
        want_uv, want_z = blender_world_to_camera_view(cam, p, 200, 150)
        assert np.allclose(got_uv, want_uv, atol=1e-9)
        assert np.isclose(got_z, want_z)


def test_points_behind_camera_have_nan_uv():
    cam = make_camera((0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    uv, z = project(intrinsics(cam, 64, 48), world_to_cam_cv(cam), np.array([[0, 0, 3.0], [0, 0, 1.0]]))
    assert z[0] < 0 and np.all(np.isnan(uv[0]))
    assert np.all(np.isfinite(uv[1]))


def test_camera_model_is_json_lists_and_bad_rotation_rejected():
    cam = make_camera((0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    model = camera_model(cam, 64, 48)
    assert isinstance(model, CameraModel)
    assert isinstance(model.K, list) and isinstance(model.world_to_cam[0], list)
    assert np.allclose(np.asarray(model.world_to_cam), world_to_cam_cv(cam))
    bad = cam.model_copy(update={"rotation_world_from_cam": ((2, 0, 0), (0, 1, 0), (0, 0, 1))})
    with pytest.raises(GeometryError, match="rotation_world_from_cam"):
        world_to_cam_cv(bad)
    mirror = cam.model_copy(update={"rotation_world_from_cam": ((-1, 0, 0), (0, 1, 0), (0, 0, 1))})
    with pytest.raises(GeometryError):
        world_to_cam_cv(mirror)
