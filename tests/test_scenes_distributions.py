"""Distributions: parsing of the compact YAML forms, bounds, statistics with a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from synthloop.scenes.distributions import (
    CatDist,
    Choice,
    Constant,
    Mixture,
    Normal,
    NumDist,
    Uniform,
    integral,
    uniform,
)


class Knob(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
    x: NumDist = 1.0
    c: CatDist = "a"


def parse(value, field="x"):
    return getattr(Knob.model_validate({field: value}), field)


def draws(dist, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([dist.sample(rng) for _ in range(n)])


def test_compact_forms_parse_to_the_right_types():
    assert parse(3) == Constant(value=3.0)
    assert parse({"constant": 2.5}) == Constant(value=2.5)
    assert parse({"uniform": [0.5, 1.2]}) == Uniform(low=0.5, high=1.2)
    assert parse({"normal": {"mean": 1, "std": 0.1, "low": 0.5}}) == Normal(mean=1, std=0.1, low=0.5)
    assert parse({"normal": [1, 0.1]}) == Normal(mean=1, std=0.1)
    assert parse({"choice": [1, 2], "weights": [1, 3]}) == Choice(values=(1.0, 2.0), weights=(1.0, 3.0))
    assert parse("wood", "c") == Constant(value="wood")
    mix = parse({"mixture": [{"weight": 0.7, "dist": {"uniform": [0, 1]}}, {"weight": 0.3, "dist": 5}]})
    assert isinstance(mix, Mixture) and len(mix.components) == 2


@pytest.mark.parametrize(
    "value",
    [
        3,
        {"uniform": [0.5, 1.2]},
        {"normal": {"mean": 1, "std": 0.1, "low": 0.5, "high": 2}},
        {"choice": [1, 2, 3], "weights": [1, 1, 2]},
        {
            "mixture": [
                {"weight": 0.7, "dist": {"uniform": [0, 1]}},
                {"weight": 0.3, "dist": {"normal": {"mean": 5, "std": 1}}},
            ]
        },
    ],
)
def test_dump_is_the_compact_form_and_round_trips(value):
    dist = parse(value)
    dumped = Knob(x=dist).model_dump()["x"]
    assert parse(dumped) == dist
    assert dumped == value  # integral floats are written back as ints


@pytest.mark.parametrize(
    ("value", "field", "needle"),
    [
        ({"uniform": [3, 2]}, "x", "low 3 > high 2"),
        ({"normal": {"mean": 1, "std": -1}}, "x", "std must be >= 0"),
        ({"choice": [1, 2], "weights": [1]}, "x", "2 values but 1 weights"),
        ({"choice": [1, 2], "weights": [1, 0]}, "x", "weights must be positive"),
        ({"mixture": [{"weight": -1, "dist": 1}]}, "x", "weight must be positive"),
        ({"uniform": [1, 2], "extra": 1}, "x", "unknown distribution keys"),
        ("abc", "x", "expected a number"),
        (2, "c", "expected a name"),
        ({"choice": [1, "a"]}, "x", "all numbers or all strings"),
    ],
)
def test_invalid_distributions_are_rejected(value, field, needle):
    with pytest.raises(ValidationError) as exc:
        Knob.model_validate({field: value})
    assert needle in str(exc.value)


def test_uniform_in_bounds_with_right_mean():
    d = uniform(0.5, 1.2)
    x = draws(d)
    assert x.min() >= 0.5 and x.max() <= 1.2
    assert abs(x.mean() - 0.85) < 0.01
    assert abs(x.std() - 0.7 / math.sqrt(12)) < 0.005
    assert d.support().low == 0.5 and d.support().high == 1.2


def test_truncated_normal_stays_in_bounds_and_is_deterministic():
    d = Normal(mean=1.0, std=0.5, low=0.8, high=1.1)
    x = draws(d)
    assert x.min() >= 0.8 and x.max() <= 1.1
    # Truncation on both sides, more mass removed above the mean than below -> mean below 1.
    assert 0.9 < x.mean() < 0.98
    assert np.array_equal(x, draws(d))
    # Far-out bounds: resampling gives up and clips, still inside.
    far = Normal(mean=0.0, std=0.01, low=5.0, high=6.0)
    assert set(draws(far, n=50)) == {5.0}


def test_unbounded_normal_moments():
    x = draws(Normal(mean=2.0, std=0.3))
    assert abs(x.mean() - 2.0) < 0.01 and abs(x.std() - 0.3) < 0.01


def test_choice_hits_weights():
    d = Choice(values=("a", "b", "c"), weights=(1, 2, 7))
    x = draws(d)
    freq = {v: float(np.mean(x == v)) for v in "abc"}
    assert abs(freq["a"] - 0.1) < 0.01 and abs(freq["b"] - 0.2) < 0.01 and abs(freq["c"] - 0.7) < 0.015
    assert d.support().values == ("a", "b", "c") and not d.support().numeric


def test_mixture_hits_component_weights_and_support_is_the_union():
    d = Mixture.of([(0.7, uniform(0, 1)), (0.3, uniform(10, 11))])
    x = draws(d)
    assert abs(np.mean(x >= 10) - 0.3) < 0.01
    assert np.all((x <= 1) | (x >= 10))
    s = d.support()
    assert (s.low, s.high) == (0.0, 11.0)
    cat = Mixture.of([(1, Choice(values=("a", "b"))), (1, Constant(value="c"))])
    assert set(cat.support().values) == {"a", "b", "c"}


def test_sample_int_is_inclusive_and_uniform():
    d = uniform(2, 5)
    rng = np.random.default_rng(1)
    x = np.array([d.sample_int(rng) for _ in range(8000)])
    assert set(x.tolist()) == {2, 3, 4, 5}
    assert np.all(np.abs(np.bincount(x)[2:] / len(x) - 0.25) < 0.02)
    n = Normal(mean=3, std=2, low=0, high=4)
    xs = [n.sample_int(rng) for _ in range(2000)]
    assert min(xs) >= 0 and max(xs) <= 4 and all(isinstance(v, int) for v in xs)


def test_integral_rejects_fractional_constants_and_empty_integer_ranges():
    with pytest.raises(ValueError, match="expected an integer"):
        integral(Constant(value=2.5))
    with pytest.raises(ValueError, match="contains no integer"):
        integral(uniform(2.2, 2.8))
    assert integral(uniform(1.5, 2.5)) is not None
