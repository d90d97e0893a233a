"""annotate_frame on synthetic id/depth maps from the numpy z-buffer renderer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import SCENE_H as H
from helpers import SCENE_W as W
from helpers import camera, obj, scene, sphere_nut, tile

from synthloop.dataset.folder import object_to_record
from synthloop.geometry.annotate import annotate_frame, box3d_of, zbuffer_scene
from synthloop.geometry.camera import intrinsics, project, world_to_cam_cv
from synthloop.geometry.errors import GeometryError
from synthloop.geometry.masks import rle_to_mask
from synthloop.geometry.meshes import build_mesh
from synthloop.geometry.transforms import object_to_world, transform_points
from synthloop.scenes.spec import (
    ShapeSpec,
)


def annotate(spec):
    ids, depth = zbuffer_scene(spec)
    return annotate_frame(spec, ids, depth), ids, depth


def test_single_object_boxes_mask_and_zero_occlusion():
    spec = scene([obj(3, tile(), (0.05, -0.03, 0.0), params={"scale": 1.2})])
    ann, ids, _ = annotate(spec)
    (o,) = ann.objects
    assert o.instance_id == 3 and o.category_id == 2
    assert o.area == (ids == 3).sum() > 500
    assert np.array_equal(rle_to_mask(o.mask), ids == 3)
    assert o.occlusion == 0.0 and o.truncation == 0.0
    # Top face (z = +5 mm, 0.995 m away) projects to a square; tight box within a pixel of it.
    f = 36.0 / 36.0 * W
    s = f / 0.995
    expect = (80 + s * (0.05 - 0.1), 60 - s * (-0.03 + 0.1), 80 + s * (0.05 + 0.1), 60 - s * (-0.03 - 0.1))
    assert np.allclose(o.bbox, expect, atol=1.0)
    assert np.allclose(o.bbox_amodal, expect, atol=1e-9)  # the box's amodal extreme is its top face
    assert o.attributes["scale"] == 1.2 and o.attributes["shape_kind"] == "box"
    assert np.isclose(o.attributes["distance_m"], 1.0)
    assert o.keypoints is None  # category without keypoints
    json.dumps(object_to_record(o))  # JSON-able record
    assert np.allclose(np.asarray(ann.camera.K), intrinsics(spec.camera, W, H))


def rect_overlap(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def test_occlusion_of_known_overlap():
    lower = obj(1, tile(), (0.0, 0.0, 0.0))
    upper = obj(2, tile(), (0.1, 0.05, 0.1))  # 0.1 m higher, shifted by half a tile in x
    ann, _, _ = annotate(scene([lower, upper]))
    lo, up = ann.objects
    f = float(W)

    def square(cx, cy, z_top):  # silhouette of a thin tile seen from above: its top face
        s = f / (1.0 - z_top)
        return (80 + s * (cx - 0.1), 60 - s * (cy + 0.1), 80 + s * (cx + 0.1), 60 - s * (cy - 0.1))

    a = square(0.0, 0.0, 0.005)
    b = square(0.1, 0.05, 0.105)
    expected = rect_overlap(a, b) / ((a[2] - a[0]) * (a[3] - a[1]))
    assert 0.2 < expected < 0.5
    assert abs(lo.occlusion - expected) < 0.03
    assert up.occlusion == 0.0
    assert lo.area + rect_overlap(a, b) == pytest.approx((a[2] - a[0]) * (a[3] - a[1]), rel=0.05)
    # fully hidden object: still listed, area 0, zero box, occlusion 1
    hidden = obj(3, tile(0.05), (0.1, 0.05, 0.05))
    ann, _, _ = annotate(scene([lower, upper, hidden]))
    h = ann.objects[2]
    assert h.area == 0 and h.bbox == (0.0, 0.0, 0.0, 0.0) and h.occlusion == 1.0
    assert rle_to_mask(h.mask).sum() == 0


def test_truncation_at_image_border_and_outside():
    f = float(W)
    x_edge = -80 / f * 0.995  # world x whose top-face point projects onto the left image border
    spec = scene([obj(1, tile(0.1), (x_edge, 0.0, 0.0)), obj(2, tile(0.1), (5.0, 0.0, 0.0))])
    ann, _, _ = annotate(spec)
    half, gone = ann.objects
    assert abs(half.truncation - 0.5) < 0.03
    assert half.bbox[0] == 0.0 and half.bbox_amodal[0] == pytest.approx(-f * 0.05 / 0.995)
    assert half.occlusion == pytest.approx(0.0, abs=1e-9)
    assert gone.area == 0 and gone.truncation == 1.0 and gone.bbox == (0.0, 0.0, 0.0, 0.0)
    assert gone.bbox_amodal[0] > W


def test_object_through_near_plane_is_annotated():
    cam = camera(location=(0.0, 0.0, 0.3))
    big = obj(1, ShapeSpec(kind="box", dimensions=(0.4, 0.4, 1.0)), (0.0, 0.0, 0.0))
    ann, ids, _ = annotate(scene([big], cam=cam))
    (o,) = ann.objects
    assert o.area == W * H and o.occlusion == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < o.truncation < 1.0


def test_keypoint_visibility_cases():
    nuts = [sphere_nut(1, (0.0, 0.0, 0.0)), sphere_nut(2, (0.3, 0.0, 0.0), side=-1.0)]
    nuts.append(sphere_nut(3, (-0.3, 0.0, 0.0), side=-1.0))
    ann, _, _ = annotate(scene(nuts))
    a, b, c = ann.objects
    top, bottom, side, far, absent = a.keypoints
    assert top[2] == 2 and np.allclose(top[:2], (80.0, 60.0))
    assert bottom[2] == 1 and np.allclose(bottom[:2], (80.0, 60.0))
    assert side[2] == 2  # on the silhouette (within a pixel): visible
    assert far == (0.0, 0.0, 0) and absent == (0.0, 0.0, 0)
    assert a.num_keypoints == 3
    # Off-centre nuts seen obliquely: the equator point turned 75 deg from the camera is visible on
    # a steep surface (slope tolerance), the mirrored one is behind the nut's own limb (occluded).
    assert b.keypoints[0][:2] == pytest.approx((80 + 160 * 0.3 / 0.96, 60.0))
    assert b.keypoints[0][2] == 2 and b.keypoints[2][2] == 2
    assert c.keypoints[0][2] == 2 and c.keypoints[2][2] == 1
    # outside the image: move the nut so its top projects beyond the right border
    spec = scene([sphere_nut(1, (0.6, 0.0, 0.0))])
    ann, _, _ = annotate(spec)
    assert ann.objects[0].keypoints[0] == (0.0, 0.0, 0)
    # occluded by a distractor hovering above the top keypoint
    cover = obj(9, tile(0.03), (0.0, 0.0, 0.2), cat=None)
    ann, ids, _ = annotate(scene([sphere_nut(1, (0.0, 0.0, 0.0)), cover]))
    (nut,) = ann.objects
    assert nut.keypoints[0][2] == 1 and nut.keypoints[2][2] == 2
    (d,) = ann.distractors
    assert d["instance_id"] == 9 and d["area"] == int((ids == 9).sum()) > 0
    assert d["occlusion"] == 0.0 and json.dumps(d)
    assert 0.0 < nut.occlusion < 0.5


def test_box3d_level_camera_yaw_and_corners():
    cam = camera(location=(0.0, -2.0, 0.1), target=(0.0, 0.0, 0.1))  # level, looking along world +Y
    theta = 0.7
    quat = (math.cos(theta / 2), 0.0, 0.0, math.sin(theta / 2))  # yaw about world up
    shape = ShapeSpec(kind="box", dimensions=(0.3, 0.2, 0.1))
    o = obj(1, shape, (0.1, 0.2, 0.05), quat=quat)
    spec = scene([o], cam=cam)
    T = world_to_cam_cv(cam)
    b = box3d_of(o, T)
    assert b.rotation_y == pytest.approx(-theta)  # yaw about world up = -yaw about camera +Y (down)
    assert b.dimensions == (0.1, 0.2, 0.3)
    assert np.allclose(b.center, transform_points(T, np.array([o.location]))[0])
    mesh = build_mesh(shape)
    cam_verts = transform_points(T @ object_to_world(o.location, o.rotation_quat_wxyz), mesh.vertices)
    corners = np.asarray(b.corners)
    # every box corner is a mesh vertex; corner i = 4*bx + 2*by + bz has local signs (bx, by, bz)
    assert all(np.min(np.linalg.norm(cam_verts - c, axis=1)) < 1e-12 for c in corners)
    local = transform_points(np.linalg.inv(T @ object_to_world(o.location, o.rotation_quat_wxyz)), corners)
    assert np.allclose(np.sign(local[5]), [1, -1, 1]) and np.allclose(np.sign(local[0]), [-1, -1, -1])
    # an upright object has its height along camera -Y for a level camera
    assert np.allclose(corners[1] - corners[0], [0.0, -0.1, 0.0], atol=1e-12)
    ann, _, _ = annotate(spec)
    uv, _ = project(intrinsics(cam, W, H), np.eye(4), corners)
    amodal = ann.objects[0].bbox_amodal
    assert np.allclose([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()], amodal, atol=1e-9)
    # KITTI sign convention: ry = +pi/2 points +X towards the camera (-Z)
    turned = obj(1, shape, (0.0, 0.0, 0.05), quat=(math.cos(-math.pi / 4), 0.0, 0.0, math.sin(-math.pi / 4)))
    b2 = box3d_of(turned, T)
    assert b2.rotation_y == pytest.approx(math.pi / 2)
    x_dir = np.asarray(b2.corners[4]) - np.asarray(b2.corners[0])
    assert x_dir[2] < 0 and abs(x_dir[0]) < 1e-12


def test_bad_inputs_raise_geometry_errors():
    spec = scene([obj(1, tile(), (0.0, 0.0, 0.0))])
    ids, depth = zbuffer_scene(spec)
    with pytest.raises(GeometryError, match="instance_ids"):
        annotate_frame(spec, ids[:-1], depth)
    with pytest.raises(GeometryError, match="depth"):
        annotate_frame(spec, ids, depth[:, :-1])
    orphan = scene([obj(1, tile(), (0.0, 0.0, 0.0), cat=7)])
    with pytest.raises(GeometryError, match=r"objects\[0\].category_id"):
        annotate_frame(orphan, ids, depth)


def test_support_plane_occludes_but_stays_background():
    below = obj(1, tile(0.1), (0.0, 0.0, -0.05))  # under the table
    spec = scene([below])
    ids, depth = zbuffer_scene(spec, include_support=True)
    assert not (ids == 1).any() and np.allclose(depth, 1.0, atol=1e-5)
    ann = annotate_frame(spec, ids, depth)
    assert ann.objects[0].area == 0 and ann.objects[0].occlusion == 1.0
