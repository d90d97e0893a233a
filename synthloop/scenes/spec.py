"""SceneSpec: every value sampled for one frame, as plain JSON-able data.

A SceneSpec is the whole truth of a frame: rendering it twice gives the same frame, the
active-learning loop mines its ``params``, and a failed frame can be re-rendered from it alone.

Conventions (written once, used everywhere):

* World frame: right-handed, metres, +Z up. The support surface (tabletop) is the plane z = 0.
* Object local frame: metres, the asset centred on its bounding-box centre before placement; an
  object's world transform is ``T(location) @ R(rotation_quat_wxyz)`` (no extra scale: the
  shape's ``dimensions`` are already the final size).
* Camera pose: ``CameraSpec.rotation_world_from_cam`` is the 3x3 rotation of a *Blender* camera
  (camera looks down its local -Z, +Y up). :mod:`synthloop.geometry.camera` converts it to
  OpenCV/KITTI axes (+Z forward, +Y down) in one tested function.
* Colours: ``*_rgb`` fields are linear RGB in [0, 1]; HSV fields are the sampled values that
  produced them (h in [0, 1) turns, s and v in [0, 1]).
* Instance ids are integers >= 1, unique in the frame, used as Blender's object pass index.
  0 is background. Distractors have ids too (so occlusion by them is measured) but no category.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from synthloop.bodies.outfit import HairStyle, Legs, Sleeves
from synthloop.validation import require_one_of

SCENE_SPEC_SCHEMA = "synthloop.scenespec/1"
MAX_NOISE_STD = 64.0  # sensor noise, 8-bit levels: far above any camera's


def drop_defaults(dumped: Any, **defaults: Any) -> Any:
    """Leave fields added later out of a dump while they hold their default, so the hash of a
    recipe or scene that does not use them stays what it was before they existed. A tuple default
    also matches the list a JSON-mode dump makes of it."""
    if isinstance(dumped, dict):
        for k, v in defaults.items():
            if k in dumped and (dumped[k] == v or (isinstance(v, tuple) and dumped[k] == list(v))):
                del dumped[k]
    return dumped


def drop_field_defaults(model: BaseModel, dumped: Any, *names: str) -> Any:
    """:func:`drop_defaults` of the fields ``names`` of ``model``, each at its declared default."""
    fields = type(model).model_fields
    return drop_defaults(dumped, **{n: fields[n].default for n in names})


ShapeKind = Literal[
    "ellipsoid",
    "wrinkled_ellipsoid",
    "dented_ellipsoid",
    "teardrop",
    "sphere",
    "box",
    "cylinder",
    "mesh",
    "body",
]
Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BodySpec(_Plain):
    """One person's sampled body (kind ``body``, see :mod:`synthloop.bodies`): ``phenotype`` pairs
    (name, value in [0, 1]), ``rotations_deg`` pairs (joint, [rx, ry, rz] degrees in the
    convention of :mod:`synthloop.bodies.limits`), ``pose`` the canonical pose they came from.
    ``sleeves`` / ``legs``: the outfit (:mod:`synthloop.bodies.outfit`: which faces the top, the
    skin, the bottom and the shoes paint); both empty = one garment over the body, as before
    outfits existed. ``hair``: ``none``, ``short`` or ``long`` (the head's hair and eyes take
    slots 4 and 5); empty = a head of skin, as before hair existed. Pairs (not dicts) keep the
    spec hashable for the mesh cache."""

    phenotype: tuple[tuple[str, float], ...] = ()
    rotations_deg: tuple[tuple[str, Vec3], ...] = ()
    pose: str = ""
    sleeves: Literal[""] | Sleeves = ""
    legs: Literal[""] | Legs = ""
    hair: Literal[""] | HairStyle = ""

    @model_validator(mode="after")
    def _outfit(self) -> BodySpec:
        if bool(self.sleeves) != bool(self.legs):
            raise ValueError("an outfit needs both sleeves and legs (or neither)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "sleeves", "legs", "hair")  # as before outfits, hair


class ShapeSpec(_Plain):
    """Geometry of one asset; :func:`synthloop.geometry.meshes.build_mesh` turns it into triangles.

    ``dimensions`` are the full extents (x, y, z) in metres of the final mesh's axis-aligned
    bounding box in the object's local frame. ``wrinkle_*`` displace vertices radially with
    seeded value noise (``noise_seed``); ``dent_*`` push ``dent_count`` smooth dents inward;
    ``taper`` shapes a teardrop (0 = ellipsoid, 1 = sharp tip at +Z). ``segments`` is the mesh
    resolution (longitude segments; rings = segments // 2). ``mesh_path`` is an absolute path to
    an .obj/.ply/.glb file for ``kind == "mesh"`` (rescaled to ``dimensions``). ``body`` is
    required for ``kind == "body"`` (a posed person; ``dimensions`` are its posed extents).
    """

    kind: ShapeKind
    dimensions: Vec3
    segments: int = 32
    wrinkle_amplitude: float = 0.0
    wrinkle_frequency: float = 0.0
    dent_count: int = 0
    dent_depth: float = 0.0
    taper: float = 0.0
    bevel: float = 0.0
    noise_seed: int = 0
    mesh_path: str | None = None
    body: BodySpec | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "body")  # as before bodies existed


class MaterialSpec(_Plain):
    """A Principled BSDF with optional procedural pattern, bump and image texture.

    ``pattern``: ``none`` (flat colour), ``noise`` (colour variation by a noise texture),
    ``wood`` (wave bands), ``checker``, ``marble``, ``foil`` (crumpled metal: strong bump,
    high metallic), ``streaks`` (lines around the object's z axis; ``pattern_scale`` sets how
    many). ``pattern_scale`` is in texture-space units (larger = finer). ``color2_rgb``
    is the pattern's second colour. ``image_path`` (absolute) replaces the base colour.
    ``cap_fraction`` > 0 paints the bottom of the object (below that fraction of its z extent,
    edge made irregular by noise) in ``cap_rgb`` (linear RGB) with roughness ``cap_roughness``,
    and darkens a thin line along its edge by ``cap_rim`` (0 none, 1 full).
    """

    base_color_hsv: Vec3
    base_color_rgb: Vec3
    color2_rgb: Vec3 | None = None
    roughness: float = 0.5
    metallic: float = 0.0
    specular: float = 0.5
    pattern: Literal["none", "noise", "wood", "checker", "marble", "foil", "streaks"] = "none"
    pattern_scale: float = 5.0
    pattern_strength: float = 0.0
    bump_strength: float = 0.0
    bump_scale: float = 20.0
    image_path: str | None = None
    image_scale: float = 1.0
    cap_fraction: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    cap_rgb: Vec3 | None = None
    cap_roughness: float = Field(0.9, ge=0.0, le=1.0, allow_inf_nan=False)
    cap_rim: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        # a material without a cap dumps (and hashes) as it did before caps existed
        return drop_field_defaults(self, handler(self), "cap_fraction", "cap_rgb", "cap_roughness", "cap_rim")


class CategorySpec(_Plain):
    """A labeled class: id from 1 in recipe order, COCO keypoint names and skeleton (1-based)."""

    id: int
    name: str
    supercategory: str = ""
    keypoints: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()


class ObjectSpec(_Plain):
    """One placed object. ``category_id`` is None for unlabeled distractors.

    ``keypoints_local`` maps keypoint name -> point in the object's local frame (metres), in the
    category's keypoint order. ``params`` holds this object's sampled scalars for mining
    (e.g. ``scale``, ``hue``, ``roughness``). ``extra_materials[k]`` paints the mesh's faces of
    group ``k + 1`` (bodies: the skin, the bottom, the shoes, the hair and the eyes, in the slots
    of :mod:`synthloop.bodies.outfit`; ``material`` the top).
    """

    instance_id: int
    name: str
    category_id: int | None
    shape: ShapeSpec
    material: MaterialSpec
    location: Vec3
    rotation_quat_wxyz: Quat
    keypoints_local: dict[str, Vec3] = Field(default_factory=dict)
    params: dict[str, float | int | str] = Field(default_factory=dict)
    extra_materials: tuple[MaterialSpec, ...] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        # an object with one material dumps (and hashes) as it did before extra materials existed
        return drop_field_defaults(self, handler(self), "extra_materials")


class LightSpec(_Plain):
    """A Blender light. ``location`` in world metres (ignored for SUN except for placement);
    ``direction`` is the unit vector the light points along (world). ``strength`` is W for
    point/spot/area lights and W/m^2 (irradiance) for SUN. ``size`` is the radius (point/spot),
    edge (area) in metres, or angular diameter in radians (sun)."""

    type: Literal["SUN", "POINT", "SPOT", "AREA"]
    location: Vec3
    direction: Vec3
    strength: float
    color_temperature_k: float
    color_rgb: Vec3
    size: float = 0.1
    spot_angle: float = 0.8


class CameraSpec(_Plain):
    """Pinhole camera. ``rotation_world_from_cam`` is row-major 3x3 (Blender camera axes).
    Sensor fit is horizontal: fx = focal_length_mm / sensor_width_mm * width_px."""

    location: Vec3
    rotation_world_from_cam: tuple[Vec3, Vec3, Vec3]
    look_at: Vec3
    focal_length_mm: float
    sensor_width_mm: float = 36.0
    clip_start: float = 0.01
    clip_end: float = 100.0


class SensorSpec(_Plain):
    """What the sensor does to one frame's rendered sRGB image (recipe ``camera.sensor``):
    Gaussian noise of ``noise_std`` 8-bit levels drawn from ``noise_seed``, then a JPEG round trip
    at ``jpeg_quality`` (None = none)."""

    noise_std: float = Field(0.0, ge=0, le=MAX_NOISE_STD)
    jpeg_quality: int | None = Field(None, ge=1, le=100)
    noise_seed: int = Field(0, ge=0)


class SupportSpec(_Plain):
    """The support surface: a rectangle centred at the origin on z = 0, ``size`` (x, y) metres."""

    size: tuple[float, float]
    material: MaterialSpec


class WorldSpec(_Plain):
    """Uniform environment light (colour, strength) seen by reflections and as ambient light."""

    color_rgb: Vec3 = (0.05, 0.05, 0.05)
    strength: float = 1.0


TEXTURE_LIMITS = (0, 128, 256, 512, 1024, 2048, 4096, 8192)


class RenderOptions(_Plain):
    """How a frame's image is rendered (the exact id/depth pass never depends on these).

    The defaults reproduce the renders of scene specs written before these fields existed
    (Cycles 16 spp, no adaptive sampling, no denoising, 4 bounces of every kind): a stored spec
    renders the same image. A recipe's ``render:`` block has its own, faster defaults (see
    :mod:`synthloop.scenes.render_config`).

    * ``samples``: Cycles samples per pixel (the maximum when ``adaptive_sampling``).
    * ``adaptive_sampling``: stop sampling a pixel once its noise estimate is below
      ``adaptive_threshold`` (Cycles' noise threshold, (0, 1]); ``adaptive_min_samples`` samples
      are always taken (0 = Cycles' automatic choice, about 4 / sqrt(threshold)).
    * ``denoise``: OpenImageDenoise on the final image; ``denoise_passes`` the guide passes
      (``rgb``, ``albedo``, ``albedo_normal``), ``denoise_prefilter`` how the guides are
      cleaned first (``none``, ``fast``, ``accurate``), ``denoise_quality`` OIDN's mode.
      ``denoise_mix``: the denoised image's share of the output, in [0, 1]; below 1 the noisy
      render is mixed back in (linear light, before the view transform), which restores fine
      texture the denoiser smooths away at the price of some noise. Needs ``denoise``.
    * Light paths: ``max_bounces`` caps the total; ``diffuse_bounces``, ``glossy_bounces``,
      ``transmission_bounces`` (None = ``max_bounces``) and ``transparent_bounces`` (None =
      ``max(max_bounces, 1)``) per kind. ``clamp_direct`` / ``clamp_indirect``: largest sample
      value of direct / indirect light (0 = no clamping). ``caustics``: reflective and
      refractive caustics (off: a big noise source of little use for detection data).
    * ``light_tree``: Cycles' light tree (many-light importance sampling).
    * ``persistent_data``: keep Cycles' scene data between renders of one Blender process.
    * ``texture_limit``: largest image texture side in pixels at render time (simplify;
      0 = no limit; one of :data:`TEXTURE_LIMITS`).
    * ``tile_size``: render tile side in pixels (a frame smaller than a tile is one tile).
    """

    engine: Literal["CYCLES", "BLENDER_WORKBENCH"] = "CYCLES"
    samples: int = Field(16, ge=1, le=65536, strict=True)
    adaptive_sampling: bool = False
    adaptive_threshold: float = Field(0.01, gt=0.0, le=1.0)
    adaptive_min_samples: int = Field(0, ge=0, le=4096, strict=True)
    denoise: bool = False
    denoise_passes: Literal["rgb", "albedo", "albedo_normal"] = "albedo_normal"
    denoise_prefilter: Literal["none", "fast", "accurate"] = "accurate"
    denoise_quality: Literal["high", "balanced", "fast"] = "high"
    denoise_mix: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    max_bounces: int = Field(4, ge=0, le=1024, strict=True)
    diffuse_bounces: int | None = Field(None, ge=0, le=1024, strict=True)
    glossy_bounces: int | None = Field(None, ge=0, le=1024, strict=True)
    transmission_bounces: int | None = Field(None, ge=0, le=1024, strict=True)
    transparent_bounces: int | None = Field(None, ge=0, le=1024, strict=True)
    clamp_direct: float = Field(0.0, ge=0.0, le=1e8, allow_inf_nan=False)
    clamp_indirect: float = Field(10.0, ge=0.0, le=1e8, allow_inf_nan=False)
    caustics: bool = False
    light_tree: bool = True
    persistent_data: bool = False
    texture_limit: int = 0
    tile_size: int = Field(2048, ge=8, le=8192, strict=True)
    image_format: Literal["png", "jpg"] = "png"
    jpeg_quality: int = Field(92, ge=1, le=100, strict=True)

    @field_validator("texture_limit")
    @classmethod
    def _texture_limit(cls, v: int) -> int:
        allowed = ", ".join(map(str, TEXTURE_LIMITS))
        return require_one_of(v, TEXTURE_LIMITS, f"texture_limit must be one of {allowed} (0 = off)")

    @model_validator(mode="after")
    def _consistent(self) -> RenderOptions:
        if self.adaptive_sampling and self.adaptive_min_samples > self.samples:
            raise ValueError(
                f"adaptive_min_samples ({self.adaptive_min_samples}) exceeds samples ({self.samples})"
            )
        if self.denoise_mix < 1.0 and not self.denoise:
            raise ValueError(f"denoise_mix ({self.denoise_mix}) below 1 needs denoise: true")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "denoise_mix")  # as before the mix existed

    def bounces(self) -> dict[str, int]:
        """Bounces per light-path kind with the None defaults resolved (Cycles' names)."""
        m = self.max_bounces
        return {
            "max_bounces": m,
            "diffuse_bounces": m if self.diffuse_bounces is None else self.diffuse_bounces,
            "glossy_bounces": m if self.glossy_bounces is None else self.glossy_bounces,
            "transmission_bounces": m if self.transmission_bounces is None else self.transmission_bounces,
            "transparent_max_bounces": (
                max(m, 1) if self.transparent_bounces is None else self.transparent_bounces
            ),
        }


class RenderSettings(RenderOptions):
    """Resolution in pixels plus :class:`RenderOptions`. ``engine`` CYCLES (annotations exact) or
    BLENDER_WORKBENCH (fast previews: RGB from Workbench, id/depth passes from a 1-sample Cycles
    pass)."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)


class SceneSpec(_Plain):
    """Everything that defines one frame. Same (recipe, seed, frame_index) -> equal SceneSpec."""

    schema_: str = Field(default=SCENE_SPEC_SCHEMA, alias="schema")
    recipe_name: str
    recipe_hash: str
    seed: int
    frame_index: int
    render: RenderSettings
    camera: CameraSpec
    lights: tuple[LightSpec, ...]
    support: SupportSpec
    world: WorldSpec
    categories: tuple[CategorySpec, ...]
    objects: tuple[ObjectSpec, ...]
    params: dict[str, float | int | str] = Field(default_factory=dict)
    sensor: SensorSpec | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "sensor")  # a clean frame: as before sensors existed

    def to_json_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        return json.loads(self.model_dump_json(by_alias=True))

    @classmethod
    def from_json_dict(cls, data: dict) -> SceneSpec:
        return cls.model_validate(data)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form: equal specs have equal hashes."""
        canon = json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def object_by_instance(self, instance_id: int) -> ObjectSpec:
        for obj in self.objects:
            if obj.instance_id == instance_id:
                return obj
        raise KeyError(f"no object with instance_id {instance_id}")
