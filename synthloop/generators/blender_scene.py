"""SceneSpec -> Blender scene, and one frame's render (this module imports ``bpy``).

One Blender session renders many frames: :func:`init_session` resets Blender to empty factory
settings once and creates what every frame shares (camera, world, compositor tree, colour
management); :func:`build_scene` removes the previous frame's objects, lights, materials, meshes
and images, purges orphans (so memory stays flat) and builds the spec's frame.

Two renders per frame (see :func:`render_frame`):

* **data pass** - Cycles, 1 sample, no bounces, pixel filter width ~0, so each pixel's single
  camera ray goes through the pixel centre ``(i + 0.5, j + 0.5)``; every surface is shaded by a
  black view-layer override material (only the first hit matters), so the pass costs a few
  percent of the image render. The compositor writes the
  object-index pass (``pass_index`` = ``instance_id``, exact integers, not anti-aliased) and the
  depth pass (camera-space z in metres, ``1e10`` where nothing was hit) to a 32-bit multilayer
  EXR. Because the ids come from pixel-centre rays they agree with a point-sampling rasterizer
  using the convention "pixel i covers [i, i+1)".
* **rgb pass** - the spec's engine (Cycles with ``samples``/``denoise``/``max_bounces`` or
  Workbench for fast previews), anti-aliased, written as an 8-bit sRGB PNG with the 'Standard'
  view transform. Workbench has no object-index pass, which is why ids/depth always come from
  the Cycles data pass; Workbench previews use studio lighting and flat material colours (spec
  lights, world and textures are Cycles-only).

Lights: ``color_rgb`` is used as the light colour (``color_temperature_k`` is informational: the
sampler already converted it); SUN ``strength`` is irradiance (W/m^2), ``size`` its angular
diameter; POINT/SPOT ``size`` is the radius, AREA a square of edge ``size``.

Geometry is exactly :func:`synthloop.geometry.meshes.build_mesh` (no modifiers that change the
silhouette: surface detail is bump only), so annotations computed from the same meshes agree
with the rendered masks.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from synthloop.generators.devices import CyclesDevice, DeviceChoice, select_devices
from synthloop.scenes.spec import (
    CameraSpec,
    LightSpec,
    MaterialSpec,
    ObjectSpec,
    RenderOptions,
    RenderSettings,
    SceneSpec,
    WorldSpec,
)

CAMERA_NAME = "synthloop_camera"
WORLD_NAME = "synthloop_world"
DATA_MATERIAL_NAME = "synthloop_data_pass"
RGB_NAME = "rgb.png"
EXR_NAME = "ids_depth.exr"
_EXR_BASE = "ids_depth_"  # the File Output node appends the frame number: ids_depth_0001.exr
DATA_FILTER_WIDTH = 0.01  # px; Cycles' minimum: rays through pixel centres
SHARP_ANGLE_DEG = 40.0  # edges with a larger dihedral angle are shaded sharp
RGB_FILTER_WIDTH = 1.5  # px; Cycles' default Blackman-Harris width

MeshBuilder = Callable[[Any], Any]

_session: dict[str, Any] = {"initialized": False}


# --------------------------------------------------------------------------- session


def init_session() -> None:
    """Reset Blender to empty factory settings and create the per-session scaffolding (once).

    Runs again if something else reset Blender's data since (our camera is no longer the scene's).
    """
    if _session["initialized"]:
        try:
            if bpy.context.scene.camera == _session["camera"] and _session["camera"].name == CAMERA_NAME:
                return
        except ReferenceError:
            pass
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene

    cam_data = bpy.data.cameras.new(CAMERA_NAME)
    cam_obj = bpy.data.objects.new(CAMERA_NAME, cam_data)
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj

    world = bpy.data.worlds.new(WORLD_NAME)
    world.use_nodes = True
    scene.world = world

    _init_output_settings(scene)
    _session.update(
        initialized=True,
        camera=cam_obj,
        world=world,
        **_init_compositor(scene),
        override=_data_material(),
        device=None,
    )


def _init_output_settings(scene: bpy.types.Scene) -> None:
    """Full-resolution 8-bit sRGB PNG through the Standard view transform, fixed Cycles seeds,
    no caustics, a BVH with spatial splits, the Workbench preview look, and the index and depth
    passes on."""
    render = scene.render
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.use_border = False
    render.use_motion_blur = False
    render.film_transparent = False
    render.use_persistent_data = False
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.color_depth = "8"
    render.image_settings.compression = 15
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.sequencer_colorspace_settings.name = "sRGB"
    scene.frame_set(1)

    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.use_adaptive_sampling = False
    cyc.use_animated_seed = False
    cyc.caustics_reflective = False
    cyc.caustics_refractive = False
    # BVH with spatial splits: the same image for less CPU per frame (docs/results/render_quality.md)
    cyc.debug_use_spatial_splits = True
    # Workbench preview look: studio light, material colours.
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    scene.display.render_aa = "8"

    view_layer = scene.view_layers[0]
    view_layer.use_pass_object_index = True
    view_layer.use_pass_z = True


def _init_compositor(scene: bpy.types.Scene) -> dict[str, Any]:
    """The compositor: Render Layers -> Composite (the saved image), -> a multilayer EXR of the
    index and depth passes (the data pass), and a Mix node of the noisy and the denoised image
    (``denoise_mix``: factor 0 = noisy, 1 = denoised). Returns the nodes by their session keys."""
    scene.render.engine = "CYCLES"  # the Render Layers node shows the passes of the current engine
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    rlayers = tree.nodes.new("CompositorNodeRLayers")
    composite = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(rlayers.outputs["Image"], composite.inputs["Image"])
    out = tree.nodes.new("CompositorNodeOutputFile")
    out.format.file_format = "OPEN_EXR_MULTILAYER"
    out.format.color_depth = "32"
    out.format.exr_codec = "ZIP"
    out.file_slots.clear()
    out.file_slots.new("IndexOB")
    out.file_slots.new("Depth")
    tree.links.new(rlayers.outputs["IndexOB"], out.inputs["IndexOB"])
    tree.links.new(rlayers.outputs["Depth"], out.inputs["Depth"])
    mix = tree.nodes.new("CompositorNodeMixRGB")
    tree.links.new(rlayers.outputs["Noisy Image"], mix.inputs[1])
    tree.links.new(rlayers.outputs["Image"], mix.inputs[2])
    return {"exr_node": out, "rlayers_node": rlayers, "composite_node": composite, "denoise_mix_node": mix}


def _data_material() -> bpy.types.Material:
    """Black, non-scattering material used as the view-layer override during the data pass: the
    index and depth passes only need the first hit, so no texture, BSDF or light is evaluated."""
    mat = bpy.data.materials.new(DATA_MATERIAL_NAME)
    mat.use_fake_user = True  # survives orphans_purge
    mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 0.0
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


def clear_frame() -> None:
    """Remove the previous frame's objects, lights, materials, meshes and file images; purge orphans."""
    cam = _session["camera"]
    for obj in list(bpy.data.objects):
        if obj != cam:
            bpy.data.objects.remove(obj, do_unlink=True)
    for coll in (
        bpy.data.meshes,
        bpy.data.lights,
        bpy.data.materials,
        bpy.data.textures,
        bpy.data.node_groups,
    ):
        for block in list(coll):
            if block != _session["override"]:
                coll.remove(block)
    for img in list(bpy.data.images):
        if img.source in {"FILE", "GENERATED"}:
            bpy.data.images.remove(img)
    bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)


