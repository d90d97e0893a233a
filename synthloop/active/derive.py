"""Derivation: weak regions -> a recipe that renders more of them.

For each weak region the param name is mapped back to the recipe field(s) that produced it (table
below), and the field's distribution ``D`` is replaced by the mixture

    exploration * D  +  (1 - exploration) * W

where ``W`` is uniform on the failure interval clipped to ``D``'s support (a region that reaches
the smallest / largest value seen runs on to ``D``'s bound on that side; integer knobs: the
integers in it; several regions on one field: an equal-weight mixture of their intervals;
categorical: a uniform choice of the weak categories that ``D`` can produce). A field that is
already a mixture is flattened (its components scaled by ``exploration``), so repeated
derivations stay one level deep. ``exploration = 1`` changes nothing; ``0`` renders only the
weak region.

Param -> field (``scene.`` params; ``attr.`` params go to every class whose field can reach the
interval):

==============================================  ============================================
``camera_distance``                             ``camera.distance``
``camera_height``                               ``camera.distance`` (height / sin(elevation),
                                                elevation at the middle of its support)
``camera_elevation_deg`` / ``_azimuth_deg`` /   ``camera.elevation_deg`` / ``azimuth_deg`` /
``_roll_deg`` / ``camera_look_at_offset``       ``roll_deg`` / ``look_at_jitter``
``focal_length_mm`` / ``fov_deg``               ``camera.focal_length_mm`` or ``camera.fov_deg``
                                                (whichever the recipe sets; converted)
``key_light_strength``                          ``lights.strength`` (POINT/SPOT/AREA) and/or
                                                ``lights.sun_strength`` (SUN), by light type
``key_light_elevation_deg`` / ``_azimuth_deg``  ``lights.elevation_deg`` / ``azimuth_deg`` /
/ ``_distance`` / ``_type``, ``light_count``,   ``distance`` / ``type``, ``lights.count``,
``light_color_temperature_k``                   ``lights.color_temperature_k``
``world_strength`` / ``world_value``            ``world.strength`` / ``world.value``
``support_<hue|saturation|value|roughness|      ``support.material.<x>``; ``support.size[0|1]``
metallic|pattern>``, ``support_size_x|y``
``count_<name>``, ``requested_count_<name>``    ``classes[i].count`` / ``distractors[i].count``
``object_count`` / ``distractor_count``         every class's / distractor's ``count`` (the total
                                                split in proportion to their mean counts)
``attr.scale``                                  ``classes[i].shape.scale``
``attr.size`` / ``attr.size_m``                 ``classes[i].shape.scale`` (size / largest
                                                base dimension)
``attr.<hue|saturation|value|roughness|         ``classes[i].material.<x>``
metallic|pattern>``, ``attr.material_pattern``
``attr.orientation``                            ``classes[i].shape.orientation``
``attr.distance_m``                             ``camera.distance`` (object depth ~ distance)
``object.category`` (a weak class, or a         ``classes[i].count`` / ``distractors[i].count``:
distractor group behind false positives)        W = the upper half of the count's support
``pile_fraction`` / ``pile_size`` /             ``arrangement.pile_fraction`` / ``pile_size`` /
``contact_gap``                                 ``contact_gap`` (touching piles)
``attr.in_pile``                                ``arrangement.pile_fraction``: W on [0.5, 1] for
                                                a region of piled objects, [0, 0.5] for one of
                                                scattered objects
==============================================  ============================================

The ``arrangement`` fields may move past the recipe's own support (within the field's valid
range), since more (or less) piling than the renders had is what such a region may ask for; a
region open on one side runs to the farther of its observed end and the support's bound. A
recipe without ``arrangement`` (no piles) gets one: its pile fraction is the constant 0 until a
region raises it, the other fields keep the defaults of
:class:`~synthloop.scenes.recipe.ArrangementConfig`.

Hue is periodic (turns): a hue interval is shifted by a whole turn where that puts it on more of
the field's support (a region of reds [-0.03, 0.02] lands on a recipe's [0.96, 1.02]).

Everything else (``object.area``/``occlusion``/``truncation``: measured, not sampled;
``attr.yaw_deg``, ``key_light_relative_azimuth_deg``, ...) is reported in
:attr:`Derivation.unmapped` with the reason and left alone.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.active.errors import ActiveError
from synthloop.active.mining import WeakRegion
from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.scenes.distributions import Choice, Constant, Mixture, Uniform
from synthloop.scenes.recipe import (
    MAX_CONTACT_GAP,
    MAX_COUNT,
    ArrangementConfig,
    Recipe,
    recipe_from_dict,
    recipe_hash,
    recipe_to_dict,
    recipe_to_yaml,
)

Path_ = tuple[str | int, ...]
Interval = tuple[float, float, bool, float, float]
"""low, high (possibly +-inf: open towards the distribution's bound), high_inclusive, and the
observed low/high used where the distribution is unbounded on that side."""


@dataclass
class FieldChange:
    """One recipe field rewritten: ``path`` (``classes[0].shape.scale``), the ``regions`` that drove
    it, the distribution ``before`` and ``after`` (compact YAML forms), and a ``note``."""

    path: str
    params: list[str]
    regions: list[str]
    before: Any
    after: Any
    note: str = ""


@dataclass
class Unmapped:
    """A weak region that changed nothing, and why."""

    param: str
    region: str
    reason: str


@dataclass
class Derivation:
    """The derived ``recipe``, what changed, what could not be mapped, and the inputs' identity."""

    recipe: Recipe
    changes: list[FieldChange]
    unmapped: list[Unmapped]
    exploration: float
    base_name: str
    base_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_recipe": self.base_name,
            "base_recipe_hash": self.base_hash,
            "derived_recipe": self.recipe.name,
            "derived_recipe_hash": recipe_hash(self.recipe),
            "exploration": self.exploration,
            "changes": [asdict(c) for c in self.changes],
            "unmapped": [asdict(u) for u in self.unmapped],
        }


