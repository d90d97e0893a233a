"""Numbers from query strings and forms: parsed, checked for finiteness and bounds, or HTTP 400
naming the field."""

from __future__ import annotations

import math

from starlette.exceptions import HTTPException


def parse_int(name: str, raw: str | None, default: int, lo: int = 0, hi: int = 10**9) -> int:
    """``raw`` as an int in [lo, hi] (``default`` when empty), else HTTPException 400."""
    raw = (raw or "").strip()
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: {raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise HTTPException(400, f"{name}: {v} is outside [{lo}, {hi}]")
    return v


def parse_float(name: str, raw: str | None) -> float | None:
    """``raw`` as a finite float (None when empty), else HTTPException 400."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(v):
        raise HTTPException(400, f"{name}: {raw!r} is not finite")
    return v
