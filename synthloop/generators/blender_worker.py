"""Long-lived Blender worker: ``python -m synthloop.generators.blender_worker``.

``bpy`` is imported once; frames arrive one at a time over the process's stdin and replies go
back over its original stdout, as length-prefixed JSON messages (4-byte big-endian length, then
that many bytes of UTF-8 JSON). Blender prints freely to file descriptor 1, so at start-up the
worker keeps a private duplicate of the original stdout for the protocol and points fd 1 at
stderr: Blender's chatter can never corrupt a message.

At start-up (bpy imported) the worker sends ``{"ok": true, "ready": true, "pid": int,
"blender_version": str}``. Request: ``{"spec": SceneSpec JSON, "workdir": str, "threads": int,
"device": str, "meshes": {object index: .npz path}}`` (``meshes``, optional: meshes the parent
built, see :mod:`synthloop.generators.blender_renderer`; other objects' meshes are built here).
Reply: ``{"ok": true, "rgb": path, "exr": path, "render_seconds": float, "build_seconds": float,
"mesh_seconds": float, "rss_bytes": int, "blender_version": str, "device": str,
"device_warning": str | null}`` or
``{"ok": false, "error": str, "traceback": str, "user_error": bool}`` (``user_error``: the request
cannot work, e.g. an unavailable ``device``; retrying is pointless).

The worker exits 0 on EOF of stdin (the parent closed the pipe or died) and on a broken reply pipe.
The framing helpers below import no ``bpy`` (the parent uses them too).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

import numpy as np

from synthloop.generators.devices import DeviceError
from synthloop.geometry.meshes import Mesh, build_mesh
from synthloop.scenes.spec import SceneSpec, ShapeSpec

_HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ProtocolEOF(EOFError):
    """The other side closed the pipe (cleanly, between messages, or mid-message)."""


def encode_message(obj: Any) -> bytes:
    """Length-prefixed UTF-8 JSON bytes for ``obj``."""
    payload = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _HEADER.pack(len(payload)) + payload


class ByteReader(Protocol):
    """What the protocol reads from: a pipe, or a reader with a deadline."""

    def read(self, n: int, /) -> bytes: ...


def send_message(stream: BinaryIO, obj: Any) -> None:
    stream.write(encode_message(obj))
    stream.flush()


def _read_exact(stream: ByteReader, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            raise ProtocolEOF("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(stream: ByteReader) -> Any:
    """Read one message; raises :class:`ProtocolEOF` when the stream ends."""
    (n,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    if n > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {n} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
    return json.loads(_read_exact(stream, n).decode("utf-8"))


def _take_protocol_stdout() -> BinaryIO:
    """Duplicate fd 1 for the protocol, then send fd 1 (Blender's prints) to stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "wb", buffering=0)


def given_meshes_builder(spec: SceneSpec, meshes: dict[str, str]) -> Callable[[ShapeSpec], Mesh]:
    """A ``mesh_builder(shape)`` for :func:`~synthloop.generators.blender_scene.render_frame` that
    returns the parent's mesh of ``spec.objects[int(k)]`` for each ``k -> .npz path`` of
    ``meshes`` and builds any other shape with :func:`synthloop.geometry.meshes.build_mesh`."""
    given: dict[ShapeSpec, Mesh] = {}
    for k, path in meshes.items():
        with np.load(path, allow_pickle=False) as z:
            groups = z["face_groups"] if "face_groups" in z.files else None
            given[spec.objects[int(k)].shape] = Mesh(z["vertices"], z["faces"], bool(z["closed"]), groups)

    def build(shape: ShapeSpec) -> Mesh:
        mesh = given.get(shape)
        return mesh if mesh is not None else build_mesh(shape)

    return build


def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    """Render one request; every failure becomes an ``{"ok": false}`` reply."""
    try:
        from pathlib import Path

        from synthloop.generators import blender_scene

        spec = SceneSpec.from_json_dict(request["spec"])
        result = blender_scene.render_frame(
            spec,
            Path(request["workdir"]),
            threads=int(request.get("threads", 0)),
            device=str(request.get("device", "cpu")),
            mesh_builder=given_meshes_builder(spec, request.get("meshes") or {}),
        )
        return {"ok": True, **result}
    except DeviceError as e:
        return {"ok": False, "error": str(e), "traceback": "", "user_error": True}
    except Exception as e:  # noqa: BLE001 - the worker must survive any frame's failure
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def main() -> int:
    proto_out = _take_protocol_stdout()
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    import bpy  # import once, after fd 1 is safe

    from synthloop.generators import blender_scene

    blender_scene.init_session()  # factory reset + scaffolding before "ready": frame timings stay clean
    send_message(
        proto_out, {"ok": True, "ready": True, "pid": os.getpid(), "blender_version": bpy.app.version_string}
    )

    while True:
        try:
            request = read_message(proto_in)
        except ProtocolEOF:
            return 0
        reply = handle_request(request)
        try:
            send_message(proto_out, reply)
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main())
