"""onnxruntime backend: an exported ONNX + its sidecar JSON -> raw outputs for :mod:`decode`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.deploy.errors import DeployError
from synthloop.deploy.export_onnx import META_SCHEMA, sidecar_path
from synthloop.training.checkpoints import ModelDesc


def read_sidecar(model_path: str | os.PathLike) -> dict[str, Any]:
    """The metadata JSON next to an exported model (``model.onnx`` / ``model.engine`` -> ``model.json``),
    with ``desc`` parsed into a :class:`ModelDesc`."""
    meta_path = sidecar_path(model_path)
    if not meta_path.is_file():
        raise DeployError(
            f"metadata sidecar {meta_path.name} not found (written by export-model)",
            path=str(model_path),
            where="sidecar",
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DeployError(f"cannot read metadata ({e})", path=str(meta_path)) from None
    if not isinstance(meta, dict) or meta.get("schema") != META_SCHEMA:
        raise DeployError(
            f"not a model metadata file (schema must be {META_SCHEMA!r})", path=str(meta_path), where="schema"
        )
    try:
        meta["desc"] = ModelDesc.model_validate(meta["desc"])
    except Exception as e:  # noqa: BLE001 - pydantic ValidationError or KeyError
        raise DeployError(
            f"invalid model description ({str(e).splitlines()[0]})", path=str(meta_path), where="desc"
        ) from None
    return meta


class OrtBackend:
    """onnxruntime session of an exported model.

    ``run(x)``: x (3, H, W) float32 in [0, 1] at the model's input size -> dict of raw outputs
    (names from the sidecar; DetectNet gets a batch axis added). ``threads``: intra-op threads
    (None: onnxruntime's default).
    """

    name = "onnxruntime"

    def __init__(
        self, onnx_path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None
    ):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise DeployError("ONNX model not found", path=str(self.path), where="model")
        meta = read_sidecar(self.path)
        self.desc: ModelDesc = meta["desc"]
        self.precision: str = meta.get("precision", "fp32")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DeployError(
                f"onnxruntime cannot load the model ({str(e).splitlines()[0][:200]})", path=str(self.path)
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, np.float32)
        if self.desc.family == "detectnet_v2":
            x = x[None]
        outs = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))