# --------------------------------------------------------------------------- devices


def cycles_devices() -> list[CyclesDevice]:
    """Every device Cycles can use here (CPU, CUDA, OptiX, ...), freshly enumerated."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.refresh_devices()
    return [CyclesDevice(type=str(d.type), name=str(d.name), id=str(d.id)) for d in prefs.devices]


def configure_device(requested: str) -> DeviceChoice:
    """Enable the devices :func:`~synthloop.generators.devices.select_devices` picks for
    ``requested`` in Cycles' preferences and the scene (once per session and name).

    Raises :class:`~synthloop.generators.devices.DeviceError` when an explicit GPU backend has
    no GPU."""
    cached = _session.get("device")
    if cached is not None and cached[0] == requested:
        return cached[1]
    choice = select_devices(requested, cycles_devices())
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.compute_device_type = choice.compute_device_type
    if choice.compute_device_type != "NONE":
        prefs.refresh_devices()
    for d in prefs.devices:
        d.use = str(d.id) in choice.enabled and (choice.scene_device == "CPU") == (d.type == "CPU")
    bpy.context.scene.cycles.device = choice.scene_device
    _session["device"] = (requested, choice)
    return choice


# --------------------------------------------------------------------------- small helpers


def cycles_seed(seed: int, frame_index: int) -> int:
    """Deterministic Cycles noise seed in [0, 2**31 - 1) from the recipe seed and frame index."""
    digest = hashlib.sha256(f"synthloop:{int(seed)}:{int(frame_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**31 - 1)


def _rotation_to(direction: tuple[float, float, float], where: str) -> Quaternion:
    """Quaternion rotating the local -Z axis onto the world ``direction`` (need not be unit)."""
    d = Vector(direction)
    if d.length < 1e-12:
        raise ValueError(f"{where}: direction must be non-zero, got {tuple(direction)}")
    return Vector((0.0, 0.0, -1.0)).rotation_difference(d.normalized())


def _rgba(rgb: tuple[float, float, float]) -> tuple[float, float, float, float]:
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)


def _mesh_from_arrays(
    name: str, vertices: np.ndarray, faces: np.ndarray, smooth: bool = True
) -> bpy.types.Mesh:
    """Blender mesh from ``vertices`` (N, 3) float metres and triangle ``faces`` (M, 3) int."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"mesh {name!r}: face index out of range")
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(vertices))
    me.vertices.foreach_set("co", vertices.ravel())
    me.loops.add(faces.size)
    me.loops.foreach_set("vertex_index", faces.ravel())
    me.polygons.add(len(faces))
    me.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    if smooth:
        me.shade_smooth()
    return me


