"""DetectNet_v2 in TAO's output layout, for DeepStream's stock ``nvinfer`` DetectNet_v2 parser.

TAO layout (what ``export-model --layout tao`` writes):

* input ``input_1`` (N, 3, H, W) float32 RGB in [0, 1] (``nvinfer``: ``net-scale-factor`` 1/255,
  offsets 0, ``model-color-format=0``); the network normalizes internally. H and W are multiples of
  16; N is a dynamic batch axis.
* ``output_cov/Sigmoid`` (N, C, H/16, W/16): coverage *probabilities* (sigmoid applied in-graph);
* ``output_bbox/BiasAdd`` (N, 4C, H/16, W/16): for class c the planes ``4c .. 4c+3`` hold
  ``o = (cx - x1, cy - y1, x2 - cx, y2 - cy) / 35`` in pixels, with DeepStream's grid centre of
  column j ``cx = j * 16 + 0.5`` (likewise ``cy`` for rows) and its hard-coded ``bboxNorm`` 35.

synthloop's own encoding (:mod:`synthloop.training.rasterizer`) is ``s = (x1 - cx', ...) / bbox_norm``
with ``cx' = (j + 0.5) * 16``; the two are related per channel by the affine map
``o = sign * (s * bbox_norm + 0.5 * 16 - 0.5) / 35`` (sign -1 for x1, y1 and +1 for x2, y2), which
:class:`TaoDetectNet` applies in the graph and :func:`tao_to_raw` inverts.

:func:`write_nvinfer_config` writes ``config_infer_primary_detectnet_v2.txt`` and ``labels.txt``:
``cluster-mode=1`` (DBSCAN) with per-class ``pre-cluster-threshold`` (synthloop's
``coverage_threshold``), ``eps``, ``minBoxes`` (``min_samples``) and the score filter.
DeepStream's DBSCAN always reports a cluster's *max* coverage and uses the distance 1 - IoU; a class
clustered by synthloop with ``confidence: sum`` or ``distance: l2`` is flagged in the config.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthloop.atomic import atomic_write_bytes
from synthloop.deploy.errors import DeployError
from synthloop.training.checkpoints import ModelDesc
from synthloop.training.postprocess import ClusterParams

STRIDE = 16
DS_BBOX_NORM = 35.0  # DeepStream's stock DetectNet_v2 parser hard-codes bboxNormX/Y = 35
INPUT_NAME = "input_1"
COV_NAME = "output_cov/Sigmoid"
BBOX_NAME = "output_bbox/BiasAdd"
CONFIG_NAME = "config_infer_primary_detectnet_v2.txt"
LABELS_NAME = "labels.txt"
_SIGN = np.array([-1.0, -1.0, 1.0, 1.0])


def bbox_affine(bbox_norm: float, stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (x1, y1, x2, y2) scale ``a`` and offset ``b`` with ``o = a * s + b`` (see module doc)."""
    return _SIGN * bbox_norm / DS_BBOX_NORM, _SIGN * (0.5 * stride - 0.5) / DS_BBOX_NORM


def check_tao_input(desc: ModelDesc) -> None:
    """TAO/DeepStream need a DetectNet_v2 whose input sides are multiples of 16."""
    if desc.family != "detectnet_v2":
        raise DeployError(
            "--layout tao is implemented for DetectNet_v2 only (TAO's Mask R-CNN layout needs "
            "fixed-size 'generate_detections' rows and per-class 28x28 mask logits before pasting)",
            where="layout",
        )
    if desc.input_width % STRIDE or desc.input_height % STRIDE:
        raise DeployError(
            f"--layout tao needs input sides that are multiples of {STRIDE}, "
            f"got {desc.input_width}x{desc.input_height}",
            where="input size",
        )


