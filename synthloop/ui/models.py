"""The model store: what each checkpoint / ONNX model is, and "try it" on an uploaded image.

Every import of the training and deploy packages the UI needs lives in this module (one place to
repoint when those packages move). Descriptions are cached in ``ROOT/.synthloop-ui-cache/models``
keyed by path, size and mtime, since reading a checkpoint costs a ``torch.load``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.atomic import atomic_write_json
from synthloop.deploy.infer import Backend, open_backend, predict_rgb
from synthloop.deploy.ort_runtime import read_sidecar
from synthloop.errors import SynthloopError
from synthloop.evaluation.detections import FrameDetections
from synthloop.training.checkpoint_io import read_checkpoint
from synthloop.training.checkpoints import PRUNED_FORMAT, family_of_state_dict
from synthloop.ui.workspace import cache_root

MAX_BACKENDS = 2


def _count_and_dtype(sd: dict[str, Any]) -> tuple[int, str | None]:
    import torch

    n, dtype = 0, None
    for v in sd.values():
        if isinstance(v, torch.Tensor):
            n += v.numel()
            if dtype is None and v.is_floating_point():
                dtype = str(v.dtype).replace("torch.", "")
    return n, dtype


def _describe_checkpoint(p: Path) -> dict[str, Any]:
    ck = read_checkpoint(p)
    model = ck.get("model")
    sd: dict[str, Any] = model if isinstance(model, dict) else {}
    n, dtype = _count_and_dtype(sd)
    if ck.get("format") == PRUNED_FORMAT:
        desc = ck.get("desc") or {}
        return {
            "family": desc.get("family"),
            "classes": desc.get("class_names", []),
            "params": n,
            "precision": dtype,
            "kind": "pruned checkpoint",
        }
    return {
        "family": ck.get("family") or family_of_state_dict(sd),
        "classes": list(ck.get("classes") or []),
        "params": n,
        "precision": dtype,
        "kind": "checkpoint",
        "step": ck.get("global_step"),
    }


def _describe_onnx(p: Path) -> dict[str, Any]:
    meta = read_sidecar(p)
    n = None
    try:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(p), load_external_data=False)
        n = int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))
    except Exception:  # noqa: BLE001 - the count is informative; a model onnx cannot parse still runs
        n = None
    desc = meta["desc"]
    return {
        "family": desc.family,
        "classes": list(desc.class_names),
        "params": n,
        "precision": meta.get("precision"),
        "kind": "onnx",
        "source": meta.get("checkpoint") or meta.get("source"),
    }


def describe_model(root: Path, p: Path) -> dict[str, Any]:
    """``{family, classes, params, precision, kind, bytes}`` of a model file (``error`` on failure)."""
    st = p.stat()
    key = hashlib.sha1(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_root(root) / "models" / f"{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    try:
        info = _describe_onnx(p) if p.suffix.lower() == ".onnx" else _describe_checkpoint(p)
    except SynthloopError as e:
        return {"bytes": st.st_size, "error": str(e)}
    info["bytes"] = st.st_size
    atomic_write_json(cached, info)
    return info


class Detectors:
    """Opened inference backends (torch checkpoints, onnxruntime), the last :data:`MAX_BACKENDS`."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple[str, int], Backend] = OrderedDict()
        self._lock = threading.Lock()

    def detect(self, p: Path, rgb: np.ndarray, score_thr: float) -> tuple[FrameDetections, dict[int, str]]:
        """Detections of model ``p`` on one (H, W, 3) uint8 image (pixel x1, y1, x2, y2 boxes) and
        the model's ``{category id: class name}``."""
        key = (str(p), p.stat().st_mtime_ns)
        with self._lock:
            be = self._open.get(key)
            if be is None:
                be = open_backend(p)
                self._open[key] = be
                while len(self._open) > MAX_BACKENDS:
                    self._open.popitem(last=False)
            dets = predict_rgb(be, rgb, "upload", score_thr)
        names = dict(zip(be.desc.category_ids, be.desc.class_names, strict=True))
        return dets, names
