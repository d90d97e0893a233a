"""Recipe: what may vary in a scene, as distributions (see :mod:`synthloop.scenes.distributions`).

A recipe is a YAML file validated into :class:`Recipe` (pydantic v2, unknown keys rejected).
Every randomized knob takes a distribution (a bare value is a constant). Units: metres, degrees
(``*_deg``), Kelvin, Watts (POINT/SPOT/AREA lights), W/m^2 (SUN); HSV in turns/[0, 1] describing
display (sRGB) colours. The world frame is +Z up with the table plane at z = 0 centred at the
origin; ``elevation_deg`` is measured up from the table plane (90 = straight down) and
``azimuth_deg`` counter-clockwise from world +X.

Paths (``shape.mesh_file``, ``material.texture_folder``) may be relative to the recipe file's
folder; they are resolved to absolute paths on load and must exist (a texture folder must hold
at least one image).

:func:`load_recipe` accepts a bundled name (``tabletop``, ``shapes``) or a YAML path and turns
every problem into one :class:`~synthloop.errors.RecipeError` line naming the file and the field
path, e.g. ``my.yaml: classes[1].shape.kind: unknown shape 'cube'; expected one of ...``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from synthloop.atomic import atomic_write_bytes
from synthloop.bodies.outfit import LEGS, SLEEVES
from synthloop.errors import RecipeError
from synthloop.scenes.distributions import (
    CatDist,
    DeclaredRange,
    NumDist,
    declared_range,
    in_range,
    integral,
    one_of,
)
from synthloop.scenes.people import BodyConfig
from synthloop.scenes.placement import ORIENTATIONS
from synthloop.scenes.registry import list_bundled as list_bundled  # re-exported
from synthloop.scenes.registry import resolve_recipe
from synthloop.scenes.render_config import RenderConfig as RenderConfig  # re-exported
from synthloop.scenes.spec import MAX_NOISE_STD, ShapeKind, drop_field_defaults
from synthloop.userfiles import parse_yaml, read_user_text
from synthloop.validation import invalid

SHAPE_KINDS: tuple[str, ...] = get_args(ShapeKind)
PATTERNS = ("none", "noise", "wood", "checker", "marble", "foil", "streaks")
LIGHT_TYPES = ("SUN", "POINT", "SPOT", "AREA")
MESH_SUFFIXES = (".obj", ".ply", ".glb")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff")
DEFAULT_FOCAL_LENGTH_MM = 50.0
MIN_GAP_LOWEST = -0.005  # metres: the most the conservative footprint circles may overlap
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")

Positive = Annotated[NumDist, in_range(0, None, low_open=True)]
NonNegative = Annotated[NumDist, in_range(0, None)]
Unit = Annotated[NumDist, in_range(0, 1)]
Fraction = Annotated[NumDist, in_range(0, 0.99)]
# Upper bounds far above real use; they keep a typo (or a hostile file) from hanging sampling or
# asking Blender for a 100000^2 image.
MAX_COUNT = 256  # objects per class, lights, dents
MAX_SEGMENTS = 1024  # mesh segments around a round shape
MAX_RESOLUTION = 16_384  # pixels per side
Count = Annotated[NumDist, in_range(0, MAX_COUNT), AfterValidator(integral)]
Elevation = Annotated[NumDist, in_range(0, 90)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError(f"name {v!r} must start with a letter and use only letters, digits, '_' and '-'")
    return v


Name = Annotated[str, AfterValidator(_check_name)]


def _resolve(path: str, info: ValidationInfo) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        base = (info.context or {}).get("base_dir")
        p = (Path(base) if base is not None else Path.cwd()) / p
    return p.resolve()


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class SensorConfig(_Model):
    """What the camera does to the light after the lens, applied to the rendered sRGB image (the
    labels are unchanged): ``noise_std`` Gaussian noise, its standard deviation in 8-bit levels
    (0-64, independent per pixel and channel; 0 = none); ``jpeg_quality`` (integer 1-100) the image
    is JPEG-compressed at and decoded again, as a phone stores its photos (none = no compression).
    Noise comes first, as in a camera."""

    noise_std: Annotated[NumDist, in_range(0, MAX_NOISE_STD)] = 0.0
    jpeg_quality: Annotated[NumDist, in_range(1, 100), AfterValidator(integral)] | None = None


class CameraConfig(_Model):
    """Camera orbiting the look-at point (table centre + a horizontal offset of length
    ``look_at_jitter`` metres in a uniformly random direction) at ``distance`` metres,
    ``elevation_deg`` above the table plane (90 = straight down), ``azimuth_deg`` from +X;
    ``roll_deg`` turns the image about the view axis. Give ``focal_length_mm`` or ``fov_deg``
    (horizontal, converted with ``sensor_width_mm``); neither means 50 mm. ``look_at_height``: the
    look-at point's height above the table plane in metres (e.g. chest height for people).
    ``sensor``: noise and compression after the render (:class:`SensorConfig`; none = a clean
    image)."""

    distance: Positive = 0.6
    elevation_deg: Elevation = 90.0
    azimuth_deg: NumDist = {"uniform": [0.0, 360.0]}
    roll_deg: NumDist = 0.0
    look_at_jitter: NonNegative = 0.0
    look_at_height: NonNegative = 0.0
    focal_length_mm: Positive | None = None
    fov_deg: Annotated[NumDist, in_range(1, 170)] | None = None
    sensor_width_mm: float = Field(36.0, gt=0)
    clip_start: float = Field(0.01, gt=0)
    clip_end: float = Field(100.0, gt=0)
    sensor: SensorConfig | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "look_at_height", "sensor")

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if self.focal_length_mm is not None and self.fov_deg is not None:
            raise ValueError("give focal_length_mm or fov_deg, not both")
        if self.clip_end <= self.clip_start:
            raise ValueError("clip_end must be greater than clip_start")
        return self


class LightsConfig(_Model):
    """``count`` lights, each drawn independently: position at ``distance`` metres from the table
    centre, ``elevation_deg``/``azimuth_deg`` as for the camera, pointing at the centre. The first
    light is the key light; the others' strength is multiplied by ``fill_ratio``. ``strength``
    (W) is for POINT/SPOT/AREA, ``sun_strength`` (W/m^2) for SUN. ``size``: radius (POINT/SPOT)
    or edge (AREA) in metres; ``sun_angle_deg``: the sun's angular diameter."""

    count: Count = 2
    type: Annotated[CatDist, one_of(LIGHT_TYPES, "light type")] = "AREA"
    elevation_deg: Elevation = {"uniform": [35.0, 80.0]}
    azimuth_deg: NumDist = {"uniform": [0.0, 360.0]}
    distance: Positive = 1.5
    strength: NonNegative = 150.0
    sun_strength: NonNegative = 3.0
    fill_ratio: NonNegative = 1.0
    color_temperature_k: Annotated[NumDist, in_range(1000, 40000)] = 5500.0
    size: Positive = 0.3
    sun_angle_deg: NonNegative = 2.0
    spot_angle_deg: Annotated[NumDist, in_range(1, 180)] = 45.0


