"""What a training run logs: ``metrics.jsonl`` records, TensorBoard scalars and a rich progress
bar (or, ``quiet``, the records as JSON lines on stdout). Only rank 0 logs (:class:`NullLogger`
elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_bytes


class RunLogger:
    """metrics.jsonl + TensorBoard + rich progress (or JSON lines on stdout when quiet)."""

    def __init__(self, out: Path, quiet: bool, total_steps: int, start_step: int):
        self.path = out / "metrics.jsonl"
        self.quiet = quiet
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.tb = None
        self.progress = None
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")

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
            if info is None:
                self.progress.update(self.task, completed=step)
            else:
                self.progress.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
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
