"""Output folders that are never left half-written, and unique file stems for frames.

:func:`staged_dir` builds an output folder in a temp sibling (``.tmp-<name>-XXXX``) and publishes it
only when the body finished:

* ``out`` does not exist: the temp folder is renamed onto ``out`` (one atomic rename).
* ``out`` exists: its ``markers`` (e.g. ``annotations.json``) are deleted first, every staged file
  is moved into place with ``os.replace`` (atomic per file), and the markers are moved last, so a
  reader that trusts the marker never sees a marker that points at missing files. Each file it
  replaces is first moved aside; if a move fails, every move is undone, so ``out`` is left as it
  was (old markers included).

On any exception the temp folder is removed and ``out`` is left as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from synthloop.atomic import TMP_PREFIX
from synthloop.dataset.types import Dataset


@contextmanager
def staged_dir(out: str | os.PathLike, markers: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temp folder next to ``out``; publish it to ``out`` when the block exits cleanly.

    ``markers`` are paths relative to ``out`` that are published last (see module docstring).
    """
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-", dir=out.parent))
    try:
        yield tmp
        _publish(tmp, out, markers)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path, markers: Sequence[str]) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    if not out.is_dir():
        raise NotADirectoryError(20, "exists and is not a folder", str(out))
    aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-{out.name}-", dir=out.parent))
    moves: list[tuple[Path, Path]] = []  # (from, to), to undo in reverse
    marker_set = {Path(m) for m in markers}
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(tmp) in marker_set)  # markers last (stable sort)
    try:
        for m in markers:  # markers go first, so no reader trusts a marker during the moves
            if (out / m).exists():
                _move(out / m, aside / m, moves)
        for src in files:
            rel = src.relative_to(tmp)
            if (out / rel).exists() and rel not in marker_set:
                _move(out / rel, aside / rel, moves)
            _move(src, out / rel, moves)
    except BaseException:
        for a, b in reversed(moves):
            os.replace(b, a)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _move(src: Path, dst: Path, moves: list[tuple[Path, Path]]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    moves.append((src, dst))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file-name-safe version of ``name`` (runs of other characters become ``_``)."""
    s = _UNSAFE.sub("_", str(name)).strip("._")
    return s or "frame"


def unique_names(names: Iterable[str]) -> list[str]:
    """Make file names unique, keeping the first occurrence and suffixing later ones ``_1``, ``_2``...

    Comparison is case-insensitive (so the output is safe on case-insensitive file systems); the
    suffix goes before the extension: ``a.png, a.png -> a.png, a_1.png``.
    """
    seen: set[str] = set()
    out = []
    for name in names:
        p = Path(name)
        cand, k = name, 0
        while cand.lower() in seen:
            k += 1
            cand = f"{p.stem}_{k}{p.suffix}"
        seen.add(cand.lower())
        out.append(cand)
    return out


def frame_stems(ds: Dataset) -> list[str]:
    """Unique, file-safe stems for the frames of ``ds`` (from the frame ids), in frame order."""
    return unique_names([safe_stem(f.frame_id) for f in ds.frames])


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system) or copy it; ``dst``'s folder is created."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def require_files(ds_frames: Iterable, attr: str = "image_path") -> None:
    """Raise DatasetError naming the first frame whose ``attr`` file (if set) does not exist."""
    from synthloop.errors import DatasetError

    for f in ds_frames:
        p = getattr(f, attr)
        if p is not None and not Path(p).is_file():
            raise DatasetError("file not found", path=str(p), where=f"frame {f.frame_id}.{attr}")