# --------------------------------------------------------------------------- materials


def _socket(sockets: Any, name: str, kind: str | None = None) -> Any:
    """A node socket by name (and type, for nodes like Mix that have several sockets per name)."""
    for s in sockets:
        if s.name == name and (kind is None or s.type == kind):
            return s
    raise KeyError(f"no socket {name!r} of type {kind}")


def _mix_color(tree: Any, fac: Any, a: Any, b: Any) -> Any:
    """Colour Mix node output: ``a * (1 - fac) + b * fac``; ``a``/``b`` are sockets or RGBA tuples."""
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.blend_type = "MIX"
    fac_in = _socket(mix.inputs, "Factor", "VALUE")
    if isinstance(fac, float | int):
        fac_in.default_value = float(fac)
    else:
        tree.links.new(fac, fac_in)
    for name, value in (("A", a), ("B", b)):
        sock = _socket(mix.inputs, name, "RGBA")
        if isinstance(value, tuple):
            sock.default_value = value
        else:
            tree.links.new(value, sock)
    return _socket(mix.outputs, "Result", "RGBA")


def _scaled_factor(tree: Any, value: Any, strength: float) -> Any:
    """``clamp(value * strength)`` as a Math node output."""
    mul = tree.nodes.new("ShaderNodeMath")
    mul.operation = "MULTIPLY"
    mul.use_clamp = True
    tree.links.new(value, mul.inputs[0])
    mul.inputs[1].default_value = float(strength)
    return mul.outputs["Value"]


def _narrow_ramp(tree: Any, fac: Any, edges: tuple[float, float], strength: float) -> Any:
    """``clamp(ramp(fac) * strength)``: a colour ramp from black at ``edges[0]`` to white at
    ``edges[1]`` (thin lines where a noise crosses the band), as a Math node output."""
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].position = edges[0]
    ramp.color_ramp.elements[1].position = edges[1]
    tree.links.new(fac, ramp.inputs["Fac"])
    return _scaled_factor(tree, ramp.outputs["Color"], strength)


def _streaks(tree: Any, texco: Any, scale: float, strength: float) -> Any:
    """Lines around the object's z axis (a nut shell's lines from tip to base): noise over
    (angle around z in turns times ``scale``, 20 z in metres: long along z) through a narrow ramp, as
    ``clamp(line * strength)``. Object coordinates, so the lines follow the object."""
    grad = tree.nodes.new("ShaderNodeTexGradient")
    grad.gradient_type = "RADIAL"
    tree.links.new(texco.outputs["Object"], grad.inputs["Vector"])
    sep = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(texco.outputs["Object"], sep.inputs["Vector"])
    around = tree.nodes.new("ShaderNodeMath")
    around.operation = "MULTIPLY"
    tree.links.new(grad.outputs["Fac"], around.inputs[0])
    around.inputs[1].default_value = float(scale)
    along = tree.nodes.new("ShaderNodeMath")
    along.operation = "MULTIPLY"
    tree.links.new(sep.outputs["Z"], along.inputs[0])
    along.inputs[1].default_value = 20.0
    comb = tree.nodes.new("ShaderNodeCombineXYZ")
    tree.links.new(around.outputs["Value"], comb.inputs["X"])
    tree.links.new(along.outputs["Value"], comb.inputs["Y"])
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 1.5
    noise.inputs["Detail"].default_value = 2.0
    tree.links.new(comb.outputs["Vector"], noise.inputs["Vector"])
    return _narrow_ramp(tree, noise.outputs["Fac"], (0.48, 0.58), strength)