class WorldConfig(_Model):
    """Uniform environment: colour from HSV (display values), ``strength`` multiplier."""

    strength: NonNegative = 0.5
    hue: NumDist = 0.0
    saturation: Unit = 0.0
    value: Unit = 1.0


class MaterialConfig(_Model):
    """A Principled BSDF. Base colour from HSV (display values, hue in turns, wraps); the
    pattern's second colour is HSV(hue + ``color2_hue_shift``, saturation *
    ``color2_saturation_scale``, value * ``color2_value_scale``). ``texture_folder``: one image
    from the folder replaces the base colour (chosen per object).

    ``cap_fraction`` (optional, in [0, 1]): a cap over the bottom of the object, the part whose
    height is below that fraction of the object's z extent (a nut's pale, matte scar at its wide
    end; a teardrop's tip is at +z), with an irregular edge. Its colour is HSV(hue, saturation *
    ``cap_saturation_scale``, value * ``cap_value_scale``), its roughness ``cap_roughness``, and a
    thin dark line along its edge has strength ``cap_rim`` (0 none, 1 full: a nut's rim).
    Without ``cap_fraction`` nothing is sampled for the cap (a recipe's scenes stay as they were)."""

    hue: NumDist = 0.0
    saturation: Unit = 0.0
    value: Unit = 0.8
    color2_hue_shift: NumDist = 0.0
    color2_saturation_scale: NonNegative = 1.0
    color2_value_scale: NonNegative = 0.6
    roughness: Unit = 0.5
    metallic: Unit = 0.0
    specular: Unit = 0.5
    pattern: Annotated[CatDist, one_of(PATTERNS, "pattern")] = "none"
    pattern_scale: Positive = 5.0
    pattern_strength: Unit = 0.0
    bump_strength: NonNegative = 0.0
    bump_scale: Positive = 20.0
    texture_folder: str | None = None
    image_scale: Positive = 1.0
    cap_fraction: Unit | None = None
    cap_saturation_scale: NonNegative = 0.4
    cap_value_scale: NonNegative = 1.4
    cap_roughness: Unit = 0.9
    cap_rim: Unit = 0.0

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(
            self,
            handler(self),
            "cap_fraction",
            "cap_saturation_scale",
            "cap_value_scale",
            "cap_roughness",
            "cap_rim",
        )

    @field_validator("texture_folder")
    @classmethod
    def _folder(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        p = _resolve(v, info)
        if not p.is_dir():
            raise ValueError(f"texture folder not found: {p}")
        if not list_images(p):
            raise ValueError(f"texture folder has no images ({', '.join(IMAGE_SUFFIXES)}): {p}")
        return str(p)


class ShapeConfig(_Model):
    """Geometry of a class. ``dimensions`` (x, y, z) are full extents in metres before ``scale``
    (a uniform multiplier); the final extents are ``dimensions * scale``. The shape parameters
    pass through to :class:`~synthloop.scenes.spec.ShapeSpec` (see
    :mod:`synthloop.geometry.meshes`: ``wrinkle_amplitude`` and ``dent_depth`` are fractions of
    the radius, ``wrinkle_frequency`` about bumps per radian, ``taper`` 0 = ellipsoid .. 1 = conical
    tip at +Z, ``bevel`` metres for boxes). ``mesh_file`` (or ``mesh_files``): a path or a list
    of paths (.obj/.ply/.glb, one chosen per object) for ``kind: mesh``. ``orientation``: resting
    pose, one of ``upright`` (yaw only), ``lying`` (local +Z horizontal), ``upside_down``.
    ``kind: body`` (a person) takes ``body`` (:class:`~synthloop.scenes.people.BodyConfig`) instead
    of ``dimensions``: its extents come from the posed body model."""

    kind: ShapeKind
    dimensions: tuple[Positive, Positive, Positive] | None = None
    body: BodyConfig | None = None
    scale: Positive = 1.0
    segments: int = Field(32, ge=3, le=MAX_SEGMENTS, strict=True)
    wrinkle_amplitude: Fraction = 0.0
    wrinkle_frequency: NonNegative = 0.0
    dent_count: Count = 0
    dent_depth: Fraction = 0.0
    taper: Annotated[NumDist, in_range(0, 2)] = 0.0
    bevel: NonNegative = 0.0
    mesh_file: tuple[str, ...] | None = Field(None, validation_alias=AliasChoices("mesh_file", "mesh_files"))
    orientation: Annotated[CatDist, one_of(ORIENTATIONS, "orientation")] = "upright"

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "body")

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        if not isinstance(v, str) or v not in SHAPE_KINDS:
            raise ValueError(f"unknown shape {v!r}; expected one of {', '.join(SHAPE_KINDS)}")
        return v

    @field_validator("mesh_file", mode="before")
    @classmethod
    def _mesh_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("mesh_file")
    @classmethod
    def _mesh_exists(cls, v: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("mesh_file list is empty")
        out = []
        for item in v:
            p = _resolve(item, info)
            if p.suffix.lower() not in MESH_SUFFIXES:
                raise ValueError(f"mesh file must be one of {', '.join(MESH_SUFFIXES)}: {p}")
            if not p.is_file():
                raise ValueError(f"mesh file not found: {p}")
            out.append(str(p))
        return tuple(out)

    @model_validator(mode="after")
    def _mesh_kind(self) -> ShapeConfig:
        if self.kind == "mesh" and self.mesh_file is None:
            raise ValueError("kind 'mesh' needs mesh_file")
        if self.kind != "mesh" and self.mesh_file is not None:
            raise ValueError(f"mesh_file given but kind is '{self.kind}' (use kind: mesh)")
        if self.kind == "body" and self.body is None:
            raise ValueError("kind 'body' needs body")
        if self.kind != "body" and self.body is not None:
            raise ValueError(f"body given but kind is '{self.kind}' (use kind: body)")
        if self.kind != "body" and self.dimensions is None:
            raise ValueError("missing required field 'dimensions'")
        return self


Keypoint = tuple[
    Annotated[float, Field(ge=-1, le=1)],
    Annotated[float, Field(ge=-1, le=1)],
    Annotated[float, Field(ge=-1, le=1)],
]


class DistractorConfig(_Model):
    """Unlabeled objects: placed and rendered with instance ids, but no category."""

    name: Name
    count: Count = 1
    shape: ShapeConfig
    material: MaterialConfig = Field(default_factory=MaterialConfig)


class ClothingConfig(_Model):
    """A person's outfit (:mod:`synthloop.bodies.outfit`): the class's ``material`` is the top,
    ``bottom`` the trousers or shorts, ``shoes`` the feet; ``sleeves`` (``none``, ``short``,
    ``long``) and ``legs`` (``short``, ``long``) say how much of the arms and legs they cover (the
    rest shows the body's skin)."""

    sleeves: Annotated[CatDist, one_of(SLEEVES, "sleeves")] = {"choice": list(SLEEVES)}
    legs: Annotated[CatDist, one_of(LEGS, "legs")] = {"choice": list(LEGS), "weights": [1.0, 2.0]}
    bottom: MaterialConfig = Field(default_factory=MaterialConfig)
    shoes: MaterialConfig = Field(default_factory=MaterialConfig)


class ClassConfig(DistractorConfig):
    """A labeled class. ``keypoints``: name -> [x, y, z] in normalized asset coordinates (units of
    the half-extents, each in [-1, 1]; [0, 0, 1] is the top centre of the bounding box), in
    COCO order. ``skeleton``: pairs of keypoint names. ``clothing`` (body classes only): an outfit
    of top, bottom and shoes; without it one garment (``material``) covers the body."""

    supercategory: str = ""
    keypoints: dict[str, Keypoint] = Field(default_factory=dict)
    skeleton: tuple[tuple[str, str], ...] = ()
    clothing: ClothingConfig | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "clothing")  # as before outfits existed

    @model_validator(mode="after")
    def _check_skeleton(self) -> ClassConfig:
        for i, (a, b) in enumerate(self.skeleton):
            for kp in (a, b):
                if kp not in self.keypoints:
                    known = ", ".join(self.keypoints) or "(none)"
                    raise ValueError(f"skeleton[{i}] names keypoint '{kp}', not one of: {known}")
        if self.shape.kind == "body" and (self.keypoints or self.skeleton):
            raise ValueError("a body class takes its COCO-17 keypoints and skeleton from the body model")
        if self.clothing is not None and self.shape.kind != "body":
            raise ValueError("clothing: only a body class (shape kind 'body') wears an outfit")
        return self


