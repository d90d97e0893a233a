"""Atomic file writes: write to a temp name in the same folder, fsync, rename.

A reader (or a resumed job) sees either the old file or the complete new one, never a
half-written file. Temp names start with ``.tmp-`` so cleaners can find leftovers of killed
writers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_with(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it onto ``path``.

    An OSError without a file name (a full disk while writing) is raised again naming ``path``."""
    path = Path(path)
    try:
        _write_atomically(path, write)
    except OSError as e:
        if e.filename is None:
            raise type(e)(e.errno, e.strerror or str(e), str(path)) from None
        raise
    return path


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write_with(path, lambda fh: fh.write(data))


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, fixed separators, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, canonical_json(obj))


def atomic_save_image(path: str | os.PathLike, image: Any, **save_kwargs: Any) -> Path:
    """Save a PIL image atomically; the format is taken from ``path``'s suffix."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[Path(path).suffix.lower()]
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def remove_stale_temps(folder: str | os.PathLike, min_age_seconds: float = 3600.0) -> int:
    """Delete leftover ``.tmp-*`` files below ``folder`` older than ``min_age_seconds`` (from
    killed writers; younger ones may belong to a live concurrent writer). Returns count."""
    import time

    n = 0
    now = time.time()
    for p in Path(folder).rglob(TMP_PREFIX + "*"):
        if p.is_file() and now - p.stat().st_mtime >= min_age_seconds:
            p.unlink(missing_ok=True)
            n += 1
    return n
