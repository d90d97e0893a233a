"""Per-frame annotation: (SceneSpec, rendered instance ids, rendered depth) -> labels, pure numpy.

For every object of the spec (labeled objects and distractors alike):

* visible mask = ``instance_ids == instance_id``; ``area`` = its pixel count; ``bbox`` = its tight
  box; ``mask`` = its COCO RLE. An object with no visible pixel is still returned, with
  ``area == 0``, ``bbox == (0, 0, 0, 0)`` and an empty mask: exporters (COCO/KITTI) and training
  drop objects with ``area == 0``; keeping them lets analyses count fully hidden objects.
* amodal silhouette: the object's mesh (:func:`~synthloop.geometry.meshes.mesh_cache`) placed by
  ``object_to_world``, clipped at the camera's ``clip_start`` and rasterized with the pixel-centre
  rule of :mod:`synthloop.geometry.raster`. ``bbox_amodal`` = box of the projected (near-clipped)
  vertices, not clipped to the image; ``(0, 0, 0, 0)`` when the object is entirely behind the
  near plane.
* ``truncation`` = 1 - (amodal pixels inside the image) / (amodal pixels on a canvas covering the
  image and the amodal box). The extended canvas is sampled at pixel centres when it has at most
  ``MAX_CANVAS_FACTOR`` times the image's pixels, otherwise on a coarser grid (``step`` > 1) that
  keeps it at that size (both counts then come from the same coarse grid). 1.0 when the object is
  entirely behind the near plane; 0.0 when its silhouette covers no sample at all.
* ``occlusion`` = 1 - visible / (amodal pixels inside the image), clipped to [0, 1]; 0.0 when no
  amodal pixel is inside the image (then ``truncation`` says why). Cycles' object-index pass is
  sampled at pixel centres like the rasterizer (tests/test_geometry_blender_parity.py: identical
  masks up to float32 ties within ~1e-3 px of an edge), so an unoccluded object gets 0.0.
* keypoints (labeled objects, the category's keypoint order; a name missing from
  ``keypoints_local`` is unlabeled): projected from the object's local frame. Behind the near
  plane or outside the image -> ``(0, 0, 0)``. Otherwise the rendered depth ``d`` at the pixel
  containing (u, v) is compared with the keypoint's camera depth ``z``: visibility 1 (occluded,
  by anything including the object itself) if ``d < z - tol``, else 2. The tolerance
  ``tol = max(KP_TOL_ABS, KP_TOL_REL * z, KP_TOL_SLOPE * g)`` covers the surface between the
  keypoint and the pixel centre (<= 0.71 px away) with a safety factor: ``g`` is the
  largest depth change (metres per pixel) from that pixel to its 4-neighbours of the same
  instance, i.e. the local depth slope times the pixel footprint z / fx, and ``KP_TOL_SLOPE = 2``
  allows for ~2 px of it. The 2 mm / 1 % floors absorb depth-pass precision and the difference
  between a keypoint placed on the undisplaced shape and the displaced (wrinkled) surface; a
  keypoint hidden behind the object's own front surface is still reported occluded whenever the
  object is thicker than the tolerance (a 2 cm nut at 0.5 m: tol = 5 mm).
  Persons (shape kind ``body``): their COCO joints lie inside the body, so the depth test allows
  for each keypoint's inset ``r`` (its distance to the nearest vertex of the posed mesh: ~0 for
  the nose, eyes and ears, a few cm for the joints). A keypoint is 2 when the pixel containing it
  shows the person itself at ``d >= z - (r + BODY_KP_SLACK_M)``, else 1: hidden by another
  instance, a distractor or the support, or by the person's own body (the face seen from behind,
  an arm across the hip); 0 outside the image as above. ``BODY_KP_SLACK_M`` (6 cm) covers a
  joint seen across a limb's thickness, where the surface in front is further than the nearest
  vertex; the back of a head is ~18 cm in front of the face keypoints it hides.
* ``box3d``: oriented box in the OpenCV camera frame; centre = object origin (the mesh's
  bounding-box centre), dimensions (h, w, l) = (dims_z, dims_y, dims_x); with
  ``R = R_cam_from_world @ R_world_from_object`` the corners are ``centre + R @ (sx*l/2, sy*w/2,
  sz*h/2)`` for corner index ``i = 4*bx + 2*by + bz`` and ``s = +1`` where the bit is set, else -1
  (local x, y, z order). ``rotation_y`` is the KITTI yaw of the object's local +X axis ``x = R[:, 0]``
  about camera +Y: KITTI rotates object coordinates by ``Ry(ry) = [[c, 0, s], [0, 1, 0], [-s, 0, c]]``,
  which sends +X to ``(cos ry, 0, -sin ry)``, hence ``ry = atan2(-x_z, x_x)`` in (-pi, pi]:
  0 = +X along camera +X (right), +pi/2 = along camera -Z (towards the camera), -pi/2 = along +Z
  (away from it). For a tilted object it is the yaw of +X projected onto the camera XZ plane.
* ``attributes``: derived, instance-independent scalars (``shape_kind``, ``size_m`` = largest
  dimension, ``distance_m`` = camera depth of the centre, ``material_pattern``) updated with the
  object's sampled ``params`` (params win on a name clash).

Distractors (``category_id is None``) are summarised as JSON-able dicts ``{"instance_id", "bbox"
(list or None), "area", "occlusion", "truncation"}`` -- they matter as occluders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthloop.dataset.types import Box3D, CameraModel, Keypoint, ObjectAnnotation
from synthloop.geometry.camera import intrinsics, world_to_cam_cv
from synthloop.geometry.errors import GeometryError
from synthloop.geometry.masks import mask_to_bbox, mask_to_rle
from synthloop.geometry.meshes import mesh_cache
from synthloop.geometry.raster import clip_project_mesh, rasterize_triangles, render_zbuffer
from synthloop.geometry.transforms import object_to_world, transform_points
from synthloop.scenes.spec import CategorySpec, ObjectSpec, SceneSpec

KP_TOL_ABS = 2e-3
KP_TOL_REL = 0.01
KP_TOL_SLOPE = 2.0
BODY_KP_SLACK_M = 0.06
MAX_CANVAS_FACTOR = 4
EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


@dataclass
class FrameAnnotation:
    """Annotations of one frame: labeled ``objects`` (spec order), the ``camera`` (K and OpenCV
    world_to_cam) and JSON-able ``distractors`` summaries (see module docstring)."""

    objects: list[ObjectAnnotation]
    camera: CameraModel
    distractors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AmodalInfo:
    """Amodal silhouette of one object: the in-image mask (H, W) bool, its box (xyxy, unclipped),
    ``inside`` = amodal pixels in the image, ``truncation`` in [0, 1]."""

    mask: np.ndarray
    bbox: tuple[float, float, float, float]
    inside: int
    truncation: float


def amodal_silhouette(
    K: np.ndarray,
    world_to_cam: np.ndarray,
    verts_world: np.ndarray,
    faces: np.ndarray,
    width: int,
    height: int,
    near: float,
    closed: bool = False,
) -> AmodalInfo:
    """Rasterize a world-space mesh without occluders and measure its truncation (module doc).

    ``closed``: the mesh is watertight and outward-wound; then, if no face needed near-plane
    clipping, only front faces are rasterized (same silhouette, half the work).
    """
    uv, fc, _ = clip_project_mesh(K, world_to_cam, verts_world, faces, near)
    front_only = closed and len(fc) == len(faces) and bool(np.array_equal(fc, faces))
    empty = np.zeros((height, width), dtype=bool)
    if len(fc) == 0:
        return AmodalInfo(empty, EMPTY_BOX, 0, 1.0)
    used = uv[np.unique(fc)]
    x1, y1 = used.min(axis=0)
    x2, y2 = used.max(axis=0)
    bbox = (float(x1), float(y1), float(x2), float(y2))
    mask = rasterize_triangles(uv, fc, width, height, front_only=front_only)
    inside = int(mask.sum())
    if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
        return AmodalInfo(mask, bbox, inside, 0.0)
    # Extended canvas: the image plus the amodal box, in whole pixels.
    ex0, ey0 = min(0, math.floor(x1)), min(0, math.floor(y1))
    ex1, ey1 = max(width, math.ceil(x2)), max(height, math.ceil(y2))
    cw, ch = ex1 - ex0, ey1 - ey0
    limit = MAX_CANVAS_FACTOR * width * height
    if cw * ch <= limit:
        total = int(rasterize_triangles(uv, fc, cw, ch, origin=(ex0, ey0), front_only=front_only).sum())
        inside_n, total_n = inside, total
    else:
        step = math.sqrt(cw * ch / limit)
        nx, ny = math.ceil(cw / step), math.ceil(ch / step)
        coarse = rasterize_triangles(uv, fc, nx, ny, origin=(ex0, ey0), step=step, front_only=front_only)
        cx = ex0 + step * (np.arange(nx) + 0.5)
        cy = ey0 + step * (np.arange(ny) + 0.5)
        in_img = ((cy >= 0) & (cy < height))[:, None] & ((cx >= 0) & (cx < width))[None, :]
        inside_n, total_n = int((coarse & in_img).sum()), int(coarse.sum())
    trunc = 0.0 if total_n == 0 else min(1.0, max(0.0, 1.0 - inside_n / total_n))
    return AmodalInfo(mask, bbox, inside, trunc)


def box3d_of(obj: ObjectSpec, world_to_cam: np.ndarray) -> Box3D:
    """Oriented 3D box of ``obj`` in the OpenCV camera frame (conventions in the module doc)."""
    T = np.asarray(world_to_cam, dtype=np.float64) @ object_to_world(obj.location, obj.rotation_quat_wxyz)
    R, centre = T[:3, :3], T[:3, 3]
    dx, dy, dz = (float(v) for v in obj.shape.dimensions)
    bits = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=np.float64)
    local = (2.0 * bits - 1.0) * (np.array([dx, dy, dz]) / 2.0)
    corners = local @ R.T + centre
    x_dir = R[:, 0]
    ry = math.atan2(-x_dir[2], x_dir[0]) + 0.0  # + 0.0 turns -0.0 into 0.0
    return Box3D(
        center=(float(centre[0]), float(centre[1]), float(centre[2])),
        dimensions=(dz, dy, dx),
        rotation_y=float(ry),
        corners=tuple((float(c[0]), float(c[1]), float(c[2])) for c in corners),
    )


def keypoint_tolerance(depth: np.ndarray, instance_ids: np.ndarray, row: int, col: int, z: float) -> float:
    """Depth tolerance (metres) for the keypoint visibility test at pixel (row, col) (module doc)."""
    h, w = depth.shape
    d0 = float(depth[row, col])
    g = 0.0
    if np.isfinite(d0):
        inst = instance_ids[row, col]
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + dr, col + dc
            if 0 <= r < h and 0 <= c < w and instance_ids[r, c] == inst and np.isfinite(depth[r, c]):
                g = max(g, abs(float(depth[r, c]) - d0))
    return max(KP_TOL_ABS, KP_TOL_REL * z, KP_TOL_SLOPE * g)


def body_keypoint_insets(obj: ObjectSpec) -> dict[str, float]:
    """Each of a person's keypoints' distance (metres) to the nearest vertex of its posed mesh:
    how deep inside the body it lies (module doc)."""
    verts = mesh_cache(obj.shape).vertices
    names = list(obj.keypoints_local)
    pts = np.asarray([obj.keypoints_local[n] for n in names], dtype=np.float64).reshape(-1, 3)
    d2 = ((verts[None, :, :] - pts[:, None, :]) ** 2).sum(axis=2)
    return {n: float(np.sqrt(d2[i].min())) for i, n in enumerate(names)}


def project_keypoints(
    obj: ObjectSpec,
    names: tuple[str, ...],
    K: np.ndarray,
    world_to_cam: np.ndarray,
    instance_ids: np.ndarray,
    depth: np.ndarray,
    near: float,
) -> tuple[Keypoint, ...]:
    """COCO keypoints ``(u, v, visibility)`` of ``obj`` in the order ``names`` (module doc)."""
    h, w = depth.shape
    T = np.asarray(world_to_cam, dtype=np.float64) @ object_to_world(obj.location, obj.rotation_quat_wxyz)
    insets = body_keypoint_insets(obj) if obj.shape.kind == "body" else {}
    out: list[Keypoint] = []
    for name in names:
        if name not in obj.keypoints_local:
            out.append((0.0, 0.0, 0))
            continue
        pc = transform_points(T, np.asarray([obj.keypoints_local[name]]))[0]
        z = float(pc[2])
        if z < near:
            out.append((0.0, 0.0, 0))
            continue
        u = float(K[0, 0] * pc[0] / z + K[0, 1] * pc[1] / z + K[0, 2])
        v = float(K[1, 1] * pc[1] / z + K[1, 2])
        if not (0.0 <= u < w and 0.0 <= v < h):
            out.append((0.0, 0.0, 0))
            continue
        col, row = int(math.floor(u)), int(math.floor(v))
        if obj.shape.kind == "body":  # joints lie inside the body (module doc)
            own = int(instance_ids[row, col]) == obj.instance_id
            front = float(depth[row, col]) >= z - (insets[name] + BODY_KP_SLACK_M)
            out.append((u, v, 2 if own and front else 1))
            continue
        d = float(depth[row, col])
        tol = keypoint_tolerance(depth, instance_ids, row, col, z)
        out.append((u, v, 1 if d < z - tol else 2))
    return tuple(out)


def _check_arrays(
    spec: SceneSpec, instance_ids: np.ndarray, depth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    shape = (spec.render.height, spec.render.width)
    ids = np.asarray(instance_ids)
    dep = np.asarray(depth, dtype=np.float32)
    if ids.shape != shape:
        raise GeometryError(
            f"has shape {ids.shape}, expected (height, width) = {shape}", where="instance_ids"
        )
    if dep.shape != shape:
        raise GeometryError(f"has shape {dep.shape}, expected (height, width) = {shape}", where="depth")
    if not np.issubdtype(ids.dtype, np.integer):
        raise GeometryError(f"must be an integer array, got {ids.dtype}", where="instance_ids")
    return ids, dep


def annotate_frame(spec: SceneSpec, instance_ids: np.ndarray, depth: np.ndarray) -> FrameAnnotation:
    """Annotate one rendered frame (see the module docstring for every field's definition).

    ``instance_ids``: (H, W) integer object pass indices, 0 = background; ``depth``: (H, W) float
    metres along the optical axis, ``inf`` where nothing was hit; H, W = ``spec.render``. Returns
    labeled objects in spec order (including fully hidden ones with ``area == 0``), distractor
    summaries and the camera. Raises :class:`GeometryError` on mismatched arrays or an object
    whose category is not in ``spec.categories``.
    """
    ids, dep = _check_arrays(spec, instance_ids, depth)
    view = _View(
        K=intrinsics(spec.camera, spec.render.width, spec.render.height),
        T=world_to_cam_cv(spec.camera),
        near=float(spec.camera.clip_start),
        ids=ids,
        depth=dep,
    )
    cats = {c.id: c for c in spec.categories}
    objects: list[ObjectAnnotation] = []
    distractors: list[dict[str, Any]] = []
    for idx, obj in enumerate(spec.objects):
        if obj.category_id is not None and obj.category_id not in cats:
            raise GeometryError(
                f"category {obj.category_id} is not in the spec's categories",
                where=f"objects[{idx}].category_id",
            )
        seen = _visibility(obj, view)
        if obj.category_id is None:
            distractors.append(
                {
                    "instance_id": int(obj.instance_id),
                    "bbox": None if seen.bbox is None else [float(v) for v in seen.bbox],
                    "area": seen.area,
                    "occlusion": round(seen.occlusion, 6),
                    "truncation": round(seen.amodal.truncation, 6),
                }
            )
        else:
            objects.append(_labeled(obj, cats[obj.category_id], view, seen))
    return FrameAnnotation(
        objects=objects,
        camera=CameraModel(K=view.K.tolist(), world_to_cam=view.T.tolist()),
        distractors=distractors,
    )


@dataclass(frozen=True)
class _View:
    """One frame's camera (intrinsics ``K`` 3x3, OpenCV world-to-camera ``T`` 4x4, near clip in
    metres) and its id (H, W) and depth (H, W, metres) passes."""

    K: np.ndarray
    T: np.ndarray
    near: float
    ids: np.ndarray
    depth: np.ndarray


@dataclass(frozen=True)
class _Seen:
    """What the frame shows of one object: its visible mask (H, W) bool, pixel count, tight box
    (xyxy pixels; None if hidden), amodal silhouette and occlusion in [0, 1]."""

    visible: np.ndarray
    area: int
    bbox: tuple[float, float, float, float] | None
    amodal: AmodalInfo
    occlusion: float


def _visibility(obj: ObjectSpec, view: _View) -> _Seen:
    """The visible and the amodal extent of ``obj`` in ``view``."""
    height, width = view.ids.shape
    visible = view.ids == obj.instance_id
    area = int(visible.sum())
    mesh = mesh_cache(obj.shape)
    verts_world = transform_points(object_to_world(obj.location, obj.rotation_quat_wxyz), mesh.vertices)
    amodal = amodal_silhouette(
        view.K, view.T, verts_world, mesh.faces, width, height, view.near, closed=mesh.closed
    )
    occlusion = 0.0 if amodal.inside == 0 else min(1.0, max(0.0, 1.0 - area / amodal.inside))
    return _Seen(visible, area, mask_to_bbox(visible), amodal, occlusion)


def _labeled(obj: ObjectSpec, cat: CategorySpec, view: _View, seen: _Seen) -> ObjectAnnotation:
    """The annotation of labeled object ``obj`` of category ``cat``: box, mask, keypoints (if the
    category has any), amodal box, occlusion, truncation, 3D box and attributes."""
    keypoints = (
        project_keypoints(obj, cat.keypoints, view.K, view.T, view.ids, view.depth, view.near)
        if cat.keypoints
        else None
    )
    box3d = box3d_of(obj, view.T)
    attributes: dict[str, Any] = {
        "shape_kind": obj.shape.kind,
        "size_m": float(max(obj.shape.dimensions)),
        "distance_m": float(box3d.center[2]),
        "material_pattern": obj.material.pattern,
    }
    attributes.update(obj.params)
    return ObjectAnnotation(
        category_id=int(cat.id),
        bbox=EMPTY_BOX if seen.bbox is None else seen.bbox,
        area=float(seen.area),
        mask=mask_to_rle(seen.visible),
        keypoints=keypoints,
        bbox_amodal=seen.amodal.bbox,
        occlusion=seen.occlusion,
        truncation=seen.amodal.truncation,
        box3d=box3d,
        instance_id=int(obj.instance_id),
        attributes=attributes,
    )


def zbuffer_scene(spec: SceneSpec, include_support: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render ``spec``'s objects with the numpy z-buffer: ``(ids (H, W) int32, depth (H, W) float32)``.

    A Blender-free stand-in for a renderer's id and depth passes (tests, previews). With
    ``include_support`` the support rectangle (z = 0) is drawn with instance id 0, so it occludes
    like the real table but stays background.
    """
    width, height = spec.render.width, spec.render.height
    K = intrinsics(spec.camera, width, height)
    T = world_to_cam_cv(spec.camera)
    meshes = []
    for obj in spec.objects:
        mesh = mesh_cache(obj.shape)
        verts = transform_points(object_to_world(obj.location, obj.rotation_quat_wxyz), mesh.vertices)
        meshes.append((int(obj.instance_id), verts, mesh.faces))
    if include_support:
        sx, sy = (float(v) / 2.0 for v in spec.support.size)
        quad = np.array([[-sx, -sy, 0.0], [sx, -sy, 0.0], [sx, sy, 0.0], [-sx, sy, 0.0]])
        meshes.insert(0, (0, quad, np.array([[0, 1, 2], [0, 2, 3]])))
    return render_zbuffer(meshes, K, T, width, height, near=float(spec.camera.clip_start))
