"""Procedural meshes: exact extents, watertight, outward winding, deterministic, shape-specific."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.geometry.errors import GeometryError
from synthloop.geometry.meshes import (
    build_mesh,
    clear_mesh_cache,
    edge_use_counts,
    face_areas,
    is_watertight,
    mesh_cache,
    signed_volume,
)
from synthloop.scenes.spec import ShapeSpec

DIMS = (0.031, 0.022, 0.043)
KINDS = [
    dict(kind="sphere"),
    dict(kind="ellipsoid", segments=48),
    dict(kind="ellipsoid", segments=5),
    dict(kind="ellipsoid", segments=3),
    dict(kind="wrinkled_ellipsoid", wrinkle_amplitude=0.15, wrinkle_frequency=3.0, noise_seed=4),
    dict(kind="dented_ellipsoid", dent_count=6, dent_depth=0.3, noise_seed=2),
    dict(kind="teardrop", taper=1.0),
    dict(kind="teardrop", taper=0.5, wrinkle_amplitude=0.05, wrinkle_frequency=5.0),
    dict(kind="box"),
    dict(kind="box", bevel=0.004),
    dict(kind="box", bevel=1.0),
    dict(kind="cylinder"),
    dict(kind="cylinder", segments=3),
]


@pytest.mark.parametrize("kw", KINDS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_mesh_invariants(kw):
    shape = ShapeSpec(dimensions=DIMS, **kw)
    mesh = build_mesh(shape)
    v, f = mesh.vertices, mesh.faces
    assert v.dtype == np.float64 and v.shape[1] == 3
    assert f.dtype == np.int64 and f.shape[1] == 3
    assert np.allclose(mesh.extents, DIMS, rtol=0, atol=1e-15)
    assert np.allclose((v.max(axis=0) + v.min(axis=0)) / 2, 0.0, atol=1e-15)
    assert np.all(edge_use_counts(f) == 2) and is_watertight(f) and mesh.closed
    assert face_areas(v, f).min() > 1e-12 * np.prod(DIMS) ** (2 / 3)
    assert signed_volume(v, f) > 0  # counter-clockwise seen from outside
    assert len(v) < 5000
    again = build_mesh(shape)
    assert np.array_equal(again.vertices, v) and np.array_equal(again.faces, f)
    assert not v.flags.writeable


def test_analytic_volumes():
    a, b, c = (d / 2 for d in DIMS)
    ell = build_mesh(ShapeSpec(kind="ellipsoid", dimensions=DIMS, segments=96))
    assert np.isclose(signed_volume(ell.vertices, ell.faces), 4 / 3 * np.pi * a * b * c, rtol=0.01)
    box = build_mesh(ShapeSpec(kind="box", dimensions=DIMS))
    assert np.isclose(signed_volume(box.vertices, box.faces), np.prod(DIMS), rtol=1e-12)
    cyl = build_mesh(ShapeSpec(kind="cylinder", dimensions=DIMS, segments=96))
    assert np.isclose(signed_volume(cyl.vertices, cyl.faces), np.pi * a * b * DIMS[2], rtol=0.01)
    r = 0.004  # bevelled box: box minus edge and corner material, exact formula for a rounded box
    lx, ly, lz = DIMS
    rounded = lx * ly * lz - (4 - np.pi) * r * r * (lx + ly + lz - 6 * r) - (8 - 4 / 3 * np.pi) * r**3
    bev = build_mesh(ShapeSpec(kind="box", dimensions=DIMS, bevel=r))
    assert np.isclose(signed_volume(bev.vertices, bev.faces), rounded, rtol=0.01)


def radii(mesh):
    return np.linalg.norm(mesh.vertices, axis=1)


def test_wrinkles_and_dents_change_the_surface_deterministically():
    base = dict(kind="wrinkled_ellipsoid", dimensions=(0.1, 0.1, 0.1), segments=48)
    plain = build_mesh(ShapeSpec(**base))
    assert np.allclose(radii(plain), 0.05, rtol=1e-9)  # no amplitude -> a sphere
    w1 = build_mesh(ShapeSpec(**base, wrinkle_amplitude=0.1, wrinkle_frequency=4.0, noise_seed=1))
    w2 = build_mesh(ShapeSpec(**base, wrinkle_amplitude=0.1, wrinkle_frequency=4.0, noise_seed=2))
    rel = radii(w1) / radii(w1).mean()
    assert 0.01 < rel.std() < 0.1
    assert not np.allclose(w1.vertices, w2.vertices)
    # more bumps with a higher frequency: count sign changes of the radius along the equator
    eq = slice(1 + (48 // 4 - 1) * 48, 1 + (48 // 4) * 48)

    def crossings(m):
        r = radii(m)[eq]
        s = np.sign(r - np.median(r))
        return int((s != np.roll(s, 1)).sum())

    hi = build_mesh(ShapeSpec(**base, wrinkle_amplitude=0.1, wrinkle_frequency=12.0, noise_seed=1))
    assert crossings(hi) > crossings(w1)
    dent = build_mesh(
        ShapeSpec(kind="dented_ellipsoid", dimensions=(0.1, 0.1, 0.1), dent_count=3, dent_depth=0.4)
    )
    sphere = build_mesh(ShapeSpec(kind="ellipsoid", dimensions=(0.1, 0.1, 0.1)))
    rd = radii(dent) / np.median(radii(dent))
    assert 0.55 < rd.min() < 0.65  # the deepest point of a dent: 1 - dent_depth of the radius
    assert signed_volume(dent.vertices, dent.faces) < signed_volume(sphere.vertices, sphere.faces)
    ignored = build_mesh(
        ShapeSpec(kind="ellipsoid", dimensions=(0.1, 0.1, 0.1), dent_count=3, dent_depth=0.4)
    )
    assert np.array_equal(ignored.vertices, sphere.vertices)  # plain kinds ignore dent/wrinkle fields


def test_teardrop_tip_at_plus_z():
    m = build_mesh(ShapeSpec(kind="teardrop", dimensions=(0.02, 0.02, 0.04), taper=1.0, segments=48))
    v = m.vertices
    rxy = np.linalg.norm(v[:, :2], axis=1)
    top = rxy[v[:, 2] > 0.012].max()
    bottom = rxy[v[:, 2] < -0.012].max()
    assert top < 0.6 * bottom
    assert np.isclose(v[:, 2].max(), 0.02) and v[np.argmax(v[:, 2])][:2] @ [1, 1] == 0.0


def test_box_bevel_rounds_corners():
    sharp = build_mesh(ShapeSpec(kind="box", dimensions=(0.1, 0.1, 0.1)))
    bev = build_mesh(ShapeSpec(kind="box", dimensions=(0.1, 0.1, 0.1), bevel=0.01))
    assert np.isclose(np.abs(sharp.vertices).max(axis=1).min(), 0.05)  # every vertex on a face plane
    corner_dist = np.linalg.norm(bev.vertices, axis=1).max()
    expected = np.linalg.norm([0.04, 0.04, 0.04]) + 0.01
    assert np.isclose(corner_dist, expected, rtol=1e-9)


def test_mesh_files_merged_recentred_rescaled(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    a = trimesh.creation.box(extents=(1.0, 2.0, 1.0))
    b = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    b.apply_translation((3.0, 0.0, 0.0))
    obj = tmp_path / "two.obj"
    trimesh.util.concatenate([a, b]).export(obj)
    glb = tmp_path / "scene.glb"
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="a")
    scene.add_geometry(b, node_name="b", transform=trimesh.transformations.translation_matrix((3.0, 0, 0)))
    scene.export(glb)
    for path in (obj, glb):
        mesh = build_mesh(ShapeSpec(kind="mesh", dimensions=(0.05, 0.02, 0.01), mesh_path=str(path)))
        assert np.allclose(mesh.extents, (0.05, 0.02, 0.01), atol=1e-15)
        assert np.allclose((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, 0.0, atol=1e-15)
        assert len(mesh.faces) == len(a.faces) + len(b.faces)
        assert signed_volume(mesh.vertices, mesh.faces) > 0
    with pytest.raises(GeometryError, match="not found") as info:
        build_mesh(ShapeSpec(kind="mesh", dimensions=(1, 1, 1), mesh_path=str(tmp_path / "missing.obj")))
    assert info.value.path.endswith("missing.obj") and info.value.where == "shape.mesh_path"


def test_mesh_cache_returns_shared_meshes():
    clear_mesh_cache()
    s1 = ShapeSpec(kind="ellipsoid", dimensions=(0.1, 0.2, 0.3))
    s2 = ShapeSpec(kind="ellipsoid", dimensions=(0.1, 0.2, 0.3))
    s3 = ShapeSpec(kind="ellipsoid", dimensions=(0.1, 0.2, 0.31))
    assert mesh_cache(s1) is mesh_cache(s2)
    assert mesh_cache(s3) is not mesh_cache(s1)
    assert np.array_equal(mesh_cache(s1).vertices, build_mesh(s1).vertices)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(kind="box", dimensions=(0.1, -0.1, 0.1)), "dimensions"),
        (dict(kind="sphere", dimensions=(0.1, 0.1, 0.1), segments=2), "segments"),
        (
            dict(kind="wrinkled_ellipsoid", dimensions=(0.1, 0.1, 0.1), wrinkle_amplitude=1.5),
            "wrinkle_amplitude",
        ),
        (dict(kind="dented_ellipsoid", dimensions=(0.1, 0.1, 0.1), dent_depth=-0.1), "dent_depth"),
        (dict(kind="mesh", dimensions=(0.1, 0.1, 0.1)), "mesh_path"),
    ],
)
def test_bad_shapes_name_the_field(kw, field):
    with pytest.raises(GeometryError) as info:
        build_mesh(ShapeSpec(**kw))
    assert info.value.where == f"shape.{field}"
