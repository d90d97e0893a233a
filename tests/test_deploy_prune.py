"""Channel pruning: valid graph, unchanged outputs' shapes, -nf / -pg respected, fewer params."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from synthloop.deploy.errors import DeployError  # noqa: E402
from synthloop.deploy.graph import DetectNetRaw  # noqa: E402
from synthloop.deploy.prune import (  # noqa: E402
    kept_count,
    load_pruned,
    prune_checkpoint,
    prune_model,
    threshold_for_ratio,
)
from synthloop.training.checkpoints import ModelDesc, load_model  # noqa: E402
from synthloop.training.checkpoints import build_from_desc as build_model  # noqa: E402

torch.set_num_threads(1)


def spread_filters(model, seed=0):
    """Scale each conv filter by a seeded random factor so L1 norms differ widely (like trained nets)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(torch.rand(m.out_channels, 1, 1, 1, generator=g) ** 2)


def spread_detectnet(backbone: str, num_classes: int = 2):
    """(desc, model): a 64x64 DetectNet_v2, seeded random weights spread by :func:`spread_filters`."""
    desc = ModelDesc(
        family="detectnet_v2",
        backbone=backbone,
        class_names=["a", "b", "c"][:num_classes],
        category_ids=[1, 2, 3][:num_classes],
        input_width=64,
        input_height=64,
    )
    torch.manual_seed(0)
    model = build_model(desc)
    spread_filters(model)
    return desc, model


def test_kept_count_rules():
    s = torch.tensor([1.0, 0.9, 0.5, 0.2, 0.1, 0.05] + [0.01] * 26)
    assert kept_count(s, 0.15, 1, 1) == 4
    assert kept_count(s, 0.15, 1, 8) == 8  # rounded up to the granularity
    assert kept_count(s, 0.15, 16, 8) == 16  # at least -nf
    assert kept_count(s, 0.15, 64, 8) == 32  # never more than the layer has
    assert kept_count(s, 2.0, 1, 1) == 1  # never zero


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_prune_detectnet(backbone, tmp_path):
    desc, model = spread_detectnet(backbone)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        shapes = [t.shape for t in DetectNetRaw(model)(x)]
    convs_before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    report = prune_model(model, desc, threshold=0.3, min_filters=16, granularity=8)
    with torch.no_grad():
        out = DetectNetRaw(model)(x)
    assert [t.shape for t in out] == shapes
    assert all(torch.isfinite(t).all() for t in out)
    assert (
        report.layers
        and report.params_after < report.params_before
        and report.macs_after < report.macs_before
    )
    assert 0 < report.param_ratio < 1
    for layer in report.layers:
        assert layer.after < layer.before
        assert layer.after >= min(16, layer.before)
        assert layer.after % 8 == 0 or layer.after == layer.before
    convs_after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs_after["cov_head"] == 2 and convs_after["bbox_head"] == 8
    assert any(convs_after[n] < convs_before[n] for n in convs_before)


def test_pruned_checkpoint_roundtrip(tmp_path):
    from helpers import make_checkpoint

    model = make_checkpoint(tmp_path / "dn.pt", backbone="resnet18", spread=True)
    loaded, report = prune_checkpoint(
        tmp_path / "dn.pt", tmp_path / "pruned.pt", threshold=0.3, min_filters=8, granularity=4
    )
    again = load_model(tmp_path / "pruned.pt", family="detectnet_v2")
    assert again.kind == "pruned" and again.desc == loaded.desc
    assert again.extra["prune_report"]["params_after"] == report.params_after
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = DetectNetRaw(loaded.model)(x), DetectNetRaw(load_pruned(tmp_path / "pruned.pt"))(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    n_params = sum(p.numel() for p in again.model.parameters())
    assert n_params < sum(p.numel() for p in model.parameters())
    # the pruned graph fine-tunes like a freshly built model: loss dict, gradients everywhere
    net = load_pruned(tmp_path / "pruned.pt").train()
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1])}]
    losses = net([torch.rand(3, 64, 64)], targets)
    sum(losses.values()).backward()
    assert set(losses) == {"loss_cov", "loss_bbox"} and all(torch.isfinite(v) for v in losses.values())
    assert all(
        p.grad is not None
        for p in net.parameters()
        if p.requires_grad and p.dim() == 4  # every conv weight (ResNet fc is an Identity)
    )


def test_prune_maskrcnn_backbone_keeps_fpn_width():
    desc = ModelDesc(
        family="mask_rcnn",
        backbone="resnet18",
        class_names=["a", "b"],
        category_ids=[1, 2],
        input_width=64,
        input_height=64,
        anchor_sizes=[16, 32, 64, 128],
    )
    torch.manual_seed(0)
    model = build_model(desc)
    spread_filters(model)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = {k: v.shape for k, v in model.backbone(x).items()}
    report = prune_model(model, desc, threshold=0.3, min_filters=16, granularity=8)
    with torch.no_grad():
        after = {k: v.shape for k, v in model.backbone(x).items()}
        dets = model([x[0]])
    assert after == before  # FPN maps (256 channels) unchanged
    assert report.params_after < report.params_before
    assert set(dets[0]) >= {"boxes", "scores", "labels", "masks"}


def test_threshold_for_ratio_meets_the_target_tightly():
    """The searched -pth gives at most the target ratio, and a visibly smaller -pth exceeds it."""
    desc, model = spread_detectnet("resnet18", num_classes=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t, r = threshold_for_ratio(model, desc, 0.5, min_filters=8, granularity=8, steps=10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched
    assert r <= 0.5
    again = prune_model(copy.deepcopy(model), desc, t, 8, 8).param_ratio
    assert again == pytest.approx(r)
    assert prune_model(copy.deepcopy(model), desc, max(t - 0.01, 0.0), 8, 8).param_ratio > 0.5
    with pytest.raises(DeployError, match="no threshold reaches"):
        threshold_for_ratio(model, desc, 0.001, min_filters=8, granularity=8)


def test_excluded_layers_keep_their_width_and_the_rest_meets_the_budget(tmp_path):
    """``exclude`` (TLT --excluded_layers): the stem, the first stages and the DetectNet head convs
    keep every channel; the uniform cut of the rest is searched to the same parameter target."""
    desc, model = spread_detectnet("efficientnet_lite0")
    exclude = ["backbone.body.stem", "backbone.body.blocks.0", "backbone.body.blocks.1", "fuse", "lat16"]
    kept = {
        n: m.out_channels
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and any(n == e or n.startswith(e + ".") for e in exclude)
    }
    assert "backbone.body.blocks.11.dw.0" not in kept  # a prefix is a module name, not a string prefix
    t, r = threshold_for_ratio(model, desc, 0.5, 8, 8, allocation="uniform", exclude=exclude)
    assert r <= 0.5
    report = prune_model(model, desc, t, 8, 8, allocation="uniform", exclude=exclude)
    assert report.param_ratio == pytest.approx(r) and report.excluded == exclude
    after = dict(model.named_modules())
    assert {n: after[n].out_channels for n in kept} == kept
    assert after["lat16"].in_channels < 112  # what it reads (stage 5) was cut: it follows
    assert after["backbone.body.blocks.5.dw.0"].out_channels < 240  # not excluded: cut
    with torch.no_grad():
        assert DetectNetRaw(model)(torch.rand(1, 3, 64, 64))[0].shape == (1, 2, 4, 4)
    with pytest.raises(DeployError, match="backbone.body.nothing"):
        prune_model(copy.deepcopy(model), desc, 0.3, 8, 8, exclude=["backbone.body.nothing"])
