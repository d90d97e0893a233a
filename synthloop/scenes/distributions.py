"""Distributions: every randomized knob of a recipe is one of these.

YAML forms (compact; a bare value is a constant)::

    0.5                                      # constant number
    wood                                     # constant category (categorical knobs only)
    {constant: 0.5}                          # the same, spelled out
    {uniform: [0.5, 1.2]}                    # uniform on [low, high]
    {normal: {mean: 1.0, std: 0.1, low: 0.5, high: 2.0}}   # low/high optional
    {normal: [1.0, 0.1]}                     # mean, std (unbounded)
    {choice: [wood, marble, none], weights: [2, 1, 1]}     # weights optional (default equal)
    {mixture: [{weight: 0.7, dist: {uniform: [0, 1]}},
               {weight: 0.3, dist: {uniform: [0.8, 0.9]}}]}

Semantics:

* ``uniform`` draws from [low, high] (``low <= high``; ``low == high`` is a constant).
* ``normal`` with bounds is truncated by resampling: up to :data:`MAX_RESAMPLES` draws from the
  same generator, then the last draw is clipped to the bounds. Deterministic for a given
  generator state.
* ``choice`` picks one of ``values`` with probability proportional to ``weights`` (positive).
* ``mixture`` picks a component with probability proportional to its ``weight``, then samples
  it. The active-learning loop re-weights a knob into a mixture of the original distribution
  and a weak region.

Every distribution has ``sample(rng) -> float | str``, ``sample_int(rng) -> int`` (integer knobs:
``uniform`` draws an integer in [ceil(low), floor(high)] inclusive, ``normal`` rounds and clips,
constants/choices must hold integral values) and ``support() -> Support`` (bounds or values).
Numeric values are stored as floats, so ``3`` and ``3.0`` give the same recipe hash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    model_serializer,
    model_validator,
)

MAX_RESAMPLES = 64
Value = float | str

_FORMS = (
    "a number, or one of {uniform: [low, high]}, {normal: {mean, std, low?, high?}}, "
    "{choice: [values], weights?: [...]}, {constant: value}, {mixture: [{weight, dist}, ...]}"
)


@dataclass(frozen=True)
class Support:
    """Where a distribution can land: numeric ``low``/``high`` (``-inf``/``inf`` when unbounded;
    None for categorical) and, for discrete distributions, the tuple of possible ``values``."""

    low: float | None
    high: float | None
    values: tuple[Value, ...] | None = None

    @property
    def numeric(self) -> bool:
        return self.low is not None


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample(self, rng: np.random.Generator) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_int(self, rng: np.random.Generator) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def support(self) -> Support:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_float(self, rng: np.random.Generator) -> float:
        """A numeric draw (raises TypeError for a categorical value)."""
        v = self.sample(rng)
        if isinstance(v, str):
            raise TypeError(f"categorical value {v!r} where a number is needed")
        return float(v)

    def sample_str(self, rng: np.random.Generator) -> str:
        return str(self.sample(rng))


def _num(v: Value) -> Value:
    """Serialized form of a value: integral floats as ints (``3.0`` -> ``3``), for readable YAML
    and a canonical hash (values are parsed back to floats)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _as_int(v: Value) -> int:
    if isinstance(v, str) or float(v) != round(float(v)):
        raise TypeError(f"{v!r} is not an integer")
    return int(round(float(v)))


class Constant(_Dist):
    kind: Literal["constant"] = "constant"
    value: Value

    def sample(self, rng: np.random.Generator) -> Value:
        return self.value

    def sample_int(self, rng: np.random.Generator) -> int:
        return _as_int(self.value)

    def support(self) -> Support:
        if isinstance(self.value, str):
            return Support(None, None, (self.value,))
        return Support(self.value, self.value, (self.value,))

    @model_serializer
    def _ser(self) -> Any:
        return _num(self.value)


