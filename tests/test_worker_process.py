"""The Blender worker dies with its parent (kill -9 included) and leaves no temp folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from synthloop.generators.worker_process import WORKDIR_PREFIX, remove_orphan_workdirs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_worker_is_killed_when_its_parent_is_killed_9():
    parent_code = textwrap.dedent(
        """
        import functools, os, subprocess, sys, time
        from synthloop.generators.worker_process import die_with_parent
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 preexec_fn=functools.partial(die_with_parent, os.getpid()))
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    alive = True
    while alive and time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
            with open(f"/proc/{child_pid}/stat") as fh:  # a zombie waiting for init counts as dead
                alive = fh.read().split(")")[-1].split()[0] != "Z"
        except (ProcessLookupError, FileNotFoundError):
            alive = False
        time.sleep(0.05)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive


def test_orphan_workdirs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"{WORKDIR_PREFIX}{dead.pid}-abc"
    mine = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-def"
    legacy_old = tmp_path / f"{WORKDIR_PREFIX}xyz"
    legacy_new = tmp_path / f"{WORKDIR_PREFIX}uvw"
    for d in (orphan, mine, legacy_old, legacy_new):
        (d / "frame").mkdir(parents=True)
    old = time.time() - 3 * 24 * 3600
    os.utime(legacy_old, (old, old))
    assert remove_orphan_workdirs(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, legacy_new.name])
