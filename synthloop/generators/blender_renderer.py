"""``BlenderRenderer``: the parent-side client of the Blender worker (implements ``Renderer``).

The worker (:mod:`synthloop.generators.blender_worker`) is started lazily and kept for many
frames; each frame's ``rgb.png`` and ``ids_depth.exr`` go to a private temporary folder and are
read back here (PIL and :mod:`synthloop.generators.exr`). The worker is replaced

* every ``restart_every`` frames (``None``: never),
* when its RSS after a frame exceeds its RSS after its first frame by more than
  ``max_rss_growth`` (a fraction: 0.25 = 25 %),
* after it died or reported an error (the failing call raises :class:`RenderError` with the
  error text, or the tail of the worker's log if it died; the next call starts a fresh worker).

Body meshes (``kind: body``, posed and skinned by the body model) are built here, through
:func:`synthloop.geometry.meshes.mesh_cache` (annotation reuses them), and handed to the worker as
``.npz`` files in the private folder: the worker then never poses a body (nor loads the body
model), and its meshes are exactly the ones the annotations are computed from. Other shapes are
cheap and built in the worker.

Blender's console output goes to a log file in the private folder, truncated before every frame
(so it never grows without bound) and quoted in errors. If the parent dies, the worker sees EOF
on its stdin and exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np
from PIL import Image

from synthloop.errors import RenderError, SynthloopError
from synthloop.generators.blender_worker import ProtocolEOF, encode_message, read_message
from synthloop.generators.devices import DeviceError, check_device
from synthloop.generators.exr import read_id_depth_exr
from synthloop.generators.renderer import RenderedFrame
from synthloop.generators.worker_process import die_with_parent, make_workdir, remove_orphan_workdirs
from synthloop.geometry.meshes import mesh_cache
from synthloop.scenes.spec import SceneSpec

# shapes whose mesh the parent builds and sends (costly to build, e.g. posing a body model)
PARENT_MESH_KINDS = frozenset({"body"})

LOG_TAIL_CHARS = 4000


class _TimeoutReader:
    """Blocking reads from a pipe fd that give up after ``deadline`` (``time.monotonic()``)."""

    def __init__(self, fd: int, deadline: float | None):
        self.fd = fd
        self.deadline = deadline

    def read(self, n: int) -> bytes:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(remaining, 0.0))
            if not ready:
                raise TimeoutError("worker did not answer in time")
        return os.read(self.fd, n)


BLENDER_PYTHON_ENV = "SYNTHLOOP_BLENDER_PYTHON"


def worker_python(environ: dict[str, str] | None = None) -> str:
    """The interpreter that runs Blender workers: ``$SYNTHLOOP_BLENDER_PYTHON`` if set, else ours.

    A render node whose own Python has no ``bpy`` wheel (``bpy`` 4.2 ships for CPython 3.11 only)
    points this variable at a 3.11 interpreter, or a launcher script, that can ``import bpy`` and
    ``synthloop``. Raises :class:`SynthloopError` (one line, with the path) if it is not an
    executable file.
    """
    value = (os.environ if environ is None else environ).get(BLENDER_PYTHON_ENV, "").strip()
    if not value:
        return sys.executable
    if not (os.path.isfile(value) and os.access(value, os.X_OK)):
        raise SynthloopError(f"{BLENDER_PYTHON_ENV}={value}: not an executable file")
    return value


class BlenderRenderer:
    """Render SceneSpecs in a long-lived Blender worker process.

    ``threads``: Cycles threads (0 = Blender's automatic choice). ``device``: ``cpu``, ``cuda``,
    ``optix`` or ``auto`` (see :mod:`synthloop.generators.devices`; an unavailable explicit GPU
    raises :class:`~synthloop.generators.devices.DeviceError`, ``auto`` without a GPU prints one
    warning line to stderr and renders on the CPU; ``device_label`` says what rendered the last
    frame). ``python``: the interpreter that runs the worker (must have ``bpy``; default:
    :func:`worker_python`). ``env``: the worker's environment (default: ours).
    ``frame_timeout_s``: kill the worker and raise :class:`RenderError` if one frame takes longer
    (``None``: wait forever); ``startup_timeout_s`` likewise for starting Blender.
    ``rss_bytes``: the worker's RSS after the last frame; ``worker_starts``: workers started so far.
    Timings per frame: ``render`` (inside ``bpy.ops.render.render``, both passes), ``render_rgb``
    (the image render alone, what a plain Blender render would cost), ``render_ids_depth`` (the
    1-sample id/depth pass), ``build`` (the worker's scene build) and ``build_meshes`` (its part
    spent building object meshes), ``build_and_io``, ``total`` and, on a worker's first frame,
    ``startup``.
    """

    def __init__(
        self,
        threads: int = 0,
        restart_every: int | None = 200,
        max_rss_growth: float = 0.25,
        python: str | None = None,
        env: dict[str, str] | None = None,
        frame_timeout_s: float | None = None,
        startup_timeout_s: float | None = 300.0,
        device: str = "cpu",
    ):
        check_device(device)
        if restart_every is not None and restart_every < 1:
            raise ValueError(f"restart_every must be >= 1 or None, got {restart_every}")
        self.threads = int(threads)
        self.device = device
        self.device_label = ""
        self._warned: set[str] = set()
        self.restart_every = restart_every
        self.max_rss_growth = float(max_rss_growth)
        self.python = worker_python() if python is None else python
        self.env = env
        self.frame_timeout_s = frame_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.rss_bytes: int = 0
        self.blender_version: str = ""
        self.worker_starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._frames_on_worker = 0
        self._rss_first: int | None = None
        remove_orphan_workdirs()
        self._tmp = make_workdir()
        self._workdir = self._tmp / "frame"
        self._log_path = self._tmp / "worker.log"

    # ------------------------------------------------------------------ process management

    @property
    def worker_pid(self) -> int | None:
        """Process id of the running worker (None before the first frame / after close)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        """Start a worker and wait for its ready message (bpy imported)."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._log = open(self._log_path, "ab")  # noqa: SIM115 (lives as long as the worker)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            [self.python, "-m", "synthloop.generators.blender_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            close_fds=True,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        self._frames_on_worker = 0
        self._rss_first = None
        self.worker_starts += 1
        hello = self._read_reply("starting the Blender worker", self.startup_timeout_s)
        if not hello.get("ready"):
            self._stop(kill=True)
            raise RenderError(f"Blender worker sent {hello!r} instead of its ready message")
        self.blender_version = str(hello.get("blender_version", ""))

    def _stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if not kill and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # EOF: the worker exits on its own
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    kill = True
            if kill or proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self) -> str:
        try:
            data = self._log_path.read_bytes()[-LOG_TAIL_CHARS:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def _should_restart(self) -> bool:
        if self._proc is None:
            return False
        if self.restart_every is not None and self._frames_on_worker >= self.restart_every:
            return True
        return self._rss_first is not None and self.rss_bytes > self._rss_first * (1.0 + self.max_rss_growth)

    # ------------------------------------------------------------------ rendering

    def _read_reply(self, what: str, timeout_s: float | None) -> dict[str, Any]:
        """One message from the worker; on death/timeout stop it and raise RenderError."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            return read_message(_TimeoutReader(self._proc.stdout.fileno(), deadline))
        except TimeoutError as e:
            self._stop(kill=True)
            raise RenderError(
                f"Blender worker timed out after {timeout_s} s {what}; log tail:\n{self._log_tail()}"
            ) from e
        except (ProtocolEOF, OSError, ValueError) as e:
            code = self._proc.poll() if self._proc is not None else None
            self._stop(kill=True)
            raise RenderError(
                f"Blender worker died (exit code {code}) {what}: {e}; log tail:\n{self._log_tail()}"
            ) from e

    def _write_meshes(self, spec: SceneSpec) -> dict[str, str]:
        """Object index -> ``.npz`` (``vertices`` (N, 3) float64 metres, ``faces`` (M, 3) int64,
        ``closed`` (bool), ``face_groups`` (M,) int64 when the mesh has them) of each
        :data:`PARENT_MESH_KINDS` object of ``spec``, written to the private folder (previous
        frame's files replaced)."""
        folder = self._tmp / "meshes"
        shutil.rmtree(folder, ignore_errors=True)
        out: dict[str, str] = {}
        for k, obj in enumerate(spec.objects):
            if obj.shape.kind not in PARENT_MESH_KINDS:
                continue
            mesh = mesh_cache(obj.shape)
            arrays: dict[str, Any] = {
                "vertices": mesh.vertices,
                "faces": mesh.faces,
                "closed": np.array(mesh.closed),
            }
            if mesh.face_groups is not None:
                arrays["face_groups"] = mesh.face_groups
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{k}.npz"
            np.savez(path, **arrays)
            out[str(k)] = str(path)
        return out

    def _request(self, spec: SceneSpec) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(OSError):
            os.truncate(self._log_path, 0)  # the worker appends (O_APPEND): safe to truncate
        request = {
            "spec": spec.to_json_dict(),
            "workdir": str(self._workdir),
            "threads": self.threads,
            "device": self.device,
            "meshes": self._write_meshes(spec),
        }
        what = f"on frame {spec.frame_index}"
        try:
            self._proc.stdin.write(encode_message(request))
            self._proc.stdin.flush()
        except OSError as e:
            code = self._proc.poll()
            self._stop(kill=True)
            raise RenderError(
                f"Blender worker died (exit code {code}) {what}: {e}; log tail:\n{self._log_tail()}"
            ) from e
        return self._read_reply(what, self.frame_timeout_s)

    def render(self, spec: SceneSpec) -> RenderedFrame:
        """Render ``spec``; raises :class:`RenderError` if Blender fails (next call restarts cleanly)."""
        t0 = time.perf_counter()
        if self._should_restart():
            self._stop()
        startup = 0.0
        if self._proc is None:
            self._start()
            startup = time.perf_counter() - t0
        reply = self._request(spec)
        if reply.get("user_error"):
            self._stop()
            raise DeviceError(str(reply.get("error")))
        if not reply.get("ok") or reply.get("ready"):
            self._stop()
            raise RenderError(
                f"Blender failed on frame {spec.frame_index} (scene {spec.content_hash()[:12]}): "
                f"{reply.get('error')}\n{reply.get('traceback', '')}".rstrip()
            )
        self._frames_on_worker += 1
        self.rss_bytes = int(reply["rss_bytes"])
        if self._rss_first is None:
            self._rss_first = self.rss_bytes
        self.blender_version = str(reply.get("blender_version", ""))
        self.device_label = str(reply.get("device", ""))
        warning = reply.get("device_warning")
        if warning and warning not in self._warned:
            self._warned.add(warning)
            sys.stderr.write(f"warning: {warning}\n")
        try:
            with Image.open(reply["rgb"]) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
            instance_ids, depth = read_id_depth_exr(reply["exr"])
        except (OSError, ValueError) as e:
            raise RenderError(f"cannot read Blender outputs of frame {spec.frame_index}: {e}") from e
        h, w = spec.render.height, spec.render.width
        for name, arr in (("rgb", rgb), ("instance_ids", instance_ids), ("depth", depth)):
            if arr.shape[:2] != (h, w):
                raise RenderError(f"Blender output {name} has shape {arr.shape}, expected ({h}, {w})")
        total = time.perf_counter() - t0
        render_s = float(reply["render_seconds"])
        timings = {
            "render": render_s,
            "render_rgb": float(reply.get("rgb_pass_seconds", 0.0)),
            "render_ids_depth": float(reply.get("data_pass_seconds", 0.0)),
            "build": float(reply.get("build_seconds", 0.0)),
            "build_meshes": float(reply.get("mesh_seconds", 0.0)),
            "build_and_io": max(total - render_s - startup, 0.0),
            "total": total,
        }
        if startup:
            timings["startup"] = startup
        return RenderedFrame(
            rgb=rgb,
            instance_ids=instance_ids,
            depth=depth,
            timings=timings,
            blender_version=self.blender_version,
        )

    def close(self) -> None:
        """Stop the worker and remove the private temp folder (idempotent)."""
        self._stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> BlenderRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
