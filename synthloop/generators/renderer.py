"""The renderer boundary: ``Renderer.render(SceneSpec) -> RenderedFrame``.

Nothing outside :mod:`synthloop.generators` imports ``bpy``; everything computed from a render
(boxes, RLE, keypoint visibility, occlusion, KITTI angles) is a pure function of these arrays and
the SceneSpec's camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from synthloop.scenes.spec import SceneSpec


@dataclass
class RenderedFrame:
    """Raw outputs of one render.

    ``rgb``: (H, W, 3) uint8, display-referred sRGB. ``instance_ids``: (H, W) int32 object pass
    indices (0 = background; exact integers, not anti-aliased). ``depth``: (H, W) float32, metres
    along the camera's optical axis (camera-space z), ``np.inf`` where nothing was hit.
    ``timings``: seconds spent, e.g. ``{"render": .., "read": ..}``.
    """

    rgb: np.ndarray
    instance_ids: np.ndarray
    depth: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    blender_version: str = ""


class Renderer(Protocol):
    def render(self, spec: SceneSpec) -> RenderedFrame: ...

    def close(self) -> None: ...
