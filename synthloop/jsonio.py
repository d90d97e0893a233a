"""Reading a JSON file, with the one-line errors of :mod:`synthloop.errors` (writes: ``atomic``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthloop.errors import SynthloopError


def read_json(
    path: str | os.PathLike, error: type[SynthloopError] = SynthloopError, what: str = "file"
) -> Any:
    """The parsed JSON of ``path``. A missing or unreadable file, or invalid JSON, raises ``error``
    naming the file, what it was meant to be (``what``, e.g. ``"slice table"``) and the bad line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found", path=str(p)) from None
    except IsADirectoryError:
        raise error(f"cannot read {what} (a folder, expected a file)", path=str(p)) from None
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text (bad byte at offset {e.start})", path=str(p)) from None
    except OSError as e:
        raise error(f"cannot read {what} ({e})", path=str(p)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(
            f"invalid JSON in {what} ({e.msg} at line {e.lineno} column {e.colno})", path=str(p)
        ) from None
    except RecursionError:
        raise error(f"JSON in {what} nested too deeply", path=str(p)) from None


def require_schema(d: Any, schema: str, what: str, error: type[SynthloopError], path: str | None) -> None:
    """Raise ``error`` ("not a WHAT") unless ``d`` is a mapping whose ``"schema"`` is ``schema``."""
    if not isinstance(d, Mapping) or d.get("schema") != schema:
        article = "an" if what[:1] in "aeiou" else "a"
        raise error(f"not {article} {what} (schema must be {schema!r})", path=path)


@contextmanager
def reading(what: str, error: type[SynthloopError], path: str | None) -> Iterator[None]:
    """Turn a KeyError, TypeError or ValueError raised while building a WHAT from its dict into
    ``error`` ("malformed WHAT (...)") naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise error(f"malformed {what} ({type(e).__name__}: {e})", path=path) from e
