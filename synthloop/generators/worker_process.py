"""The Blender worker process is tied to its parent: it dies with it and leaves no temp folder.

* :func:`die_with_parent` is a ``Popen(preexec_fn=...)`` hook: on Linux it asks the kernel
  (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the worker when the process that started it
  dies, even by ``kill -9``. Elsewhere it does nothing.
* Work folders are named ``synthloop-blender-<owner pid>-XXXX``; :func:`remove_orphan_workdirs`
  deletes those whose owner is gone (left by a killed ``generate`` or ``farm work``).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

WORKDIR_PREFIX = "synthloop-blender-"
_PR_SET_PDEATHSIG = 1
_OWNED = re.compile(rf"^{WORKDIR_PREFIX}(\d+)-")
LEGACY_MAX_AGE_S = 24 * 3600.0  # unowned folders of older versions: removed after a day


def die_with_parent(parent_pid: int | None = None) -> None:
    """In the child, before exec: get SIGKILL when the parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:  # parent died before prctl
        os._exit(1)


def make_workdir() -> Path:
    """A new temp folder owned by this process (its pid is in the name)."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphan_workdirs(tmp: str | os.PathLike | None = None) -> int:
    """Delete worker folders in ``tmp`` (default: the temp dir) whose owner process is gone, and
    unowned ones older than :data:`LEGACY_MAX_AGE_S`. Returns how many were removed."""
    n = 0
    now = time.time()
    for p in Path(tmp or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        if not p.is_dir() or p.is_symlink():
            continue
        m = _OWNED.match(p.name)
        try:
            orphan = not _alive(int(m.group(1))) if m else now - p.stat().st_mtime > LEGACY_MAX_AGE_S
        except OSError:
            continue
        if orphan:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n