def build_material(name: str, spec: MaterialSpec, where: str) -> bpy.types.Material:
    """Principled BSDF material for ``spec``; ``where`` names the spec field in error messages.

    Colours are linear RGB. Patterns are mixed into the base colour by
    ``clamp(pattern_value * pattern_strength)`` towards ``color2_rgb`` (default: half the base
    colour) and use Generated coordinates (0..1 over the object's bounding box) times
    ``pattern_scale``: noise (Noise texture), wood (Wave rings), checker, marble (distorted noise
    through a narrow colour ramp = veins), foil (Voronoi cells); streaks (lines around the object's
    z axis, on object coordinates: a nut shell's lines from tip to base). Bump: a Noise height
    field of scale ``bump_scale`` through a Bump node of strength ``bump_strength``; foil always
    gets a Voronoi bump of strength ``max(bump_strength, 0.6)`` (crumpled metal; its metallic
    value is the spec's). ``cap_fraction`` > 0: the cap (:func:`_add_cap`) over the object's
    bottom, on Generated z. ``image_path`` replaces the base colour with the image, box-projected on
    object coordinates (metres) times ``image_scale``, one tile centred on the object's origin (the
    table's centre, where the camera looks, shows no tile seam); a missing file raises
    ``FileNotFoundError``.
    Workbench previews use ``diffuse_color``/``roughness``/``metallic`` (flat colour only).
    """
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.diffuse_color = _rgba(spec.base_color_rgb)  # Workbench preview colour
    mat.roughness = float(spec.roughness)
    mat.metallic = float(spec.metallic)
    tree = mat.node_tree
    bsdf = tree.nodes.get("Principled BSDF")
    bsdf.inputs["Roughness"].default_value = float(spec.roughness)
    bsdf.inputs["Metallic"].default_value = float(spec.metallic)
    bsdf.inputs["Specular IOR Level"].default_value = float(spec.specular)

    texco = tree.nodes.new("ShaderNodeTexCoord")
    base = _rgba(spec.base_color_rgb)
    color2 = (
        _rgba(spec.color2_rgb) if spec.color2_rgb is not None else tuple(0.5 * c for c in base[:3]) + (1.0,)
    )
    color: Any = base
    if spec.image_path is not None:
        color = _image_color(tree, texco, spec, where)
    elif spec.pattern in _PATTERNS:
        color = _PATTERNS[spec.pattern](tree, texco, spec, base, color2)
    if spec.cap_fraction > 0 and spec.cap_rgb is not None:
        color = _add_cap(tree, texco, spec, color, bsdf)
    if isinstance(color, tuple):
        bsdf.inputs["Base Color"].default_value = color
    else:
        tree.links.new(color, bsdf.inputs["Base Color"])
    _add_bump(tree, texco, spec, bsdf)
    return mat


CAP_EDGE = 0.04  # half-width of the cap edge's blend, in Generated z (0..1 over the object's height)
CAP_WOBBLE = 0.08  # how far noise moves the cap edge, in Generated z
CAP_RIM_DARK = 0.3  # the rim line's colour: the colour under it times this


def _cap_factor(tree: Any, texco: Any, fraction: float) -> Any:
    """1 below ``fraction`` of the object's height (Generated z, 0 at the bottom), 0 above, blended
    over ``2 * CAP_EDGE`` around an edge that a noise moves by up to ``CAP_WOBBLE / 2``: a
    Math node output."""
    sep = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(texco.outputs["Generated"], sep.inputs["Vector"])
    noise = _texture(tree, texco, "ShaderNodeTexNoise", 6.0, Detail=3.0)
    wobble = tree.nodes.new("ShaderNodeMath")
    wobble.operation = "MULTIPLY_ADD"  # z + noise * CAP_WOBBLE; the noise's mean 0.5 is taken off below
    tree.links.new(noise.outputs["Fac"], wobble.inputs[0])
    wobble.inputs[1].default_value = CAP_WOBBLE
    tree.links.new(sep.outputs["Z"], wobble.inputs[2])
    step = tree.nodes.new("ShaderNodeMapRange")
    step.interpolation_type = "SMOOTHSTEP"
    tree.links.new(wobble.outputs["Value"], step.inputs["Value"])
    low = float(fraction) + 0.5 * CAP_WOBBLE - CAP_EDGE
    step.inputs["From Min"].default_value = low
    step.inputs["From Max"].default_value = low + 2 * CAP_EDGE
    step.inputs["To Min"].default_value = 1.0
    step.inputs["To Max"].default_value = 0.0
    return step.outputs["Result"]


def _add_cap(tree: Any, texco: Any, spec: MaterialSpec, color: Any, bsdf: Any) -> Any:
    """Mix ``spec.cap_rgb`` into ``color`` and ``spec.cap_roughness`` into the BSDF's roughness
    by :func:`_cap_factor`; returns the new colour output."""
    assert spec.cap_rgb is not None
    fac = _cap_factor(tree, texco, spec.cap_fraction)
    rough = tree.nodes.new("ShaderNodeMix")
    rough.data_type = "FLOAT"
    tree.links.new(fac, _socket(rough.inputs, "Factor", "VALUE"))
    _socket(rough.inputs, "A", "VALUE").default_value = float(spec.roughness)
    _socket(rough.inputs, "B", "VALUE").default_value = float(spec.cap_roughness)
    tree.links.new(_socket(rough.outputs, "Result", "VALUE"), bsdf.inputs["Roughness"])
    color = _mix_color(tree, fac, color, _rgba(spec.cap_rgb))
    if spec.cap_rim <= 0:
        return color
    dark = tree.nodes.new("ShaderNodeMix")
    dark.data_type = "RGBA"
    dark.blend_type = "MULTIPLY"
    _socket(dark.inputs, "Factor", "VALUE").default_value = 1.0
    tree.links.new(color, _socket(dark.inputs, "A", "RGBA"))
    _socket(dark.inputs, "B", "RGBA").default_value = (CAP_RIM_DARK,) * 3 + (1.0,)
    return _mix_color(
        tree, _rim_factor(tree, fac, spec.cap_rim), color, _socket(dark.outputs, "Result", "RGBA")
    )


