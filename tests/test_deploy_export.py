"""ONNX export: FP32/FP16 parity with PyTorch, INT8 QDQ validity, Mask R-CNN, QAT, real photos."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import REAL, make_checkpoint  # noqa: E402

from synthloop.deploy.export_onnx import export_model, export_qat_onnx, op_counts, sidecar_path  # noqa: E402
from synthloop.deploy.infer import TorchBackend  # noqa: E402
from synthloop.deploy.ort_runtime import OrtBackend, read_sidecar  # noqa: E402
from synthloop.deploy.parity import raw_diffs  # noqa: E402
from synthloop.deploy.preprocess import load_input  # noqa: E402
from synthloop.training.checkpoints import load_model  # noqa: E402
from synthloop.training.toydata import make_toy_dataset  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_frames=6, width=80, height=64, seed=3)


def inputs_of(ds, w, h):
    return [load_input(f.image_path, w, h)[0] for f in ds.frames]


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_detectnet_fp32_and_fp16_match_torch(backbone, tmp_path, toy):
    make_checkpoint(tmp_path / "dn.pt", backbone=backbone, size=(64, 64))
    loaded = load_model(tmp_path / "dn.pt")
    ref = TorchBackend(loaded)
    xs = inputs_of(toy, 64, 64)[:3]
    p32 = export_model(loaded.model, loaded.desc, tmp_path / "fp32.onnx", "fp32")
    meta = read_sidecar(p32)
    assert meta["desc"] == loaded.desc and meta["precision"] == "fp32"
    assert meta["input_names"] == ["input"] and meta["output_names"] == ["cov", "bbox"]
    ort32 = OrtBackend(p32)
    out = ort32.run(xs[0])
    assert out["cov"].shape == (1, 2, 4, 4) and out["bbox"].shape == (1, 2, 4, 4, 4)
    d32 = raw_diffs(ref, ort32, xs)
    assert d32["cov"] < 1e-4 and d32["bbox"] < 1e-4
    p16 = export_model(loaded.model, loaded.desc, tmp_path / "fp16.onnx", "fp16")
    types = {i.data_type for i in onnx.load(str(p16)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    d16 = raw_diffs(ref, OrtBackend(p16), xs)
    scale = max(float(np.abs(ref.run(x)["cov"]).max()) for x in xs)
    assert 0 < d16["cov"] < 2e-2 * max(scale, 1.0)


@pytest.mark.parametrize("flavor", ["ort", "tensorrt"])
def test_int8_qdq_export(flavor, tmp_path, toy):
    make_checkpoint(tmp_path / "dn.pt", size=(80, 64))
    loaded = load_model(tmp_path / "dn.pt")
    xs = inputs_of(toy, 80, 64)
    calib = [x[None] for x in xs[:4]]
    p8 = export_model(
        loaded.model, loaded.desc, tmp_path / "int8.onnx", "int8", calibration=calib, flavor=flavor
    )
    onnx.checker.check_model(str(p8), full_check=True)
    ops = op_counts(p8)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10 and ops["Conv"] > 10
    model = onnx.load(str(p8))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    if flavor == "tensorrt":  # explicit quantization for TensorRT: symmetric int8, zero point 0
        assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    else:
        assert zps and all(z.dtype == np.uint8 for z in zps)
    fp32 = export_model(loaded.model, loaded.desc, tmp_path / "fp32.onnx", "fp32")
    a, b = OrtBackend(fp32), OrtBackend(p8)
    for x in xs[4:]:  # calibration-like data not used for calibration
        ra, rb = a.run(x), b.run(x)
        for k in ("cov", "bbox"):
            rng = float(np.abs(ra[k]).max())
            assert np.abs(ra[k] - rb[k]).max() < 0.15 * rng
            assert np.corrcoef(ra[k].ravel(), rb[k].ravel())[0, 1] > 0.98


def test_int8_needs_calibration_and_detectnet(tmp_path):
    from synthloop.deploy.errors import DeployError

    make_checkpoint(tmp_path / "dn.pt")
    loaded = load_model(tmp_path / "dn.pt")
    with pytest.raises(DeployError, match="calibration"):
        export_model(loaded.model, loaded.desc, tmp_path / "int8.onnx", "int8", calibration=[])
    make_checkpoint(tmp_path / "mr.pt", family="mask_rcnn")
    mr = load_model(tmp_path / "mr.pt")
    with pytest.raises(DeployError, match="DetectNet_v2 only"):
        export_model(
            mr.model, mr.desc, tmp_path / "mr8.onnx", "int8", calibration=[np.zeros((3, 64, 64), np.float32)]
        )
    assert not (tmp_path / "mr8.onnx").exists()


def test_maskrcnn_fp32_fixed_size_matches_torch(tmp_path, toy):
    make_checkpoint(tmp_path / "mr.pt", family="mask_rcnn", size=(80, 64))
    loaded = load_model(tmp_path / "mr.pt", family="mask_rcnn")
    path = export_model(loaded.model, loaded.desc, tmp_path / "mr.onnx", "fp32", opset=17)
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 11
    assert [o.name for o in model.graph.output] == ["boxes", "labels", "scores", "masks"]
    ref, ort = TorchBackend(loaded), OrtBackend(path)
    x = inputs_of(toy, 80, 64)[0]
    ra, rb = ref.run(x), ort.run(x)
    assert len(ra["scores"]) > 0 and ra["boxes"].shape == rb["boxes"].shape
    assert rb["masks"].shape[1:] == (1, 64, 80)
    assert np.abs(ra["boxes"] - rb["boxes"]).max() < 1e-2
    assert np.abs(ra["scores"] - rb["scores"]).max() < 1e-4
    assert np.array_equal(ra["labels"], rb["labels"])
    assert np.abs(ra["masks"] - rb["masks"]).max() < 1e-3


def test_qat_finetune_and_qdq_export(tmp_path, toy):
    from synthloop.deploy.qat import load_qat, qat_finetune, save_qat
    from synthloop.deploy.tensorrt_build import qdq_is_symmetric_int8

    make_checkpoint(tmp_path / "dn.pt", size=(64, 64))  # classes date/fig (ids 3, 7): matched by name
    loaded = load_model(tmp_path / "dn.pt")
    raw, report = qat_finetune(loaded.model, loaded.desc, toy, steps=2, batch_size=2, calib_frames=2, seed=0)
    assert len(report.losses) == 2 and all(np.isfinite(report.losses))
    save_qat(tmp_path / "qat.pt", raw, loaded.desc, report)
    raw2, desc2 = load_qat(tmp_path / "qat.pt")
    assert desc2 == loaded.desc
    x = torch.from_numpy(inputs_of(toy, 64, 64)[0])[None]
    with torch.no_grad():
        fq, fq2 = raw(x), raw2(x)
    assert torch.equal(fq[0], fq2[0])
    path = export_qat_onnx(raw2, desc2, tmp_path / "qat.onnx")
    ops = op_counts(path)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > 10
    assert qdq_is_symmetric_int8(path)  # learned scales as TensorRT explicit quantization
    assert sidecar_path(path).is_file()
    out = OrtBackend(path).run(x[0].numpy())
    scale = float(fq[0].abs().max())
    assert np.abs(out["cov"] - fq[0].numpy()).max() < 0.05 * scale


def test_lite0_quantized_checkpoint_reloads_at_a_size_with_asymmetric_same_padding(tmp_path, toy):
    """At 96x64 (and at 512x384) the stem's TF-"SAME" pad is asymmetric: the saved module is
    ZeroPad2d + conv (``stem.0.1``), which load_qat must rebuild (it failed on it before)."""
    from synthloop.deploy.qat import load_qat, ptq_calibrate, save_qat

    make_checkpoint(tmp_path / "dn.pt", backbone="efficientnet_lite0", size=(96, 64))
    loaded = load_model(tmp_path / "dn.pt")
    raw = ptq_calibrate(loaded.model, loaded.desc, inputs_of(toy, 96, 64)[:2])
    assert isinstance(raw.net.backbone.body.stem[0][0], torch.nn.ZeroPad2d)
    save_qat(tmp_path / "qat.pt", raw, loaded.desc)
    raw2, _ = load_qat(tmp_path / "qat.pt")
    x = torch.from_numpy(inputs_of(toy, 96, 64)[2])[None]
    with torch.no_grad():
        for a, b in zip(raw(x), raw2(x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.skipif(
    not (REAL / "fruits-nuts" / "val.json").is_file(), reason=f"real data not found under {REAL}"
)
def test_parity_on_real_photos(tmp_path):
    from synthloop.deploy.parity import parity_report
    from synthloop.importers.coco import load_coco

    val = load_coco(REAL / "fruits-nuts" / "val.json", REAL / "fruits-nuts" / "images")
    make_checkpoint(tmp_path / "dn.pt", size=(160, 128))
    loaded = load_model(tmp_path / "dn.pt")
    loaded.desc.cluster = [c.model_copy(update={"coverage_threshold": 0.1}) for c in loaded.desc.cluster]
    path = export_model(loaded.model, loaded.desc, tmp_path / "dn.onnx", "fp32")
    rep = parity_report(TorchBackend(loaded), OrtBackend(path), val, max_images=3)
    assert rep["num_images"] == 3
    assert rep["max_abs_diff"]["cov"] < 1e-4 and rep["max_abs_diff"]["bbox"] < 1e-4
    ref, exp = rep["reference"], rep["exported"]
    assert ref["num_detections"] == exp["num_detections"] > 0
    assert ref["bbox_AP"] == pytest.approx(exp["bbox_AP"], abs=1e-6)


# tiny Keypoint R-CNN heads: the export and checks run in seconds on one CPU thread
KEYPOINT_SMALL = {
    "mask_rcnn": {
        "fpn_channels": 16,
        "box_head_dim": 32,
        "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20,
    },
    "keypoint_rcnn": {"num_keypoints": 17, "head_dim": 8},
}


def test_keypointrcnn_fp32_and_fp16_match_torch(tmp_path, toy):
    """Tolerances against PyTorch on the same inputs (the same detections in the same order):
    FP32 boxes and keypoint u, v within 0.01 px, scores within 1e-4, keypoint logits within 1e-3;
    FP16 boxes within 0.05 px, scores within 2e-3, keypoint logits within 2e-2, and keypoint u, v
    within 1.5 px for >= 90 % of the keypoints (each keypoint is the argmax of a 56x56 heatmap
    resized to its box: where a random model's heatmap is nearly flat, FP16 rounding may move the
    argmax to another cell). Labels and the third keypoint value (torchvision's 1) are exact."""
    make_checkpoint(tmp_path / "kp.pt", family="keypoint_rcnn", size=(80, 64), model_extra=KEYPOINT_SMALL)
    loaded = load_model(tmp_path / "kp.pt", family="keypoint_rcnn")
    ref = TorchBackend(loaded)
    xs = inputs_of(toy, 80, 64)[:3]
    p32 = export_model(loaded.model, loaded.desc, tmp_path / "kp32.onnx", "fp32")
    assert read_sidecar(p32)["output_names"] == ["boxes", "labels", "scores", "keypoints", "keypoints_scores"]
    p16 = export_model(loaded.model, loaded.desc, tmp_path / "kp16.onnx", "fp16")
    halves = [i for i in onnx.load(str(p16)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > 20  # the backbone, FPN and heads' weights
    assert read_sidecar(p16)["precision"] == "fp16"
    tol = {"fp32": (1e-2, 1e-4, 1e-3, 1e-2, 1.0), "fp16": (5e-2, 2e-3, 2e-2, 1.5, 0.9)}
    for precision, path in (("fp32", p32), ("fp16", p16)):
        box_tol, score_tol, logit_tol, uv_tol, uv_frac = tol[precision]
        ort = OrtBackend(path)
        for x in xs:
            ra, rb = ref.run(x), ort.run(x)
            assert len(ra["scores"]) > 0 and rb["keypoints"].shape == ra["keypoints"].shape
            assert np.array_equal(ra["labels"], rb["labels"])
            assert np.abs(ra["boxes"] - rb["boxes"]).max() < box_tol
            assert np.abs(ra["scores"] - rb["scores"]).max() < score_tol
            assert np.abs(ra["keypoints_scores"] - rb["keypoints_scores"]).max() < logit_tol
            uv = np.abs(ra["keypoints"][..., :2] - rb["keypoints"][..., :2]).max(axis=-1)
            assert (uv < uv_tol).mean() >= uv_frac, (precision, np.quantile(uv, [0.5, 0.9, 1.0]))
            assert np.array_equal(ra["keypoints"][..., 2], rb["keypoints"][..., 2])
        assert set(raw_diffs(ref, ort, xs)) == {"boxes", "labels", "scores", "keypoints", "keypoints_scores"}