class Uniform(_Dist):
    kind: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> Uniform:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("uniform bounds must be finite")
        if self.low > self.high:
            raise ValueError(f"uniform low {self.low:g} > high {self.high:g}")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def sample_int(self, rng: np.random.Generator) -> int:
        lo, hi = math.ceil(self.low), math.floor(self.high)
        return int(rng.integers(lo, hi + 1))

    def support(self) -> Support:
        return Support(self.low, self.high)

    @model_serializer
    def _ser(self) -> Any:
        return {"uniform": [_num(self.low), _num(self.high)]}


class Normal(_Dist):
    kind: Literal["normal"] = "normal"
    mean: float
    std: float
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Normal:
        if not (math.isfinite(self.mean) and math.isfinite(self.std)):
            raise ValueError("normal mean and std must be finite")
        if self.std < 0:
            raise ValueError(f"normal std must be >= 0, got {self.std:g}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"normal low {self.low:g} > high {self.high:g}")
        return self

    def _bounds(self) -> tuple[float, float]:
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        return lo, hi

    def sample(self, rng: np.random.Generator) -> float:
        lo, hi = self._bounds()
        x = self.mean
        for _ in range(MAX_RESAMPLES):
            x = float(rng.normal(self.mean, self.std))
            if lo <= x <= hi:
                return x
        return float(min(max(x, lo), hi))

    def sample_int(self, rng: np.random.Generator) -> int:
        lo, hi = self._bounds()
        x = round(self.sample(rng))
        if math.isfinite(lo):
            x = max(x, math.ceil(lo))
        if math.isfinite(hi):
            x = min(x, math.floor(hi))
        return int(x)

    def support(self) -> Support:
        lo, hi = self._bounds()
        return Support(lo, hi)

    @model_serializer
    def _ser(self) -> Any:
        out: dict[str, Value] = {"mean": _num(self.mean), "std": _num(self.std)}
        if self.low is not None:
            out["low"] = _num(self.low)
        if self.high is not None:
            out["high"] = _num(self.high)
        return {"normal": out}


class Choice(_Dist):
    kind: Literal["choice"] = "choice"
    values: tuple[Value, ...] = Field(min_length=1)
    weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Choice:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"choice has {len(self.values)} values but {len(self.weights)} weights")
            if any(not (w > 0 and math.isfinite(w)) for w in self.weights):
                raise ValueError("choice weights must be positive")
        kinds = {isinstance(v, str) for v in self.values}
        if len(kinds) > 1:
            raise ValueError("choice values must be all numbers or all strings")
        return self

    def probabilities(self) -> np.ndarray:
        """(len(values),) float64, summing to 1."""
        w = np.ones(len(self.values)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        return w / w.sum()

    def sample(self, rng: np.random.Generator) -> Value:
        return self.values[int(rng.choice(len(self.values), p=self.probabilities()))]

    def sample_int(self, rng: np.random.Generator) -> int:
        return _as_int(self.sample(rng))

    def support(self) -> Support:
        if isinstance(self.values[0], str):
            return Support(None, None, tuple(self.values))
        nums = [float(v) for v in self.values]
        return Support(min(nums), max(nums), tuple(self.values))

    @model_serializer
    def _ser(self) -> Any:
        out: dict[str, Any] = {"choice": [_num(v) for v in self.values]}
        if self.weights is not None:
            out["weights"] = [_num(w) for w in self.weights]
        return out


class MixtureComponent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float
    dist: Distribution

    @model_validator(mode="after")
    def _check(self) -> MixtureComponent:
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"mixture weight must be positive, got {self.weight:g}")
        return self


