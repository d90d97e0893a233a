"""A farm worker renders one shard, skipping complete frames, safe to run twice at once.

Safety comes from two mechanisms:

* per-frame claims: ``flock`` on ``shards/NNNN/claims/<frame>.lock``. Two workers on the same shard
  split its frames between them; a worker killed with ``kill -9`` drops its locks with its file
  descriptors, so its frame is picked up again.
* atomic, deterministic writes (:mod:`synthloop.dataset.folder`): a frame's record appears only
  after its files, and a frame rendered twice writes byte-identical records, so even without the
  lock the loser's work would be discarded cleanly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from synthloop.farm.plan import load_job_recipe, load_plan, shard_dir
from synthloop.generators.generate import (
    GenerateResult,
    RendererFactory,
    default_renderer_factory,
    generate_frames,
)
from synthloop.progress import JobProgress


class FrameClaims:
    """Non-blocking exclusive claims on frame indices inside ``folder/claims``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "claims"
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, frame_index: int) -> contextlib.AbstractContextManager[int] | None:
        path = self.folder / f"{frame_index:06d}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return self._held(fd)

    @contextlib.contextmanager
    def _held(self, fd: int) -> Iterator[int]:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def work_shard(
    job: str | Path,
    shard_index: int,
    *,
    quiet: bool = False,
    threads: int = 0,
    device: str | None = None,
    renderer_factory: RendererFactory | None = None,
    progress: JobProgress | None = None,
) -> GenerateResult:
    """Render every missing frame of shard ``shard_index`` of ``job`` into its shard folder on
    ``device`` (None: the plan's ``device``)."""
    plan = load_plan(job)
    recipe = load_job_recipe(job, plan)
    shard = plan.shard(shard_index)
    out = shard_dir(job, shard)
    factory = renderer_factory or default_renderer_factory(threads, device or plan.device, plan.restart_every)
    return generate_frames(
        recipe,
        plan.seed,
        shard.frames,
        out,
        renderer_factory=factory,
        quiet=quiet,
        description=f"shard {shard.name}",
        claim=FrameClaims(out),
        progress=progress,
    )
