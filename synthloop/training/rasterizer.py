"""DetectNet_v2 ground-truth rasterizer (TLT ``bbox_rasterizer_config``), pure numpy.

The output grid has stride ``stride`` pixels: cell (row i, col j) has its centre at pixel
``((j + 0.5) * stride, (i + 0.5) * stride)`` (continuous coords, pixel i covers [i, i+1)).

Per object (box x1, y1, x2, y2, width w, height h) the *coverage ellipse* is centred at
``(x1 + cov_center_x * w, y1 + cov_center_y * h)`` with radii
``max(cov_radius_x * w / 2, bbox_min_radius * stride)`` and likewise for y (``bbox_min_radius`` is
in grid cells, so every object covers at least its centre cell). With ``d`` the normalized
elliptical distance of a cell centre, cells with ``d <= 1`` get coverage 1 and the object's bbox
target; cells with ``1 < d <= 1 / deadzone_radius`` are *dormant*: coverage-loss weight 0, so
cells near an object's border count neither as object nor as background.

Bbox targets (TLT style): for a covered cell with centre (cx, cy), the 4 channels are
``((x1 - cx) / scale, (y1 - cy) / scale, (x2 - cx) / scale, (y2 - cy) / scale)`` with ``scale`` =
``bbox_norm`` pixels; :func:`decode_boxes` inverts this exactly.

Objects are drawn largest first, so where they overlap the smaller (usually nearer) one owns the cell.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class RasterParams(BaseModel):
    """Per-class rasterizer parameters (TLT names; ``bbox_min_radius`` in grid cells)."""

    model_config = ConfigDict(extra="forbid")

    cov_center_x: float = Field(0.5, ge=0, le=1)
    cov_center_y: float = Field(0.5, ge=0, le=1)
    cov_radius_x: float = Field(1.0, gt=0)
    cov_radius_y: float = Field(1.0, gt=0)
    bbox_min_radius: float = Field(0.5, ge=0)
    deadzone_radius: float = Field(0.67, gt=0, le=1)


def grid_centers(grid_h: int, grid_w: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid_h, grid_w) arrays of cell-centre x and y in pixels."""
    cy, cx = np.meshgrid(
        (np.arange(grid_h) + 0.5) * stride, (np.arange(grid_w) + 0.5) * stride, indexing="ij"
    )
    return cx, cy


def rasterize(
    boxes: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    grid_h: int,
    grid_w: int,
    stride: int,
    params: list[RasterParams],
    bbox_norm: float = 35.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets for one image.

    ``boxes`` (N, 4) pixel x1, y1, x2, y2; ``labels`` (N,) in 1..num_classes; ``params`` one per class.
    Returns ``cov`` (C, Gh, Gw) float32 in {0, 1}, ``bbox`` (C, 4, Gh, Gw) float32 (zero where
    cov is 0) and ``cov_weight`` (C, Gh, Gw) float32 (0 in dormant rings, else 1).
    """
    cov = np.zeros((num_classes, grid_h, grid_w), np.float32)
    bbox = np.zeros((num_classes, 4, grid_h, grid_w), np.float32)
    weight = np.ones((num_classes, grid_h, grid_w), np.float32)
    cx, cy = grid_centers(grid_h, grid_w, stride)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for k in np.argsort(-areas, kind="stable"):
        c = int(labels[k]) - 1
        p = params[c]
        x1, y1, x2, y2 = boxes[k]
        w, h = x2 - x1, y2 - y1
        ex, ey = x1 + p.cov_center_x * w, y1 + p.cov_center_y * h
        rx = max(p.cov_radius_x * w / 2, p.bbox_min_radius * stride, 1e-6)
        ry = max(p.cov_radius_y * h / 2, p.bbox_min_radius * stride, 1e-6)
        d = np.sqrt(((cx - ex) / rx) ** 2 + ((cy - ey) / ry) ** 2)
        inside = d <= 1.0
        if not inside.any():  # tiny or off-grid box: own the nearest cell
            inside = d == d.min()
        ring = (d <= 1.0 / p.deadzone_radius) & ~inside & (cov[c] == 0)
        weight[c][ring] = 0.0
        cov[c][inside] = 1.0
        weight[c][inside] = 1.0
        for ch, (coord, centre) in enumerate(((x1, cx), (y1, cy), (x2, cx), (y2, cy))):
            bbox[c, ch][inside] = ((coord - centre[inside]) / bbox_norm).astype(np.float32)
    return cov, bbox, weight


def decode_boxes(bbox: np.ndarray, stride: int, bbox_norm: float = 35.0) -> np.ndarray:
    """Inverse of the bbox encoding: (C, 4, Gh, Gw) -> (C, Gh, Gw, 4) pixel x1, y1, x2, y2 (float64)."""
    _, _, gh, gw = bbox.shape
    cx, cy = grid_centers(gh, gw, stride)
    b = bbox.astype(np.float64) * bbox_norm
    return np.stack([b[:, 0] + cx, b[:, 1] + cy, b[:, 2] + cx, b[:, 3] + cy], axis=-1)
