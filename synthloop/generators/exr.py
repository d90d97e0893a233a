"""Read the id/depth multilayer EXR written by the Blender data pass (``openexr``, no bpy).

Blender 4.2 writes one part with channels ``IndexOB.V`` and ``Depth.V`` (some versions prefix
the view layer, ``ViewLayer.IndexOB.V``; Blender 5 uses other part/channel names), so channels
are looked up by their pass name component. Arrays come out of OpenEXR top row first (row 0 is
the top of the image, as in the PNG); Blender flips its bottom-up buffers when saving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthloop.errors import RenderError

#: Cycles writes 1e10 as the depth of background pixels; anything this far is "no hit".
NO_HIT_DEPTH = 1e9

_ID_NAMES = ("IndexOB", "Object Index", "ObjectIndex")
_DEPTH_NAMES = ("Depth", "Z")


def read_exr_channels(path: str | Path) -> dict[str, np.ndarray]:
    """All channels of all parts as ``{"<part>/<channel>" or "<channel>": (H, W) array}``."""
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise RenderError(f"{path}: EXR file does not exist")
    try:
        f = OpenEXR.File(str(path), separate_channels=True)
    except Exception as e:  # OpenEXR raises RuntimeError/ValueError variants
        raise RenderError(f"{path}: cannot read EXR: {e}") from e
    out: dict[str, np.ndarray] = {}
    multi = len(f.parts) > 1
    for part in f.parts:
        prefix = f"{part.name()}/" if multi and callable(getattr(part, "name", None)) else ""
        for name, ch in part.channels.items():
            out[prefix + name] = np.asarray(ch.pixels)
    return out


def _find(channels: dict[str, np.ndarray], names: tuple[str, ...], path: Path, what: str) -> np.ndarray:
    """The channel whose name has a component (split on '/' and '.') in ``names``."""
    hits = []
    for key in channels:
        parts = key.replace("/", ".").split(".")
        if any(p in names for p in parts) and (parts[-1] in {"V", "X", "R", "Z"} or parts[-1] in names):
            hits.append(key)
    if not hits:
        raise RenderError(f"{path}: no {what} channel (looked for {names}) among {sorted(channels)}")
    hits.sort(key=len)  # prefer the plainest name when a layer prefix duplicates it
    arr = channels[hits[0]]
    if arr.ndim != 2:
        raise RenderError(f"{path}: channel {hits[0]!r} has shape {arr.shape}, expected (H, W)")
    return arr


def id_depth_from_channels(
    ids_raw: np.ndarray, depth_raw: np.ndarray, *, no_hit: float = NO_HIT_DEPTH
) -> tuple[np.ndarray, np.ndarray]:
    """Convert raw float passes: ids (H, W) -> int32 (rounded; must be whole numbers >= 0),
    depth (H, W) metres -> float32 with ``inf`` where depth >= ``no_hit`` or not finite."""
    ids_f = np.asarray(ids_raw, dtype=np.float64)
    ids = np.rint(ids_f)
    if ids.size and (np.abs(ids_f - ids).max() > 1e-3 or ids.min() < 0):
        raise RenderError("object index pass is not whole non-negative numbers (anti-aliased index pass?)")
    depth = np.asarray(depth_raw, dtype=np.float32).copy()
    depth[~np.isfinite(depth) | (depth >= no_hit)] = np.inf
    return ids.astype(np.int32), depth


def read_id_depth_exr(path: str | Path, *, no_hit: float = NO_HIT_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """``(instance_ids (H, W) int32, depth (H, W) float32 metres, inf where nothing was hit)``.

    Depth is the camera-space z (distance along the optical axis), top image row first.
    """
    path = Path(path)
    channels = read_exr_channels(path)
    ids_raw = _find(channels, _ID_NAMES, path, "object index")
    depth_raw = _find(channels, _DEPTH_NAMES, path, "depth")
    if ids_raw.shape != depth_raw.shape:
        raise RenderError(f"{path}: index {ids_raw.shape} and depth {depth_raw.shape} shapes differ")
    return id_depth_from_channels(ids_raw, depth_raw, no_hit=no_hit)