def _rim_factor(tree: Any, fac: Any, strength: float) -> Any:
    """``strength * (4 f (1 - f)) ** 2`` of the cap factor ``f``: a thin line along the cap's edge."""
    one_minus = tree.nodes.new("ShaderNodeMath")
    one_minus.operation = "SUBTRACT"
    one_minus.inputs[0].default_value = 1.0
    tree.links.new(fac, one_minus.inputs[1])
    prod = tree.nodes.new("ShaderNodeMath")
    prod.operation = "MULTIPLY"
    tree.links.new(fac, prod.inputs[0])
    tree.links.new(one_minus.outputs["Value"], prod.inputs[1])
    power = tree.nodes.new("ShaderNodeMath")
    power.operation = "POWER"
    tree.links.new(prod.outputs["Value"], power.inputs[0])
    power.inputs[1].default_value = 2.0
    return _scaled_factor(tree, power.outputs["Value"], 16.0 * float(strength))  # 16 (f (1 - f)) ** 2


def _image_color(tree: Any, texco: Any, spec: MaterialSpec, where: str) -> Any:
    """The colour output of ``spec.image_path`` box-projected on object coordinates times
    ``image_scale``, a tile's centre at the origin; ``FileNotFoundError`` if the file is missing."""
    assert spec.image_path is not None
    if not os.path.isfile(spec.image_path):
        raise FileNotFoundError(f"{where}.image_path: image file does not exist: {spec.image_path}")
    img_node = tree.nodes.new("ShaderNodeTexImage")
    img_node.image = bpy.data.images.load(spec.image_path, check_existing=False)
    img_node.projection = "BOX"
    img_node.projection_blend = 0.2
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = (spec.image_scale,) * 3
    mapping.inputs["Location"].default_value = (0.5, 0.5, 0.5)  # a tile's centre at the origin
    tree.links.new(texco.outputs["Object"], mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], img_node.inputs["Vector"])
    return img_node.outputs["Color"]


def _texture(tree: Any, texco: Any, kind: str, scale: float, **inputs: float) -> Any:
    """A texture node of ``kind`` on Generated coordinates times ``scale``, other inputs set."""
    tex = tree.nodes.new(kind)
    tex.inputs["Scale"].default_value = scale
    for name, value in inputs.items():
        tex.inputs[name].default_value = value
    tree.links.new(texco.outputs["Generated"], tex.inputs["Vector"])
    return tex


def _noise_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    tex = _texture(tree, texco, "ShaderNodeTexNoise", spec.pattern_scale, Detail=4.0)
    return _mix_color(tree, _scaled_factor(tree, tex.outputs["Fac"], spec.pattern_strength), base, color2)


def _wood_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    tex = tree.nodes.new("ShaderNodeTexWave")
    tex.wave_type = "RINGS"
    tex.inputs["Scale"].default_value = spec.pattern_scale
    tex.inputs["Distortion"].default_value = 2.0
    tex.inputs["Detail"].default_value = 3.0
    tree.links.new(texco.outputs["Generated"], tex.inputs["Vector"])
    return _mix_color(tree, _scaled_factor(tree, tex.outputs["Fac"], spec.pattern_strength), base, color2)


def _checker_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    tex = tree.nodes.new("ShaderNodeTexChecker")
    tex.inputs["Scale"].default_value = spec.pattern_scale
    tex.inputs["Color1"].default_value = base
    tex.inputs["Color2"].default_value = color2
    tree.links.new(texco.outputs["Generated"], tex.inputs["Vector"])
    return _mix_color(tree, float(spec.pattern_strength), base, tex.outputs["Color"])


def _marble_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    tex = _texture(tree, texco, "ShaderNodeTexNoise", spec.pattern_scale, Detail=8.0, Distortion=4.0)
    veins = _narrow_ramp(tree, tex.outputs["Fac"], (0.45, 0.55), float(spec.pattern_strength))
    return _mix_color(tree, veins, base, color2)


def _streaks_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    lines = _streaks(tree, texco, spec.pattern_scale, float(spec.pattern_strength))
    return _mix_color(tree, lines, base, color2)


def _foil_color(tree: Any, texco: Any, spec: MaterialSpec, base: tuple, color2: tuple) -> Any:
    tex = _texture(tree, texco, "ShaderNodeTexVoronoi", spec.pattern_scale)
    factor = _scaled_factor(tree, tex.outputs["Distance"], float(spec.pattern_strength))
    return _mix_color(tree, factor, base, color2)


# pattern -> the base colour's node output (see build_material)
_PATTERNS: dict[str, Callable[[Any, Any, MaterialSpec, tuple, tuple], Any]] = {
    "noise": _noise_color,
    "wood": _wood_color,
    "checker": _checker_color,
    "marble": _marble_color,
    "streaks": _streaks_color,
    "foil": _foil_color,
}