class SupportConfig(_Model):
    """The table: a rectangle centred at the origin, ``size`` (x, y) metres."""

    size: tuple[Positive, Positive] = (1.0, 1.0)
    material: MaterialConfig = Field(default_factory=MaterialConfig)


class PlacementConfig(_Model):
    """Objects are placed inside the centred rectangle ``area`` (x, y metres) with at least
    ``min_gap`` metres between their footprint circles; ``max_attempts`` draws per object.

    The footprint circles are conservative (half the diagonal of the rotated bounding box), so
    rounded shapes keep a margin of several millimetres inside them. A negative ``min_gap`` (down to
    ``MIN_GAP_LOWEST``) lets circles overlap by up to ``-min_gap`` metres, for dense arrangements of
    rounded or bevelled objects; it must stay below those margins or the meshes may touch."""

    area: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.4, 0.3)
    min_gap: float = Field(0.005, ge=MIN_GAP_LOWEST)
    max_attempts: int = Field(200, ge=1)


MAX_CONTACT_GAP = 0.05  # metres: a "contact" gap wider than this is not touching
PileSize = Annotated[NumDist, in_range(2, MAX_COUNT), AfterValidator(integral)]


class ArrangementConfig(_Model):
    """Touching piles (see :mod:`synthloop.scenes.piles`): each frame draws ``pile_fraction`` (the
    share of its objects, labeled and distractors, that go into piles), ``contact_gap`` (metres
    between the footprints of touching objects; 0 = touching) and, until the piled objects are
    used up, pile sizes from ``pile_size`` (objects per pile, >= 2). A piled object touches at
    least one other (footprint gap ``contact_gap``) without interpenetrating; the others are
    scattered as without an ``arrangement``. Absent (the default): no piles, and every frame is
    exactly what it was before this field existed."""

    pile_fraction: Unit = 0.5
    pile_size: PileSize = {"uniform": [2, 5]}
    contact_gap: Annotated[NumDist, in_range(0, MAX_CONTACT_GAP)] = 0.001


