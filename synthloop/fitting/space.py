"""The search space of a recipe fit: which distributions may move, and how.

A *knob* is one distribution of the recipe, addressed by a path pattern over the recipe's dict form
(:func:`~synthloop.scenes.recipe.recipe_to_dict`): dotted keys, ``[*]`` for every item of a list
(``classes[*].count``) or ``[N]`` for one. Each knob contributes a few real-valued *dimensions*:

* ``uniform [a, b]``: ``centre`` in ``[m - span, m + span]`` (m = (a + b) / 2, span = max(2 h,
  0.25 |m|) with h = (b - a) / 2), and with ``widths`` also ``log_width`` in [ln 0.25, ln 2]
  (the half-width's factor). The new interval is clipped to the field's valid range; integer knobs
  (counts) keep at least one integer.
* ``normal``: ``mean`` in [mean - span, mean + span] (span = max(2 std, 0.25 |mean|)) inside its
  low/high bounds; std and bounds stay.
* ``choice`` (two or more values) and ``mixture``: one ``logw:<value or component>`` in
  [-1.5, 1.5] per option: each weight is multiplied by e^z (then scaled back to the original sum).
* constants and one-value choices cannot be fitted (reported, and skipped).

The default space includes the touching piles of ``arrangement`` (``pile_fraction``, ``pile_size``,
``contact_gap``). A recipe without that block is fitted from a *dormant* one
(:func:`with_dormant_arrangement`: ``pile_fraction`` 0, which renders exactly the frames of the
recipe without it), so the search may introduce piles. A ``uniform [0, 0]`` of a non-integer field
with a bounded valid range (the dormant ``pile_fraction``) searches its centre over that whole
range: a zero has no scale to search around.

Every knob stays inside the valid range its recipe field declares (the field's ``in_range`` and
``integral`` validators, read by :func:`~synthloop.scenes.recipe.field_range`), so the ranges are
written once, in the recipe model.

A knob whose extreme settings do not validate as a recipe is reported as not fittable and skipped.
Pure functions of plain dicts; no I/O.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

from synthloop.errors import SynthloopError
from synthloop.scenes.distributions import DeclaredRange
from synthloop.scenes.recipe import Recipe, field_range, recipe_from_dict, recipe_to_dict

DEFAULT_KNOBS: tuple[str, ...] = (
    "camera.distance",
    "camera.elevation_deg",
    "camera.fov_deg",
    "lights.count",
    "lights.type",
    "lights.strength",
    "lights.sun_strength",
    "lights.fill_ratio",
    "world.strength",
    "support.material.value",
    "support.material.saturation",
    "classes[*].count",
    "classes[*].shape.scale",
    "classes[*].material.value",
    "classes[*].material.saturation",
    "distractors[*].count",
    "arrangement.pile_fraction",
    "arrangement.pile_size",
    "arrangement.contact_gap",
)

LOGW = 1.5
_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\*|\d+|[A-Za-z_][A-Za-z0-9_.-]*)\]")


@dataclass(frozen=True)
class _Named:
    """A knob pattern's ``[name]``: the list item whose ``name`` is ``name`` (as knob labels print it)."""

    name: str


_Token = str | int | None | _Named


@dataclass(frozen=True)
class Dim:
    """One search dimension: ``name`` (``<knob label>:<part>``) in [``low``, ``high``]; ``start`` is
    the original recipe's value (the fit's first trial)."""

    name: str
    low: float
    high: float
    start: float


@dataclass(frozen=True)
class Knob:
    """A fittable distribution: ``path`` into the recipe dict, ``label`` (class names instead of
    indices), ``form`` (uniform | normal | choice | mixture), ``original`` (its dict form), dims
    and ``valid``: the range the recipe field declares (:func:`~synthloop.scenes.recipe.field_range`)."""

    path: tuple[str | int, ...]
    label: str
    form: str
    original: Any
    dims: tuple[Dim, ...]
    valid: DeclaredRange


def _parse_pattern(pattern: str) -> list[_Token]:
    """``classes[*].material.value`` -> ["classes", None, "material", "value"] (None = every item);
    ``[2]`` selects item 2 and ``[hazelnut]`` the item named hazelnut, as knob labels print it."""
    out: list[_Token] = []
    for part in pattern.split("."):
        for m in _TOKEN.finditer(part):
            key, idx = m.groups()
            if key:
                out.append(key)
            else:
                out.append(None if idx == "*" else int(idx) if idx.isdigit() else _Named(idx))
        if not part or "".join(m.group(0) for m in _TOKEN.finditer(part)) != part:
            raise SynthloopError(f"bad knob pattern '{pattern}' (use e.g. classes[*].material.value)")
    return out


