"""Sampler: ``sample_scene(recipe, seed, frame_index) -> SceneSpec``.

Determinism: every subsystem draws from its own generator,
``np.random.default_rng(np.random.SeedSequence([seed, frame_index, SUBSYSTEM, *index]))``, so a
frame depends only on (recipe, seed, frame_index) -- never on other frames or the order they are
sampled in -- and changing one part of a recipe leaves the others' draws alone (adding objects
does not move the camera; adding a class does not change another class's objects; only the
placement, which sees all objects, changes).

Geometry (world +Z up, table plane z = 0 centred at the origin, metres):

* Camera: at ``look_at + distance * b`` with ``b = (cos e cos a, cos e sin a, sin e)`` for
  elevation ``e`` and azimuth ``a``. Blender camera axes: local -Z = view direction (-b), local
  +Y = image up = ``(-sin e cos a, -sin e sin a, cos e)`` (the direction of increasing elevation,
  so at e = 90 deg image up is the horizontal direction away from the azimuth, no special case),
  local +X = Y x Z. A positive roll turns the camera counter-clockwise about its view axis as seen
  from behind (the image content turns clockwise).
* Lights: at ``distance * b(elevation, azimuth)`` from the table centre, pointing at it.
* Objects: see :mod:`synthloop.scenes.placement`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from synthloop.bodies.coco import COCO17_KEYPOINTS, COCO17_SKELETON
from synthloop.bodies.model import BODY_FORWARD_XY
from synthloop.errors import SynthloopError
from synthloop.geometry.meshes import mesh_cache
from synthloop.scenes.color import hsv_to_linear_rgb, kelvin_to_linear_rgb
from synthloop.scenes.people import HeadConfig, sample_body, sample_head
from synthloop.scenes.piles import box_footprint, footprint, pile_sizes, place_piles
from synthloop.scenes.placement import footprint_radius, place_circles, rest_height, resting_quat, yaw_facing
from synthloop.scenes.recipe import (
    DEFAULT_FOCAL_LENGTH_MM,
    ArrangementConfig,
    CameraConfig,
    ClassConfig,
    ClothingConfig,
    DistractorConfig,
    LightsConfig,
    MaterialConfig,
    PlacementConfig,
    Recipe,
    SensorConfig,
    ShapeConfig,
    SupportConfig,
    WorldConfig,
    focal_length_from_fov,
    list_images,
    recipe_hash,
)
from synthloop.scenes.spec import (
    CameraSpec,
    CategorySpec,
    LightSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSettings,
    SceneSpec,
    SensorSpec,
    ShapeSpec,
    SupportSpec,
    WorldSpec,
)

# Subsystem ids for the per-frame SeedSequence (never renumber: it would change every dataset).
CAMERA, LIGHTS, SUPPORT, WORLD, COUNTS, OBJECTS, DISTRACTORS, PLACEMENT = 1, 2, 3, 4, 5, 6, 7, 8
ARRANGEMENT = 9
SENSOR = 10
_BOX_FOOTPRINT_KINDS = ("mesh", "body")  # footprints from the bounding box (no file read, no posing)

Params = dict[str, float | int | str]


def subsystem_rng(seed: int, frame_index: int, subsystem: int, *index: int) -> np.random.Generator:
    """The generator of one subsystem (and optional sub-index) of one frame."""
    return np.random.default_rng(np.random.SeedSequence([seed, frame_index, subsystem, *index]))


def direction_from_angles(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit vector (3,) pointing from the origin towards elevation/azimuth (degrees), world axes."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def orbit_rotation(elevation_deg: float, azimuth_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """World-from-camera rotation (3, 3), columns = Blender camera X, Y, Z axes in world.

    The camera sits in direction ``direction_from_angles(elevation, azimuth)`` from its target and
    looks at it (local -Z towards the target); see the module docstring for image up and roll.
    Well defined for every elevation including 90 (straight down) and 0."""
    e, a, r = math.radians(elevation_deg), math.radians(azimuth_deg), math.radians(roll_deg)
    z = direction_from_angles(elevation_deg, azimuth_deg)
    y = np.array([-math.sin(e) * math.cos(a), -math.sin(e) * math.sin(a), math.cos(e)])
    x = np.cross(y, z)
    xr = math.cos(r) * x + math.sin(r) * y
    yr = -math.sin(r) * x + math.cos(r) * y
    return np.stack([xr, yr, z], axis=1)


def _vec3(v: np.ndarray | list[float]) -> tuple[float, float, float]:
    a, b, c = (float(x) for x in v)
    return (a, b, c)


def _wrap180(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def sample_camera(cfg: CameraConfig, rng: np.random.Generator) -> tuple[CameraSpec, Params]:
    """Camera pose and focal length; params for mining."""
    distance = cfg.distance.sample_float(rng)
    elevation = cfg.elevation_deg.sample_float(rng)
    azimuth = cfg.azimuth_deg.sample_float(rng)
    roll = cfg.roll_deg.sample_float(rng)
    jitter = cfg.look_at_jitter.sample_float(rng)
    jitter_angle = float(rng.uniform(0.0, 2.0 * math.pi))
    if cfg.fov_deg is not None:
        fov = cfg.fov_deg.sample_float(rng)
        focal = focal_length_from_fov(fov, cfg.sensor_width_mm)
    else:
        focal = (
            cfg.focal_length_mm.sample_float(rng)
            if cfg.focal_length_mm is not None
            else DEFAULT_FOCAL_LENGTH_MM
        )
        fov = math.degrees(2.0 * math.atan(cfg.sensor_width_mm / (2.0 * focal)))
    height = cfg.look_at_height.sample_float(rng)  # drawn after the others: their streams unchanged
    look_at = np.array([jitter * math.cos(jitter_angle), jitter * math.sin(jitter_angle), height])
    location = look_at + distance * direction_from_angles(elevation, azimuth)
    rot = orbit_rotation(elevation, azimuth, roll)
    spec = CameraSpec(
        location=_vec3(location),
        rotation_world_from_cam=(_vec3(rot[0]), _vec3(rot[1]), _vec3(rot[2])),
        look_at=_vec3(look_at),
        focal_length_mm=float(focal),
        sensor_width_mm=float(cfg.sensor_width_mm),
        clip_start=float(cfg.clip_start),
        clip_end=float(cfg.clip_end),
    )
    params: Params = {
        "camera_distance": distance,
        "camera_height": float(location[2]),
        "camera_elevation_deg": elevation,
        "camera_azimuth_deg": azimuth % 360.0,
        "camera_roll_deg": roll,
        "camera_look_at_offset": jitter,
        "focal_length_mm": float(focal),
        "fov_deg": float(fov),
    }
    return spec, params


def sample_sensor(cfg: SensorConfig, rng: np.random.Generator) -> tuple[SensorSpec, Params]:
    """The frame's noise level (8-bit levels), JPEG quality (or none) and noise seed; params for
    slicing (``sensor_noise_std``, ``sensor_jpeg_quality``: 0 = no compression)."""
    noise = cfg.noise_std.sample_float(rng)
    quality = cfg.jpeg_quality.sample_int(rng) if cfg.jpeg_quality is not None else None
    spec = SensorSpec(noise_std=noise, jpeg_quality=quality, noise_seed=int(rng.integers(2**31)))
    return spec, {"sensor_noise_std": noise, "sensor_jpeg_quality": quality or 0}


def sample_lights(
    cfg: LightsConfig, rng: np.random.Generator, camera_azimuth_deg: float
) -> tuple[tuple[LightSpec, ...], Params]:
    """``count`` lights; the first is the key light (its values go into params)."""
    count = cfg.count.sample_int(rng)
    lights: list[LightSpec] = []
    params: Params = {"light_count": count}
    for i in range(count):
        kind = cfg.type.sample_str(rng)
        elevation = cfg.elevation_deg.sample_float(rng)
        azimuth = cfg.azimuth_deg.sample_float(rng)
        distance = cfg.distance.sample_float(rng)
        strength = cfg.strength.sample_float(rng)
        sun_strength = cfg.sun_strength.sample_float(rng)
        kelvin = cfg.color_temperature_k.sample_float(rng)
        size = cfg.size.sample_float(rng)
        sun_angle = cfg.sun_angle_deg.sample_float(rng)
        spot_angle = cfg.spot_angle_deg.sample_float(rng)
        fill = 1.0 if i == 0 else cfg.fill_ratio.sample_float(rng)
        power = (sun_strength if kind == "SUN" else strength) * fill
        direction = direction_from_angles(elevation, azimuth)
        lights.append(
            LightSpec(
                type=kind,
                location=_vec3(distance * direction),
                direction=_vec3(-direction),
                strength=float(power),
                color_temperature_k=float(kelvin),
                color_rgb=kelvin_to_linear_rgb(kelvin),
                size=float(math.radians(sun_angle) if kind == "SUN" else size),
                spot_angle=float(math.radians(spot_angle)),
            )
        )
        if i == 0:
            params.update(
                {
                    "key_light_type": kind,
                    "key_light_strength": float(power),
                    "key_light_elevation_deg": elevation,
                    "key_light_azimuth_deg": azimuth % 360.0,
                    "key_light_relative_azimuth_deg": _wrap180(azimuth - camera_azimuth_deg),
                    "key_light_distance": distance,
                    "light_color_temperature_k": kelvin,
                }
            )
    return tuple(lights), params


def _sample_cap(
    cfg: MaterialConfig, h: float, s: float, v: float, rng: np.random.Generator
) -> dict[str, Any]:
    """The cap's MaterialSpec fields (see :class:`MaterialConfig`): nothing, and no draw from
    ``rng``, without ``cap_fraction``; else fraction, linear RGB from the base HSV (h, s, v) scaled,
    roughness and rim strength."""
    if cfg.cap_fraction is None:
        return {}
    fraction = cfg.cap_fraction.sample_float(rng)
    s_cap = min(1.0, s * cfg.cap_saturation_scale.sample_float(rng))
    v_cap = min(1.0, v * cfg.cap_value_scale.sample_float(rng))
    return {
        "cap_fraction": fraction,
        "cap_rgb": hsv_to_linear_rgb(h, s_cap, v_cap),
        "cap_roughness": cfg.cap_roughness.sample_float(rng),
        "cap_rim": cfg.cap_rim.sample_float(rng),
    }


def sample_material(cfg: MaterialConfig, rng: np.random.Generator) -> tuple[MaterialSpec, Params]:
    """A material and its sampled scalars (hue, saturation, value, roughness, metallic, pattern)."""
    h = cfg.hue.sample_float(rng)
    s = cfg.saturation.sample_float(rng)
    v = cfg.value.sample_float(rng)
    h2 = h + cfg.color2_hue_shift.sample_float(rng)
    s2 = min(1.0, s * cfg.color2_saturation_scale.sample_float(rng))
    v2 = min(1.0, v * cfg.color2_value_scale.sample_float(rng))
    roughness = cfg.roughness.sample_float(rng)
    metallic = cfg.metallic.sample_float(rng)
    specular = cfg.specular.sample_float(rng)
    pattern = cfg.pattern.sample_str(rng)
    pattern_scale = cfg.pattern_scale.sample_float(rng)
    pattern_strength = cfg.pattern_strength.sample_float(rng)
    bump_strength = cfg.bump_strength.sample_float(rng)
    bump_scale = cfg.bump_scale.sample_float(rng)
    image_scale = cfg.image_scale.sample_float(rng)
    image_path = None
    if cfg.texture_folder is not None:
        images = list_images(cfg.texture_folder)
        if images:
            image_path = str(images[int(rng.integers(len(images)))])
    spec = MaterialSpec(
        base_color_hsv=(h % 1.0, s, v),
        base_color_rgb=hsv_to_linear_rgb(h, s, v),
        color2_rgb=hsv_to_linear_rgb(h2, s2, v2),
        roughness=roughness,
        metallic=metallic,
        specular=specular,
        pattern=pattern,
        pattern_scale=pattern_scale,
        pattern_strength=pattern_strength,
        bump_strength=bump_strength,
        bump_scale=bump_scale,
        image_path=image_path,
        image_scale=image_scale,
        **_sample_cap(cfg, h, s, v, rng),
    )
    params: Params = {
        "hue": h % 1.0,
        "saturation": s,
        "value": v,
        "roughness": roughness,
        "metallic": metallic,
        "pattern": pattern,
    }
    if spec.cap_fraction > 0:
        params["cap_fraction"] = spec.cap_fraction
    if image_path is not None:
        params["texture"] = image_path.rsplit("/", 1)[-1]
    return spec, params


def sample_shape(cfg: ShapeConfig, rng: np.random.Generator) -> tuple[ShapeSpec, str, Params]:
    """Shape with final dimensions (``dimensions * scale``, metres), its orientation name, params."""
    assert cfg.dimensions is not None  # ShapeConfig requires them for every kind but body
    base = [d.sample_float(rng) for d in cfg.dimensions]
    scale = cfg.scale.sample_float(rng)
    dims = _vec3(np.asarray(base) * scale)
    mesh_path = None
    if cfg.mesh_file is not None:
        mesh_path = cfg.mesh_file[int(rng.integers(len(cfg.mesh_file)))]
    spec = ShapeSpec(
        kind=cfg.kind,
        dimensions=dims,
        segments=cfg.segments,
        wrinkle_amplitude=cfg.wrinkle_amplitude.sample_float(rng),
        wrinkle_frequency=cfg.wrinkle_frequency.sample_float(rng),
        dent_count=cfg.dent_count.sample_int(rng),
        dent_depth=cfg.dent_depth.sample_float(rng),
        taper=cfg.taper.sample_float(rng),
        bevel=cfg.bevel.sample_float(rng),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        mesh_path=mesh_path,
    )
    orientation = cfg.orientation.sample_str(rng)
    params: Params = {"scale": scale, "size": max(dims), "orientation": orientation}
    return spec, orientation, params


def sample_support(cfg: SupportConfig, rng: np.random.Generator) -> tuple[SupportSpec, Params]:
    sx, sy = (d.sample_float(rng) for d in cfg.size)
    material, mparams = sample_material(cfg.material, rng)
    params: Params = {f"support_{k}": v for k, v in mparams.items()}
    params["support_size_x"], params["support_size_y"] = sx, sy
    return SupportSpec(size=(sx, sy), material=material), params


def sample_world(cfg: WorldConfig, rng: np.random.Generator) -> tuple[WorldSpec, Params]:
    strength = cfg.strength.sample_float(rng)
    h, s, v = cfg.hue.sample_float(rng), cfg.saturation.sample_float(rng), cfg.value.sample_float(rng)
    spec = WorldSpec(color_rgb=hsv_to_linear_rgb(h, s, v), strength=strength)
    return spec, {"world_strength": strength, "world_value": v}


def category_specs(recipe: Recipe) -> tuple[CategorySpec, ...]:
    """One CategorySpec per class, ids 1.. in recipe order, skeleton as 1-based index pairs."""
    out = []
    for i, cls in enumerate(recipe.classes):
        names = list(cls.keypoints)
        skeleton = tuple((names.index(a) + 1, names.index(b) + 1) for a, b in cls.skeleton)
        if cls.shape.kind == "body":
            names, skeleton = list(COCO17_KEYPOINTS), COCO17_SKELETON
        out.append(
            CategorySpec(
                id=i + 1,
                name=cls.name,
                supercategory=cls.supercategory,
                keypoints=tuple(names),
                skeleton=skeleton,
            )
        )
    return tuple(out)


class _Draft:
    """An object sampled but not yet placed."""

    def __init__(
        self,
        group: DistractorConfig,
        category_id: int | None,
        index: int,
        rng: np.random.Generator,
    ) -> None:
        self.group = group
        self.category_id = category_id
        self.index = index
        self.body_keypoints: dict[str, tuple[float, float, float]] = {}
        self.extra_materials: tuple[MaterialSpec, ...] = ()
        if group.shape.body is not None:
            self.shape, self.body_keypoints, shape_params, skin = sample_body(group.shape.body, rng)
            self.extra_materials = (skin,)
            orientation = "upright"
        else:
            self.shape, orientation, shape_params = sample_shape(group.shape, rng)
        self.material, mat_params = sample_material(group.material, rng)
        clothing = getattr(group, "clothing", None)
        if clothing is not None:
            mat_params = {**mat_params, **self._dress(clothing, rng)}
        yaw = float(rng.uniform(0.0, 360.0))
        body = group.shape.body
        # turned towards the camera once placed (_realize); drawn last, so other draws keep their values
        self.facing_deg = (
            None if body is None or body.facing_deg is None else body.facing_deg.sample_float(rng)
        )
        if body is not None and body.head is not None:  # drawn after the facing: the rest keep their values
            mat_params = {**mat_params, **self._grow_head(body.head, rng)}
        self.quat = resting_quat(orientation, math.radians(yaw))
        self.radius = footprint_radius(self.shape.dimensions, self.quat)
        self.z = rest_height(self.shape.dimensions, self.quat)
        self.params: Params = {**shape_params, **mat_params, "yaw_deg": yaw}

    def _dress(self, clothing: ClothingConfig, rng: np.random.Generator) -> Params:
        """Draw the outfit (sleeves, legs, bottom and shoes materials) into the body spec and
        the extra materials (skin, bottom, shoes: slots 1-3 of :mod:`synthloop.bodies.outfit`);
        returns its params for mining (``sleeves``, ``legs``, ``bottom_value``, ``shoes_value``)."""
        sleeves, legs = clothing.sleeves.sample_str(rng), clothing.legs.sample_str(rng)
        bottom, _ = sample_material(clothing.bottom, rng)
        shoes, _ = sample_material(clothing.shoes, rng)
        assert self.shape.body is not None  # clothing is for body classes (ClassConfig validates)
        body = self.shape.body.model_copy(update={"sleeves": sleeves, "legs": legs})
        self.shape = self.shape.model_copy(update={"body": body})
        self.extra_materials = (*self.extra_materials[:1], bottom, shoes)
        return {
            "sleeves": sleeves,
            "legs": legs,
            "bottom_value": bottom.base_color_hsv[2],
            "shoes_value": shoes.base_color_hsv[2],
        }

    def _grow_head(self, head: HeadConfig, rng: np.random.Generator) -> Params:
        """Draw the hair style and the hair and eyes materials (slots 4 and 5 of
        :mod:`synthloop.bodies.outfit`; without an outfit, slots 2 and 3 repeat the top, which no
        face uses); returns their params for mining."""
        style, hair, eyes, params = sample_head(head, rng)
        assert self.shape.body is not None  # head is a body config's field
        body = self.shape.body.model_copy(update={"hair": style})
        self.shape = self.shape.model_copy(update={"body": body})
        filler = (self.material,) * max(0, 3 - len(self.extra_materials))
        self.extra_materials = (*self.extra_materials, *filler, hair, eyes)
        return params


def _footprint(draft: _Draft) -> np.ndarray:
    """A draft's centred footprint: its mesh's for procedural shapes, its bounding box's for mesh
    files and bodies (not read or posed while sampling)."""
    if draft.shape.kind in _BOX_FOOTPRINT_KINDS:
        return box_footprint(draft.shape.dimensions, draft.quat)
    return footprint(mesh_cache(draft.shape).vertices, draft.quat)


def arrange(
    cfg: ArrangementConfig,
    drafts: list[_Draft],
    pl: PlacementConfig,
    place_rng: np.random.Generator,
    arrangement_rng: np.random.Generator,
) -> tuple[list[tuple[float, float] | None], Params]:
    """Centres of ``drafts`` (in placement order; None = dropped) with piles
    (:mod:`synthloop.scenes.piles`): the first ``round(pile_fraction * N)`` drafts go into piles,
    the rest (and piled ones that found no contact) are scattered around them. Sets each draft's
    ``in_pile`` (0/1); returns the frame's arrangement params: the sampled ``pile_fraction``,
    ``contact_gap`` (metres), ``pile_size`` (mean of the sizes drawn), and the realized
    ``pile_count`` and ``piled_count``. Without piles the scatter is that of a recipe without an
    arrangement (same draws)."""
    fraction = cfg.pile_fraction.sample_float(arrangement_rng)
    gap = cfg.contact_gap.sample_float(arrangement_rng)
    sizes, drawn = pile_sizes(len(drafts), fraction, lambda: cfg.pile_size.sample_int(arrangement_rng))
    radii = [d.radius for d in drafts]
    n_piled = sum(sizes)
    xy: list[tuple[float, float] | None] = []
    in_pile: list[bool] = []
    pile_count = 0
    if n_piled:
        starts = np.cumsum([0, *sizes])
        piles = [list(range(int(a), int(b))) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        fps = [_footprint(d) for d in drafts[:n_piled]]
        xy, in_pile = place_piles(
            fps, radii[:n_piled], piles, pl.area, gap, pl.min_gap, pl.max_attempts, place_rng
        )
        pile_count = sum(1 for pile in piles if in_pile[pile[0]])
    xy += [None] * (len(drafts) - n_piled)
    in_pile += [False] * (len(drafts) - n_piled)
    rest = [i for i, p in enumerate(xy) if p is None]
    obstacles = [(p[0], p[1], radii[i]) for i, p in enumerate(xy) if p is not None]
    got = place_circles([radii[i] for i in rest], pl.area, pl.min_gap, pl.max_attempts, place_rng, obstacles)
    for i, p in zip(rest, got, strict=True):
        xy[i] = p
    for d, piled in zip(drafts, in_pile, strict=True):
        d.params["in_pile"] = int(piled)
    params: Params = {
        "pile_fraction": fraction,
        "contact_gap": gap,
        "pile_size": float(np.mean(drawn)),
        "pile_count": pile_count,
        "piled_count": int(sum(in_pile)),
    }
    return xy, params


def _keypoints_local(
    cls: ClassConfig, dims: tuple[float, float, float]
) -> dict[str, tuple[float, float, float]]:
    half = 0.5 * np.asarray(dims)
    return {name: _vec3(np.asarray(kp) * half) for name, kp in cls.keypoints.items()}


def sample_scene(recipe: Recipe, seed: int, frame_index: int) -> SceneSpec:
    """The SceneSpec of frame ``frame_index`` of the dataset with ``seed`` (both >= 0).

    Labeled objects get instance ids 1..N (recipe class order, then draw order), distractors the
    following ids. Objects that do not fit on the placement area are dropped; ``params`` records
    requested and realized counts (``requested_count_<name>``, ``count_<name>``,
    ``object_count`` (labeled), ``distractor_count``, ``dropped_count``)."""
    seed, frame_index = _index(seed, "seed"), _index(frame_index, "frame_index")

    def rng(*ids: int) -> np.random.Generator:
        return subsystem_rng(seed, frame_index, *ids)

    camera, params = sample_camera(recipe.camera, rng(CAMERA))
    lights, light_params = sample_lights(recipe.lights, rng(LIGHTS), float(params["camera_azimuth_deg"]))
    support, support_params = sample_support(recipe.support, rng(SUPPORT))
    world, world_params = sample_world(recipe.world, rng(WORLD))
    params.update(light_params)
    params.update(world_params)
    params.update(support_params)
    sensor = None
    if recipe.camera.sensor is not None:
        sensor, sensor_params = sample_sensor(recipe.camera.sensor, rng(SENSOR))
        params.update(sensor_params)

    drafts = _drafts(recipe, rng, params)
    objects = _realize(recipe, drafts, _place(recipe, drafts, rng, params), params, camera)
    return SceneSpec(
        recipe_name=recipe.name,
        recipe_hash=recipe_hash(recipe),
        seed=seed,
        frame_index=frame_index,
        render=RenderSettings(
            width=recipe.resolution[0], height=recipe.resolution[1], **recipe.render.options()
        ),
        camera=camera,
        lights=lights,
        support=support,
        world=world,
        categories=category_specs(recipe),
        objects=tuple(objects),
        params=params,
        sensor=sensor,
    )


def _index(value: Any, name: str) -> int:
    """``value`` as an int, or a SynthloopError naming ``name`` unless it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise SynthloopError(f"{name} must be an integer >= 0, got {value!r}", where=name)
    return int(value)


