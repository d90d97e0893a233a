"""Reading a JSON file, with the one-line errors of :mod:`synthloop.errors` (writes: ``atomic``)."""

from __future__ import annotations

import json
import os
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
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} ({e})", path=str(p)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(
            f"invalid JSON in {what} ({e.msg} at line {e.lineno} column {e.colno})", path=str(p)
        ) from None