def _expand(data: Any, tokens: list[_Token], path: tuple[str | int, ...] = ()):
    if not tokens:
        yield path, data
        return
    head, rest = tokens[0], tokens[1:]
    if head is None or isinstance(head, _Named):
        if isinstance(data, list):
            for i, item in enumerate(data):
                if head is None or (isinstance(item, dict) and item.get("name") == head.name):
                    yield from _expand(item, rest, (*path, i))
    elif isinstance(head, int):
        if isinstance(data, list) and 0 <= head < len(data):
            yield from _expand(data[head], rest, (*path, head))
    elif isinstance(data, dict) and head in data:
        yield from _expand(data[head], rest, (*path, head))


def _label(data: dict[str, Any], path: tuple[str | int, ...]) -> str:
    out = ""
    node: Any = data
    for p in path:
        if isinstance(p, int):
            name = node[p].get("name") if isinstance(node[p], dict) else None
            out += f"[{name if name else p}]"
        else:
            out += ("." if out else "") + p
        node = node[p]
    return out


OPEN_LOW_MARGIN = 1e-6  # how far above an excluded lower bound (a positive field's 0) a knob may go


def _limits(valid: DeclaredRange) -> tuple[float, float]:
    """The closed interval a knob's values may take inside the field's declared range."""
    return (valid.low + OPEN_LOW_MARGIN if valid.low_open else valid.low), valid.high


DORMANT_ARRANGEMENT: dict[str, Any] = {
    "pile_fraction": {"uniform": [0.0, 0.0]},
    "pile_size": {"uniform": [2, 5]},
    "contact_gap": {"uniform": [0.0, 0.002]},
}


def with_dormant_arrangement(recipe: Recipe, patterns: tuple[str, ...] | list[str]) -> Recipe:
    """``recipe`` with :data:`DORMANT_ARRANGEMENT` (no object piled: the same frames, since the
    arrangement draws from its own random stream) when it has no ``arrangement`` and a pattern
    asks for one; else ``recipe`` unchanged."""
    if recipe.arrangement is not None or not any(p.startswith("arrangement.") for p in patterns):
        return recipe
    data = recipe_to_dict(recipe)
    data["arrangement"] = copy.deepcopy(DORMANT_ARRANGEMENT)
    return recipe_from_dict(data, source=recipe.name)


def _dims_of(label: str, dist: Any, valid: DeclaredRange, widths: bool) -> tuple[str, tuple[Dim, ...]] | str:
    """(form, dims) of a distribution, or the reason it cannot be fitted."""
    lo_b, hi_b = _limits(valid)
    if not isinstance(dist, dict):
        return "a constant"
    if "uniform" in dist:
        a, b = (float(v) for v in dist["uniform"])
        m, h = (a + b) / 2.0, (b - a) / 2.0
        if h == 0 and m == 0 and math.isfinite(lo_b) and math.isfinite(hi_b) and not valid.integer:
            dims = [Dim(f"{label}:centre", lo_b, hi_b, m)]
        else:
            span = max(2.0 * h, 0.25 * abs(m), 1e-6)
            dims = [Dim(f"{label}:centre", max(m - span, lo_b), min(m + span, hi_b), m)]
        if widths and h > 0:
            dims.append(Dim(f"{label}:log_width", math.log(0.25), math.log(2.0), 0.0))
        return "uniform", tuple(dims)
    if "normal" in dist:
        nd = dist["normal"]
        mean, std = float(nd["mean"]), float(nd["std"])
        span = max(2.0 * std, 0.25 * abs(mean), 1e-6)
        lo = max(mean - span, nd.get("low") if nd.get("low") is not None else -math.inf, lo_b)
        hi = min(mean + span, nd.get("high") if nd.get("high") is not None else math.inf, hi_b)
        return "normal", (Dim(f"{label}:mean", lo, hi, mean),)
    if "choice" in dist:
        values = dist["choice"]
        if len(values) < 2:
            return "a choice of one value"
        return "choice", tuple(Dim(f"{label}:logw:{v}", -LOGW, LOGW, 0.0) for v in values)
    if "mixture" in dist:
        comps = dist["mixture"]
        if len(comps) < 2:
            return "a mixture of one component"
        return "mixture", tuple(Dim(f"{label}:logw:{i}", -LOGW, LOGW, 0.0) for i in range(len(comps)))
    return "a constant"


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    node: Any = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _reweight(weights: list[float], z: list[float]) -> list[float]:
    total = sum(weights)
    new = [w * math.exp(v) for w, v in zip(weights, z, strict=True)]
    s = sum(new)
    return [round(w * total / s, 6) for w in new]