class Mixture(_Dist):
    kind: Literal["mixture"] = "mixture"
    components: tuple[MixtureComponent, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Mixture:
        kinds = {c.dist.support().numeric for c in self.components}
        if len(kinds) > 1:
            raise ValueError("mixture components must be all numeric or all categorical")
        return self

    @classmethod
    def of(cls, parts: Sequence[tuple[float, Distribution]]) -> Mixture:
        """``Mixture.of([(0.7, original), (0.3, weak_region)])``."""
        return cls(components=tuple(MixtureComponent(weight=w, dist=d) for w, d in parts))

    def probabilities(self) -> np.ndarray:
        w = np.asarray([c.weight for c in self.components], dtype=np.float64)
        return w / w.sum()

    def _pick(self, rng: np.random.Generator) -> Distribution:
        return self.components[int(rng.choice(len(self.components), p=self.probabilities()))].dist

    def sample(self, rng: np.random.Generator) -> Value:
        return self._pick(rng).sample(rng)

    def sample_int(self, rng: np.random.Generator) -> int:
        return self._pick(rng).sample_int(rng)

    def support(self) -> Support:
        sups = [c.dist.support() for c in self.components]
        values: tuple[Value, ...] | None = None
        if all(s.values is not None for s in sups):
            seen: dict[Value, None] = {}
            for s in sups:
                for v in s.values or ():
                    seen[v] = None
            values = tuple(seen)
        if not sups[0].numeric:
            return Support(None, None, values)
        return Support(min(s.low for s in sups), max(s.high for s in sups), values)  # type: ignore[type-var]

    @model_serializer
    def _ser(self) -> Any:
        return {"mixture": [{"weight": _num(c.weight), "dist": c.dist.model_dump()} for c in self.components]}


# ``{kind: [a, b]}`` shorthands: kind -> (field of a, field of b, the form named when a list is not
# two long, the form named when the value is neither a list nor a dict)
_PAIR_FORMS = {
    "uniform": ("low", "high", "[low, high]", "[low, high]"),
    "normal": ("mean", "std", "[mean, std] or {mean, std, low?, high?}", "{mean, std, low?, high?}"),
}


def _parse_pair(kind: str, v: Any) -> dict[str, Any]:
    """``uniform: [low, high]`` / ``normal: [mean, std]`` (or the fields as a dict) -> tagged dict."""
    first, second, list_form, other_form = _PAIR_FORMS[kind]
    if isinstance(v, list | tuple):
        if len(v) != 2:
            raise ValueError(f"{kind} needs {list_form}, got {v!r}")
        return {"kind": kind, first: v[0], second: v[1]}
    if isinstance(v, dict):
        return {"kind": kind, **v}
    raise ValueError(f"{kind} needs {other_form}, got {v!r}")


def _parse(data: Any) -> Any:
    """Turn the compact YAML form into a tagged dict for the discriminated union."""
    if isinstance(data, _Dist):
        return data
    if isinstance(data, bool):
        raise ValueError(f"expected {_FORMS}, got {data!r}")
    if isinstance(data, int | float | str):
        return {"kind": "constant", "value": data}
    if isinstance(data, dict):
        if "kind" in data:
            return data
        keys = set(data)
        if keys == {"constant"}:
            return {"kind": "constant", "value": data["constant"]}
        if len(keys) == 1 and (kind := next(iter(keys))) in _PAIR_FORMS:
            return _parse_pair(kind, data[kind])
        if "choice" in keys and keys <= {"choice", "weights"}:
            v = data["choice"]
            if not isinstance(v, list | tuple):
                raise ValueError(f"choice needs a list of values, got {v!r}")
            out: dict[str, Any] = {"kind": "choice", "values": v}
            if "weights" in data:
                out["weights"] = data["weights"]
            return out
        if keys == {"mixture"}:
            v = data["mixture"]
            if not isinstance(v, list | tuple):
                raise ValueError(f"mixture needs a list of {{weight, dist}}, got {v!r}")
            return {"kind": "mixture", "components": v}
        raise ValueError(f"unknown distribution keys {sorted(map(str, keys))}; expected {_FORMS}")
    raise ValueError(f"expected {_FORMS}, got {data!r}")


Distribution = Annotated[
    Annotated[Constant | Uniform | Normal | Choice | Mixture, Discriminator("kind")],
    BeforeValidator(_parse),
]
"""Any distribution, validated from its compact YAML form (see the module docstring)."""

MixtureComponent.model_rebuild()
Mixture.model_rebuild()


def _numeric(d: _Dist) -> _Dist:
    if not d.support().numeric:
        raise ValueError(f"expected a number or a numeric distribution, got {d.model_dump()!r}")
    return d


def _categorical(d: _Dist) -> _Dist:
    if d.support().numeric:
        raise ValueError(f"expected a name or a choice of names, got {d.model_dump()!r}")
    return d


NumDist = Annotated[Distribution, AfterValidator(_numeric)]
"""A numeric knob."""
CatDist = Annotated[Distribution, AfterValidator(_categorical)]
"""A categorical knob (strings)."""


@dataclass(frozen=True)
class DeclaredRange:
    """The values a numeric recipe field accepts: [``low``, ``high``] (``low`` itself excluded
    when ``low_open``), integers only when ``integer``. Unbounded ends are infinite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    integer: bool = False


@dataclass(frozen=True)
class _InRange:
    """The check of :func:`in_range`; it keeps its bounds so that :func:`declared_range` can read them."""

    low: float | None
    high: float | None
    low_open: bool

    def __call__(self, d: _Dist) -> _Dist:
        low, high, low_open = self.low, self.high, self.low_open
        s = d.support()
        if s.numeric and (math.isnan(s.low) or math.isnan(s.high)):  # type: ignore[arg-type]
            raise ValueError("must be a finite number, got nan")
        lo_txt = "-inf" if low is None else f"{low:g}"
        hi_txt = "inf" if high is None else f"{high:g}"
        rng_txt = f"{'(' if low_open else '['}{lo_txt}, {hi_txt}]"
        bad = (low is not None and (s.low < low or (low_open and s.low <= low))) or (  # type: ignore[operator]
            high is not None and s.high > high  # type: ignore[operator]
        )
        if bad:
            if isinstance(d, Constant):
                raise ValueError(f"must be in {rng_txt}, got {s.low:g}")
            hint = ""
            if not (math.isfinite(s.low) and math.isfinite(s.high)):  # type: ignore[arg-type]
                hint = "; give the normal explicit low/high"
            raise ValueError(
                f"values must lie in {rng_txt}, but the support is [{s.low:g}, {s.high:g}]{hint}"
            )
        return d


def in_range(low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """AfterValidator: the distribution's support lies in [low, high] (``(low, high]`` if ``low_open``)."""
    return AfterValidator(_InRange(low, high, low_open))


def declared_range(metadata: Sequence[Any]) -> DeclaredRange:
    """The range that a field's validators (``metadata``: its :func:`in_range` and
    :func:`integral` AfterValidators, as pydantic lists them) declare; unbounded without them."""
    out = DeclaredRange()
    for m in metadata:
        func = getattr(m, "func", None)
        if isinstance(func, _InRange):
            out = DeclaredRange(
                -math.inf if func.low is None else float(func.low),
                math.inf if func.high is None else float(func.high),
                func.low_open,
                out.integer,
            )
        elif func is integral:
            out = DeclaredRange(out.low, out.high, out.low_open, True)
    return out


def integral(d: _Dist) -> _Dist:
    """AfterValidator for integer knobs: constants/choices integral, uniform contains an integer."""
    s = d.support()
    if s.values is not None and isinstance(d, Constant | Choice):
        for v in s.values:
            if isinstance(v, str) or float(v) != round(float(v)):
                raise ValueError(f"expected an integer, got {v!r}")
    if isinstance(d, Uniform) and math.ceil(d.low) > math.floor(d.high):
        raise ValueError(f"uniform [{d.low:g}, {d.high:g}] contains no integer")
    if isinstance(d, Mixture):
        for c in d.components:
            integral(c.dist)
    return d


def one_of(allowed: Sequence[str], what: str = "value"):
    """AfterValidator for categorical knobs: every possible value is in ``allowed``."""

    def check(d: _Dist) -> _Dist:
        for v in d.support().values or ():
            if v not in allowed:
                raise ValueError(f"unknown {what} {v!r}; expected one of {', '.join(allowed)}")
        return d

    return AfterValidator(check)


def constant(value: Value) -> Constant:
    return Constant(value=value)


def uniform(low: float, high: float) -> Uniform:
    return Uniform(low=low, high=high)