class Recipe(_Model):
    """A scene recipe. ``resolution`` is [width, height] in pixels."""

    name: Name
    description: str = ""
    resolution: tuple[
        Annotated[int, Field(ge=1, le=MAX_RESOLUTION, strict=True)],
        Annotated[int, Field(ge=1, le=MAX_RESOLUTION, strict=True)],
    ]
    render: RenderConfig = Field(default_factory=RenderConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    lights: LightsConfig = Field(default_factory=LightsConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    support: SupportConfig = Field(default_factory=SupportConfig)
    classes: tuple[ClassConfig, ...] = Field(min_length=1)
    distractors: tuple[DistractorConfig, ...] = ()
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    arrangement: ArrangementConfig | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        return drop_field_defaults(self, handler(self), "arrangement")

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        seen: set[str] = set()
        for group, items in (("classes", self.classes), ("distractors", self.distractors)):
            for i, item in enumerate(items):
                if item.name in seen:
                    raise ValueError(f"{group}[{i}].name: duplicate name '{item.name}'")
                seen.add(item.name)
        return self


def recipe_from_dict(data: Any, *, source: str = "<recipe>", base_dir: str | Path | None = None) -> Recipe:
    """Validate a parsed recipe; relative paths resolve against ``base_dir`` (default: cwd).

    Raises RecipeError(path=source, where=field path) listing every problem (one line each)."""
    if not isinstance(data, dict):
        raise RecipeError(
            f"expected a mapping of recipe fields at the top level, got {type(data).__name__}", path=source
        )
    try:
        return Recipe.model_validate(data, context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as err:
        raise invalid(RecipeError, err, source, brackets=True) from None


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A bundled recipe by name (``tabletop``, ``shapes``) or a YAML file, validated.

    Raises RecipeError (one line: file, field path, problem) for a missing file, YAML syntax
    errors (with line and column) and every validation problem."""
    path = resolve_recipe(name_or_path)
    source = str(name_or_path) if Path(str(name_or_path)).is_file() else str(path)
    data = parse_yaml(read_user_text(path, RecipeError), source, RecipeError)
    return recipe_from_dict(data, source=source, base_dir=path.resolve().parent)


def recipe_to_dict(recipe: Recipe) -> dict:
    """JSON-able dict in field order; distributions in their compact form; paths absolute."""
    return recipe.model_dump(mode="json")


def recipe_hash(recipe: Recipe) -> str:
    """sha256 hex of the canonical JSON dump (field order fixed by the model; keypoint order kept,
    since it is meaningful). Numbers are floats, so ``3`` and ``3.0`` hash alike."""
    canon = json.dumps(recipe_to_dict(recipe), sort_keys=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def recipe_to_yaml(recipe: Recipe) -> str:
    """YAML text that :func:`load_recipe` reads back into an equal Recipe."""
    return recipe_dict_to_yaml(recipe_to_dict(recipe))


def yaml_comment(lines: list[str]) -> str:
    """``lines`` as a YAML comment block: every physical line (a value may hold line breaks, e.g.
    a file name) starts with ``# ``, so nothing in them can become YAML."""
    return "".join(f"# {part}\n" for line in lines for part in (line.splitlines() or [""]))


def recipe_dict_to_yaml(data: dict) -> str:
    """YAML text of a recipe dict (:func:`recipe_to_dict` form), in field order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=110)


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write ``recipe_to_yaml(recipe)`` atomically to ``path`` (a derived recipe next to its outputs)."""
    return atomic_write_bytes(path, recipe_to_yaml(recipe).encode("utf-8"))


def focal_length_from_fov(fov_deg: float, sensor_width_mm: float) -> float:
    """Focal length (mm) giving the horizontal field of view ``fov_deg`` on the sensor width."""
    return sensor_width_mm / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def _metadata(annotation: Any) -> list[Any]:
    """Every ``Annotated`` metadata item inside ``annotation`` (through unions such as ``X | None``)."""
    if get_origin(annotation) is Annotated:
        return list(annotation.__metadata__) + _metadata(get_args(annotation)[0])
    return [m for arg in get_args(annotation) for m in _metadata(arg)]


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``X``, ``X | None``, ``tuple[X, ...]``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def field_range(path: tuple[str | int, ...], model: type[BaseModel] = Recipe) -> DeclaredRange:
    """The valid range that the recipe field at ``path`` (keys into :func:`recipe_to_dict`, list
    indices included, e.g. ``("classes", 0, "count")``) declares through its validators. A path
    the recipe model does not hold, or a field without a declared range, is unbounded."""
    models = [model]
    keys = [p for p in path if isinstance(p, str)]
    for i, key in enumerate(keys):
        owner = next((m for m in models if key in m.model_fields), None)
        if owner is None:
            return DeclaredRange()
        info = owner.model_fields[key]
        if i == len(keys) - 1:
            return declared_range([*info.metadata, *_metadata(info.annotation)])
        models = _models(info.annotation)
    return DeclaredRange()
