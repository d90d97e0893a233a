"""Keypoint R-CNN family: a tiny person-keypoint set (toy boxes carrying COCO-17 keypoints), two
training iterations on CPU, predictions with keypoints scored by pycocotools' OKS path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synthloop.bodies.coco import COCO17_KEYPOINTS, COCO17_SKELETON
from synthloop.dataset.types import Category
from synthloop.evaluation.coco_metrics import coco_evaluate
from synthloop.exporters.coco import write_coco
from synthloop.importers.coco import load_coco
from synthloop.training.backbones import build_backbone
from synthloop.training.keypointrcnn import build_keypointrcnn
from synthloop.training.loop import load_checkpoint, train
from synthloop.training.predictor import Predictor
from synthloop.training.rcnn import RCNNSettings
from synthloop.training.spec import parse_spec
from synthloop.training.toydata import make_toy_dataset

torch.set_num_threads(1)

SMALL = dict(
    fpn_channels=32,
    box_head_dim=64,
    rpn_batch_size_per_image=32,
    rpn_pre_nms_top_n_train=50,
    rpn_post_nms_top_n_train=20,
    rpn_pre_nms_top_n_test=50,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=16,
)


def _with_keypoints(ds):
    """Every toy box becomes a 'person' with 17 keypoints on a fixed pattern inside its box."""
    rng = np.random.default_rng(0)
    pattern = rng.uniform(0.1, 0.9, (17, 2))
    cat = Category(1, "person", keypoints=COCO17_KEYPOINTS, skeleton=COCO17_SKELETON)
    frames = []
    for f in ds.frames:
        objs = []
        for o in f.objects:
            x1, y1, x2, y2 = o.bbox
            kps = tuple((x1 + px * (x2 - x1), y1 + py * (y2 - y1), 2) for px, py in pattern)
            objs.append(dataclasses.replace(o, category_id=1, keypoints=kps))
        frames.append(dataclasses.replace(f, objects=objs))
    return dataclasses.replace(ds, categories=[cat], frames=frames)


@pytest.fixture(scope="module")
def person_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("kp")
    ds = _with_keypoints(make_toy_dataset(root / "img", 2, seed=3, class_names=("fig",), source="real"))
    return write_coco(ds, root / "coco")


def test_keypoint_rcnn_trains_and_predicts_keypoints(tmp_path, person_coco):
    spec = parse_spec(
        {
            "datasets": [{"kind": "real", "coco_json": str(person_coco)}],
            "model": {
                "family": "keypoint_rcnn",
                "input_width": 128,
                "input_height": 96,
                "mask_rcnn": SMALL,
                "keypoint_rcnn": {"num_keypoints": 17, "head_dim": 16},
            },
            "backbone": {"name": "efficientnet_lite0", "weights": None, "freeze_bn": True},
            "augment": {"enabled": True, "hflip_prob": 0.5},
            "optimizer": {"name": "adamw", "lr": 0.0005, "weight_decay": 0.0},
            "lr_schedule": {"name": "constant"},
            "batch_size": 2,
            "iterations": 2,
            "device": "cpu",
            "amp": False,
            "log_interval": 1,
        }
    )
    run = tmp_path / "kr"
    train(spec, run, quiet=True)
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["family"] == "keypoint_rcnn"
    assert any("keypoint" in k for k in ck["model"])
    pred = Predictor.from_checkpoint(run / "checkpoints" / "last.pt")
    pred.score_threshold = 0.0
    ds = load_coco(person_coco)
    dets = pred.predict_dataset(ds, batch_size=2)
    for d in dets:
        assert d.keypoints is not None and d.keypoints.shape == (len(d.scores), 17, 3)
    out = coco_evaluate(ds, {d.frame_id: d for d in dets}, iou_types=("keypoints",))
    ap = out["keypoints"]["stats"]["AP"]
    assert 0.0 <= ap <= 1.0  # two iterations: a number, not a good one


def test_keypoint_loss_runs_on_a_channels_last_model():
    """The training loop puts CUDA models in channels_last; torchvision's keypoint loss flattens
    the predictor's heatmaps with ``.view``, which failed on that layout before the predictor
    returned them contiguous. Same layout here on the CPU."""
    torch.manual_seed(0)
    settings = RCNNSettings(min_size=96, max_size=128, **SMALL)
    net = build_keypointrcnn(build_backbone("efficientnet_lite0", None), 2, settings, keypoint_head_dim=16)
    net = net.to(memory_format=torch.channels_last).train()
    boxes = torch.tensor([[10.0, 12.0, 60.0, 80.0], [70.0, 20.0, 120.0, 90.0]])
    kps = torch.cat([boxes[:, None, :2] + torch.rand(2, 17, 2) * 40, torch.full((2, 17, 1), 2.0)], dim=2)
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 1]), "keypoints": kps}]
    losses = net([torch.rand(3, 96, 128)], targets)
    assert torch.isfinite(losses["loss_keypoint"])
    sum(losses.values()).backward()
