"""``export-model --layout tao``: TAO's DetectNet_v2 outputs, decoded the way DeepStream's stock
parser and DBSCAN do it (re-implemented below from their published arithmetic), give the same boxes
as ``synthloop infer``."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers import make_checkpoint  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from synthloop.deploy import deepstream  # noqa: E402
from synthloop.deploy.errors import DeployError  # noqa: E402
from synthloop.deploy.export_onnx import export_model  # noqa: E402
from synthloop.deploy.graph import DetectNetRaw  # noqa: E402
from synthloop.deploy.infer import run_inference  # noqa: E402
from synthloop.training.checkpoints import ModelDesc, load_model  # noqa: E402
from synthloop.training.detectnet import DetectNetV2  # noqa: E402
from synthloop.training.postprocess import ClusterParams  # noqa: E402
from synthloop.training.rasterizer import decode_boxes  # noqa: E402

torch.set_num_threads(1)


# --- DeepStream's DetectNet_v2 parser + DBSCAN, as published (nvdsinfer parser, nvdsinfer_dbscan) ---


def ds_candidates(cov: np.ndarray, bbox: np.ndarray, net_w: int, net_h: int, thresholds: list[float]):
    """One image: cov (C, Gh, Gw), bbox (4C, Gh, Gw) -> per class list of (left, top, width, height, conf)."""
    c_n, gh, gw = cov.shape
    stride_x, stride_y = -(-net_w // gw), -(-net_h // gh)  # DIVIDE_AND_ROUND_UP
    norm = 35.0
    gcx = (np.arange(gw) * stride_x + 0.5) / norm
    gcy = (np.arange(gh) * stride_y + 0.5) / norm
    out = []
    for c in range(c_n):
        objs = []
        for h in range(gh):
            for w in range(gw):
                if cov[c, h, w] < thresholds[c]:
                    continue
                x1 = (bbox[4 * c + 0, h, w] - gcx[w]) * -norm
                y1 = (bbox[4 * c + 1, h, w] - gcy[h]) * -norm
                x2 = (bbox[4 * c + 2, h, w] + gcx[w]) * norm
                y2 = (bbox[4 * c + 3, h, w] + gcy[h]) * norm
                left, top = np.clip(x1, 0, net_w - 1), np.clip(y1, 0, net_h - 1)
                width = np.clip(x2, 0, net_w - 1) - left + 1
                height = np.clip(y2, 0, net_h - 1) - top + 1
                objs.append((left, top, width, height, float(cov[c, h, w])))
        out.append(objs)
    return out


def ds_dbscan(objs, eps: float, min_boxes: int, min_score: float):
    """NvDsInferDBScan::clusterObjects (non-hybrid): 1 - IoU distance on (left, top, width, height),
    neighbours at distance < eps, one-hop expansion, confidence-weighted mean box, max confidence."""
    n = len(objs)
    if n == 0:
        return []
    b = np.array([o[:4] for o in objs], np.float64)
    conf = np.array([o[4] for o in objs], np.float64)
    dist = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            l1, t1, w1, h1 = b[i]
            l2, t2, w2, h2 = b[j]
            iw = max(0.0, min(l1 + w1, l2 + w2) - max(l1, l2))
            ih = max(0.0, min(t1 + h1, t2 + h2) - max(t1, t2))
            inter = iw * ih
            dist[i, j] = dist[j, i] = 1.0 - inter / (w1 * h1 + w2 * h2 - inter)
    nbrs = [[j for j in range(n) if j != i and dist[i, j] < eps] for i in range(n)]
    labels, visited, cid = [-1] * n, [False] * n, 0
    for i in range(n):
        if visited[i]:
            continue
        visited[i] = True
        if len(nbrs[i]) + 1 >= min_boxes:
            labels[i] = cid
            for j in list(nbrs[i]):
                if not visited[j]:
                    visited[j] = True
                    if len(nbrs[j]) + 1 >= min_boxes:
                        labels[j] = cid
            cid += 1
    out = []
    for k in range(cid):
        sel = np.array(labels) == k
        total = conf[sel].sum()
        if total < min_score:
            continue
        box = (b[sel] * conf[sel, None]).sum(0) / total
        out.append((*box, conf[sel].max()))
    return out


def ds_detect(cov, bbox, cfg_path: Path):
    """Detections (x1, y1, x2, y2, score, class index) of one image as nvinfer would configure them."""
    cfg = configparser.ConfigParser()
    cfg.read(cfg_path)
    prop = cfg["property"]
    _, net_h, net_w = (int(v) for v in prop["infer-dims"].split(";"))
    assert prop["cluster-mode"] == "1"
    assert prop["output-blob-names"].split(";") == [deepstream.COV_NAME, deepstream.BBOX_NAME]
    n_cls = int(prop["num-detected-classes"])
    attrs = [cfg[f"class-attrs-{c}"] for c in range(n_cls)]
    cands = ds_candidates(cov, bbox, net_w, net_h, [float(a["pre-cluster-threshold"]) for a in attrs])
    dets = []
    for c, (objs, a) in enumerate(zip(cands, attrs, strict=True)):
        for left, top, w, h, s in ds_dbscan(
            objs, float(a["eps"]), int(a["minBoxes"]), float(a["dbscan-min-score"])
        ):
            if s >= float(a.get("post-cluster-threshold", "0")):
                dets.append((left, top, left + w - 1, top + h - 1, s, c))
    return sorted(dets, key=lambda d: (d[5], d[0], d[1]))


# --- a DetectNet whose coverage is the red share of each 16x16 cell, boxes a fixed size ---


class PoolBackbone(nn.Module):
    """Features = the (normalized) image averaged over 16x16 and 32x32 cells."""

    out_channels_list = [3, 3, 3]

    def forward(self, x):
        return {"0": x, "1": nn.functional.avg_pool2d(x, 16), "2": nn.functional.avg_pool2d(x, 32)}


def red_detector(half: float = 24.0) -> tuple[DetectNetV2, ModelDesc]:
    cluster = ClusterParams(coverage_threshold=0.5, eps=0.95, min_samples=1, confidence="max")
    model = DetectNetV2(PoolBackbone(), 1, cluster=[cluster], head_channels=3, bbox_norm=30.0).eval()
    with torch.no_grad():
        for m in (model.lat16, model.lat32, model.fuse[0], model.cov_head, model.bbox_head):
            m.weight.zero_()
            m.bias.zero_()
        model.lat16.weight[0, 0] = 1.0  # red channel, normalized: (r - 0.485) / 0.229
        model.fuse[0].weight[0, 0, 1, 1] = 1.0
        model.fuse[0].bias[0] = 0.485 / 0.229  # ReLU input = r / 0.229 >= 0
        model.cov_head.weight[0, 0] = 12.0 * 0.229
        model.cov_head.bias[0] = -6.0  # sigmoid(12 r - 6): 0.5 at half a red cell
        model.bbox_head.bias.copy_(torch.tensor([-half, -half, half, half]) / 30.0)  # centre +- half px
    desc = ModelDesc(
        family="detectnet_v2",
        backbone="pool",
        class_names=["red"],
        category_ids=[5],
        input_width=192,
        input_height=128,
        head_channels=3,
        bbox_norm=30.0,
        cluster=[cluster],
    )
    return model, desc


def red_image(path: Path) -> np.ndarray:
    img = np.zeros((128, 192, 3), np.uint8)
    img[36:84, 32:80, 0] = 255  # 48x48: 3x3 cells over the threshold (one row 3/4 red)
    img[30:70, 120:168, 0] = 200  # a second, dimmer object far from the first
    Image.fromarray(img).save(path)
    return img


def test_tao_layout_matches_deepstream_parser_and_synthloop_infer(tmp_path):
    model, desc = red_detector()
    onnx_path = export_model(model, desc, tmp_path / "tao" / "model.onnx", layout="tao")
    cfg = tmp_path / "tao" / deepstream.CONFIG_NAME
    assert cfg.is_file()
    assert (tmp_path / "tao" / deepstream.LABELS_NAME).read_text() == "red\n"
    img = red_image(tmp_path / "red.png")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.asarray(img, np.float32).transpose(2, 0, 1)[None] / 255.0  # net-scale-factor 1/255
    cov, bbox = sess.run([deepstream.COV_NAME, deepstream.BBOX_NAME], {deepstream.INPUT_NAME: x})
    ds = ds_detect(cov[0], bbox[0], cfg)
    run_inference(onnx_path, [tmp_path / "red.png"], tmp_path / "infer", score_thr=0.0)
    ours = json.loads((tmp_path / "infer" / "red.json").read_text())
    assert len(ds) == 2 and len(ours["boxes"]) == 2
    ours_sorted = sorted(zip(ours["boxes"], ours["scores"], strict=True), key=lambda t: t[0][0])
    for d, (box, score) in zip(ds, ours_sorted, strict=True):
        np.testing.assert_allclose(d[:4], box, atol=1e-3)
        assert abs(d[4] - score) < 1e-5
    # the boxes are where the squares are: centre of the 3x3 covered cells +- 24 px
    np.testing.assert_allclose(ds[0][:4], [32, 36, 80, 84], atol=8)


def test_tao_layout_shapes_dynamic_batch_and_cell_boxes(tmp_path):
    make_checkpoint(tmp_path / "dn.pt", size=(64, 48))
    loaded = load_model(tmp_path / "dn.pt")
    path = export_model(loaded.model, loaded.desc, tmp_path / "m.onnx", layout="tao")
    m = onnx.load(str(path))
    assert [i.name for i in m.graph.input] == ["input_1"]
    assert [o.name for o in m.graph.output] == [deepstream.COV_NAME, deepstream.BBOX_NAME]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    xs = np.random.default_rng(0).random((3, 3, 48, 64), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cov, bbox = sess.run(None, {"input_1": xs})
    assert cov.shape == (3, 2, 3, 4) and bbox.shape == (3, 8, 3, 4)
    assert cov.min() >= 0 and cov.max() <= 1
    raw = DetectNetRaw(loaded.model).eval()
    with torch.no_grad():
        ref_cov, ref_bbox = (t.numpy() for t in raw(torch.from_numpy(xs)))
    np.testing.assert_allclose(cov, 1 / (1 + np.exp(-ref_cov)), atol=1e-5)
    for i in range(3):  # every cell's box through DeepStream's arithmetic == synthloop's decoding
        cand = ds_candidates(cov[i], bbox[i], 64, 48, [0.0, 0.0])
        ours = decode_boxes(ref_bbox[i], 16, loaded.desc.bbox_norm)  # (C, Gh, Gw, 4)
        for c in range(2):
            ds_boxes = np.array([(lft, t, lft + w - 1, t + h - 1) for lft, t, w, h, _ in cand[c]])
            ref = ours[c].reshape(-1, 4)
            ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, 63)
            ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, 47)
            np.testing.assert_allclose(ds_boxes, ref, atol=1e-3)
    logits, enc = deepstream.tao_to_raw(cov, bbox, loaded.desc.bbox_norm)
    np.testing.assert_allclose(enc, ref_bbox, atol=1e-4)


def test_tao_layout_refuses_sizes_not_multiple_of_16_and_mask_rcnn(tmp_path):
    make_checkpoint(tmp_path / "dn.pt", size=(72, 48))
    loaded = load_model(tmp_path / "dn.pt")
    with pytest.raises(DeployError, match="multiples of 16"):
        export_model(loaded.model, loaded.desc, tmp_path / "m.onnx", layout="tao")
    desc = loaded.desc.model_copy(update={"family": "mask_rcnn"})
    with pytest.raises(DeployError, match="DetectNet_v2 only"):
        deepstream.check_tao_input(desc)


def test_nvinfer_config_per_class_fields():
    desc = ModelDesc(
        family="detectnet_v2",
        backbone="resnet18",
        class_names=["date", "fig"],
        category_ids=[1, 2],
        input_width=640,
        input_height=480,
        cluster=[
            ClusterParams(coverage_threshold=0.2, eps=0.15, min_samples=3, min_confidence=0.4),
            ClusterParams(coverage_threshold=0.35, confidence="sum", min_confidence=1.5, distance="l2"),
        ],
    )
    cfg = configparser.ConfigParser()
    cfg.read_string(deepstream.nvinfer_config(desc, "model.onnx", "fp16"))
    p = cfg["property"]
    assert p["infer-dims"] == "3;480;640" and p["network-mode"] == "2" and p["num-detected-classes"] == "2"
    assert abs(float(p["net-scale-factor"]) - 1 / 255) < 1e-8 and p["offsets"] == "0;0;0"
    c0, c1 = cfg["class-attrs-0"], cfg["class-attrs-1"]
    assert (c0["pre-cluster-threshold"], c0["eps"], c0["minBoxes"]) == ("0.2", "0.15", "3")
    assert c0["post-cluster-threshold"] == "0.4" and c1["dbscan-min-score"] == "1.5"
    text = deepstream.nvinfer_config(desc, "model.onnx")
    assert "l2 distance" in text and "coverage sum" in text


def test_cli_export_model_layout_tao(tmp_path):
    from typer.testing import CliRunner

    from synthloop.cli import app

    make_checkpoint(tmp_path / "dn.pt", size=(64, 48))
    out = tmp_path / "ds" / "model.onnx"
    r = CliRunner().invoke(
        app, ["export-model", str(tmp_path / "dn.pt"), "--out", str(out), "--layout", "tao"]
    )
    assert r.exit_code == 0, r.output
    assert (out.parent / deepstream.CONFIG_NAME).is_file()
    assert (out.parent / deepstream.LABELS_NAME).read_text().splitlines() == ["date", "fig"]
    r = CliRunner().invoke(
        app,
        ["export-model", str(tmp_path / "dn.pt"), "-o", str(out), "--layout", "tao", "--engine", "x.engine"],
    )
    assert r.exit_code == 2 and "nvinfer" in r.output
