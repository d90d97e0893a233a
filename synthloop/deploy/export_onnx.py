"""ONNX export: FP32, FP16 and INT8 (QDQ), with a sidecar metadata JSON.

* DetectNet_v2 (TLT style): input ``input`` (1, 3, H, W) float32 RGB in [0, 1]; outputs ``cov``
  (1, C, H/16, W/16) coverage logits and ``bbox`` (1, C, 4, H/16, W/16); sigmoid + clustering run
  outside (:mod:`synthloop.deploy.decode`). Batch norms are folded into the convs and TF-"SAME"
  padding is frozen for the fixed input size before export (no shape arithmetic in the graph).
  ``fp16``: the graph computes in half precision, input and outputs stay float32 (casts inside).
  ``layout="tao"``: TAO's names and activations instead (``input_1`` -> ``output_cov/Sigmoid``,
  ``output_bbox/BiasAdd``), a dynamic batch axis, and DeepStream's nvinfer config beside the model
  (:mod:`synthloop.deploy.deepstream`).
* Mask R-CNN: torchvision's ONNX path (TorchScript tracing, opset >= 11) at a fixed input size:
  input ``image`` (3, H, W) float32 in [0, 1]; outputs ``boxes`` (N, 4), ``labels`` (N,) int64,
  ``scores`` (N,), ``masks`` (N, 1, H, W) in input pixels. FP32.
* Keypoint R-CNN: the same path; outputs ``boxes``, ``labels``, ``scores``, ``keypoints``
  (N, K, 3) ``u, v, 1`` in input pixels and ``keypoints_scores`` (N, K) heatmap logits. FP32 and
  FP16: ``fp16`` runs the backbone + FPN, the RPN head, the box head and the keypoint head and
  predictor in half precision (casts at their boundaries, :class:`~synthloop.deploy.graph.HalfIO`);
  anchors, box decoding, NMS, RoIAlign and the heatmap-to-keypoint step stay float32, and so do
  the input and outputs.
* INT8 by post-training quantization (:func:`quantize_int8`): onnxruntime's ``quantize_static``
  in QDQ format, weights int8 symmetric per output channel, activations calibrated on real images.
  ``flavor="ort"``: uint8 asymmetric activations (fast x86 onnxruntime kernels);
  ``flavor="tensorrt"``: int8 symmetric activations, zero points 0 (what TensorRT's explicit
  quantization accepts). QAT models (:mod:`synthloop.deploy.qat`) export their own QDQ nodes with
  the learned scales (:func:`export_qat_onnx`).

The sidecar ``<model>.json`` (schema :data:`META_SCHEMA`) holds the :class:`ModelDesc` (family,
classes, input size, post-processing), precision, input/output names and the source checkpoint;
:mod:`synthloop.deploy.infer` needs it to decode outputs.

The TorchScript exporter (``dynamo=False``) is used: it handles torchvision detection models and
modelopt's quantizers, and exists in torch 2.11 .. 2.14.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.deploy import deepstream
from synthloop.deploy.errors import DeployError
from synthloop.deploy.graph import DetectNetRaw, HalfIO, fold_batchnorm, half_submodules, static_same_padding
from synthloop.training.checkpoints import ModelDesc

META_SCHEMA = "synthloop.deploy.onnx/1"
DEFAULT_OPSET = 17
Precision = Literal["fp32", "fp16", "int8"]
Layout = Literal["synthloop", "tao"]
IO_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "detectnet_v2": (["input"], ["cov", "bbox"]),
    "mask_rcnn": (["image"], ["boxes", "labels", "scores", "masks"]),
    "keypoint_rcnn": (["image"], ["boxes", "labels", "scores", "keypoints", "keypoints_scores"]),
}
# Keypoint R-CNN submodules computed in half precision by an fp16 export (the convolutions and MLPs)
KEYPOINT_RCNN_HALF = (
    "backbone",
    "rpn.head",
    "roi_heads.box_head",
    "roi_heads.keypoint_head",
    "roi_heads.keypoint_predictor",
)


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


def io_names(desc: ModelDesc, layout: Layout = "synthloop") -> tuple[list[str], list[str]]:
    """Input and output names of an export (``layout="tao"``: see :mod:`synthloop.deploy.deepstream`)."""
    if layout == "tao":
        return [deepstream.INPUT_NAME], [deepstream.COV_NAME, deepstream.BBOX_NAME]
    return IO_NAMES[desc.family]


def input_shape(desc: ModelDesc) -> tuple[int, ...]:
    """Shape of the network input: (1, 3, H, W) for DetectNet, (3, H, W) for the R-CNNs."""
    chw = (3, desc.input_height, desc.input_width)
    return (1, *chw) if desc.family == "detectnet_v2" else chw


def export_module(
    module: nn.Module,
    example: Any,
    path: str | os.PathLike,
    input_names: list[str],
    output_names: list[str],
    opset: int = DEFAULT_OPSET,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Path:
    """``torch.onnx.export`` (TorchScript exporter) to a temp file, clean-up, atomic move to ``path``.
    ``dynamic_axes``: e.g. ``{"input_1": {0: "N"}}`` for a dynamic batch axis."""
    import onnx

    if opset < 11:
        raise DeployError(f"opset must be >= 11, got {opset}", where="opset")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".tmp-onnx-", dir=path.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(tmp_path),
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                do_constant_folding=True,
                dynamic_axes=dynamic_axes,
            )
        model = materialize_shared_initializers(onnx.load(str(tmp_path)))
        atomic_write_bytes(path, model.SerializeToString())
    return path


def materialize_shared_initializers(model: Any) -> Any:
    """Replace ``Identity(initializer)`` nodes (the exporter's de-duplication of equal weights) by
    copies of the initializer, so every conv's weight and bias are initializers (which quantizers
    and TensorRT expect). Returns the same ``onnx.ModelProto``."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            model.graph.initializer.append(t)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def export_fp(
    model: nn.Module,
    desc: ModelDesc,
    path: str | os.PathLike,
    precision: Literal["fp32", "fp16"] = "fp32",
    opset: int = DEFAULT_OPSET,
    layout: Layout = "synthloop",
) -> Path:
    """FP32 / FP16 ONNX of ``model`` (a copy is exported). No sidecar (see :func:`export_model`).
    ``layout="tao"``: TAO's DetectNet_v2 outputs and a dynamic batch axis
    (:mod:`synthloop.deploy.deepstream`)."""
    inputs, outputs = io_names(desc, layout)
    example = torch.rand(*input_shape(desc), generator=torch.Generator().manual_seed(0))
    if desc.family == "detectnet_v2":
        raw = DetectNetRaw(copy.deepcopy(model)).eval()
        fold_batchnorm(raw, example)
        static_same_padding(raw, example)
        module: nn.Module = HalfIO(raw) if precision == "fp16" else raw
        dynamic = None
        if layout == "tao":
            deepstream.check_tao_input(desc)
            module = deepstream.TaoDetectNet(module, desc.num_classes, desc.bbox_norm).eval()
            dynamic = {name: {0: "N"} for name in inputs + outputs}
        export_module(module, (example,), path, inputs, outputs, opset, dynamic)
        return simplify_onnx(path) if precision == "fp32" else Path(path)
    if precision == "fp16" and desc.family != "keypoint_rcnn":
        raise DeployError(
            "Mask R-CNN exports as fp32 (its fp16 export is not implemented)", where="precision"
        )
    m = copy.deepcopy(model).eval()
    fold_batchnorm(m, example, call=lambda mod, x: mod([x]))
    static_same_padding(m, example, call=lambda mod, x: mod([x]))
    if precision == "fp16":
        half_submodules(m, KEYPOINT_RCNN_HALF)
    return export_module(m, ([example],), path, inputs, outputs, opset)


