"""Shared CLI plumbing: one-line errors, no tracebacks.

A :class:`SynthloopError` (bad input) exits 2; an OSError (read-only folder, full disk,
permission denied) exits 1 with one line naming the path and the errno, e.g.
``/data/out/images: No space left on device [ENOSPC]``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from synthloop.errors import SynthloopError
from synthloop.userfiles import os_error_text


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr, one line per problem (each line's whitespace collapsed), and
    exit with ``code``."""
    lines = [" ".join(line.split()) for line in str(message).splitlines()] or [""]
    sys.stderr.write("\n".join(line for line in lines if line) + "\n")
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """SynthloopError -> one stderr line, exit 2; OSError -> one line (path, errno), exit 1."""
    try:
        yield
    except SynthloopError as e:
        fail(str(e), code=2)
    except OSError as e:
        fail(os_error_line(e), code=1)


def os_error_line(e: OSError) -> str:
    """``PATH: strerror [ERRNO]`` (both paths for a failed rename or copy)."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "(no path)"
    return f"{where}: {os_error_text(e)}"


F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Decorator form of :func:`user_errors`: SynthloopError -> one stderr line, exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
