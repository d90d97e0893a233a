"""Rigid transforms: unit quaternions (w, x, y, z), 4x4 homogeneous matrices, point transforms.

Conventions: a rotation matrix ``R`` maps a column vector from the local frame into the parent
frame (``p_parent = R @ p_local``); an object's world transform is ``T(location) @ R(quat)`` with
no scale (see :mod:`synthloop.scenes.spec`). Quaternions are Hamilton, scalar first, and are
normalised on use, so ``q`` and ``-q`` give the same matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthloop.geometry.errors import GeometryError


def quat_to_matrix(quat_wxyz: Sequence[float]) -> np.ndarray:
    """Rotation matrix (3, 3) float64 of the quaternion ``(w, x, y, z)`` (normalised first).

    Raises :class:`GeometryError` for a zero-length or non-finite quaternion.
    """
    q = np.asarray(quat_wxyz, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise GeometryError(f"quaternion must be 4 finite numbers (w, x, y, z), got {list(q)}", where="quat")
    n = float(np.linalg.norm(q))
    if n < 1e-12:
        raise GeometryError("quaternion has zero length", where="quat")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (4,) ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (3, 3).

    Uses Shepperd's method (branch on the largest diagonal term), stable for all rotations.
    """
    m = np.asarray(rot, dtype=np.float64)
    if m.shape != (3, 3):
        raise GeometryError(f"rotation must be 3x3, got shape {m.shape}", where="rotation")
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    out = np.asarray(q) / np.linalg.norm(q)
    return -out if out[0] < 0 else out


def rigid_matrix(rot: np.ndarray, translation: Sequence[float] | np.ndarray) -> np.ndarray:
    """4x4 homogeneous matrix ``[[R, t], [0, 1]]`` from a (3, 3) rotation and a (3,) translation."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(rot, dtype=np.float64)
    out[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return out


def object_to_world(location: Sequence[float], quat_wxyz: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 world-from-object matrix ``T(location) @ R(quat)`` (metres, no scale)."""
    return rigid_matrix(quat_to_matrix(quat_wxyz), location)


def invert_rigid(mat: np.ndarray) -> np.ndarray:
    """Inverse (4, 4) of a rigid transform ``[[R, t], [0, 1]]``: ``[[R^T, -R^T t], [0, 1]]``."""
    m = np.asarray(mat, dtype=np.float64)
    rt = m[:3, :3].T
    return rigid_matrix(rt, -rt @ m[:3, 3])


def transform_points(mat: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) affine transform to points (N, 3) -> (N, 3) float64 (no perspective divide)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    m = np.asarray(mat, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]
