"""CUDA MPS (Multi-Process Service) for the GPU workers of one local farm run.

Several render workers on one GPU each hold their own CUDA context, and the GPU time-slices
between contexts: on a 16-core H100 node, 8 workers kept the GPU about 15-20 % busy and the
host CPU about 30 % busy (``docs/results/render_quality.md``). Under MPS the workers' kernels
share one context and run concurrently. :func:`mps_daemon` starts a private control daemon (its
pipe and log folders in a fresh temporary folder, so it never touches a system-wide one) for the
duration of the run and stops it afterwards; workers reach it through the two environment
variables it yields.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthloop.farm.plan import FarmError

CONTROL = "nvidia-cuda-mps-control"


def _control(exe: str, env: dict[str, str], args: list[str], stdin: str | None = None) -> str | None:
    """Run the MPS control program; None on success, else a one-line reason."""
    try:
        r = subprocess.run([exe, *args], env=env, input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {r.returncode}"
    return None


@contextmanager
def mps_daemon(control: str = CONTROL) -> Iterator[dict[str, str]]:
    """Run a private MPS control daemon while the block runs; yields the environment variables
    (``CUDA_MPS_PIPE_DIRECTORY``, ``CUDA_MPS_LOG_DIRECTORY``) that point a worker at it.

    Raises :class:`FarmError` (``--mps``) when the control program is not on ``PATH`` (it ships
    with the NVIDIA driver) or the daemon does not start. On exit the daemon is told to quit and
    its folder is removed."""
    exe = shutil.which(control)
    if exe is None:
        raise FarmError(f"{control} not found on PATH (CUDA MPS ships with the NVIDIA driver)", where="--mps")
    root = Path(tempfile.mkdtemp(prefix="synthloop-mps-"))
    extra = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
    for d in extra.values():
        Path(d).mkdir()
    env = {**os.environ, **extra}
    problem = _control(exe, env, ["-d"])
    if problem is not None:
        shutil.rmtree(root, ignore_errors=True)
        raise FarmError(f"the MPS daemon did not start: {problem}", where="--mps")
    try:
        yield extra
    finally:
        _control(exe, env, [], stdin="quit\n")
        shutil.rmtree(root, ignore_errors=True)
