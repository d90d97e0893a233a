"""The EfficientNet-Lite0 ImageNet classifier is not part of the detectors, and checkpoints written
while it was (``synthloop.training.legacy``) still evaluate, prune, quantize and resume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ddp_spec_dict

from synthloop.training import build as build_module
from synthloop.training.backbones import EfficientNetLite0, build_backbone
from synthloop.training.build import build_model
from synthloop.training.checkpoints import load_model
from synthloop.training.legacy import attach_legacy_classifier, has_legacy_classifier
from synthloop.training.loop import load_checkpoint, train
from synthloop.training.predictor import Predictor
from synthloop.training.spec import parse_spec

torch.set_num_threads(1)


def _spec(data: dict[str, Path], family: str = "detectnet_v2", **over):
    """The DDP tests' blend spec (helpers.ddp_spec_dict) on the default Lite0 backbone (pretrained,
    batch norms training), AdamW with weight decay, so the removed parameters had optimizer state in
    the old layout."""
    d = ddp_spec_dict(
        data,
        model={"family": family, "input_width": 96, "input_height": 64},
        backbone={"name": "efficientnet_lite0", "weights": "package", "freeze_bn": False},
        optimizer={"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
        seed=5,
    )
    d.update(over)
    return parse_spec(d)


def _targets(family: str) -> list[dict[str, torch.Tensor]]:
    t = {"boxes": torch.tensor([[10.0, 8.0, 50.0, 40.0]]), "labels": torch.tensor([1])}
    if family == "mask_rcnn":
        m = torch.zeros(1, 64, 96, dtype=torch.uint8)
        m[0, 8:40, 10:50] = 1
        t["masks"] = m
    return [t, {k: v.clone() for k, v in t.items()}]


@pytest.mark.parametrize("family", ["detectnet_v2", "mask_rcnn"])
def test_every_trainable_parameter_of_a_lite0_detector_gets_a_gradient(data, family):
    """What data-parallel training needs (DDP fails on a parameter without a gradient); the old
    backbone kept the 1280-channel head + classifier, 1.69 M parameters no loss reaches."""
    spec = _spec(data, family)
    anchors = (16, 32, 64, 128) if family == "mask_rcnn" else None
    model = build_model(spec, ["a", "b"], anchors, pretrained=False).train()
    losses = model([torch.rand(3, 64, 96), torch.rand(3, 64, 96)], _targets(family))
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert not has_legacy_classifier(model.state_dict())
    # the backbone alone: stem + blocks, nothing after the stride-32 block
    bb = build_backbone("efficientnet_lite0", weights=None)
    full = EfficientNetLite0()
    kept = sum(p.numel() for m in (full.stem, full.blocks) for p in m.parameters())
    assert sum(p.numel() for p in bb.parameters()) == kept == 4_652_008 - 1_281_000 - 412_160


def _legacy_build_backbone(*args, **kwargs):
    """build_backbone as it was: the Lite0 classifier still attached (registered at its old place;
    the RNG is forked so the modules initialized after it get the same values as without it)."""
    bb = build_backbone(*args, **kwargs)
    with torch.random.fork_rng():
        attach_legacy_classifier(bb)
    return bb


def test_a_run_saved_with_the_classifier_resumes_to_the_same_weights(data, tmp_path, monkeypatch):
    spec = _spec(data)
    train(spec, tmp_path / "full", quiet=True)
    with monkeypatch.context() as m:
        m.setattr(build_module, "build_backbone", _legacy_build_backbone)
        train(spec, tmp_path / "cut", quiet=True, stop_after=2)
    old = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert has_legacy_classifier(old["model"])
    # 5 removed trainable parameters (conv head, its batch norm's weight and bias, the classifier's
    # two) in the optimizer's list; they never had a gradient, so no moments
    new = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["optimizer"]
    assert len(old["optimizer"]["param_groups"][0]["params"]) == len(new["param_groups"][0]["params"]) + 5
    assert len(old["optimizer"]["state"]) == len(new["state"])
    train(spec, tmp_path / "cut", quiet=True, resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert b["state"]["global_step"] == 4 and not has_legacy_classifier(b["model"])
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)


def test_legacy_checkpoints_predict_prune_and_quantize(data, tmp_path, monkeypatch):
    from synthloop.deploy.prune import load_pruned, prune_checkpoint
    from synthloop.deploy.qat import load_qat, ptq_calibrate, save_qat

    spec = _spec(data, iterations=1, checkpoint_interval=1)
    with monkeypatch.context() as m:
        m.setattr(build_module, "build_backbone", _legacy_build_backbone)
        ckpt = train(spec, tmp_path / "old", quiet=True)
    assert has_legacy_classifier(load_checkpoint(ckpt)["model"])
    x = torch.rand(1, 3, 64, 96)
    ref = Predictor.from_checkpoint(ckpt).model.eval()
    loaded = load_model(ckpt)
    with torch.no_grad():
        for a, b in zip(ref.head(x), loaded.model.head(x), strict=True):
            torch.testing.assert_close(a, b)
    assert not has_legacy_classifier(loaded.model.state_dict())

    prune_checkpoint(ckpt, tmp_path / "pruned.pt", threshold=0.9, min_filters=8, granularity=8)
    assert load_pruned(tmp_path / "pruned.pt").head(x)[0].shape == ref.head(x)[0].shape

    # a QAT checkpoint saved by the old layout: its quantizer state names the classifier's layers
    old_model = attach_legacy_classifier(load_model(ckpt).model)
    raw = ptq_calibrate(old_model, loaded.desc, [np.random.default_rng(0).random((3, 64, 96), np.float32)])
    save_qat(tmp_path / "qat.pt", raw, loaded.desc)
    raw2, _ = load_qat(tmp_path / "qat.pt")
    with torch.no_grad():
        for a, b in zip(raw(x), raw2(x), strict=True):
            torch.testing.assert_close(a, b)
