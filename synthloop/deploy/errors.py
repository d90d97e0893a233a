"""Errors of the deploy package (bad checkpoints, models, images, options)."""

from __future__ import annotations

from synthloop.errors import SynthloopError


class DeployError(SynthloopError):
    """A deployment input that cannot be used: missing/corrupt checkpoint, wrong model family,
    undecodable image, invalid option. ``str(err)`` names the file and the field or record."""