def _add_bump(tree: Any, texco: Any, spec: MaterialSpec, bsdf: Any) -> None:
    """A Bump node on the BSDF's normal: a Noise height field of ``bump_scale`` and strength
    ``bump_strength`` (at most 1), or for foil a Voronoi F1 field of strength at least 0.6."""
    bump_strength = float(spec.bump_strength)
    if spec.pattern == "foil":
        bump_strength = max(bump_strength, 0.6)  # crumpled foil: strong facetted bump
    if bump_strength <= 0.0:
        return
    bump = tree.nodes.new("ShaderNodeBump")
    bump.inputs["Strength"].default_value = min(bump_strength, 1.0)
    bump.inputs["Distance"].default_value = 0.01
    if spec.pattern == "foil":
        height = tree.nodes.new("ShaderNodeTexVoronoi")
        height.feature = "F1"
        height.inputs["Scale"].default_value = spec.bump_scale
        tree.links.new(texco.outputs["Generated"], height.inputs["Vector"])
        tree.links.new(height.outputs["Distance"], bump.inputs["Height"])
    else:
        height = _texture(tree, texco, "ShaderNodeTexNoise", spec.bump_scale, Detail=6.0)
        tree.links.new(height.outputs["Fac"], bump.inputs["Height"])
    tree.links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])


# --------------------------------------------------------------------------- scene parts


def _default_mesh_builder(shape: Any) -> Any:
    from synthloop.geometry.meshes import build_mesh

    return build_mesh(shape)


