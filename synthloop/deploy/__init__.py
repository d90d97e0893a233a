"""Deployment: pruning, quantization (QAT / PTQ), ONNX export, TensorRT engines and inference.

Flow: a training checkpoint (:mod:`checkpoints`) -> :mod:`prune` (channel pruning, fine-tune with the
training loop) -> :mod:`qat` (fake-quant INT8 fine-tuning or PTQ calibration) -> :mod:`export_onnx`
(FP32 / FP16 / INT8 QDQ ONNX + a sidecar metadata JSON) -> :mod:`tensorrt_build` (engine, where
TensorRT exists) -> :mod:`infer` (torch, onnxruntime or TensorRT backends, one decoding path).

Helpers: :mod:`graph` (raw-output DetectNet module, batch-norm folding, static "SAME" padding),
:mod:`preprocess` (image -> fixed-size network input), :mod:`decode` (raw outputs -> Detections, one
path for all backends), :mod:`ort_runtime` (onnxruntime backend), :mod:`draw` (overlays),
:mod:`parity` (exported vs PyTorch: raw differences and COCO AP through synthloop.evaluation).

Models are described by :class:`synthloop.training.checkpoints.ModelDesc` (family, backbone, classes,
fixed input size, post-processing parameters); every artefact written here carries one.
"""

from synthloop.deploy.errors import DeployError

__all__ = ["DeployError"]
