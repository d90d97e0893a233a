"""Pinhole camera: Blender <-> OpenCV axes, intrinsics, world-to-camera, projection.

Axes. A Blender camera looks down its local -Z with +Y up; OpenCV/KITTI cameras look down +Z
with +Y down (+X right in both). A point with OpenCV camera coordinates ``p_cv`` has Blender
camera coordinates ``BLENDER_TO_CV @ p_cv`` and vice versa (the matrix is its own inverse), so a
world-from-camera rotation converts as ``R_world_from_cv = R_world_from_blender @ BLENDER_TO_CV``;
:func:`cam_axes_blender_to_cv` is that one conversion.

Pixels. Image coordinates are continuous: pixel (col=i, row=j) covers [i, i+1) x [j, j+1), its
centre is (i + 0.5, j + 0.5), the image spans [0, W] x [0, H]. Blender (shift 0, square pixels,
sensor fit HORIZONTAL) maps the sensor's full width onto exactly W pixels and puts the optical
axis at the sensor centre, i.e. at the *edge* between the two middle pixels for even W; each
pixel's unjittered camera ray passes through its centre. The principal point is therefore
(W / 2, H / 2) -- not ((W - 1) / 2, (H - 1) / 2), which is the convention of integer pixel-centre
coordinates -- and fx = fy = focal_length_mm / sensor_width_mm * W. (The Blender backend must set
``sensor_fit = 'HORIZONTAL'``: Blender's default AUTO fits the larger image side, which differs
for portrait images.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthloop.dataset.types import CameraModel
from synthloop.geometry.errors import GeometryError
from synthloop.geometry.transforms import invert_rigid, rigid_matrix
from synthloop.scenes.spec import CameraSpec

BLENDER_TO_CV = np.diag([1.0, -1.0, -1.0])
"""Flips camera Y and Z: maps OpenCV camera coordinates to Blender camera coordinates and back."""


def cam_axes_blender_to_cv(world_from_cam: np.ndarray) -> np.ndarray:
    """Swap a camera pose between Blender and OpenCV camera axes (the function is an involution).

    ``world_from_cam``: (3, 3) rotation or (4, 4) pose whose columns are the camera axes in world
    coordinates. Returns the same kind of matrix with the camera Y and Z columns negated, i.e.
    ``R @ BLENDER_TO_CV`` (the translation, the camera centre, is unchanged). Applying it twice
    returns the input.
    """
    m = np.asarray(world_from_cam, dtype=np.float64)
    if m.shape == (3, 3):
        return m @ BLENDER_TO_CV
    if m.shape == (4, 4):
        out = m.copy()
        out[:3, :3] = m[:3, :3] @ BLENDER_TO_CV
        return out
    raise GeometryError(f"camera pose must be 3x3 or 4x4, got shape {m.shape}", where="camera")


def _checked_rotation(cam: CameraSpec) -> np.ndarray:
    rot = np.asarray(cam.rotation_world_from_cam, dtype=np.float64)
    if rot.shape != (3, 3) or not np.all(np.isfinite(rot)):
        raise GeometryError("must be a finite 3x3 matrix", where="camera.rotation_world_from_cam")
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0:
        raise GeometryError(
            "is not a proper rotation (orthonormal, det +1)", where="camera.rotation_world_from_cam"
        )
    return rot


def intrinsics(cam: CameraSpec, width: int, height: int) -> np.ndarray:
    """K (3, 3) float64 in pixels: fx = fy = f_mm / sensor_width_mm * width, (cx, cy) = (W/2, H/2).

    See the module docstring for the pixel-centre reasoning (continuous coordinates).
    """
    if width <= 0 or height <= 0:
        raise GeometryError(f"image size must be positive, got {width}x{height}", where="render")
    if cam.focal_length_mm <= 0 or cam.sensor_width_mm <= 0:
        raise GeometryError("focal length and sensor width must be positive", where="camera")
    f = cam.focal_length_mm / cam.sensor_width_mm * width
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def cam_to_world_cv(cam: CameraSpec) -> np.ndarray:
    """(4, 4) world-from-camera pose in OpenCV camera axes (columns: camera +X, +Y down, +Z fwd)."""
    return rigid_matrix(cam_axes_blender_to_cv(_checked_rotation(cam)), cam.location)


def world_to_cam_cv(cam: CameraSpec) -> np.ndarray:
    """(4, 4) camera-from-world matrix in OpenCV axes: ``p_cam = T[:3, :3] @ p_world + T[:3, 3]``."""
    return invert_rigid(cam_to_world_cv(cam))


def project(
    K: np.ndarray, world_to_cam: np.ndarray, points_world: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) metres -> (uv (N, 2) pixels, z (N,) metres along the optical axis).

    ``uv`` is in continuous pixel coordinates; it is NaN where ``z <= 0`` (at or behind the camera
    centre). Points between the camera and its near plane are projected normally; clip triangles
    with :func:`synthloop.geometry.raster.clip_project_mesh` when that matters.
    """
    p = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    T = np.asarray(world_to_cam, dtype=np.float64)
    pc = p @ T[:3, :3].T + T[:3, 3]
    z = pc[:, 2]
    uv = np.full((len(p), 2), np.nan)
    ok = z > 0
    h = pc[ok] @ np.asarray(K, dtype=np.float64).T
    uv[ok] = h[:, :2] / h[:, 2:3]
    return uv, z


def camera_model(cam: CameraSpec, width: int, height: int) -> CameraModel:
    """The dataset's :class:`CameraModel` (K and OpenCV world_to_cam as nested lists)."""
    return CameraModel(K=intrinsics(cam, width, height).tolist(), world_to_cam=world_to_cam_cv(cam).tolist())


def look_at_rotation(
    location: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """Blender world-from-camera rotation (3, 3) of a camera at ``location`` looking at ``target``.

    The camera's -Z points at the target and its +Y (image up) lies in the plane of the view
    direction and ``up`` (world +Z by default). When the view is parallel to ``up`` (looking
    straight down or up) world +Y is used as the up hint instead, so image up is world +Y.
    """
    loc = np.asarray(location, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - loc
    n = np.linalg.norm(fwd)
    if n < 1e-12:
        raise GeometryError("camera location equals its look-at target", where="camera.look_at")
    fwd /= n
    upv = np.asarray(up, dtype=np.float64)
    if np.linalg.norm(np.cross(fwd, upv)) < 1e-9 * max(float(np.linalg.norm(upv)), 1e-12):
        upv = np.array([0.0, 1.0, 0.0])
    right = np.cross(fwd, upv)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    return np.stack([right, cam_up, -fwd], axis=1)
