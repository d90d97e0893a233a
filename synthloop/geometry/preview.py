"""A Blender-free preview of a SceneSpec: numpy z-buffer + annotations drawn into an RGB array.

Meant for checking recipes, cameras and annotation logic in milliseconds: objects are flat-shaded
in their material's base colour (Lambert term from depth-map normals, head light), the support
plane is grey, labeled objects get their visible box (white) and keypoints (green = visible,
red = occluded), distractors a grey box. Pure numpy; writing the image is the caller's job.
"""

from __future__ import annotations

import numpy as np

from synthloop.geometry.annotate import FrameAnnotation, annotate_frame, zbuffer_scene
from synthloop.scenes.spec import SceneSpec

SUPPORT_RGB = (0.55, 0.55, 0.55)
BACKGROUND_RGB = (0.08, 0.08, 0.1)


def _shading(depth: np.ndarray, fx: float) -> np.ndarray:
    """Lambert factor (H, W) in [0.25, 1] from depth-map normals for a light at the camera."""
    d = np.where(np.isfinite(depth), depth, np.nan).astype(np.float64)
    gy, gx = np.gradient(d)
    # normal ~ (-dz/dx, -dz/dy, pixel footprint) in camera units; footprint = z / fx per pixel
    foot = d / fx
    n = np.stack([-gx, -gy, -foot], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    lam = np.abs(n[..., 2])
    return np.clip(np.nan_to_num(0.25 + 0.75 * lam, nan=1.0), 0.25, 1.0)


def _rect(img: np.ndarray, box: tuple[float, float, float, float], rgb: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(0, min(w - 1, x1)), max(0, min(h - 1, y1))
    x2, y2 = max(0, min(w - 1, x2 - 1)), max(0, min(h - 1, y2 - 1))
    img[y1, x1 : x2 + 1] = rgb
    img[y2, x1 : x2 + 1] = rgb
    img[y1 : y2 + 1, x1] = rgb
    img[y1 : y2 + 1, x2] = rgb


def _dot(img: np.ndarray, u: float, v: float, rgb: tuple[int, int, int], r: int = 1) -> None:
    h, w = img.shape[:2]
    c, rr = int(u), int(v)
    img[max(0, rr - r) : min(h, rr + r + 1), max(0, c - r) : min(w, c + r + 1)] = rgb


def preview_frame(spec: SceneSpec) -> tuple[np.ndarray, FrameAnnotation]:
    """Render ``spec`` with the z-buffer and annotate it: ``(rgb (H, W, 3) uint8, FrameAnnotation)``.

    The image is display-ready (gamma 1/2.2 applied to the linear base colours).
    """
    ids, depth = zbuffer_scene(spec, include_support=True)
    ann = annotate_frame(spec, ids, depth)
    colours = np.zeros((int(ids.max()) + 1, 3))
    colours[0] = SUPPORT_RGB
    for obj in spec.objects:
        colours[obj.instance_id] = obj.material.base_color_rgb
    lin = colours[ids] * _shading(depth, float(ann.camera.K[0][0]))[..., None]
    lin[~np.isfinite(depth)] = BACKGROUND_RGB
    img = (np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255).round().astype(np.uint8)
    for d in ann.distractors:
        if d["bbox"] is not None:
            _rect(img, tuple(d["bbox"]), (128, 128, 128))
    for o in ann.objects:
        if o.area > 0:
            _rect(img, o.bbox, (255, 255, 255))
        for u, v, vis in o.keypoints or ():
            if vis:
                _dot(img, u, v, (0, 255, 0) if vis == 2 else (255, 0, 0))
    return img, ann
