"""Reading and writing checkpoint files.

Every ``.pt`` the package reads (training checkpoints, pruned / QAT checkpoints, backbone weight
files) goes through :func:`read_checkpoint`, which unpickles through the package's one
``torch.load`` (:func:`synthloop.training.safe_load.load_weights_only`: ``weights_only=True``,
plain tensors and containers, never pickled code). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from synthloop.atomic import atomic_write_bytes
from synthloop.training.errors import CheckpointError
from synthloop.training.safe_load import UnreadableWeights, load_weights_only


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
        obj = load_weights_only(p)
    except UnreadableWeights as e:
        raise CheckpointError(f"cannot read {what}: {e}", path=str(p), where=where) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a {what} dict (got {type(obj).__name__})", path=str(p), where=where)
    return obj


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (the file appears complete or not at all)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def state_dict_mismatch(
    own: Mapping[str, Any], sd: Mapping[str, Any], check_unexpected: bool = True
) -> str | None:
    """What keeps state_dict ``sd`` from loading into a module whose state_dict is ``own``: counts
    and a first example of missing keys, unexpected keys (when ``check_unexpected``) and shape
    mismatches, on one line; None when it fits."""
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own] if check_unexpected else []
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        shapes = f"file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: {shapes})")
    return "; ".join(parts) or None
