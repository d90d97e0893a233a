"""Protocol-buffer *text format* without a schema: parse to and write from plain nested dicts.

This is the syntax of NVIDIA TAO / TLT experiment specs (``name: value`` scalars, ``name { ... }``
or ``name: { ... }`` messages, ``#`` comments, repeated fields by repetition). Without the schema a
message is a :data:`Message`: ``{field name: [values, in file order]}`` (every field a list, so
repeated and singular fields look alike); a value is ``str``, ``int``, ``float``, ``bool``,
:class:`Enum` (an unquoted identifier such as ``DBSCAN``) or a nested :data:`Message`.

:func:`loads` raises :class:`ProtoTextError` naming the line; :func:`dumps` writes strings with
C-style escapes (quotes, backslashes and line breaks in a value cannot break the file) and refuses
non-finite numbers and field names that are not identifiers.
"""

from __future__ import annotations

import math
import re
from typing import Any

from synthloop.errors import SynthloopError

Message = dict[str, list[Any]]

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n,;]+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?(?![\w.]))
  | (?P<ident>[-]?[A-Za-z_][\w.]*)
  | (?P<punct>[{}<>:\[\]])
    """,
    re.VERBOSE,
)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


class ProtoTextError(SynthloopError):
    """A text-format file that does not parse (names the file and the line)."""


class Enum(str):
    """An enum value: written without quotes (``clustering_algorithm: DBSCAN``)."""


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), s[1:-1])


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ProtoTextError(f"unexpected character {text[pos]!r}", path=source, where=f"line {line}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    return out


def _scalar(kind: str, tok: str) -> Any:
    if kind == "str":
        return _unescape(tok)
    if kind == "num":
        t = tok.rstrip("fF")
        return int(t) if re.fullmatch(r"[-+]?\d+", t) else float(t)
    low = tok.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("inf", "infinity", "-inf", "-infinity", "nan"):
        return float(low)
    return Enum(tok)


def loads(text: str, source: str = "<text>") -> Message:
    """Parse a whole text-format message (see module docstring)."""
    toks = _tokens(text, source)
    msg, i = _message(toks, 0, source, None)
    return msg


def _message(toks: list, i: int, source: str, close: str | None) -> tuple[Message, int]:
    msg: Message = {}
    while i < len(toks):
        kind, tok, line = toks[i]
        if close is not None and tok == close:
            return msg, i + 1
        if kind != "ident":
            raise ProtoTextError(f"expected a field name, got {tok!r}", path=source, where=f"line {line}")
        i += 1
        if i < len(toks) and toks[i][1] == ":":
            i += 1
        if i >= len(toks):
            raise ProtoTextError(f"field {tok!r} has no value", path=source, where=f"line {line}")
        vkind, vtok, vline = toks[i]
        if vtok in ("{", "<"):
            value, i = _message(toks, i + 1, source, "}" if vtok == "{" else ">")
            msg.setdefault(tok, []).append(value)
        elif vtok == "[":  # short repeated form: name: [1, 2, 3]
            i += 1
            while i < len(toks) and toks[i][1] != "]":
                msg.setdefault(tok, []).append(_scalar(toks[i][0], toks[i][1]))
                i += 1
            i += 1
        elif vkind in ("str", "num", "ident"):
            value = _scalar(vkind, vtok)
            while vkind == "str" and i + 1 < len(toks) and toks[i + 1][0] == "str":  # "a" "b" concatenation
                i += 1
                value += _unescape(toks[i][1])
            msg.setdefault(tok, []).append(value)
            i += 1
        else:
            raise ProtoTextError(f"unexpected {vtok!r} after {tok!r}", path=source, where=f"line {vline}")
    if close is not None:
        raise ProtoTextError(f"missing {close!r} at end of file", path=source)
    return msg, i


def _quote(s: str) -> str:
    s = (
        s.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{s}"'


def _value(v: Any, name: str) -> str:
    if isinstance(v, Enum):
        if not _IDENT.fullmatch(v):
            raise ValueError(f"{name}: enum value {v!r} is not an identifier")
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{name}: {v} is not a finite number")
        return repr(v)
    if isinstance(v, str):
        return _quote(v)
    raise TypeError(f"{name}: cannot write {type(v).__name__} in text format")


def dumps(msg: Message, indent: int = 0) -> str:
    """Text format of ``msg`` (two spaces per nesting level; repeated fields one line/block each)."""
    pad = "  " * indent
    lines = []
    for name, values in msg.items():
        if not _IDENT.fullmatch(name):
            raise ValueError(f"field name {name!r} is not an identifier")
        for v in values:
            if isinstance(v, dict):
                lines.append(f"{pad}{name} {{\n{dumps(v, indent + 1)}{pad}}}\n")
            else:
                lines.append(f"{pad}{name}: {_value(v, name)}\n")
    return "".join(lines)


def first(msg: Message, name: str, default: Any = None) -> Any:
    """The first value of field ``name`` (``default`` when absent)."""
    values = msg.get(name)
    return values[0] if values else default
