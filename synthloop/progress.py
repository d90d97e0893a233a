"""Progress reporting for long jobs: a rich bar with rate and ETA, or JSON lines (``--quiet``).

Quiet mode prints one JSON object per event to stdout (``{"event": "frame", ...}``) so logs of
cluster jobs stay machine-readable; the rich bar goes to stderr so stdout stays clean.
"""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RateColumn(TextColumn):
    """Items per second (or seconds per item when slower than 1/s)."""

    def __init__(self, unit: str = "frame") -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task: Any):
        from rich.text import Text

        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-", style="progress.data.speed")
        if speed >= 1:
            return Text(f"{speed:.2f} {self.unit}/s", style="progress.data.speed")
        return Text(f"{1 / speed:.1f} s/{self.unit}", style="progress.data.speed")


class JobProgress:
    """Context manager: ``with JobProgress(total, "render", quiet=q) as p: p.advance(frame=3)``."""

    def __init__(
        self, total: int, description: str, *, quiet: bool = False, unit: str = "frame", completed: int = 0
    ) -> None:
        self.total = total
        self.description = description
        self.quiet = quiet
        self.unit = unit
        self.completed = completed
        self._start = time.monotonic()
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        if self.quiet:
            self.log("start", total=self.total, completed=self.completed)
        else:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                RateColumn(self.unit),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.description, total=self.total, completed=self.completed, status=""
            )
        return self

    def log(self, event: str, **fields: Any) -> None:
        """Print a JSON line in quiet mode; a dim line above the bar otherwise."""
        if self.quiet:
            rec = {
                "event": event,
                "job": self.description,
                "t": round(time.monotonic() - self._start, 3),
                **fields,
            }
            sys.stdout.write(json.dumps(rec, default=str) + "\n")
            sys.stdout.flush()
        elif self._progress is not None and event not in ("frame", "start"):
            self._progress.console.print(
                f"[dim]{event}[/dim] " + " ".join(f"{k}={v}" for k, v in fields.items())
            )

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.completed += n
        if self.quiet:
            elapsed = time.monotonic() - self._start
            self.log(
                self.unit, completed=self.completed, total=self.total, elapsed_s=round(elapsed, 3), **fields
            )
        elif self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, completed: int, status: str | None = None) -> None:
        """Set the count to ``completed`` (an absolute position, e.g. a training step) and, when
        given, the ``status`` text shown after the bar (kept until the next one); quiet: a JSON line
        as :meth:`advance` writes, with ``status`` when given."""
        self.completed = completed
        if self.quiet:
            elapsed = time.monotonic() - self._start
            extra = {} if status is None else {"status": status}
            self.log(self.unit, completed=completed, total=self.total, elapsed_s=round(elapsed, 3), **extra)
        elif self._progress is not None:
            if status is None:
                self._progress.update(self._task, completed=completed)
            else:
                self._progress.update(self._task, completed=completed, status=status)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
        if self.quiet:
            self.log("end", completed=self.completed, total=self.total, ok=exc_type is None)
