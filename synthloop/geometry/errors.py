"""The one error type of :mod:`synthloop.geometry`: bad shapes, cameras, masks or arrays."""

from __future__ import annotations

from synthloop.errors import SynthloopError


class GeometryError(SynthloopError):
    """Input that geometry code cannot work with (bad ShapeSpec field, mesh file, mask, array shape).

    ``path`` names the file (mesh file, dataset record) when there is one; ``where`` names the
    field, e.g. ``"shape.segments"`` or ``"objects[3].category_id"``.
    """
