"""Reading and writing checkpoint files: the one ``torch.load`` of the package.

Every ``.pt`` the package reads (training checkpoints, pruned / QAT checkpoints, backbone weight
files) goes through :func:`read_checkpoint`, always with ``weights_only=True`` (plain tensors and
containers, never pickled code). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from synthloop.atomic import atomic_write_bytes
from synthloop.training.errors import CheckpointError


def read_checkpoint(
    path: str | os.PathLike, what: str = "checkpoint", where: str | None = None
) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` -> dict.

    A missing, unreadable, corrupt or truncated file, or one that holds no dict, raises
    :class:`CheckpointError` on one line naming the file, ``what`` it should be and ``where``
    (the spec field or checkpoint entry it came from)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} not found", path=str(p), where=where)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        first = (str(e).splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"cannot read {what}, corrupt or truncated ({type(e).__name__}: {first})",
            path=str(p),
            where=where,
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a {what} dict (got {type(obj).__name__})", path=str(p), where=where)
    return obj


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (the file appears complete or not at all)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())
