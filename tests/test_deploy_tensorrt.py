"""TensorRT: engine build where tensorrt exists (skipped here), trtexec command + the ONNX it consumes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import make_checkpoint  # noqa: E402

from synthloop.deploy.export_onnx import export_model  # noqa: E402
from synthloop.deploy.ort_runtime import OrtBackend  # noqa: E402
from synthloop.deploy.tensorrt_build import (  # noqa: E402
    build_engine,
    has_qdq,
    qdq_is_symmetric_int8,
    tensorrt_available,
    trtexec_command,
)
from synthloop.training.checkpoints import load_model  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    make_checkpoint(root / "dn.pt", size=(64, 64))
    loaded = load_model(root / "dn.pt")
    g = np.random.default_rng(0)
    calib = [g.random((1, 3, 64, 64), dtype=np.float32) for _ in range(3)]
    fp32 = export_model(loaded.model, loaded.desc, root / "fp32.onnx", "fp32")
    int8 = export_model(
        loaded.model, loaded.desc, root / "int8.onnx", "int8", calibration=calib, flavor="tensorrt"
    )
    return root, fp32, int8


def test_onnx_for_tensorrt_is_valid_and_runs(onnx_models):
    root, fp32, int8 = onnx_models
    for p in (fp32, int8):
        onnx.checker.check_model(str(p), full_check=True)
        m = onnx.load(str(p))
        assert all(d.dim_value > 0 for d in m.graph.input[0].type.tensor_type.shape.dim)  # static shape
        out = OrtBackend(p).run(np.zeros((3, 64, 64), np.float32))
        assert out["cov"].shape == (1, 2, 4, 4) and np.isfinite(out["bbox"]).all()
    assert has_qdq(int8) and not has_qdq(fp32)
    assert qdq_is_symmetric_int8(int8)


def test_onnxruntime_flavour_int8_is_refused_for_tensorrt(onnx_models, tmp_path):
    from synthloop.deploy.errors import DeployError

    root, fp32, _ = onnx_models
    loaded = load_model(root / "dn.pt")
    calib = [np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)]
    ort8 = export_model(
        loaded.model, loaded.desc, tmp_path / "ort8.onnx", "int8", calibration=calib, flavor="ort"
    )
    assert has_qdq(ort8) and not qdq_is_symmetric_int8(ort8)
    with pytest.raises(DeployError, match="int8-flavor tensorrt"):
        build_engine(ort8, tmp_path / "e.engine", "int8")


def test_trtexec_command(onnx_models, tmp_path):
    root, fp32, int8 = onnx_models
    cmd = trtexec_command(fp32, tmp_path / "e.engine", "fp16")
    assert cmd[0] == "trtexec" and f"--onnx={fp32}" in cmd and f"--saveEngine={tmp_path / 'e.engine'}" in cmd
    assert "--fp16" in cmd and "--int8" not in cmd
    cmd = trtexec_command(fp32, tmp_path / "e.engine", "int8", calib_cache=tmp_path / "c.calib")
    assert "--int8" in cmd and f"--calib={tmp_path / 'c.calib'}" in cmd
    cmd = trtexec_command(int8, tmp_path / "e.engine", "int8", explicit_int8=True)
    assert "--int8" in cmd and not any(c.startswith("--calib") for c in cmd)


@pytest.mark.skipif(tensorrt_available(), reason="tensorrt is installed: the engine test runs instead")
def test_build_engine_without_tensorrt_prints_trtexec(onnx_models, tmp_path, capsys):
    root, fp32, int8 = onnx_models
    assert build_engine(int8, tmp_path / "e.engine", "int8") is None
    out = capsys.readouterr().out
    assert "trtexec" in out and "--int8" in out and "--calib" not in out  # QDQ: explicit quantization
    assert not (tmp_path / "e.engine").exists()
    from synthloop.deploy.errors import DeployError
    from synthloop.deploy.infer import open_backend

    (tmp_path / "x.engine").write_bytes(b"\0")
    with pytest.raises(DeployError, match="tensorrt is not installed"):
        open_backend(tmp_path / "x.engine")


@pytest.mark.skipif(
    not tensorrt_available(), reason="tensorrt is not installed (cannot be installed on this machine)"
)
def test_build_and_run_engine(onnx_models, tmp_path):
    from synthloop.deploy.tensorrt_build import TrtBackend

    root, fp32, int8 = onnx_models
    x = np.random.default_rng(1).random((3, 64, 64), dtype=np.float32)
    ref = OrtBackend(fp32).run(x)
    for src, prec in ((fp32, "fp16"), (int8, "int8")):
        engine = build_engine(src, tmp_path / f"{prec}.engine", prec)
        assert engine is not None and engine.is_file()
        out = TrtBackend(engine).run(x)
        scale = float(np.abs(ref["cov"]).max())
        assert np.abs(out["cov"] - ref["cov"]).max() < 0.15 * scale
