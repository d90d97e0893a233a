"""Procedural meshes from a :class:`~synthloop.scenes.spec.ShapeSpec`.

``build_mesh(shape)`` returns a :class:`Mesh`: vertices (N, 3) float64 metres in the object's local
frame, faces (M, 3) int64 with counter-clockwise winding seen from outside (normals
``(v1 - v0) x (v2 - v0)`` point outward, positive signed volume). The Blender backend pushes
exactly these triangles into Blender, so annotations computed from them match the render.

Every mesh is finally recentred on its axis-aligned bounding-box centre and rescaled per axis so
its extents equal ``shape.dimensions`` exactly. Procedural meshes are watertight (every edge is
shared by exactly two faces) without degenerate faces, and deterministic: equal ShapeSpecs give
bit-identical arrays (noise comes from ``numpy.random.default_rng`` seeded by ``noise_seed``).

Kinds (fields not listed for a kind are ignored by it):

* ``sphere``, ``ellipsoid``: UV sphere with ``segments`` (>= 3) longitudes and
  ``max(2, segments // 2)`` rings (poles on +-Z), scaled to ``dimensions`` (a "sphere" with
  unequal dimensions is an ellipsoid).
* ``wrinkled_ellipsoid``: radius ``1 + wrinkle_amplitude * n(d)`` on the unit direction ``d``,
  ``n`` in [-1, 1] a 3-octave value noise (lacunarity 2, gain 1/2, normalised). The base octave's
  lattice spacing is ``1 / wrinkle_frequency`` on the unit sphere, so ``wrinkle_frequency`` is
  roughly the number of bumps per radian of arc (about 2*pi*f around the equator); the amplitude
  is a fraction of the radius, in [0, 1). ``dent_*`` are applied too when set.
* ``dented_ellipsoid``: ``dent_count`` smooth dents at seeded random directions, each a C1 bump
  ``dent_depth * (1 - (a / 0.5 rad)^2)^2`` of the angle ``a`` to its centre, overlapping dents
  combined by max (so depth never exceeds ``dent_depth``); ``dent_depth`` is a fraction of the
  radius, in [0, 1). ``wrinkle_*`` are applied too when set.
* ``teardrop``: the sphere's horizontal radius at polar angle ``t`` (from +Z) is multiplied by
  ``sin(t / 2) ** taper``: 0 = ellipsoid, 1 = a conical tip at +Z (0 < taper <= 2 accepted);
  wrinkles and dents apply when set.
* ``box``: a grid-subdivided box; ``bevel`` (metres, clamped to just under half the smallest
  dimension) rounds edges and corners with 6 segments per quarter circle.
* ``cylinder``: axis Z, elliptical section ``dimensions[:2]``, ``segments`` around, capped by
  triangle fans; ``bevel`` is ignored.
* ``mesh``: ``mesh_path`` (.obj/.ply/.glb/...) loaded with trimesh, all geometry merged into one
  mesh (scene transforms applied), degenerate faces dropped, winding flipped if the (watertight)
  mesh has negative volume. Loaded meshes are not decimated and are watertight only if the file is.
* ``body``: a posed, skinned person from :func:`synthloop.bodies.model.pose_body` (``shape.body``);
  ``dimensions`` should be its posed extents (the sampler sets them), so the fit is a no-op.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from synthloop.bodies.model import BodyModelUnavailable, pose_body
from synthloop.bodies.outfit import body_slots
from synthloop.geometry.errors import GeometryError
from synthloop.scenes.spec import ShapeSpec

DENT_RADIUS_RAD = 0.5
NOISE_OCTAVES = 3
BOX_GRID_SEGMENTS = 4
BEVEL_SEGMENTS = 3  # per face side of a bevel, i.e. 6 per quarter circle
MAX_SEGMENTS = 256
MESH_CACHE_SIZE = 64
_SPHERE_KINDS = ("sphere", "ellipsoid", "wrinkled_ellipsoid", "dented_ellipsoid", "teardrop")


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh: ``vertices`` (N, 3) float64 metres (object local frame), ``faces`` (M, 3)
    int64, counter-clockwise seen from outside. Arrays are read-only (meshes are cached/shared).
    ``closed``: watertight with consistent winding (see :func:`is_watertight`)."""

    vertices: np.ndarray
    faces: np.ndarray
    closed: bool = False
    # (M,) material slot per face (bodies: synthloop.bodies.outfit's TOP, SKIN, BOTTOM, SHOES, HAIR, EYES)
    face_groups: np.ndarray | None = None

    @property
    def extents(self) -> np.ndarray:
        """(3,) axis-aligned bounding-box size in metres."""
        return self.vertices.max(axis=0) - self.vertices.min(axis=0)