def knob_value(knob: Knob, params: dict[str, float]) -> Any:
    """The knob's distribution (dict form) at ``params`` (missing dims: their start)."""
    vals = [float(params.get(d.name, d.start)) for d in knob.dims]
    dist = copy.deepcopy(knob.original)
    lo_b, hi_b = _limits(knob.valid)
    if knob.form == "uniform":
        a, b = (float(v) for v in dist["uniform"])
        h = (b - a) / 2.0 * (math.exp(vals[1]) if len(vals) > 1 else 1.0)
        lo, hi = max(vals[0] - h, lo_b), min(vals[0] + h, hi_b)
        if knob.valid.integer and math.ceil(lo - 1e-9) > math.floor(hi + 1e-9):
            lo = hi = float(min(max(round(vals[0]), lo_b), hi_b))
        return {"uniform": [round(lo, 6), round(max(lo, hi), 6)]}
    if knob.form == "normal":
        dist["normal"]["mean"] = round(vals[0], 6)
        return dist
    if knob.form == "choice":
        weights = dist.get("weights") or [1.0] * len(dist["choice"])
        dist["weights"] = _reweight([float(w) for w in weights], vals)
        return dist
    comps = dist["mixture"]
    for c, w in zip(comps, _reweight([float(c["weight"]) for c in comps], vals), strict=True):
        c["weight"] = w
    return dist


def apply_params(base: dict[str, Any], knobs: list[Knob], params: dict[str, float]) -> dict[str, Any]:
    """A deep copy of the recipe dict ``base`` with every knob set from ``params``."""
    out = copy.deepcopy(base)
    for k in knobs:
        _set(out, k.path, knob_value(k, params))
    return out


def build_recipe(base: dict[str, Any], knobs: list[Knob], params: dict[str, float], source: str) -> Recipe:
    """:func:`apply_params` validated into a Recipe (RecipeError naming ``source`` if invalid)."""
    return recipe_from_dict(apply_params(base, knobs, params), source=source)


def find_knobs(
    recipe: Recipe, patterns: tuple[str, ...] | list[str] = DEFAULT_KNOBS, *, widths: bool = False
) -> tuple[list[Knob], list[str]]:
    """The fittable knobs matching ``patterns``, and one note per pattern or knob left out (no
    match, a constant, or a setting that does not validate)."""
    base = recipe_to_dict(recipe)
    knobs: list[Knob] = []
    notes: list[str] = []
    seen: set[tuple[str | int, ...]] = set()
    for pattern in patterns:
        matches = list(_expand(base, _parse_pattern(pattern)))
        if not matches and pattern.startswith("arrangement.") and recipe.arrangement is None:
            notes.append(f"{pattern}: recipe '{recipe.name}' has no arrangement (touching piles); not fitted")
        elif not matches:
            notes.append(f"{pattern}: no such parameter in recipe '{recipe.name}'; not fitted")
        for path, dist in matches:
            if path in seen:
                continue
            seen.add(path)
            label, valid = _label(base, path), field_range(path)
            got = _dims_of(label, dist, valid, widths)
            if isinstance(got, str):
                notes.append(f"{label}: cannot be fitted ({got}); kept as is")
                continue
            knob = Knob(path, label, got[0], copy.deepcopy(dist), got[1], valid)
            problem = _check_extremes(base, knob, recipe.name)
            if problem:
                notes.append(f"{label}: cannot be fitted ({problem}); kept as is")
                continue
            knobs.append(knob)
    return knobs, notes


def _check_extremes(base: dict[str, Any], knob: Knob, name: str) -> str | None:
    """None if the knob's settings at each dimension's ends validate, else the first error."""
    for d in knob.dims:
        for v in (d.low, d.high):
            try:
                build_recipe(base, [knob], {d.name: v}, source=name)
            except SynthloopError as err:
                return err.message
    return None


def start_params(knobs: list[Knob]) -> dict[str, float]:
    """The parameters that reproduce the original recipe."""
    return {d.name: d.start for k in knobs for d in k.dims}
