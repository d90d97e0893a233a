"""``torch.load(..., weights_only=True)`` with one safe, one-line reason for any bad file.

The one place a checkpoint or weights file is unpickled. A file holding Python objects beyond
tensors and plain containers is refused as "not a safe checkpoint"; the message never points to
an option that would run the code inside it.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch


class UnreadableWeights(ValueError):
    """A weights/checkpoint file that cannot be loaded safely; ``str()`` is one line for users."""


def load_weights_only(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; any failure raises
    :class:`UnreadableWeights` (empty, truncated, corrupt, or holding arbitrary Python objects)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UnreadableWeights(describe_failure(e)) from None


def describe_failure(e: BaseException) -> str:
    """A one-line reason for a failed ``torch.load`` that names no unsafe way around it."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        found = re.search(r"(?:unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text, re.IGNORECASE)
        if found:
            return (
                f"not a safe checkpoint: it calls Python code ({found.group(1)}), which synthloop "
                "never runs; only tensors and plain data are loaded"
            )
        detail = re.search(r"WeightsUnpickler error: *\n*\s*([^\n]+)", text)
        reason = detail.group(1).strip()[:120] if detail else "unsupported pickle content"
        return f"corrupt or truncated file, or not a safe checkpoint ({reason})"
    if isinstance(e, EOFError) or not text.strip():
        return f"empty or truncated file ({type(e).__name__})"
    first = next((ln for ln in text.splitlines() if ln.strip()), "")[:160]
    return f"corrupt or truncated file ({type(e).__name__}: {first})"