# ------------------------------------------------------------------ mesh properties (tests, checks)
def _edge_keys(edges: np.ndarray) -> np.ndarray:
    """(K, 2) int64 vertex-index pairs -> (K,) int64 keys, equal exactly for equal pairs (a 1-D
    ``np.unique`` on them is several times faster than ``np.unique(axis=0)`` on the pairs)."""
    e = edges - edges.min(initial=0)
    return e[:, 0] * (int(e.max(initial=0)) + 1) + e[:, 1]


def edge_use_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces use each distinct undirected edge: (E,) int counts (edges in sorted order)."""
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    e.sort(axis=1)
    _, counts = np.unique(_edge_keys(e), return_counts=True)
    return counts


def is_watertight(faces: np.ndarray) -> bool:
    """True when every undirected edge is shared by exactly two faces and every directed edge
    occurs once (consistent winding)."""
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0 or not np.all(edge_use_counts(f) == 2):
        return False
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    return len(np.unique(_edge_keys(directed))) == len(directed)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(M,) triangle areas in square metres."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (m^3) of a closed mesh: positive for outward (counter-clockwise) winding."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


# ------------------------------------------------------------------ validation and finishing
def _err(msg: str, field: str, shape: ShapeSpec) -> GeometryError:
    return GeometryError(msg, path=shape.mesh_path if field == "mesh_path" else None, where=f"shape.{field}")


def _validate(shape: ShapeSpec) -> np.ndarray:
    dims = np.asarray(shape.dimensions, dtype=np.float64)
    if not np.all(np.isfinite(dims)) or np.any(dims <= 0):
        raise _err(
            f"must be three positive finite numbers, got {list(shape.dimensions)}", "dimensions", shape
        )
    if shape.kind in (*_SPHERE_KINDS, "cylinder") and not 3 <= shape.segments <= MAX_SEGMENTS:
        raise _err(f"must be in [3, {MAX_SEGMENTS}], got {shape.segments}", "segments", shape)
    if not 0.0 <= shape.wrinkle_amplitude < 1.0:
        raise _err(f"must be in [0, 1), got {shape.wrinkle_amplitude}", "wrinkle_amplitude", shape)
    if not np.isfinite(shape.wrinkle_frequency) or shape.wrinkle_frequency < 0:
        raise _err(f"must be >= 0, got {shape.wrinkle_frequency}", "wrinkle_frequency", shape)
    if not 0.0 <= shape.dent_depth < 1.0:
        raise _err(f"must be in [0, 1), got {shape.dent_depth}", "dent_depth", shape)
    if not 0 <= shape.dent_count <= 256:
        raise _err(f"must be in [0, 256], got {shape.dent_count}", "dent_count", shape)
    if not 0.0 <= shape.taper <= 2.0:
        raise _err(f"must be in [0, 2], got {shape.taper}", "taper", shape)
    if not np.isfinite(shape.bevel) or shape.bevel < 0:
        raise _err(f"must be >= 0, got {shape.bevel}", "bevel", shape)
    if shape.kind == "mesh" and not shape.mesh_path:
        raise _err("is required for kind 'mesh'", "mesh_path", shape)
    if shape.kind == "body" and shape.body is None:
        raise _err("is required for kind 'body'", "body", shape)
    return dims


def _body(shape: ShapeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    body = shape.body
    assert body is not None  # _validate
    try:
        posed = pose_body(dict(body.phenotype), dict(body.rotations_deg))
    except (ValueError, BodyModelUnavailable) as err:
        raise _err(str(err), "body", shape) from None
    return (
        posed.vertices.copy(),
        posed.faces,
        body_slots(posed.face_regions, body.sleeves, body.legs, body.hair),
    )


def _fit(vertices: np.ndarray, dims: np.ndarray, shape: ShapeSpec) -> np.ndarray:
    """Recentre on the bounding-box centre and scale each axis so the extents equal ``dims``."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    ext = hi - lo
    if np.any(ext <= 1e-12 * max(float(ext.max()), 1e-300)):
        field = "mesh_path" if shape.kind == "mesh" else "kind"
        raise _err(f"mesh is flat (extents {ext.tolist()}), cannot scale to dimensions", field, shape)
    out = (vertices - (lo + hi) / 2.0) * (dims / ext)
    # Make the extents exact despite rounding: snap the extreme coordinates to +-dims/2.
    for ax in range(3):
        out[np.argmin(out[:, ax]), ax] = -dims[ax] / 2.0
        out[np.argmax(out[:, ax]), ax] = dims[ax] / 2.0
    return out


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % (1 << 63), stream])


