"""Errors of the active-learning package."""

from __future__ import annotations

from synthloop.errors import SynthloopError


class ActiveError(SynthloopError):
    """Bad input to the active-learning loop (slice tables, weak regions, loop specs, pools)."""