class TaoDetectNet(nn.Module):
    """``DetectNetRaw``-like module (x (N, 3, H, W) in [0, 1]) -> (``output_cov/Sigmoid``,
    ``output_bbox/BiasAdd``) in TAO's layout (module docstring)."""

    def __init__(self, raw: nn.Module, num_classes: int, bbox_norm: float):
        super().__init__()
        self.raw = raw
        a, b = (torch.tensor(np.tile(v, num_classes), dtype=torch.float32) for v in bbox_affine(bbox_norm))
        self.register_buffer("scale", a.view(1, -1, 1, 1))
        self.register_buffer("offset", b.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cov, bbox = self.raw(x)
        n, c, gh, gw = cov.shape
        bbox = bbox.reshape(n, 4 * c, gh, gw)
        return torch.sigmoid(cov), bbox * self.scale + self.offset


def tao_to_raw(cov: np.ndarray, bbox: np.ndarray, bbox_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """TAO outputs (N, C, Gh, Gw) probabilities and (N, 4C, Gh, Gw) -> synthloop's raw outputs:
    coverage *logits* (N, C, Gh, Gw) and encoded boxes (N, C, 4, Gh, Gw) (float64)."""
    p = np.clip(np.asarray(cov, np.float64), 1e-12, 1 - 1e-12)
    n, c, gh, gw = p.shape
    a, b = bbox_affine(bbox_norm)
    o = np.asarray(bbox, np.float64).reshape(n, c, 4, gh, gw)
    s = (o - b[None, None, :, None, None]) / a[None, None, :, None, None]
    return np.log(p / (1 - p)), s


def _fmt(v: float) -> str:
    return f"{float(v):.6g}"


def nvinfer_config(desc: ModelDesc, onnx_name: str, precision: str = "fp32") -> str:
    """The text of ``config_infer_primary_detectnet_v2.txt`` for a TAO-layout ONNX ``onnx_name``."""
    mode = {"fp32": 0, "int8": 1, "fp16": 2}[precision]
    params = desc.cluster or [ClusterParams()] * desc.num_classes
    lines = [
        "# DeepStream nvinfer config for a synthloop DetectNet_v2 exported with --layout tao",
        "[property]",
        "gpu-id=0",
        f"net-scale-factor={_fmt(1 / 255)}",
        "offsets=0;0;0",
        "model-color-format=0",
        f"onnx-file={onnx_name}",
        f"model-engine-file={onnx_name}_b1_gpu0_{precision}.engine",
        f"labelfile-path={LABELS_NAME}",
        f"infer-dims=3;{desc.input_height};{desc.input_width}",
        "batch-size=1",
        f"network-mode={mode}",
        f"num-detected-classes={desc.num_classes}",
        "network-type=0",
        "interval=0",
        "gie-unique-id=1",
        f"output-blob-names={COV_NAME};{BBOX_NAME}",
        "maintain-aspect-ratio=0",
        "cluster-mode=1",
        "",
    ]
    for i, (name, p) in enumerate(zip(desc.class_names, params, strict=True)):
        lines.append(f"# class {i}: {name}")
        if p.distance != "iou":
            lines.append("# note: synthloop clusters this class by l2 distance; DeepStream by 1 - IoU")
        lines += [f"[class-attrs-{i}]", f"pre-cluster-threshold={_fmt(p.coverage_threshold)}"]
        lines += [f"eps={_fmt(p.eps)}", f"minBoxes={p.min_samples}"]
        if p.confidence == "sum":
            lines.append("# note: synthloop scores this class by coverage sum; DeepStream by the max")
            lines.append(f"dbscan-min-score={_fmt(p.min_confidence)}")
        else:
            lines.append("dbscan-min-score=0")
            lines.append(f"post-cluster-threshold={_fmt(p.min_confidence)}")
        lines.append("")
    return "\n".join(lines)


def write_nvinfer_config(
    onnx_path: str | os.PathLike, desc: ModelDesc, precision: str = "fp32"
) -> tuple[Path, Path]:
    """Write the nvinfer config and ``labels.txt`` (one class name a line, output order) beside
    ``onnx_path``; returns both paths."""
    onnx_path = Path(onnx_path)
    for name in desc.class_names:
        if "\n" in name or "\r" in name:
            raise DeployError(f"class name {name!r} contains a line break", where="class_names")
    cfg = onnx_path.parent / CONFIG_NAME
    labels = onnx_path.parent / LABELS_NAME
    atomic_write_bytes(labels, ("\n".join(desc.class_names) + "\n").encode())
    atomic_write_bytes(cfg, nvinfer_config(desc, onnx_path.name, precision).encode())
    return cfg, labels
