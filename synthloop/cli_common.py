"""Shared CLI plumbing: one-line user errors with exit code 2."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from synthloop.errors import SynthloopError


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr, one line per problem (each line's whitespace collapsed), and
    exit with ``code``."""
    lines = [" ".join(line.split()) for line in str(message).splitlines()] or [""]
    sys.stderr.write("\n".join(line for line in lines if line) + "\n")
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`SynthloopError` into one stderr line and exit code 2."""
    try:
        yield
    except SynthloopError as e:
        fail(str(e), code=2)


F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Decorator form of :func:`user_errors`: SynthloopError -> one stderr line, exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
