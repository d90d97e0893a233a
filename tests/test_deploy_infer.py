"""Inference: JSON + overlays per image from every backend, identical decoding, bad-input errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from helpers import make_checkpoint  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from synthloop.commands.deploy import app  # noqa: E402
from synthloop.deploy.errors import DeployError  # noqa: E402
from synthloop.deploy.export_onnx import export_model  # noqa: E402
from synthloop.deploy.infer import run_inference  # noqa: E402
from synthloop.evaluation.detections import Detections  # noqa: E402
from synthloop.training.checkpoints import load_model  # noqa: E402
from synthloop.training.toydata import make_toy_dataset  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    toy = make_toy_dataset(root / "toy", num_frames=3, width=100, height=70, seed=5)
    make_checkpoint(root / "dn.pt", size=(64, 48), coverage_threshold=0.05, spread=False)
    loaded = load_model(root / "dn.pt")
    onnx_path = export_model(loaded.model, loaded.desc, root / "dn.onnx", "fp32")
    return root, toy, onnx_path


def test_infer_writes_json_and_overlays_same_for_torch_and_onnx(setup, tmp_path):
    root, toy, onnx_path = setup
    images = [f.image_path for f in toy.frames]
    res_o = run_inference(onnx_path, images, tmp_path / "ort", backend="auto", score_thr=0.0)
    res_t = run_inference(root / "dn.pt", images, tmp_path / "torch", backend="torch", score_thr=0.0)
    assert len(res_o.json_files) == len(res_o.overlays) == 3
    for jo, jt, png, frame in zip(
        res_o.json_files, res_t.json_files, res_o.overlays, toy.frames, strict=True
    ):
        ro, rt = json.loads(jo.read_text()), json.loads(jt.read_text())
        assert ro["backend"] == "onnxruntime" and rt["backend"] == "torch"
        assert (ro["width"], ro["height"]) == (100, 70)
        assert len(ro["scores"]) == len(rt["scores"]) > 0
        np.testing.assert_allclose(ro["boxes"], rt["boxes"], atol=1e-3)
        boxes = np.array(ro["boxes"])
        assert (
            (boxes[:, [0, 2]] >= 0).all()
            and (boxes[:, [0, 2]] <= 100).all()
            and (boxes[:, [1, 3]] <= 70).all()
        )
        assert set(ro["labels"]) <= {3, 7}
        assert ro["class_names"] == [{3: "date", 7: "fig"}[v] for v in ro["labels"]]
        over = np.asarray(Image.open(png).convert("RGB"))
        orig = np.asarray(Image.open(frame.image_path).convert("RGB"))
        assert over.shape == orig.shape and (over != orig).any()
    dets = Detections.load(res_o.detections_file)
    assert sorted(dets) == sorted(p.stem for p in images)


def test_maskrcnn_infer_draws_masks(setup, tmp_path):
    from synthloop.geometry.masks import rle_to_mask

    root, toy, _ = setup
    make_checkpoint(tmp_path / "mr.pt", family="mask_rcnn", size=(64, 48))
    res = run_inference(tmp_path / "mr.pt", [toy.frames[0].image_path], tmp_path / "o", score_thr=0.0)
    rec = json.loads(res.json_files[0].read_text())
    assert rec["backend"] == "torch" and len(rec["masks"]) == len(rec["scores"]) > 0
    for m, box in zip(rec["masks"], rec["boxes"], strict=True):
        assert m["size"] == [70, 100]  # original image size, not the 64x48 network input
        on = rle_to_mask(m)
        if on.any():  # mask pixels lie inside (or at the border of) the box
            ys, xs = np.nonzero(on)
            assert xs.min() >= np.floor(box[0]) - 1 and xs.max() <= np.ceil(box[2]) + 1
    over = np.asarray(Image.open(res.overlays[0]).convert("RGB"))
    assert over.shape == (70, 100, 3)


def test_score_threshold_filters(setup, tmp_path):
    root, toy, onnx_path = setup
    img = [toy.frames[0].image_path]
    all_ = json.loads(run_inference(onnx_path, img, tmp_path / "a", score_thr=0.0).json_files[0].read_text())
    s = sorted(set(all_["scores"]))
    assert len(s) >= 2
    thr = (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2  # between two scores: no rounding ties
    some = json.loads(run_inference(onnx_path, img, tmp_path / "b", score_thr=thr).json_files[0].read_text())
    assert min(some["scores"]) >= thr and len(some["scores"]) == sum(v >= thr for v in all_["scores"])
    assert 0 < len(some["scores"]) < len(all_["scores"])


def test_undecodable_image_is_named(setup, tmp_path):
    root, toy, onnx_path = setup
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(DeployError, match="broken.png"):
        run_inference(onnx_path, [bad], tmp_path / "out")
    r = CliRunner().invoke(app, ["infer", str(onnx_path), str(bad), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert "broken.png" in err and "cannot decode" in err and len(err.splitlines()) == 1
    assert "Traceback" not in r.output


def test_onnx_without_sidecar_and_wrong_backend(setup, tmp_path):
    root, toy, onnx_path = setup
    lonely = tmp_path / "m.onnx"
    lonely.write_bytes(onnx_path.read_bytes())
    with pytest.raises(DeployError, match="sidecar"):
        run_inference(lonely, [toy.frames[0].image_path], tmp_path / "o")
    with pytest.raises(DeployError, match="checkpoint"):
        run_inference(onnx_path, [toy.frames[0].image_path], tmp_path / "o", backend="torch")


def test_cli_prune_export_infer(setup, tmp_path):
    root, toy, _ = setup
    runner = CliRunner()
    pruned = tmp_path / "pruned.pt"
    r = runner.invoke(
        app, ["prune", str(root / "dn.pt"), "--out", str(pruned), "-pth", "0.9", "-nf", "8", "-pg", "8"]
    )
    assert r.exit_code == 0, r.output
    assert "params:" in r.output and pruned.is_file()
    # -el: the excluded conv keeps its width where the same cut without it narrows it
    args = ["prune", str(root / "dn.pt"), "--allocation", "uniform", "-pth", "0.5", "-nf", "8", "-pg", "8"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "u.pt")]).exit_code == 0
    r = runner.invoke(app, [*args, "-el", "fuse", "--out", str(tmp_path / "kept_fuse.pt")])
    assert r.exit_code == 0, r.output
    from synthloop.deploy.prune import load_pruned

    assert load_pruned(tmp_path / "u.pt").fuse[0].out_channels < 128
    assert load_pruned(tmp_path / "kept_fuse.pt").fuse[0].out_channels == 128
    r = runner.invoke(app, [*args, "-el", "no.such.layer", "--out", str(tmp_path / "bad.pt")])
    assert r.exit_code == 2 and "no.such.layer" in r.output and not (tmp_path / "bad.pt").exists()
    onnx_path = tmp_path / "pruned.onnx"
    r = runner.invoke(
        app,
        [
            "export-model",
            str(pruned),
            "--out",
            str(onnx_path),
            "--precision",
            "int8",
            "--calib-images",
            str(toy.root / "images"),
            "--calib-count",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert onnx_path.is_file() and onnx_path.with_suffix(".json").is_file()
    r = runner.invoke(
        app,
        ["infer", str(onnx_path), str(toy.root / "images"), "--out", str(tmp_path / "o"), "--score-thr", "0"],
    )
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
    # QAT from the pruned checkpoint on the toy frames (as a COCO json), exported as QDQ ONNX
    from synthloop.atomic import atomic_write_json
    from synthloop.deploy.export_onnx import op_counts
    from synthloop.exporters.coco import dataset_to_coco

    coco = toy.root / "toy.json"
    atomic_write_json(coco, dataset_to_coco(toy, [f"images/{f.image_path.name}" for f in toy.frames]))
    qat_onnx = tmp_path / "qat.onnx"
    args = ["qat", str(pruned), str(coco), "--out", str(tmp_path / "qat.pt"), "--onnx", str(qat_onnx)]
    r = runner.invoke(app, args + ["--steps", "1", "--batch-size", "2", "--calib-frames", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "qat.pt").is_file() and op_counts(qat_onnx)["QuantizeLinear"] > 0
    r = runner.invoke(app, ["infer", str(qat_onnx), str(toy.root / "images"), "--out", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export-model", str(tmp_path / "nope.pt"), "--out", str(onnx_path)])
    assert r.exit_code == 2 and "nope.pt" in r.stderr and "not found" in r.stderr


def test_deploy_backend_predicts_what_the_training_predictor_predicts(setup):
    """`evaluate` scores a pruned / exported model through synthloop.deploy and a training
    checkpoint through the training Predictor: both must resize the same way (OpenCV bilinear, as
    the training augmentation does), or a pruned model is compared on different inputs. The toy
    images (100x70) shrink to the 64x48 input, where PIL's antialiasing bilinear would differ."""
    from synthloop.deploy.infer import open_backend, predict_dataset
    from synthloop.training.predictor import Predictor

    root, toy, _ = setup
    deploy = predict_dataset(open_backend(root / "dn.pt", backend="torch"), toy)
    train = Detections.from_frames(Predictor.from_checkpoint(root / "dn.pt").predict_dataset(toy))
    assert sorted(deploy) == sorted(train)
    assert sum(len(d) for d in train.values()) > 0
    for fid, t in train.items():
        d = deploy[fid]
        assert len(d) == len(t)
        order_d, order_t = np.argsort(-d.scores, kind="stable"), np.argsort(-t.scores, kind="stable")
        np.testing.assert_allclose(d.scores[order_d], t.scores[order_t], atol=1e-5)
        np.testing.assert_allclose(d.boxes[order_d], t.boxes[order_t], atol=1e-3)
        assert (d.labels[order_d] == t.labels[order_t]).all()


