"""Numbers from query strings and forms: parsed, checked for finiteness and bounds, or HTTP 400
naming the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from starlette.exceptions import HTTPException

N = TypeVar("N", int, float)


def _parsed(name: str, raw: str | None, convert: Callable[[str], N], what: str) -> N | None:
    """``convert(raw)`` (None when ``raw`` is empty or blank), else HTTPException 400 saying that
    ``raw`` is not ``what``."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: {raw!r} is not {what}") from None


def parse_int(name: str, raw: str | None, default: int, lo: int = 0, hi: int = 10**9) -> int:
    """``raw`` as an int in [lo, hi] (``default`` when empty), else HTTPException 400."""
    v = _parsed(name, raw, int, "an integer")
    if v is None:
        return default
    if not lo <= v <= hi:
        raise HTTPException(400, f"{name}: {v} is outside [{lo}, {hi}]")
    return v


def parse_float(name: str, raw: str | None) -> float | None:
    """``raw`` as a finite float (None when empty), else HTTPException 400."""
    v = _parsed(name, raw, float, "a number")
    if v is not None and not math.isfinite(v):
        raise HTTPException(400, f"{name}: {(raw or '').strip()!r} is not finite")
    return v