def add_object(obj: ObjectSpec, mesh_builder: MeshBuilder) -> bpy.types.Object:
    """Mesh object placed at ``T(location) @ R(quat)``, ``pass_index = instance_id``."""
    where = f"objects[instance_id={obj.instance_id}]"
    mesh = mesh_builder(obj.shape)
    me = _mesh_from_arrays(f"{obj.name}_{obj.instance_id}", mesh.vertices, mesh.faces)
    # smooth shading, but keep flat faces flat (box sides, cylinder caps): sharp above 40 deg
    _mark_sharp_edges(me, mesh.vertices, mesh.faces, math.radians(SHARP_ANGLE_DEG))
    me.materials.append(build_material(f"mat_{obj.instance_id}", obj.material, where + ".material"))
    groups = getattr(mesh, "face_groups", None)
    if groups is not None and obj.extra_materials:
        for k, extra in enumerate(obj.extra_materials):
            me.materials.append(
                build_material(f"mat_{obj.instance_id}_{k + 1}", extra, f"{where}.extra_materials[{k}]")
            )
        slots = np.clip(np.asarray(groups, dtype=np.int32), 0, len(obj.extra_materials))
        me.polygons.foreach_set("material_index", np.ascontiguousarray(slots))
    ob = bpy.data.objects.new(f"obj_{obj.instance_id}", me)
    ob.location = obj.location
    ob.rotation_mode = "QUATERNION"
    ob.rotation_quaternion = Quaternion(obj.rotation_quat_wxyz).normalized()
    ob.pass_index = int(obj.instance_id)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def sharp_edge_pairs(vertices: np.ndarray, faces: np.ndarray, angle: float) -> np.ndarray:
    """Vertex pairs (K, 2) int64, sorted per row, of edges whose two adjacent triangles' normals
    differ by more than ``angle`` radians (pure numpy: ``vertices`` (N, 3), ``faces`` (M, 3))."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    face_of = np.tile(np.arange(len(f)), 3)
    key = e[:, 0] * (len(v) + 1) + e[:, 1]
    order = np.argsort(key, kind="stable")
    key, e, face_of = key[order], e[order], face_of[order]
    pair = np.flatnonzero(key[1:] == key[:-1])  # manifold edges: consecutive equal keys
    cosang = np.einsum("ij,ij->i", n[face_of[pair]], n[face_of[pair + 1]])
    return e[pair[cosang < np.cos(angle)]]


def _mark_sharp_edges(me: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, angle: float) -> None:
    """Mark edges between faces whose normals differ by more than ``angle`` as sharp (flat look)."""
    sharp = sharp_edge_pairs(vertices, faces, angle)
    if len(sharp) == 0:
        return
    edges = np.zeros(len(me.edges) * 2, dtype=np.int32)
    me.edges.foreach_get("vertices", edges)
    edges = np.sort(edges.reshape(-1, 2).astype(np.int64), axis=1)
    base = len(vertices) + 1
    flags = np.isin(edges[:, 0] * base + edges[:, 1], sharp[:, 0] * base + sharp[:, 1])
    me.edges.foreach_set("use_edge_sharp", flags)


def add_support(spec: SceneSpec) -> bpy.types.Object:
    """The support rectangle on z = 0 (``pass_index`` 0: reads as background in the id map)."""
    sx, sy = (0.5 * float(v) for v in spec.support.size)
    verts = np.array([[-sx, -sy, 0.0], [sx, -sy, 0.0], [sx, sy, 0.0], [-sx, sy, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    me = _mesh_from_arrays("support", verts, faces, smooth=False)
    me.materials.append(build_material("mat_support", spec.support.material, "support.material"))
    ob = bpy.data.objects.new("support", me)
    ob.pass_index = 0
    bpy.context.scene.collection.objects.link(ob)
    return ob


def add_light(i: int, light: LightSpec) -> bpy.types.Object:
    """Light at ``location`` whose -Z axis points along ``direction``."""
    data = bpy.data.lights.new(f"light_{i}", light.type)
    data.energy = float(light.strength)
    data.color = tuple(float(c) for c in light.color_rgb)
    if light.type == "SUN":
        data.angle = float(light.size)
    elif light.type == "AREA":
        data.shape = "SQUARE"
        data.size = float(light.size)
    else:
        data.shadow_soft_size = float(light.size)
        if light.type == "SPOT":
            data.spot_size = float(light.spot_angle)
    ob = bpy.data.objects.new(f"light_{i}", data)
    ob.location = light.location
    ob.rotation_mode = "QUATERNION"
    ob.rotation_quaternion = _rotation_to(light.direction, f"lights[{i}].direction")
    bpy.context.scene.collection.objects.link(ob)
    return ob


def set_world(world_spec: WorldSpec) -> None:
    bg = _session["world"].node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = _rgba(world_spec.color_rgb)
    bg.inputs["Strength"].default_value = float(world_spec.strength)


def set_camera(cam: CameraSpec, render: RenderSettings) -> None:
    """Pinhole camera, horizontal sensor fit (fx = f / sensor_width * width px), no shift."""
    ob = _session["camera"]
    data = ob.data
    data.type = "PERSP"
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = float(cam.sensor_width_mm)
    data.lens_unit = "MILLIMETERS"
    data.lens = float(cam.focal_length_mm)
    data.shift_x = data.shift_y = 0.0
    data.clip_start = float(cam.clip_start)
    data.clip_end = float(cam.clip_end)
    rot = Matrix([list(map(float, row)) for row in cam.rotation_world_from_cam])
    ob.rotation_mode = "QUATERNION"
    ob.rotation_quaternion = rot.to_quaternion()
    ob.location = cam.location
    ob.scale = (1.0, 1.0, 1.0)


def set_render(spec: SceneSpec, threads: int) -> None:
    scene = bpy.context.scene
    r = spec.render
    scene.render.resolution_x = int(r.width)
    scene.render.resolution_y = int(r.height)
    scene.render.resolution_percentage = 100
    if threads and threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(threads)
    else:
        scene.render.threads_mode = "AUTO"
    scene.cycles.seed = cycles_seed(spec.seed, spec.frame_index)
    scene.render.use_persistent_data = bool(r.persistent_data)
    scene.render.use_simplify = r.texture_limit > 0
    scene.cycles.texture_limit_render = str(r.texture_limit) if r.texture_limit > 0 else "OFF"


def build_scene(
    spec: SceneSpec, workdir: Path, *, threads: int = 0, mesh_builder: MeshBuilder | None = None
) -> None:
    """Make the current bpy scene the frame described by ``spec`` (replacing the previous frame).

    ``mesh_builder(shape) -> obj with .vertices (N, 3) / .faces (M, 3)`` defaults to
    :func:`synthloop.geometry.meshes.build_mesh`. Raises ``FileNotFoundError`` for a missing
    ``image_path`` and ``ValueError`` for invalid values, naming the spec field.
    """
    init_session()
    clear_frame()
    inner = mesh_builder or _default_mesh_builder
    _session["mesh_seconds"] = 0.0

    def builder(shape: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(shape)
        finally:
            _session["mesh_seconds"] += time.perf_counter() - t0

    set_render(spec, threads)
    set_camera(spec.camera, spec.render)
    set_world(spec.world)
    add_support(spec)
    for obj in spec.objects:
        add_object(obj, builder)
    for i, light in enumerate(spec.lights):
        add_light(i, light)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    _session["exr_node"].base_path = str(Path(workdir) / _EXR_BASE)


# --------------------------------------------------------------------------- rendering


def _render_data_pass() -> float:
    """Cycles 1-sample pixel-centre render writing the id/depth EXR. Returns seconds in render().

    Every surface is shaded with the black override material (ids and depth come from the first
    hit only, so shading is wasted work: this makes the pass several times cheaper)."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.samples = 1
    cyc.use_adaptive_sampling = False
    cyc.use_denoising = False
    cyc.max_bounces = 0
    cyc.diffuse_bounces = cyc.glossy_bounces = cyc.transmission_bounces = 0
    cyc.volume_bounces = cyc.transparent_max_bounces = 0
    cyc.filter_width = DATA_FILTER_WIDTH
    _route_composite(False, 1.0)
    scene.render.use_compositing = True
    _session["exr_node"].mute = False
    view_layer = scene.view_layers[0]
    view_layer.material_override = _session["override"]
    try:
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=False)
        return time.perf_counter() - t0
    finally:
        view_layer.material_override = None


_DENOISE_PASSES = {"rgb": "RGB", "albedo": "RGB_ALBEDO", "albedo_normal": "RGB_ALBEDO_NORMAL"}


