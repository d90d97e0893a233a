"""What a training run logs: ``metrics.jsonl`` records, TensorBoard scalars and the progress bar
of :mod:`synthloop.progress` (steps, rate, ETA and the last loss on stderr), or, ``quiet``, the
records as JSON lines on stdout. Only rank 0 logs (:class:`NullLogger` elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_bytes
from synthloop.progress import JobProgress


class RunLogger:
    """metrics.jsonl + TensorBoard + a :class:`~synthloop.progress.JobProgress` bar over the steps
    (or the records as JSON lines on stdout when quiet)."""

    def __init__(self, out: Path, quiet: bool, total_steps: int, start_step: int):
        self.path = out / "metrics.jsonl"
        self.quiet = quiet
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.tb = None
        self.progress: JobProgress | None = None
        if not quiet:  # quiet: the records themselves are the JSON lines
            self.progress = JobProgress(total_steps, "train", unit="step", completed=start_step).__enter__()

    def log(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, int | float) and k not in ("step", "epoch", "phase_index"):
                    self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, rec.get("step", 0))
        if self.quiet:
            print(json.dumps(rec, sort_keys=True), flush=True)

    def advance(self, step: int, info: str | None) -> None:
        if self.progress is not None:
            self.progress.update(step, info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
        if self.tb is not None:
            self.tb.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (the part of an interrupted run that is replayed)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n").encode() if keep else b"")


class NullLogger:
    """What ranks other than 0 log: nothing."""

    progress = None

    def log(self, rec: dict[str, Any]) -> None:
        pass

    def advance(self, step: int, info: str | None) -> None:
        pass

    def close(self) -> None:
        pass
