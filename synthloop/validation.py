"""pydantic ValidationError -> every problem as ("field path", "message"), and the user error that
lists them all (one line each: ``file: field: message``).

Follow-on errors of a container whose items failed (e.g. "tuple too short" after an invalid item
was removed) are dropped. Specs get pydantic's message on a dotted path (``a.b.2.c``); with
``brackets=True`` (recipes, loop specs) paths read ``a.b[2].c`` (a ``mixture``'s ``components``
level left out), ``extra_forbidden`` becomes "unknown key 'x'" on the parent path, ``missing``
becomes "missing required field 'x'" and other messages show the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import ValidationError

from synthloop.errors import SynthloopError

E = TypeVar("E", bound=SynthloopError)
T = TypeVar("T")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loc_to_path(loc: tuple[Any, ...], brackets: bool = False) -> str:
    """pydantic's location tuple -> ``a.b.2.c`` (``brackets``: ``a.b[2].c``)."""
    if not brackets:
        return ".".join(str(p) for p in loc)
    out = ""
    prev: Any = None
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif item == "components" and prev == "mixture":
            pass
        else:
            out += ("." if out else "") + str(item)
        prev = item
    return out


def _problem(e: Any, brackets: bool) -> tuple[str | None, str]:
    loc, kind, msg = tuple(e["loc"]), e["type"], str(e["msg"])
    if not brackets:  # specs: pydantic's own message on the dotted path
        return (loc_to_path(loc) or None), msg
    if kind == "extra_forbidden" and loc:
        msg, loc = f"unknown key '{loc[-1]}'", loc[:-1]
    elif kind == "missing" and loc:
        msg, loc = f"missing required field '{loc[-1]}'", loc[:-1]
    elif kind in ("value_error", "assertion_error"):
        msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    else:
        msg = f"{msg} (got {_short(e.get('input'))})"
    path = loc_to_path(loc, brackets)
    # model-level validators that name a sub-field prefix it to their message ("classes[1].name: ...")
    m = re.match(r"^([A-Za-z_][\w.\[\]]*): (.*)$", msg)
    if m and kind == "value_error" and "[" in m.group(1):
        path = f"{path}.{m.group(1)}" if path else m.group(1)
        msg = m.group(2)
    return (path or None), msg


def problems(err: ValidationError, brackets: bool = False) -> list[tuple[str | None, str]]:
    """Every problem of ``err`` as (field path or None, message), in pydantic's order."""
    errors = err.errors()
    locs = [tuple(e["loc"]) for e in errors]
    kept = [
        e for e, loc in zip(errors, locs, strict=True) if not any(o[: len(loc)] == loc != o for o in locs)
    ]
    return [_problem(e, brackets) for e in kept or errors]


def invalid(cls: type[E], err: ValidationError, source: str, brackets: bool = False) -> E:
    """``cls`` naming ``source`` and listing every problem of ``err`` (raise it ``from None``)."""
    found = problems(err, brackets)
    (where, msg), rest = found[0], found[1:]
    return cls(msg, path=source, where=where, more=rest)


def require_one_of(value: T, allowed: Collection[T], message: str) -> T:
    """``value`` when it is in ``allowed``, else ``ValueError(message)``: the body of a pydantic
    field validator that admits a fixed set of values (pydantic names the field)."""
    if value not in allowed:
        raise ValueError(message)
    return value