def apply_cycles_options(r: RenderOptions) -> None:
    """Set the RGB pass's Cycles options from ``r`` (samples, adaptive sampling, denoising,
    bounces per kind, clamping, caustics, light tree, tile size); see
    :class:`~synthloop.scenes.spec.RenderOptions` for the meaning of each field."""
    cyc = bpy.context.scene.cycles
    cyc.samples = int(r.samples)
    cyc.use_adaptive_sampling = bool(r.adaptive_sampling)
    cyc.adaptive_threshold = float(r.adaptive_threshold)
    cyc.adaptive_min_samples = int(r.adaptive_min_samples)
    cyc.use_denoising = bool(r.denoise)
    cyc.denoiser = "OPENIMAGEDENOISE"
    cyc.denoising_input_passes = _DENOISE_PASSES[r.denoise_passes]
    cyc.denoising_prefilter = r.denoise_prefilter.upper()
    cyc.denoising_quality = r.denoise_quality.upper()
    for name, value in r.bounces().items():
        setattr(cyc, name, int(value))
    cyc.volume_bounces = 0
    cyc.sample_clamp_direct = float(r.clamp_direct)
    cyc.sample_clamp_indirect = float(r.clamp_indirect)
    cyc.caustics_reflective = cyc.caustics_refractive = bool(r.caustics)
    cyc.use_light_tree = bool(r.light_tree)
    cyc.use_auto_tile = True
    cyc.tile_size = int(r.tile_size)
    cyc.filter_width = RGB_FILTER_WIDTH


def _route_composite(mixed: bool, fac: float) -> None:
    """Feed the Composite node (the image a still render saves when compositing is on) from the
    denoise mix node with factor ``fac`` (``mixed``), or straight from the render result."""
    mix = _session["denoise_mix_node"]
    mix.inputs[0].default_value = float(fac)
    source = mix.outputs["Image"] if mixed else _session["rlayers_node"].outputs["Image"]
    bpy.context.scene.node_tree.links.new(source, _session["composite_node"].inputs["Image"])


def render_rgb_pass(spec: SceneSpec, png_path: Path) -> float:
    """The spec's engine, anti-aliased, saved as 8-bit sRGB PNG. Returns seconds in render()."""
    scene = bpy.context.scene
    r = spec.render
    scene.render.engine = r.engine
    if r.engine == "CYCLES":
        apply_cycles_options(r)
    _session["exr_node"].mute = True
    mixed = r.engine == "CYCLES" and r.denoise and r.denoise_mix < 1.0
    _route_composite(mixed, r.denoise_mix)
    scene.render.use_compositing = mixed
    scene.render.filepath = str(png_path)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    return time.perf_counter() - t0


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def render_frame(
    spec: SceneSpec,
    workdir: Path,
    *,
    threads: int = 0,
    device: str = "cpu",
    mesh_builder: MeshBuilder | None = None,
) -> dict[str, Any]:
    """Build and render ``spec`` into ``workdir`` on ``device`` (see :func:`configure_device`).

    Writes ``rgb.png`` (H, W, 3 8-bit sRGB) and ``ids_depth.exr`` (channels ``IndexOB.V`` and
    ``Depth.V``, float32) and returns ``{"rgb", "exr", "render_seconds" (sum of the time inside
    both ``bpy.ops.render.render`` calls), "data_pass_seconds" / "rgb_pass_seconds" (the two renders),
    "build_seconds" (the scene build), "mesh_seconds" (the part of it spent building object meshes,
    e.g. posing and skinning bodies), "rss_bytes", "blender_version", "device" (a label), "device_warning"}``.
    Stale outputs are removed first, so a missing output is an error, never an old frame.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    png_path = workdir / RGB_NAME
    exr_path = workdir / EXR_NAME
    raw_exr = workdir / f"{_EXR_BASE}{bpy.context.scene.frame_current:04d}.exr"
    for p in (png_path, exr_path, raw_exr):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    build_scene(spec, workdir, threads=threads, mesh_builder=mesh_builder)
    choice = configure_device(device)
    build_seconds = time.perf_counter() - t0
    raw_exr = workdir / f"{_EXR_BASE}{bpy.context.scene.frame_current:04d}.exr"
    data_seconds = _render_data_pass()
    if not raw_exr.is_file():
        raise RuntimeError(f"Blender wrote no id/depth EXR (expected {raw_exr})")
    os.replace(raw_exr, exr_path)
    rgb_seconds = render_rgb_pass(spec, png_path)
    if not png_path.is_file():
        raise RuntimeError(f"Blender wrote no RGB image (expected {png_path})")
    return {
        "rgb": str(png_path),
        "exr": str(exr_path),
        "render_seconds": data_seconds + rgb_seconds,
        "data_pass_seconds": data_seconds,
        "rgb_pass_seconds": rgb_seconds,
        "build_seconds": build_seconds,
        "mesh_seconds": _session["mesh_seconds"],
        "rss_bytes": _rss_bytes(),
        "blender_version": bpy.app.version_string,
        "device": choice.label,
        "device_warning": choice.warning,
    }