@dataclass
class _Target:
    """A recipe field a region lands on; ``bounds``: clip to this valid range instead of the
    field's current support (the field may move past it)."""

    path: Path_
    integer: bool = False
    convert: Callable[[float, float], tuple[float, float]] | None = None
    note: str = ""
    bounds: tuple[float, float] | None = None


@dataclass
class _Pending:
    target: _Target
    intervals: list[Interval] = field(default_factory=list)
    categories: set[str] = field(default_factory=set)
    params: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)


def path_str(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


NO_PILES = ArrangementConfig(pile_fraction=0.0)
"""What a recipe without ``arrangement`` samples: no piles."""


def get_field(model: Any, path: Path_) -> Any:
    """The value at ``path`` (attribute names and tuple indices) of a pydantic model; an absent
    ``arrangement`` reads as :data:`NO_PILES`."""
    cur = model
    if isinstance(model, Recipe) and path and path[0] == "arrangement" and model.arrangement is None:
        cur, path = NO_PILES, path[1:]
    for p in path:
        cur = cur[p] if isinstance(p, int) else getattr(cur, p)
    return cur


def _set_in(d: Any, path: Path_, value: Any) -> None:
    cur = d
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


_SCENE_DIRECT: dict[str, tuple[Path_, bool]] = {
    "camera_distance": (("camera", "distance"), False),
    "camera_elevation_deg": (("camera", "elevation_deg"), False),
    "camera_azimuth_deg": (("camera", "azimuth_deg"), False),
    "camera_roll_deg": (("camera", "roll_deg"), False),
    "camera_look_at_offset": (("camera", "look_at_jitter"), False),
    "key_light_elevation_deg": (("lights", "elevation_deg"), False),
    "key_light_azimuth_deg": (("lights", "azimuth_deg"), False),
    "key_light_distance": (("lights", "distance"), False),
    "key_light_type": (("lights", "type"), False),
    "light_color_temperature_k": (("lights", "color_temperature_k"), False),
    "light_count": (("lights", "count"), True),
    "world_strength": (("world", "strength"), False),
    "world_value": (("world", "value"), False),
    "support_size_x": (("support", "size", 0), False),
    "support_size_y": (("support", "size", 1), False),
}
_MATERIAL_KEYS = ("hue", "saturation", "value", "roughness", "metallic", "pattern")
_UNMAPPABLE_WHY = {
    "object": "measured by the evaluation, not sampled from the recipe",
    "key_light_relative_azimuth_deg": "depends on the camera azimuth too; no single recipe field",
    "yaw_deg": "uniform on [0, 360) for objects; people with body.facing_deg turn to the camera",
    "dropped_count": "a consequence of placement, not a recipe field",
    "pile_count": "a consequence of placement, not a recipe field",
    "piled_count": "a consequence of placement, not a recipe field",
}
ARRANGEMENT_PARAMS = ("scene.pile_fraction", "scene.pile_size", "scene.contact_gap", "attr.in_pile")
"""The params that move ``arrangement`` (touching piles)."""
_ARRANGEMENT: dict[str, tuple[str, bool, tuple[float, float]]] = {
    "pile_fraction": ("pile_fraction", False, (0.0, 1.0)),
    "pile_size": ("pile_size", True, (2.0, float(MAX_COUNT))),
    "contact_gap": ("contact_gap", False, (0.0, MAX_CONTACT_GAP)),
}


def param_is_category(region: WeakRegion) -> bool:
    return region.param in ("object.category", "attr.category")


def _floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def _mid(d: Any) -> float:
    s = d.support()
    lo, hi = float(s.low), float(s.high)
    if not math.isfinite(lo) or not math.isfinite(hi):
        return float(getattr(d, "mean", lo if math.isfinite(lo) else hi))
    return 0.5 * (lo + hi)


def _divided_by(base: float) -> Callable[[float, float], tuple[float, float]]:
    """A target's (low, high) in units of ``base``."""
    return lambda a, b: (a / base, b / base)


def _count_share(share: float) -> Callable[[float, float], tuple[float, float]]:
    """A total count range's share, widened to whole counts."""
    return lambda a, b: (_floor(a * share), _ceil(b * share))


def _focal_fov(sensor: float) -> Callable[[float, float], tuple[float, float]]:
    """Interval in focal length (mm) <-> horizontal FOV (deg): decreasing, so the ends swap."""

    def conv(a: float, b: float) -> tuple[float, float]:
        def f(x: float) -> float:
            return math.degrees(2.0 * math.atan(sensor / (2.0 * x))) if x > 0 else 180.0

        return f(b), f(a)

    return conv


def in_pile_interval(region: WeakRegion) -> tuple[float, float]:
    """The pile fraction interval of a region of ``attr.in_pile`` (0/1): [0.5, 1] when it holds
    the piled objects only, [0, 0.5] when it holds the scattered ones only, else [0, 1]."""
    has0, has1 = (bool(v) for v in region.contains(np.array([0.0, 1.0])))
    if has1 and not has0:
        return 0.5, 1.0
    if has0 and not has1:
        return 0.0, 0.5
    return 0.0, 1.0


def _targets(recipe: Recipe, region: WeakRegion) -> list[_Target] | str:
    """Where ``region`` lands in ``recipe``, or the reason it cannot be mapped."""
    level, name = region.level, region.name
    if region.param == "attr.in_pile":
        return [_Target(("arrangement", "pile_fraction"), note="in_pile -> pile fraction", bounds=(0.0, 1.0))]
    if level == "scene" and name in _ARRANGEMENT:
        key, integer, bounds = _ARRANGEMENT[name]
        return [_Target(("arrangement", key), integer, bounds=bounds)]
    if param_is_category(region):
        return _category_targets(recipe, region)
    if level == "object":
        return _UNMAPPABLE_WHY["object"]
    if name in _UNMAPPABLE_WHY:
        return _UNMAPPABLE_WHY[name]
    if level == "attr":
        return _attr_targets(recipe, name)
    if name in _SCENE_DIRECT:
        path, integer = _SCENE_DIRECT[name]
        return [_Target(path, integer)]
    if name in ("camera_height", "focal_length_mm", "fov_deg"):
        return _camera_targets(recipe, name)
    if name == "key_light_strength":
        types = set(recipe.lights.type.support().values or ())
        out = []
        if types - {"SUN"}:
            out.append(
                _Target(("lights", "strength"), note="applies to every light (fills scale by fill_ratio)")
            )
        if "SUN" in types:
            out.append(_Target(("lights", "sun_strength"), note="SUN key light"))
        return out
    if name.startswith("support_") and name[len("support_") :] in _MATERIAL_KEYS:
        return [_Target(("support", "material", name[len("support_") :]))]
    return _count_targets(recipe, name)


def _category_targets(recipe: Recipe, region: WeakRegion) -> list[_Target] | str:
    """A weak class (or a distractor group that causes false positives): more instances of it
    per frame (the upper half of its count distribution)."""
    out = []
    for group in ("classes", "distractors"):
        for i, c in enumerate(getattr(recipe, group)):
            if c.name in set(region.categories or ()):
                out.append(_Target((group, i, "count"), integer=True, note="upper half of the count"))
    return out or f"none of {sorted(region.categories or [])} is a class or distractor of the recipe"


def _attr_targets(recipe: Recipe, name: str) -> list[_Target] | str:
    """An object attribute's fields in every class (size via the shape's scale, in metres over the
    largest base dimension, for classes that have base dimensions; distance via the camera
    distance)."""
    groups = [("classes", i) for i in range(len(recipe.classes))]
    if name == "scale":
        return [_Target((*g, "shape", "scale")) for g in groups]
    if name in ("size", "size_m"):
        out = []
        for g in groups:
            dims = get_field(recipe, (*g, "shape", "dimensions"))
            if dims is None:  # a body: its extents come from the posed body model
                continue
            base = max(_mid(d) for d in dims)
            out.append(
                _Target(
                    (*g, "shape", "scale"),
                    convert=_divided_by(base),
                    note=f"size / largest base dimension ({base:.4g} m)",
                )
            )
        return out or "no class has base dimensions (bodies): object size has no scale to map to"
    if name in _MATERIAL_KEYS or name == "material_pattern":
        key = "pattern" if name == "material_pattern" else name
        return [_Target((*g, "material", key)) for g in groups]
    if name == "orientation":
        return [_Target((*g, "shape", "orientation")) for g in groups]
    if name == "distance_m":
        return [_Target(("camera", "distance"), note="object depth ~ camera distance")]
    return f"object attribute {name!r} is not produced by a recipe field"


def _camera_targets(recipe: Recipe, name: str) -> list[_Target] | str:
    """``camera_height`` (via the distance, at the mid elevation), ``focal_length_mm`` or
    ``fov_deg`` (converted into whichever of the two the recipe sets)."""
    cam = recipe.camera
    if name == "camera_height":
        e = math.radians(_mid(cam.elevation_deg))
        s = math.sin(e)
        if s <= 1e-6:
            return "camera elevation is ~0, height does not depend on distance"
        return [
            _Target(
                ("camera", "distance"),
                convert=lambda a, b: (a / s, b / s),
                note=f"height / sin({math.degrees(e):.3g} deg)",
            )
        ]
    if cam.focal_length_mm is None and cam.fov_deg is None:
        return "the recipe uses the default focal length (no distribution to change)"
    own = "focal_length_mm" if cam.focal_length_mm is not None else "fov_deg"
    if own == name:
        return [_Target(("camera", name))]
    return [_Target(("camera", own), convert=_focal_fov(cam.sensor_width_mm), note=f"{name} -> {own}")]


def _count_targets(recipe: Recipe, name: str) -> list[_Target] | str:
    """A group's (requested) count, or the labeled / distractor total split over the groups by
    their mean counts; otherwise the reason the scene parameter has no recipe field."""
    for prefix in ("requested_count_", "count_"):
        if name.startswith(prefix):
            group = name[len(prefix) :]
            for gname, items in (("classes", recipe.classes), ("distractors", recipe.distractors)):
                for i, it in enumerate(items):
                    if it.name == group:
                        return [_Target((gname, i, "count"), integer=True)]
            return f"no class or distractor named {group!r} in the recipe"
    if name in ("object_count", "distractor_count"):
        gname = "classes" if name == "object_count" else "distractors"
        items = getattr(recipe, gname)
        if not items:
            return f"the recipe has no {gname}"
        mids = [max(_mid(it.count), 1e-9) for it in items]
        total = sum(mids)
        return [
            _Target(
                (gname, i, "count"),
                integer=True,
                convert=_count_share(m / total),
                note=f"total split by mean counts (share {m / total:.3g})",
            )
            for i, m in enumerate(mids)
        ]
    return f"scene param {name!r} is not produced by a recipe field"


def _clip(
    iv: Interval, dist: Any, integer: bool, bounds: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """The interval clipped to ``dist``'s support, integers only for integer knobs; None if
    nothing is left. With ``bounds`` it is clipped to them instead, and an open side runs to the
    farther of its observed end and the support's bound (not on to the valid range's end)."""
    s = dist.support()
    s_low, s_high = (float(s.low), float(s.high)) if bounds is None else bounds
    if bounds is None and s_low == s_high:
        return None  # a constant cannot be shifted within its own support
    lo, hi, incl, lo_obs, hi_obs = iv
    if bounds is not None:
        lo = min(iv[3], float(s.low)) if not math.isfinite(lo) else lo
        hi = max(iv[4], float(s.high)) if not math.isfinite(hi) else hi
    lo, hi = max(lo, s_low), min(hi, s_high)
    if not math.isfinite(lo):
        lo = max(lo_obs, s_low)
    if not math.isfinite(hi):
        hi = min(hi_obs, s_high)
    if integer:
        lo_i = math.ceil(lo)
        hi_i = math.floor(hi) if (incl or hi < iv[1]) else math.ceil(hi) - 1
        if lo_i > hi_i:
            return None
        return float(lo_i), float(hi_i)
    if lo >= hi:
        return None
    return lo, hi


def hue_shift(low: float, high: float, dist: Any) -> float:
    """The whole number of turns (-1, 0 or 1) that moves the hue interval [low, high] onto the most
    of ``dist``'s support (hue is periodic: a region [-0.03, 0.02] of reds is the recipe's
    [0.97, 1.02]); 0 when no shift overlaps more."""
    s = dist.support()
    a, b = float(s.low), float(s.high)

    def overlap(k: float) -> float:
        return max(0.0, min(high + k, b) - max(low + k, a))

    return max((0.0, -1.0, 1.0), key=overlap)


def _flatten(dist: Any, weight: float) -> list[tuple[float, Any]]:
    if isinstance(dist, Mixture):
        p = dist.probabilities()
        return [(round(weight * float(w), 12), c.dist) for w, c in zip(p, dist.components, strict=True)]
    return [(weight, dist)]


def _mixture(original: Any, weak: list[Any], exploration: float) -> Any:
    w = weak[0] if len(weak) == 1 else Mixture.of([(1.0, d) for d in weak])
    if exploration <= 0.0:
        return w
    parts = _flatten(original, exploration) + _flatten(w, round(1.0 - exploration, 12))
    return Mixture.of(parts)


def _collect(
    recipe: Recipe, r: WeakRegion, targets: list[_Target], pending: dict[Path_, _Pending]
) -> str | None:
    """Add region ``r`` to the ``pending`` change of each target field it lands in; the reason
    it lands in none (None if it lands in one or more)."""
    hits = 0
    only_weak: list[str] = []  # fields that already produce nothing but the weak categories
    for t in targets:
        dist = get_field(recipe, t.path)
        sup = dist.support()
        if r.kind == "categorical" and not param_is_category(r):
            if sup.numeric:
                continue
            values = set(map(str, sup.values or ()))
            cats = {c for c in r.categories or [] if c in values}
            if cats and cats == values:  # nothing to shift towards: it only makes these
                only_weak.append(path_str(t.path))
            if not cats or cats == values:
                continue
            p = pending.setdefault(t.path, _Pending(t))
            p.categories |= cats
        else:
            iv = _region_interval(r, t, dist, sup)
            if iv is None:
                continue
            p = pending.setdefault(t.path, _Pending(t))
            p.intervals.append(iv)
        p.params.append(r.param)
        p.regions.append(r.describe())
        hits += 1
    if hits:
        return None
    if only_weak:
        return f"{', '.join(only_weak)} already produces only {sorted(r.categories or [])}"
    return f"outside the support of {', '.join(path_str(t.path) for t in targets)}"


def _region_interval(r: WeakRegion, t: _Target, dist: Any, sup: Any) -> Interval | None:
    """The interval (low, high, high inclusive, observed low, observed high) that numeric region
    ``r`` asks of target ``t``'s distribution, in the field's units; None where it does not
    apply or lies outside the field's support. A weak class asks for the upper half of its count;
    ``in_pile`` for its pile-fraction interval."""
    if param_is_category(r):  # a weak class -> its count's upper half (see _targets)
        if not sup.numeric:
            return None
        hi = float(sup.high)
        lo = min(float(math.ceil(_mid(dist))), hi)
        iv = (lo, hi, True, lo, hi)
        return iv if math.isfinite(hi) and _clip(iv, dist, True) is not None else None
    if r.param == "attr.in_pile":
        lo, hi = in_pile_interval(r)
        return (lo, hi, True, lo, hi)
    if not sup.numeric:
        return None
    lo_obs, hi_obs = float(r.low), float(r.high)  # type: ignore[arg-type]
    lo = -math.inf if r.at_min else lo_obs
    hi = math.inf if r.high_inclusive else hi_obs
    if t.convert is not None:
        lo_obs, hi_obs = t.convert(lo_obs, hi_obs)
        lo, hi = t.convert(lo, hi)
    if t.path[-1] == "hue":  # turns: shift by a whole turn onto the support
        shift = hue_shift(lo_obs, hi_obs, dist)
        lo, hi, lo_obs, hi_obs = lo + shift, hi + shift, lo_obs + shift, hi_obs + shift
    lo_obs, hi_obs = float(f"{lo_obs:.4g}"), float(f"{hi_obs:.4g}")  # readable YAML
    lo, hi = float(f"{lo:.4g}"), float(f"{hi:.4g}")
    iv = (lo, hi, r.high_inclusive, lo_obs, hi_obs)
    return iv if _clip(iv, dist, t.integer, t.bounds) is not None else None


def _weak_parts(p: _Pending, dist: Any) -> list[Any]:
    """The distributions of the weak regions gathered in ``p``: a constant or a choice of the
    weak categories, else one constant or uniform per interval (clipped to the support)."""
    if p.categories:
        vals = sorted(p.categories)
        return [Constant(value=vals[0]) if len(vals) == 1 else Choice(values=tuple(vals))]
    weak: list[Any] = []
    for iv in p.intervals:
        c = _clip(iv, dist, p.target.integer, p.target.bounds)
        assert c is not None
        weak.append(Constant(value=c[0]) if c[0] == c[1] else Uniform(low=c[0], high=c[1]))
    return weak


def derive(
    recipe: Recipe,
    weak_regions: Sequence[WeakRegion],
    exploration: float = 0.3,
    *,
    name: str | None = None,
) -> Derivation:
    """The derived recipe plus what changed and what was not mappable (module docstring).

    ``name``: the derived recipe's name (default ``<name>-derived``). Non-weak regions in the list
    are used as given (the caller chose them). Raises :class:`ActiveError` for an exploration
    outside [0, 1]; the result is validated like a loaded recipe (RecipeError if not).
    """
    if not 0.0 <= exploration <= 1.0:
        raise ActiveError(f"exploration must be in [0, 1], got {exploration!r}", where="exploration")
    pending: dict[Path_, _Pending] = {}
    unmapped: list[Unmapped] = []
    for r in weak_regions:
        targets = _targets(recipe, r)
        if isinstance(targets, str):
            unmapped.append(Unmapped(r.param, r.describe(), targets))
            continue
        why = _collect(recipe, r, targets, pending)
        if why is not None:
            unmapped.append(Unmapped(r.param, r.describe(), why))
    data = recipe_to_dict(recipe)
    data["name"] = name or f"{recipe.name}-derived"
    if recipe.arrangement is None and any(path[0] == "arrangement" for path in pending):
        data["arrangement"] = NO_PILES.model_dump(mode="json")
    changes: list[FieldChange] = []
    for path, p in pending.items():
        if exploration >= 1.0:
            continue
        dist = get_field(recipe, path)
        new = _mixture(dist, _weak_parts(p, dist), exploration)
        _set_in(data, path, new.model_dump())
        changes.append(
            FieldChange(
                path_str(path), p.params, p.regions, dist.model_dump(), new.model_dump(), p.target.note
            )
        )
    derived = recipe_from_dict(data, source=f"<derived from {recipe.name}>")
    return Derivation(derived, changes, unmapped, exploration, recipe.name, recipe_hash(recipe))


def derive_recipe(recipe: Recipe, weak_regions: Sequence[WeakRegion], exploration: float = 0.3) -> Recipe:
    """Just the derived recipe of :func:`derive` (see there for the report of unmapped params)."""
    return derive(recipe, weak_regions, exploration).recipe


def recipe_diff(
    original: Recipe, derived: Recipe, a_name: str = "original.yaml", b_name: str = "derived.yaml"
) -> str:
    """Unified diff (``difflib``) of the two recipes' YAML forms."""
    a = recipe_to_yaml(original).splitlines(keepends=True)
    b = recipe_to_yaml(derived).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=a_name, tofile=b_name))


def save_derivation(
    derivation: Derivation, original: Recipe, out_dir: str | Path, stem: str = "recipe"
) -> dict[str, Path]:
    """Write ``<stem>.yaml`` (the derived recipe), ``<stem>.diff`` (against ``original``) and
    ``<stem>.derivation.json`` (changes, unmapped) into ``out_dir``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "recipe": out / f"{stem}.yaml",
        "diff": out / f"{stem}.diff",
        "derivation": out / f"{stem}.derivation.json",
    }
    atomic_write_bytes(paths["recipe"], recipe_to_yaml(derivation.recipe).encode("utf-8"))
    diff = recipe_diff(original, derivation.recipe, f"{original.name}.yaml", f"{derivation.recipe.name}.yaml")
    atomic_write_bytes(paths["diff"], diff.encode("utf-8"))
    atomic_write_json(paths["derivation"], derivation.to_dict())
    return paths
