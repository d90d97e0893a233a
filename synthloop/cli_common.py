"""Shared CLI plumbing: one-line user errors with exit code 2."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

from synthloop.errors import SynthloopError


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` on one line to stderr and exit with ``code``."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`SynthloopError` into one stderr line and exit code 2."""
    try:
        yield
    except SynthloopError as e:
        fail(str(e), code=2)
