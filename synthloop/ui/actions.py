"""Actions: ``generate``, ``farm run``, ``train`` and ``evaluate`` started from the UI as subprocesses.

Every path argument must exist under ROOT (outputs: a new or existing folder under ROOT), checked
with :func:`synthloop.ui.security.safe_path` before anything starts; the child runs
``python -m synthloop.cli ...`` in ROOT, in its own process group, with its output in
``ROOT/.synthloop-ui-cache/actions/<id>/log.txt`` and its state in ``action.json`` (written
atomically: command, pid, started, finished, returncode, cancelled). Outputs land under ROOT, so
the runs, datasets and jobs they make appear in the lists.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from synthloop.atomic import atomic_write_json
from synthloop.scenes.registry import list_bundled
from synthloop.ui.inputs import parse_int
from synthloop.ui.security import safe_path
from synthloop.ui.workspace import cache_root

KINDS = ("generate", "farm-run", "train", "evaluate")
MAX_FRAMES = 100000


@dataclass
class Action:
    id: str
    kind: str
    argv: list[str]
    started: float
    pid: int | None = None
    finished: float | None = None
    returncode: int | None = None
    cancelled: bool = False
    outputs: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.finished is None:
            return "running"
        if self.returncode is None and not self.cancelled:
            return "lost"  # its server stopped before it ended
        if self.cancelled:
            return "cancelled"
        return "done" if self.returncode == 0 else "failed"


def _out_path(root: Path, rel: str) -> Path:
    """An output folder under ROOT (may not exist yet; its nearest existing parent must be inside)."""
    rel = (rel or "").strip()
    if not rel or Path(rel).is_absolute() or "\x00" in rel:
        raise HTTPException(403, f"output {rel!r} must be a path relative to the workspace")
    p = (root / rel).resolve()
    if not p.is_relative_to(root) or p == root:
        raise HTTPException(403, f"output {rel!r} leaves the workspace")
    parent = p
    while not parent.exists():
        parent = parent.parent
    safe_path(root, parent.relative_to(root).as_posix())
    return p


def _int(form: Mapping[str, str], name: str, lo: int, hi: int, default: int) -> int:
    return parse_int(name, form.get(name), default, lo, hi)


def build_argv(root: Path, kind: str, form: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The synthloop CLI arguments of an action and its outputs (relative to ROOT).

    ``generate``: ``recipe`` (a YAML under ROOT or a bundled name), ``frames``, ``seed``, ``out``;
    ``farm-run``: ``job`` (a folder with job.yaml), ``workers``; ``train``: ``spec`` (a YAML under
    ROOT), ``out``; ``evaluate``: ``model`` (a run folder or checkpoint), ``data``, ``out``."""
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    if kind == "generate":
        recipe = (form.get("recipe") or "").strip()
        if recipe not in list_bundled():
            recipe = rel(safe_path(root, recipe))
        out = _out_path(root, form.get("out", ""))
        frames = _int(form, "frames", 1, MAX_FRAMES, 4)
        seed = _int(form, "seed", 0, 2**31 - 1, 0)
        argv = [
            "generate",
            "--recipe",
            recipe,
            "--frames",
            str(frames),
            "--seed",
            str(seed),
            "--out",
            rel(out),
        ]
        return [*argv, "--quiet"], [rel(out)]
    if kind == "farm-run":
        job = safe_path(root, form.get("job", ""))
        if not (job / "job.yaml").is_file():
            raise HTTPException(400, f"{rel(job)}: not a farm job folder (no job.yaml)")
        workers = _int(form, "workers", 1, os.cpu_count() or 1, 1)
        return ["farm", "run", rel(job), "--workers", str(workers), "--quiet"], [rel(job)]
    if kind == "train":
        spec = safe_path(root, form.get("spec", ""))
        if not spec.is_file() or spec.suffix.lower() not in (".yaml", ".yml"):
            raise HTTPException(400, f"{rel(spec)}: a training spec must be a .yaml file")
        out = _out_path(root, form.get("out", ""))
        return ["train", rel(spec), "--out", rel(out), "--quiet"], [rel(out)]
    if kind == "evaluate":
        model = safe_path(root, form.get("model", ""))
        data = safe_path(root, form.get("data", ""))
        out = _out_path(root, form.get("out", ""))
        return ["evaluate", rel(model), "--data", rel(data), "--out", rel(out)], [rel(out)]
    raise HTTPException(400, f"unknown action {kind!r} (one of {', '.join(KINDS)})")


class ActionRunner:
    """Starts, watches and cancels the workspace's action subprocesses."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = root
        self.python = python
        self.dir = cache_root(root) / "actions"
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def log_path(self, action_id: str) -> Path:
        if not action_id.isalnum():
            raise HTTPException(404, "no such action")
        return self.dir / action_id / "log.txt"

    def _save(self, a: Action) -> None:
        atomic_write_json(self.dir / a.id / "action.json", asdict(a))

    def start(self, kind: str, form: Mapping[str, str]) -> Action:
        argv, outputs = build_argv(self.root, kind, form)
        a = Action(uuid.uuid4().hex[:12], kind, argv, time.time(), outputs=outputs)
        log = self.log_path(a.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [self.python, "-m", "synthloop.cli", *argv],
                cwd=self.root,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        a.pid = proc.pid
        with self._lock:
            self._procs[a.id] = proc
        self._save(a)
        threading.Thread(target=self._wait, args=(a, proc), daemon=True).start()
        return a

    def _wait(self, a: Action, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        a = self.get(a.id) or a
        a.returncode, a.finished = rc, time.time()
        self._save(a)
        with self._lock:
            self._procs.pop(a.id, None)

    def cancel(self, action_id: str) -> Action:
        a = self.get(action_id)
        if a is None:
            raise HTTPException(404, "no such action")
        with self._lock:
            proc = self._procs.get(action_id)
        if proc is not None and proc.poll() is None:
            a.cancelled = True
            self._save(a)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        return a

    def get(self, action_id: str) -> Action | None:
        p = self.log_path(action_id).parent / "action.json"
        try:
            a = Action(**json.loads(p.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        with self._lock:
            ours = action_id in self._procs
        if a.finished is None and not ours:  # started by an earlier server, which no longer watches it
            a.finished = a.started
        return a

    def list(self) -> list[Action]:
        if not self.dir.is_dir():
            return []
        out = [a for d in self.dir.iterdir() if (a := self.get(d.name)) is not None]
        return sorted(out, key=lambda a: a.started, reverse=True)

    def shutdown(self) -> None:
        """Stop the children still running (server exit)."""
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)


def describe(a: Action) -> dict[str, Any]:
    return {**asdict(a), "state": a.state, "command": "synthloop " + " ".join(a.argv)}
