"""Rasterizer: pixel-centre coverage, extended canvases, near-plane clipping, z-buffer."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from synthloop.geometry.masks import polygons_to_rle, rle_to_mask
from synthloop.geometry.meshes import build_mesh
from synthloop.geometry.raster import (
    clip_project_mesh,
    clip_triangles_near,
    iter_coverage,
    rasterize_triangles,
    render_zbuffer,
)
from synthloop.scenes.spec import ShapeSpec

K = np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])


def centres_in(lo: float, hi: float, n: int) -> np.ndarray:
    """Indices i in [0, n) with lo <= i + 0.5 <= hi (inclusive coverage rule)."""
    i = np.arange(n)
    return (i + 0.5 >= lo) & (i + 0.5 <= hi)


def square(x0, y0, x1, y1):
    uv = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
    return uv, np.array([[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("box", [(3.2, 4.7, 17.9, 11.1), (0.0, 0.0, 10.0, 10.0), (-5.3, 2.5, 8.5, 30.2)])
def test_axis_aligned_square_exact_pixel_centres(box):
    uv, faces = square(*box)
    mask = rasterize_triangles(uv, faces, 25, 20)
    expected = centres_in(box[1], box[3], 20)[:, None] & centres_in(box[0], box[2], 25)[None, :]
    assert np.array_equal(mask, expected)
    # winding does not matter
    assert np.array_equal(rasterize_triangles(uv, faces[:, ::-1], 25, 20), expected)


def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def test_triangle_area_and_pycocotools_agreement_on_boundary():
    rng = np.random.default_rng(11)
    w, h = 96, 80
    for _ in range(10):
        tri = rng.uniform([2, 2], [w - 2, h - 2], size=(3, 2))
        e1, e2 = tri[1] - tri[0], tri[2] - tri[0]
        area = 0.5 * abs(e1[0] * e2[1] - e1[1] * e2[0])
        if area < 30:
            continue
        mask = rasterize_triangles(tri, np.array([[0, 1, 2]]), w, h)
        perimeter = sum(np.linalg.norm(tri[i] - tri[(i + 1) % 3]) for i in range(3))
        assert abs(mask.sum() - area) <= perimeter / 2 + 2  # one pixel band at most half in/half out
        coco = rle_to_mask(polygons_to_rle([tri.reshape(-1).tolist()], h, w))
        diff = np.argwhere(mask != coco)
        if len(diff):
            centres = diff[:, ::-1] + 0.5
            dist = np.min(
                [point_segment_distance(centres, tri[i], tri[(i + 1) % 3]) for i in range(3)], axis=0
            )
            assert dist.max() <= 1.0 + 1e-9  # any disagreement lies on the boundary


def test_extended_canvas_contains_the_image_raster():
    uv, faces = square(-12.4, -3.0, 20.3, 15.6)
    img = rasterize_triangles(uv, faces, 30, 20)
    ext = rasterize_triangles(uv, faces, 30 + 20, 20 + 10, origin=(-20, -10))
    assert np.array_equal(ext[10:30, 20:50], img)
    expected_total = centres_in(-12.4 + 20, 20.3 + 20, 50).sum() * centres_in(-3.0 + 10, 15.6 + 10, 30).sum()
    assert ext.sum() == expected_total
    coarse = rasterize_triangles(uv, faces, 13, 8, origin=(-20, -10), step=4.0)
    assert abs(coarse.sum() * 16 - (32.7 * 18.6)) < 0.2 * 32.7 * 18.6


def test_front_only_equals_full_silhouette_for_closed_mesh():
    mesh = build_mesh(
        ShapeSpec(kind="dented_ellipsoid", dimensions=(0.2, 0.15, 0.1), dent_count=4, dent_depth=0.3)
    )
    T = np.eye(4)
    T[:3, :3] = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1, -1, -1])
    T[2, 3] = 0.6
    uv, fc, _ = clip_project_mesh(K, T, mesh.vertices, mesh.faces, 0.01)
    full = rasterize_triangles(uv, fc, 160, 120)
    front = rasterize_triangles(uv, fc, 160, 120, front_only=True)
    assert full.sum() > 500
    assert np.array_equal(full, front)


def test_chunking_and_no_holes_on_shared_edges():
    from scipy.ndimage import binary_fill_holes

    mesh = build_mesh(ShapeSpec(kind="box", dimensions=(0.3, 0.2, 0.25), bevel=0.03))
    T = np.eye(4)
    T[2, 3] = 1.0
    uv, fc, _ = clip_project_mesh(K, T, mesh.vertices, mesh.faces, 0.01)
    full = rasterize_triangles(uv, fc, 160, 120)
    assert np.array_equal(full, binary_fill_holes(full))
    small = np.zeros(160 * 120, dtype=bool)
    n = 0
    for _, flat, bary in iter_coverage(uv, fc, 160, 120, chunk=13):
        assert len(flat) <= 13 * 2 and np.allclose(bary.sum(axis=1), 1.0)
        small[flat] = True
        n += 1
    assert n > 100 and np.array_equal(small.reshape(120, 160), full)
    # A fan of thin triangles around a pixel centre: the centre lies on every shared edge.
    ang = np.linspace(0, 2 * np.pi, 37)[:-1] + 0.1
    ring = np.stack([10.5 + 7.3 * np.cos(ang), 8.5 + 7.3 * np.sin(ang)], axis=1)
    fan_uv = np.concatenate([[[10.5, 8.5]], ring])
    fan = np.stack([np.zeros(36, int), 1 + np.arange(36), 1 + (np.arange(36) + 1) % 36], axis=1)
    fan_mask = rasterize_triangles(fan_uv, fan, 21, 17)
    assert fan_mask[8, 10] and np.array_equal(fan_mask, binary_fill_holes(fan_mask))


def test_clip_triangles_near_areas_and_winding():
    tri = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])

    def areas_normals(v, f):
        t = v[f]
        n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        return 0.5 * np.linalg.norm(n, axis=1).sum(), n

    full_area, n0 = areas_normals(tri, np.array([[0, 1, 2]]))
    v, f = clip_triangles_near(tri, np.array([[0, 1, 2]]), near=0.0)  # one vertex in front
    a, n = areas_normals(v, f)
    assert len(f) == 1 and np.isclose(a, full_area / 4) and np.all(v[f][..., 2] >= -1e-12)
    assert np.all(n @ n0[0] > 0)
    tri2 = tri.copy()
    tri2[:, 2] *= -1  # now two vertices in front
    full2, n02 = areas_normals(tri2, np.array([[0, 1, 2]]))
    v, f = clip_triangles_near(tri2, np.array([[2, 0, 1]]), near=0.0)
    a, n = areas_normals(v, f)
    assert len(f) == 2 and np.isclose(a, 3 * full2 / 4) and np.all(v[f][..., 2] >= -1e-12)
    assert np.all(n @ n02[0] > 0)
    v, f = clip_triangles_near(tri - [0, 0, 5], np.array([[0, 1, 2]]), near=0.0)
    assert len(f) == 0


def test_ground_plane_through_camera_is_clipped_not_mirrored():
    # A floor 1 m below an OpenCV camera (y down), from 5 m behind to 5 m in front of it.
    verts = np.array([[-5.0, 1.0, -5.0], [5.0, 1.0, -5.0], [5.0, 1.0, 5.0], [-5.0, 1.0, 5.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv, fc, z = clip_project_mesh(K, np.eye(4), verts, faces, near=0.01)
    assert np.all(z[np.unique(fc)] >= 0.01 - 1e-12)
    mask = rasterize_triangles(uv, fc, 160, 120)
    far_row = 60.0 + 200.0 * 1.0 / 5.0  # image row of the floor's far edge (z = 5)
    rows = np.arange(120) + 0.5
    col = 80  # centre column: covered exactly below the far edge
    assert np.array_equal(mask[:, col], rows >= far_row - 1e-9)
    assert not mask[rows < far_row].any()


def test_render_zbuffer_nearest_wins_and_perspective_correct_depth():
    near_sq = (1, np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.1, 0.1, 1.0], [-0.1, 0.1, 1.0]]))
    far_sq = (2, np.array([[0.0, -0.1, 2.0], [0.4, -0.1, 2.0], [0.4, 0.1, 2.0], [0.0, 0.1, 2.0]]))
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    ids, depth = render_zbuffer([(*far_sq, faces), (*near_sq, faces)], K, np.eye(4), 160, 120)
    assert ids.dtype == np.int32 and depth.dtype == np.float32
    assert ids[60, 85] == 1 and np.isclose(depth[60, 85], 1.0)  # overlap: nearer square
    assert ids[60, 110] == 2 and np.isclose(depth[60, 110], 2.0)
    assert ids[5, 5] == 0 and np.isinf(depth[5, 5])
    # A slanted plane z = 1 + x: depth at pixel centre u is where the pixel ray meets it.
    slant = np.array([[-0.3, -0.2, 0.7], [0.3, -0.2, 1.3], [0.3, 0.2, 1.3], [-0.3, 0.2, 0.7]])
    ids, depth = render_zbuffer([(5, slant, faces)], K, np.eye(4), 160, 120)
    rr, cc = np.nonzero(ids == 5)
    xr = (cc + 0.5 - 80.0) / 200.0  # x / z along the pixel ray
    assert np.allclose(depth[rr, cc], 1.0 / (1.0 - xr), rtol=1e-5)


def test_rasterize_speed_few_thousand_triangles():
    mesh = build_mesh(
        ShapeSpec(
            kind="wrinkled_ellipsoid",
            dimensions=(0.3, 0.2, 0.25),
            segments=64,
            wrinkle_amplitude=0.1,
            wrinkle_frequency=4.0,
        )
    )
    k = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    T = np.eye(4)
    T[2, 3] = 1.0
    uv, fc, _ = clip_project_mesh(k, T, mesh.vertices, mesh.faces, 0.01)
    assert len(fc) > 3000
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        mask = rasterize_triangles(uv, fc, 640, 480)
        best = min(best, time.perf_counter() - t0)
    assert mask.sum() > 10000
    assert best < 0.25  # ~20 ms on an idle core; loose bound for a shared CI machine
