"""Errors of the training package (user input: specs, weight files, datasets)."""

from __future__ import annotations

from synthloop.errors import SynthloopError


class TrainingError(SynthloopError):
    """A training input that cannot be used: bad spec field, missing or incompatible weights."""


class SpecError(TrainingError):
    """An experiment spec that does not validate (names file and field)."""


class CheckpointError(TrainingError):
    """A checkpoint or weights file that cannot be read, or that does not fit the model asked for."""
