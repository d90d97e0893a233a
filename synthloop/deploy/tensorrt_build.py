"""TensorRT engines from exported ONNX models (where ``import tensorrt`` works), else a trtexec command.

:func:`build_engine` uses the TensorRT Python API: a builder, an explicit-batch network parsed from
the ONNX, FP16 / INT8 builder flags, and for INT8 either *explicit quantization* (the ONNX carries
QuantizeLinear/DequantizeLinear nodes: QAT or ``flavor="tensorrt"`` PTQ exports; no calibrator) or
*implicit* PTQ with an :class:`IInt8EntropyCalibrator2` fed with calibration images, whose scales are
cached in a calibration cache file (re-used by later builds and by ``trtexec --calib``).

Without TensorRT, :func:`build_engine` prints the equivalent ``trtexec`` command
(:func:`trtexec_command`) and returns None. The engine gets the same sidecar JSON as the ONNX so
:class:`TrtBackend` (and ``synthloop infer --backend tensorrt``) can decode its outputs.

Mask R-CNN ONNX graphs use RoiAlign / NonMaxSuppression and data-dependent shapes; TensorRT >= 8.6
parses them, but :class:`TrtBackend` only runs engines with static output shapes (DetectNet_v2).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.deploy.errors import DeployError
from synthloop.deploy.export_onnx import op_counts, sidecar_path

EnginePrecision = Literal["fp32", "fp16", "int8"]


def tensorrt_available() -> bool:
    """True when the ``tensorrt`` Python package imports."""
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False
    return True


def has_qdq(onnx_path: str | os.PathLike) -> bool:
    """Whether the ONNX holds QuantizeLinear/DequantizeLinear nodes (explicit quantization)."""
    c = op_counts(onnx_path)
    return c.get("QuantizeLinear", 0) > 0 and c.get("DequantizeLinear", 0) > 0


def qdq_is_symmetric_int8(onnx_path: str | os.PathLike) -> bool:
    """Whether every QuantizeLinear has an int8 zero point of 0 (TensorRT's explicit quantization
    needs this; onnxruntime-flavour exports with uint8 activations do not qualify)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2]:
            zp = inits.get(n.input[2], consts.get(n.input[2]))
            if zp is None or zp.dtype != np.int8 or zp.any():
                return False
    return True


def trtexec_command(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    precision: EnginePrecision = "fp16",
    calib_cache: str | os.PathLike | None = None,
    workspace_mb: int = 2048,
    explicit_int8: bool = False,
) -> list[str]:
    """The ``trtexec`` argv that builds the same engine as :func:`build_engine`.

    INT8 from a QDQ ONNX (``explicit_int8``) needs only ``--int8`` (plus ``--fp16`` so that
    non-quantized layers may run in half precision); implicit INT8 PTQ reads scales from
    ``--calib=<cache>`` (written by :func:`build_engine` where TensorRT exists)."""
    cmd = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--memPoolSize=workspace:{int(workspace_mb)}M",
    ]
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        cmd += ["--int8", "--fp16"]
        if not explicit_int8:
            if calib_cache is None:
                raise DeployError(
                    "implicit INT8 needs a calibration cache for trtexec (--calib)", where="calib"
                )
            cmd.append(f"--calib={calib_cache}")
    return cmd


def _make_calibrator(trt: Any, batches: Sequence[np.ndarray], cache_path: Path) -> Any:
    """An IInt8EntropyCalibrator2 over ``batches`` (each shaped like the network input) with a cache."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = [np.ascontiguousarray(b, np.float32) for b in batches]
            self.index = 0
            self.device_input: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            self.device_input = torch.from_numpy(self.batches[self.index]).cuda()
            self.index += 1
            return [int(self.device_input.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    precision: EnginePrecision = "fp16",
    calibration: Sequence[np.ndarray] | None = None,
    calib_cache: str | os.PathLike | None = None,
    workspace_mb: int = 2048,
) -> Path | None:
    """Build and save a TensorRT engine (see module docstring); None (after printing the trtexec
    command) when TensorRT is not installed. ``calibration``: network inputs for implicit INT8
    when the ONNX has no QDQ nodes and the cache does not exist yet."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise DeployError("ONNX model not found", path=str(onnx_path), where="onnx")
    explicit = precision == "int8" and has_qdq(onnx_path)
    if explicit and not qdq_is_symmetric_int8(onnx_path):
        raise DeployError(
            "this INT8 ONNX has uint8 / non-zero zero points (onnxruntime flavour); TensorRT needs "
            "symmetric int8 QDQ: export with --int8-flavor tensorrt or use a QAT export",
            path=str(onnx_path),
            where="int8_flavor",
        )
    cache = Path(calib_cache) if calib_cache else engine_path.with_suffix(".calib")
    if not tensorrt_available():
        cmd = trtexec_command(
            onnx_path, engine_path, precision, cache if precision == "int8" else None, workspace_mb, explicit
        )
        print("tensorrt is not installed here; build the engine on the target with:")
        print("  " + shlex.join(cmd))
        return None
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"TensorRT cannot parse the ONNX: {errs[:300]}", path=str(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not explicit:
            if not cache.is_file() and not calibration:
                raise DeployError(
                    "implicit INT8 needs calibration images or an existing calibration cache",
                    path=str(cache),
                    where="calibration",
                )
            config.int8_calibrator = _make_calibrator(trt, list(calibration or []), cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployError("TensorRT engine build failed (see the TensorRT log above)", path=str(onnx_path))
    atomic_write_bytes(engine_path, bytes(serialized))
    meta_src = sidecar_path(onnx_path)
    if meta_src.is_file():
        meta = json.loads(meta_src.read_text())
        meta.update({"engine_precision": precision, "onnx": str(onnx_path), "explicit_int8": explicit})
        atomic_write_json(sidecar_path(engine_path), meta)
    return engine_path


class TrtBackend:
    """A deserialized TensorRT engine with static shapes; ``run(x (3, H, W))`` -> raw outputs
    (device buffers are torch CUDA tensors, so no pycuda is needed)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike):
        if not tensorrt_available():
            raise DeployError(
                "tensorrt is not installed; use --backend onnxruntime or torch", where="backend"
            )
        import tensorrt as trt
        import torch

        from synthloop.deploy.ort_runtime import read_sidecar

        self.path = Path(engine_path)
        if not self.path.is_file():
            raise DeployError("engine not found", path=str(self.path), where="model")
        self.desc = read_sidecar(self.path)["desc"]
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise DeployError(
                "cannot deserialize the engine (other TensorRT version or GPU?)", path=str(self.path)
            )
        self.context = self.engine.create_execution_context()
        self.torch = torch
        self.buffers: dict[str, Any] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                raise DeployError(
                    f"engine tensor {name!r} has a dynamic shape {shape}; only static engines run here",
                    path=str(self.path),
                )
            dtype = torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, int(self.buffers[name].data_ptr()))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        buf = self.buffers[self.inputs[0]]
        buf.copy_(torch.from_numpy(np.asarray(x, np.float32)).reshape(buf.shape))
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise DeployError("TensorRT execution failed", path=str(self.path))
        stream.synchronize()
        return {n: self.buffers[n].float().cpu().numpy() for n in self.outputs}