def simplify_onnx(path: str | os.PathLike) -> Path:
    """Rewrite ``path`` in place with onnxruntime's quantization pre-processing (shape inference +
    the *basic*, standard-ONNX graph optimizations: constant folding of the shape arithmetic, Pad
    fused into Conv, ...). The graph stays plain ONNX, computes the same function, and quantizes to
    a faster INT8 model. Left unchanged if the pre-processing fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".tmp-pre-", dir=path.parent) as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quant_pre_process(str(path), str(out))
        except Exception:  # noqa: BLE001 - keep the exporter's graph
            return path
        atomic_write_bytes(path, out.read_bytes())
    return path


class _Reader:
    """onnxruntime CalibrationDataReader over network inputs."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]):
        self.name = name
        self.items = iter([{name: np.asarray(b, np.float32)} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: Sequence[np.ndarray],
    flavor: Literal["ort", "tensorrt"] = "ort",
    method: Literal["minmax", "entropy", "percentile"] = "minmax",
    op_types: Sequence[str] | None = None,
) -> Path:
    """INT8 QDQ ONNX from an FP32 ONNX by static PTQ (see module docstring).

    ``calibration``: network inputs shaped like the model input (e.g. (1, 3, H, W) float32 in
    [0, 1]), typically 8-64 real images. ``op_types``: restrict quantization (default: all that
    onnxruntime supports; Mask R-CNN uses ``["Conv"]``).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise DeployError("INT8 needs calibration images", where="calibration")
    name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    cal = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if flavor == "tensorrt":
        extra["ActivationSymmetric"] = True
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix=".tmp-q-", dir=out_path.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(fp32_path),
                str(tmp_path),
                _Reader(name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QInt8 if flavor == "tensorrt" else QuantType.QUInt8,
                calibrate_method=cal,
                op_types_to_quantize=list(op_types) if op_types else None,
                extra_options=extra,
            )
        atomic_write_bytes(out_path, tmp_path.read_bytes())
    return out_path


def write_sidecar(
    onnx_path: str | os.PathLike,
    desc: ModelDesc,
    precision: str,
    source: str | None = None,
    layout: Layout = "synthloop",
    **extra: Any,
) -> Path:
    """Write ``<model>.json`` next to the ONNX (schema :data:`META_SCHEMA`)."""
    inputs, outputs = io_names(desc, layout)
    meta = {
        "layout": layout,
        "schema": META_SCHEMA,
        "desc": desc.model_dump(mode="json"),
        "precision": precision,
        "input_names": inputs,
        "output_names": outputs,
        "input_shape": list(input_shape(desc)),
        "source": source,
        **extra,
    }
    return atomic_write_json(sidecar_path(onnx_path), meta)


def export_model(
    model: nn.Module,
    desc: ModelDesc,
    path: str | os.PathLike,
    precision: Precision = "fp32",
    calibration: Sequence[np.ndarray] | None = None,
    flavor: Literal["ort", "tensorrt"] = "ort",
    method: Literal["minmax", "entropy", "percentile"] = "minmax",
    opset: int = DEFAULT_OPSET,
    source: str | None = None,
    layout: Layout = "synthloop",
) -> Path:
    """Export ``model`` at ``precision`` to ``path`` + sidecar; checked with ``onnx.checker``.

    ``calibration`` (INT8 only): network inputs, see :func:`quantize_int8`. ``layout="tao"``
    (DetectNet_v2): TAO's output names/activations, a dynamic batch, and DeepStream's
    ``config_infer_primary_detectnet_v2.txt`` + ``labels.txt`` beside the model.
    """
    if layout == "tao":
        deepstream.check_tao_input(desc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precision not in ("fp32", "fp16", "int8"):
        raise DeployError(f"unknown precision {precision!r} (fp32, fp16, int8)", where="precision")
    if precision == "int8":
        if desc.family != "detectnet_v2":
            raise DeployError(
                "INT8 export is implemented for DetectNet_v2 only: onnxruntime's quantizer breaks the "
                "Loop/If subgraphs of torchvision's R-CNN graphs (export fp32)",
                where="precision",
            )
        with tempfile.TemporaryDirectory(prefix=".tmp-fp32-", dir=path.parent) as tmp:
            fp32 = export_fp(model, desc, Path(tmp) / "fp32.onnx", "fp32", opset, layout)
            quantize_int8(fp32, path, list(calibration or []), flavor, method)
    else:
        export_fp(model, desc, path, precision, opset, layout)
    check_onnx(path)
    extra = {"int8_flavor": flavor, "calibration_method": method} if precision == "int8" else {}
    write_sidecar(path, desc, precision, source, layout, opset=opset, **extra)
    if layout == "tao":
        deepstream.write_nvinfer_config(path, desc, precision)
    return path


def export_qat_onnx(
    qat_raw: nn.Module,
    desc: ModelDesc,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    source: str | None = None,
) -> Path:
    """Export a fake-quantized (modelopt) DetectNet raw module: its quantizers become
    QuantizeLinear/DequantizeLinear pairs with the learned scales (int8 symmetric: TensorRT explicit
    quantization). Writes the sidecar with precision ``int8``."""
    if desc.family != "detectnet_v2":
        raise DeployError("QAT export is implemented for DetectNet_v2", where="family")
    inputs, outputs = IO_NAMES[desc.family]
    example = torch.rand(*input_shape(desc), generator=torch.Generator().manual_seed(0))
    export_module(qat_raw.eval(), (example,), path, inputs, outputs, opset)
    check_onnx(path)
    write_sidecar(path, desc, "int8", source, opset=opset, int8_flavor="tensorrt", calibration_method="qat")
    return Path(path)


def check_onnx(path: str | os.PathLike) -> None:
    """``onnx.checker.check_model`` (full check, with shape inference); failures raise DeployError."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - checker raises several types
        raise DeployError(f"ONNX check failed: {str(e).splitlines()[0][:200]}", path=str(path)) from None


def op_counts(path: str | os.PathLike) -> Counter:
    """Node count per op type (e.g. ``QuantizeLinear``)."""
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)
