"""Reading files a user hands us (recipes, specs, plans, label files) as hostile input (JSON:
:func:`synthloop.jsonio.read_json`).

Every reader here turns each way a file can be bad into one :class:`SynthloopError` (of the
caller's subclass) naming the file and, where known, the field: missing, a folder, unreadable,
not UTF-8, bigger than ``max_bytes``, a YAML/JSON syntax error (with line), nesting deeper than
:data:`MAX_DEPTH`, a YAML alias bomb (more than :data:`MAX_NODES` nodes once aliases are
expanded) and non-finite numbers (``.nan``, ``.inf``, ``1e400``) anywhere in a YAML document.

:func:`inside_root` is the one check that a path read from a file stays inside its folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from synthloop.errors import SynthloopError

MAX_DEPTH = 64  # nesting levels of a YAML/JSON document; real files use fewer than 10
MAX_NODES = 1_000_000  # YAML nodes with aliases expanded; a real recipe has a few hundred
MAX_TEXT_BYTES = 64 * 1024 * 1024  # specs, recipes, plans and label files are far smaller
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_user_text(
    path: str | os.PathLike,
    error: type[SynthloopError] = SynthloopError,
    *,
    max_bytes: int = MAX_TEXT_BYTES,
    where: str | None = None,
) -> str:
    """The UTF-8 text of ``path``; every failure becomes one ``error`` naming the file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error("file not found", path=str(p), where=where) from None
    except IsADirectoryError:
        raise error("is a folder, expected a file", path=str(p), where=where) from None
    except OSError as e:
        raise error(f"cannot read file ({os_error_text(e)})", path=str(p), where=where) from None
    if len(data) > max_bytes:
        raise error(f"file is larger than {max_bytes} bytes", path=str(p), where=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"not UTF-8 text (bad byte at offset {e.start})", path=str(p), where=where) from None


def os_error_text(e: OSError) -> str:
    """``strerror [ERRNO]`` of an OSError, e.g. ``No space left on device [ENOSPC]``."""
    import errno

    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return f"{text} [{name}]" if name else text


def check_tree(data: Any, path: str, error: type[SynthloopError] = SynthloopError) -> None:
    """Refuse a parsed document that nests deeper than MAX_DEPTH, expands to more than MAX_NODES
    values (a YAML alias counted each time it is used), refers to itself, or holds a non-finite
    float. Each shared container is walked once (its expanded size and height are memoised), so
    an alias bomb is refused in time proportional to its text, not to its expansion."""
    size: dict[int, int] = {}  # id(container) -> values in its expansion
    height: dict[int, int] = {}  # id(container) -> nesting levels below it
    open_: set[int] = set()
    stack: list[tuple[Any, int, str, bool]] = [(data, 0, "", False)]
    while stack:
        node, depth, where, closing = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"nested deeper than {MAX_DEPTH} levels", path=path, where=where or None)
        if isinstance(node, float) and not math.isfinite(node):
            raise error(f"must be a finite number, got {node}", path=path, where=where or None)
        if not isinstance(node, dict | list | tuple):
            continue
        key, kids = id(node), list(node.values() if isinstance(node, dict) else node)
        if closing:
            open_.discard(key)
            size[key] = 1 + sum(size.get(id(k), 1) for k in kids)
            height[key] = 1 + max((height.get(id(k), 0) for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise error(f"document expands to more than {MAX_NODES} values (alias bomb?)", path=path)
            continue
        if key in open_:
            raise error("document refers to itself (recursive alias)", path=path, where=where or None)
        if key in size:  # an alias of a container already walked
            if depth + height[key] > MAX_DEPTH:
                raise error(f"nested deeper than {MAX_DEPTH} levels", path=path, where=where or None)
            continue
        open_.add(key)
        stack.append((node, depth, where, True))
        if isinstance(node, dict):
            for k, v in node.items():
                stack.append((v, depth + 1, f"{where}.{k}" if where else str(k), False))
        else:
            for i, v in enumerate(node):
                stack.append((v, depth + 1, f"{where}[{i}]", False))


def parse_yaml(text: str, path: str, error: type[SynthloopError] = SynthloopError) -> Any:
    """``yaml.safe_load(text)`` (libyaml's parser when present: it also caps nesting at 1000
    levels, and fast) checked with :func:`check_tree`; syntax errors name the line."""
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader (libyaml when present)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
        raise error(f"YAML syntax error: {problem}", path=path, where=where) from None
    except RecursionError:
        raise error(f"nested deeper than {MAX_DEPTH} levels", path=path) from None
    check_tree(data, path, error)
    return data


def load_yaml_file(path: str | os.PathLike, error: type[SynthloopError] = SynthloopError) -> Any:
    """Read and parse a user YAML file (see :func:`read_user_text`, :func:`parse_yaml`)."""
    return parse_yaml(read_user_text(path, error), str(path), error)


def inside_root(root: str | os.PathLike, rel: str | os.PathLike) -> Path | None:
    """``root / rel`` resolved (symlinks followed) when it stays inside ``root`` (resolved), else
    None: absolute paths, ``..`` and symlinks that leave ``root`` all give None."""
    base = Path(root).resolve()
    rel = Path(rel)
    if rel.is_absolute():
        return None
    try:
        cand = (base / rel).resolve()
    except (OSError, RuntimeError):  # symlink loop
        return None
    return cand if cand == base or cand.is_relative_to(base) else None