def _drafts(recipe: Recipe, rng: Callable[..., np.random.Generator], params: dict) -> list[_Draft]:
    """Every requested object, labeled classes first then distractors, each drawn from its own
    stream; notes ``requested_count_<name>`` in ``params``."""
    drafts: list[_Draft] = []
    for group_id, groups in ((OBJECTS, recipe.classes), (DISTRACTORS, recipe.distractors)):
        for gi, group in enumerate(groups):
            n = group.count.sample_int(rng(COUNTS, group_id, gi))
            params[f"requested_count_{group.name}"] = n
            category_id = gi + 1 if group_id == OBJECTS else None
            drafts.extend(_Draft(group, category_id, k, rng(group_id, gi, k)) for k in range(n))
    return drafts


def _place(
    recipe: Recipe, drafts: list[_Draft], rng: Callable[..., np.random.Generator], params: dict
) -> list[tuple[float, float] | None]:
    """Each draft's (x, y) on the placement area in metres, None where it did not fit. Placed in
    a random order, so no class is systematically the one dropped when space runs out; piles
    (``recipe.arrangement``) note their sampled values in ``params``."""
    place_rng = rng(PLACEMENT)
    order = place_rng.permutation(len(drafts))
    pl = recipe.placement
    if recipe.arrangement is None:
        xy_in_order = place_circles(
            [drafts[i].radius for i in order], pl.area, pl.min_gap, pl.max_attempts, place_rng
        )
    else:
        in_order = [drafts[int(i)] for i in order]
        xy_in_order, arrangement_params = arrange(
            recipe.arrangement, in_order, pl, place_rng, rng(ARRANGEMENT)
        )
        params.update(arrangement_params)
    xy: list[tuple[float, float] | None] = [None] * len(drafts)
    for slot, i in enumerate(order):
        xy[int(i)] = xy_in_order[slot]
    return xy