# ------------------------------------------------------------------ UV-sphere family
def uv_sphere(segments: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit UV sphere: ``(dirs (N, 3), faces (M, 3), polar (N,))``, poles on +-Z.

    N = 2 + (rings - 1) * segments with rings = max(2, segments // 2); vertex 0 is the north pole, then
    rings from north to south (polar angle ``pi * k / rings``), then the south pole.
    """
    rings = max(2, segments // 2)
    polar_rings = np.pi * np.arange(1, rings) / rings
    az = 2 * np.pi * np.arange(segments) / segments
    pt, az_g = np.meshgrid(polar_rings, az, indexing="ij")
    ring_dirs = np.stack([np.sin(pt) * np.cos(az_g), np.sin(pt) * np.sin(az_g), np.cos(pt)], axis=-1)
    dirs = np.concatenate([[[0.0, 0.0, 1.0]], ring_dirs.reshape(-1, 3), [[0.0, 0.0, -1.0]]])
    polar = np.concatenate([[0.0], pt.reshape(-1), [np.pi]])
    south = len(dirs) - 1
    j = np.arange(segments)
    jn = (j + 1) % segments

    def vid(k: np.ndarray | int, jj: np.ndarray) -> np.ndarray:  # ring k in 0..rings-2
        return 1 + np.asarray(k) * segments + jj

    faces = [np.stack([np.zeros_like(j), vid(0, j), vid(0, jn)], axis=1)]
    for k in range(rings - 2):
        a, b = vid(k, j), vid(k, jn)
        c, d = vid(k + 1, jn), vid(k + 1, j)
        faces.append(np.stack([a, d, c], axis=1))
        faces.append(np.stack([a, c, b], axis=1))
    last = rings - 2
    faces.append(np.stack([np.full_like(j, south), vid(last, jn), vid(last, j)], axis=1))
    return dirs, np.concatenate(faces).astype(np.int64), polar


def _noise_tables(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(256).astype(np.int64)
    vals = rng.uniform(-1.0, 1.0, 256)
    return perm, vals


def value_noise(points: np.ndarray, perm: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """3D value noise (N,) in [-1, 1] at points (N, 3): lattice values hashed through ``perm``
    (256 ints) into ``vals`` (256 floats), trilinear interpolation with quintic fade (C2)."""
    p = np.asarray(points, dtype=np.float64)
    i0 = np.floor(p).astype(np.int64)
    f = p - i0
    u = f * f * f * (f * (f * 6.0 - 15.0) + 10.0)
    out = np.zeros(len(p))
    for dx in (0, 1):
        wx = u[:, 0] if dx else 1.0 - u[:, 0]
        for dy in (0, 1):
            wy = u[:, 1] if dy else 1.0 - u[:, 1]
            for dz in (0, 1):
                wz = u[:, 2] if dz else 1.0 - u[:, 2]
                h = perm[(i0[:, 0] + dx) & 255]
                h = perm[(h + i0[:, 1] + dy) & 255]
                h = perm[(h + i0[:, 2] + dz) & 255]
                out += wx * wy * wz * vals[h]
    return out


def wrinkle_field(dirs: np.ndarray, amplitude: float, frequency: float, seed: int) -> np.ndarray:
    """Radial offset (N,) in [-amplitude, amplitude] for unit directions (N, 3) (see module doc)."""
    if amplitude <= 0 or frequency <= 0:
        return np.zeros(len(dirs))
    rng = _rng(seed, 1)
    total = np.zeros(len(dirs))
    norm = 0.0
    for octave in range(NOISE_OCTAVES):
        perm, vals = _noise_tables(rng)
        offset = rng.uniform(0.0, 64.0, 3)
        gain = 0.5**octave
        total += gain * value_noise(dirs * (frequency * 2.0**octave) + offset, perm, vals)
        norm += gain
    return amplitude * total / norm


def dent_field(dirs: np.ndarray, count: int, depth: float, seed: int) -> np.ndarray:
    """Inward radial offset (N,) in [0, depth]: max over ``count`` smooth dents (see module doc)."""
    if count <= 0 or depth <= 0:
        return np.zeros(len(dirs))
    rng = _rng(seed, 2)
    centres = rng.normal(size=(count, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ang = np.arccos(np.clip(dirs @ centres.T, -1.0, 1.0))  # (N, count)
    x = np.clip(ang / DENT_RADIUS_RAD, 0.0, 1.0)
    return depth * ((1.0 - x * x) ** 2).max(axis=1)


def _sphere_family(shape: ShapeSpec) -> tuple[np.ndarray, np.ndarray]:
    dirs, faces, polar = uv_sphere(shape.segments)
    radius = np.ones(len(dirs))
    if shape.kind not in ("sphere", "ellipsoid"):  # plain kinds ignore wrinkle/dent fields
        radius += wrinkle_field(dirs, shape.wrinkle_amplitude, shape.wrinkle_frequency, shape.noise_seed)
        radius -= dent_field(dirs, shape.dent_count, shape.dent_depth, shape.noise_seed)
    verts = dirs * np.maximum(radius, 0.05)[:, None]
    if shape.kind == "teardrop" and shape.taper > 0:
        verts[:, :2] *= (np.sin(polar / 2.0) ** shape.taper)[:, None]
    return verts, faces


# ------------------------------------------------------------------ box and cylinder
def _axis_coords(half: float, bevel: float) -> np.ndarray:
    """Sorted grid coordinates along one axis of a box face, refined inside the bevel bands."""
    inner = half - bevel
    coords = [np.linspace(-inner, inner, BOX_GRID_SEGMENTS + 1)]
    if bevel > 0:
        band = inner + bevel * np.tan(np.linspace(0.0, np.pi / 4, BEVEL_SEGMENTS + 1))
        coords += [band, -band]
    c = np.unique(np.round(np.concatenate(coords), 15))
    c[0], c[-1] = -half, half
    return c


def _box(shape: ShapeSpec, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = dims / 2.0
    bevel = min(float(shape.bevel), 0.999 * float(half.min()))
    coords = [_axis_coords(float(h), bevel) for h in half]
    verts, faces, n = [], [], 0
    # (face axis, u axis, v axis) with e_u x e_v = +e_axis; swap u/v on the negative side.
    for ax, ua, va in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        for sgn in (1.0, -1.0):
            u_ax, v_ax = (ua, va) if sgn > 0 else (va, ua)
            cu, cv = coords[u_ax], coords[v_ax]
            gu, gv = np.meshgrid(cu, cv, indexing="ij")
            p = np.zeros((gu.size, 3))
            p[:, ax] = sgn * half[ax]
            p[:, u_ax] = gu.reshape(-1)
            p[:, v_ax] = gv.reshape(-1)
            nu, nv = len(cu), len(cv)
            ii, jj = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
            v00 = (ii * nv + jj).reshape(-1) + n
            v10, v11, v01 = v00 + nv, v00 + nv + 1, v00 + 1
            faces += [np.stack([v00, v10, v11], axis=1), np.stack([v00, v11, v01], axis=1)]
            verts.append(p)
            n += len(p)
    allv = np.concatenate(verts)
    uniq, inverse = np.unique(allv, axis=0, return_inverse=True)
    f = inverse.reshape(-1)[np.concatenate(faces)]
    if bevel > 0:
        inner = half - bevel
        q = np.clip(uniq, -inner, inner)
        d = uniq - q
        nd = np.linalg.norm(d, axis=1, keepdims=True)
        uniq = q + bevel * d / np.where(nd > 0, nd, 1.0)
    return uniq, f.astype(np.int64)


def _cylinder(shape: ShapeSpec) -> tuple[np.ndarray, np.ndarray]:
    seg = shape.segments
    bands = max(1, seg // 8)
    az = 2 * np.pi * np.arange(seg) / seg
    zs = np.linspace(-1.0, 1.0, bands + 1)
    ring = np.stack([np.cos(az), np.sin(az)], axis=1)
    side = np.concatenate([np.column_stack([ring, np.full(seg, z)]) for z in zs])
    bottom_c, top_c = len(side), len(side) + 1
    verts = np.concatenate([side, [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]])
    j = np.arange(seg)
    jn = (j + 1) % seg
    faces = []
    for k in range(bands):
        a, b = k * seg + j, k * seg + jn
        c, d = (k + 1) * seg + jn, (k + 1) * seg + j
        faces += [np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)]
    top = bands * seg
    faces.append(np.stack([np.full(seg, top_c), top + j, top + jn], axis=1))
    faces.append(np.stack([np.full(seg, bottom_c), jn, j], axis=1))
    return verts, np.concatenate(faces).astype(np.int64)


# ------------------------------------------------------------------ mesh files
def _load_mesh_file(shape: ShapeSpec) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    path = str(shape.mesh_path)
    if not os.path.isfile(path):
        raise GeometryError("mesh file not found", path=path, where="shape.mesh_path")
    try:
        loaded = trimesh.load(path, force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise GeometryError(f"cannot load mesh: {exc}", path=path, where="shape.mesh_path") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise GeometryError("file contains no triangles", path=path, where="shape.mesh_path")
    verts = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    scale = float(np.ptp(verts, axis=0).max())
    faces = faces[face_areas(verts, faces) > 1e-12 * scale * scale]
    if len(faces) == 0:
        raise GeometryError("all faces are degenerate", path=path, where="shape.mesh_path")
    if is_watertight(faces) and signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    used = np.unique(faces)
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces]


# ------------------------------------------------------------------ public
def build_mesh(shape: ShapeSpec) -> Mesh:
    """Triangle mesh of ``shape`` in its local frame (see the module docstring for each kind).

    Raises :class:`GeometryError` (``where="shape.<field>"``) for out-of-range fields or an
    unreadable ``mesh_path``.
    """
    dims = _validate(shape)
    groups = None
    if shape.kind in _SPHERE_KINDS:
        verts, faces = _sphere_family(shape)
    elif shape.kind == "box":
        verts, faces = _box(shape, dims)
    elif shape.kind == "cylinder":
        verts, faces = _cylinder(shape)
    elif shape.kind == "mesh":
        verts, faces = _load_mesh_file(shape)
    elif shape.kind == "body":
        verts, faces, groups = _body(shape)
    else:  # pragma: no cover - ShapeSpec validates kind
        raise _err(f"unknown kind {shape.kind!r}", "kind", shape)
    verts = _fit(verts, dims, shape)
    verts.setflags(write=False)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    faces.setflags(write=False)
    if groups is not None:
        groups = np.ascontiguousarray(groups, dtype=np.int64)
        groups.setflags(write=False)
    return Mesh(vertices=verts, faces=faces, closed=is_watertight(faces), face_groups=groups)


def _file_key(shape: ShapeSpec) -> tuple[int, int] | None:
    if shape.kind != "mesh" or not shape.mesh_path:
        return None
    try:
        st = os.stat(shape.mesh_path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=MESH_CACHE_SIZE)
def _cached(shape: ShapeSpec, file_key: tuple[int, int] | None) -> Mesh:
    return build_mesh(shape)


def mesh_cache(shape: ShapeSpec) -> Mesh:
    """:func:`build_mesh` through a small LRU cache keyed by the (hashable, frozen) ShapeSpec and,
    for ``kind == "mesh"``, the file's mtime and size. Returned arrays are read-only."""
    return _cached(shape, _file_key(shape))


def clear_mesh_cache() -> None:
    """Empty the mesh cache (e.g. in tests)."""
    _cached.cache_clear()


def mesh_to_obj(mesh: Mesh) -> str:
    """Wavefront OBJ text of a mesh (``v`` lines in metres, 1-based ``f`` lines, winding kept)."""
    lines = [f"# synthloop mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    return "\n".join(lines) + "\n"