def test_keypointrcnn_cli_export_fp16_and_onnx_infer_draws_skeletons(setup, tmp_path):
    """export-model (fp16) + infer with onnxruntime: keypoints in the JSON in original-image pixels,
    like the torch backend's, and the overlay carries the skeleton (it differs from the same
    detections drawn without keypoints)."""
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.overlays import draw_detections

    root, toy, _ = setup
    small = {
        "mask_rcnn": {"fpn_channels": 16, "box_head_dim": 32, "rpn_post_nms_top_n_test": 20},
        "keypoint_rcnn": {"num_keypoints": 17, "head_dim": 8},
    }
    make_checkpoint(tmp_path / "kp.pt", family="keypoint_rcnn", size=(64, 48), model_extra=small)
    onnx_path = tmp_path / "kp.onnx"
    runner = CliRunner()
    r = runner.invoke(
        app, ["export-model", str(tmp_path / "kp.pt"), "--out", str(onnx_path), "--precision", "fp16"]
    )
    assert r.exit_code == 0, r.output
    img = toy.frames[0].image_path
    r = runner.invoke(
        app, ["infer", str(onnx_path), str(img), "--out", str(tmp_path / "o"), "--score-thr", "0"]
    )
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "o" / f"{img.stem}.json").read_text())
    ref = json.loads(
        run_inference(tmp_path / "kp.pt", [img], tmp_path / "t", score_thr=0.0).json_files[0].read_text()
    )
    assert rec["backend"] == "onnxruntime" and rec["num_keypoints"] == 17
    assert len(rec["keypoints"]) == len(rec["scores"]) == len(ref["scores"]) > 0
    kp, kp_ref = np.array(rec["keypoints"]), np.array(ref["keypoints"])
    assert np.median(np.abs(kp - kp_ref)[..., :2]) < 1.5  # fp16 vs fp32, in 100x70 image pixels
    rgb = np.asarray(Image.open(img).convert("RGB"))
    over = np.asarray(Image.open(tmp_path / "o" / f"{img.stem}.png").convert("RGB"))
    fd = FrameDetections(img.stem, rec["boxes"], rec["scores"], rec["labels"])
    names = dict(zip(rec["labels"], rec["class_names"], strict=True))
    assert (over != np.asarray(draw_detections(rgb, fd, names))).any()
    fd.keypoints = kp.astype(np.float32)
    assert (over == np.asarray(draw_detections(rgb, fd, names))).all()