def _turn_to_camera(draft: _Draft, pos: tuple[float, float], camera: CameraSpec) -> None:
    """A person with ``facing_deg`` gets the yaw that faces the camera from ``pos``, turned by
    that angle. Its footprint radius and rest height do not depend on yaw; in a pile
    (``arrangement``), its box footprint was fitted at the yaw it was drawn with."""
    if draft.facing_deg is None:
        return
    yaw = yaw_facing(pos, camera.location[:2], draft.facing_deg, BODY_FORWARD_XY)
    draft.quat = resting_quat("upright", math.radians(yaw))
    draft.params = {**draft.params, "yaw_deg": yaw, "facing_deg": float(draft.facing_deg)}


def _realize(
    recipe: Recipe,
    drafts: list[_Draft],
    xy: list[tuple[float, float] | None],
    params: dict,
    camera: CameraSpec,
) -> list[ObjectSpec]:
    """The placed drafts as ObjectSpecs with instance ids 1.. in draft order (people with
    ``facing_deg`` turned towards ``camera``); notes the realized and dropped counts in
    ``params``."""
    objects: list[ObjectSpec] = []
    realized: dict[str, int] = {g.name: 0 for g in (*recipe.classes, *recipe.distractors)}
    for draft, pos in zip(drafts, xy, strict=True):  # drafts are labeled first, then distractors
        if pos is None:
            continue
        realized[draft.group.name] += 1
        _turn_to_camera(draft, pos, camera)
        keypoints = (
            _keypoints_local(draft.group, draft.shape.dimensions)
            if draft.category_id and isinstance(draft.group, ClassConfig)
            else {}
        )
        if draft.category_id and draft.body_keypoints:
            keypoints = draft.body_keypoints
        objects.append(
            ObjectSpec(
                instance_id=len(objects) + 1,
                name=f"{draft.group.name}_{draft.index:03d}",
                category_id=draft.category_id,
                shape=draft.shape,
                material=draft.material,
                location=(pos[0], pos[1], draft.z),
                rotation_quat_wxyz=draft.quat,
                keypoints_local=keypoints,
                params=draft.params,
                extra_materials=draft.extra_materials,
            )
        )
    for name, n in realized.items():
        params[f"count_{name}"] = n
    params["object_count"] = sum(1 for o in objects if o.category_id is not None)
    params["distractor_count"] = sum(1 for o in objects if o.category_id is None)
    params["dropped_count"] = len(drafts) - len(objects)
    return objects
