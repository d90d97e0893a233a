"""Post-pruning calibration: batch-norm statistics re-estimated exactly, removed channels' means
folded into biases, the uniform allocation, and the CLI's --calib / --target-ratio."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from synthloop.deploy.errors import DeployError  # noqa: E402
from synthloop.deploy.graph import DetectNetRaw  # noqa: E402
from synthloop.deploy.prune import kept_count_uniform, prune_model  # noqa: E402
from synthloop.deploy.recalibrate import conv_input_means, recalibrate_bn  # noqa: E402
from synthloop.training.checkpoints import ModelDesc  # noqa: E402
from synthloop.training.checkpoints import build_from_desc as build_model  # noqa: E402

torch.set_num_threads(1)


def _desc(backbone="resnet18", size=64):
    return ModelDesc(
        family="detectnet_v2",
        backbone=backbone,
        class_names=["a", "b"],
        category_ids=[1, 2],
        input_width=size,
        input_height=size,
    )


def _batches(n=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, size, size, generator=g) for _ in range(n)]


def test_recalibrate_bn_gives_the_exact_mean_and_keeps_weights():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4))
    net[1].momentum = 0.5
    xs = _batches()
    weights = [p.clone() for p in net.parameters()]
    assert recalibrate_bn(net, xs) == 2
    assert not net.training and net[1].momentum == 0.5  # eval mode, momentum restored
    with torch.no_grad():
        y = torch.cat([net[0](x) for x in xs])
    # cumulative average of equal-size batch means = the mean over all of them
    torch.testing.assert_close(net[1].running_mean, y.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters(), strict=True))


def test_recalibrate_bn_without_batches_keeps_the_old_statistics():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    net[1].running_mean.fill_(0.7)
    with pytest.raises(DeployError, match="no calibration batch"):
        recalibrate_bn(net, [])
    assert torch.all(net[1].running_mean == 0.7)
    with pytest.raises(DeployError, match="no batch norm"):
        recalibrate_bn(nn.Conv2d(3, 4, 1), _batches(1))


def test_conv_input_means_are_per_channel_means():
    net = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU(), nn.Conv2d(5, 2, 1))
    xs = _batches()
    means = conv_input_means(net, xs)
    x = torch.cat(xs)
    torch.testing.assert_close(means[net[0]], x.mean((0, 2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(means[net[2]], net[1](net[0](x)).mean((0, 2, 3)))


def test_removed_constant_channels_are_folded_into_the_next_bias():
    """fuse.0 channels with zero filters and a positive bias output a constant (ReLU(b)); pruning
    them changes the head outputs unless that constant goes into the heads' biases."""
    desc = _desc()
    torch.manual_seed(0)
    model = build_model(desc).eval()
    conv = model.fuse[0]
    with torch.no_grad():
        conv.weight[:24] = 0
        conv.bias[:24] = torch.linspace(0.5, 2.0, 24)
    x = _batches(1, seed=3)[0]
    with torch.no_grad():
        ref = DetectNetRaw(model)(x)
    outs = {}
    for compensate in (False, True):
        m = copy.deepcopy(model)
        means = conv_input_means(DetectNetRaw(m), _batches(2, seed=4)) if compensate else None
        # a threshold just above 0 removes exactly the zero filters (and nothing else of fuse.0)
        r = prune_model(m, desc, threshold=1e-9, min_filters=1, granularity=1, input_means=means)
        assert ("fuse.0", 128, 104) in [(lay.layer, lay.before, lay.after) for lay in r.layers]
        with torch.no_grad():
            outs[compensate] = DetectNetRaw(m)(x)
    err = {k: max((a - b).abs().max().item() for a, b in zip(v, ref, strict=True)) for k, v in outs.items()}
    assert err[False] > 0.1  # the constants mattered
    assert err[True] < 1e-4  # and are restored exactly (1x1 heads, constant inputs)


def test_uniform_allocation_prunes_every_group_alike():
    with pytest.raises(DeployError, match="fraction"):
        prune_model(build_model(_desc()), _desc(), threshold=1.5, allocation="uniform")
    assert kept_count_uniform(100, 0.3, 1, 1) == 70
    assert kept_count_uniform(100, 0.3, 1, 8) == 72  # rounded up to -pg
    assert kept_count_uniform(100, 0.95, 16, 8) == 16  # at least -nf
    assert kept_count_uniform(10, 0.5, 16, 8) == 10  # never more than the layer has
    desc = _desc()
    torch.manual_seed(0)
    model = build_model(desc)
    r = prune_model(model, desc, threshold=0.5, min_filters=8, granularity=1, allocation="uniform")
    assert r.layers
    for lay in r.layers:
        assert lay.after == max(lay.before - lay.before // 2, min(8, lay.before))
    with torch.no_grad():
        cov, bbox = DetectNetRaw(model)(torch.rand(1, 3, 64, 64))
    assert cov.shape == (1, 2, 4, 4) and torch.isfinite(bbox).all()


def test_cli_prune_with_target_ratio_and_calibration(tmp_path):
    from helpers import make_checkpoint
    from typer.testing import CliRunner

    from synthloop.commands.deploy import app
    from synthloop.training.checkpoints import load_model
    from synthloop.training.toydata import make_toy_dataset

    make_checkpoint(tmp_path / "dn.pt", size=(64, 48))
    toy = make_toy_dataset(tmp_path / "toy", num_frames=4, width=80, height=60, seed=1)
    out = tmp_path / "p.pt"
    args = ["prune", str(tmp_path / "dn.pt"), "--out", str(out), "--target-ratio", "0.5"]
    args += ["-nf", "8", "--allocation", "uniform", "--calib", str(toy.root), "--calib-images", "3"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "re-estimated on 3 images" in r.output
    rep = load_model(out).extra["prune_report"]
    assert rep["params_after"] <= 0.5 * rep["params_before"]
    assert rep["calibration_images"] == 3 and rep["recalibrated_bn"] > 0
    (tmp_path / "empty").mkdir()
    for calib in (tmp_path / "empty", tmp_path / "missing.json"):
        bad = CliRunner().invoke(
            app, ["prune", str(tmp_path / "dn.pt"), "--out", str(out), "--calib", str(calib)]
        )
        assert bad.exit_code != 0 and "calibration data" in bad.output


def test_maskrcnn_prune_with_calibration_keeps_a_working_model(tmp_path):
    """Mask R-CNN: calibration runs the backbone + FPN on normalized images (the model's own
    image_mean / image_std); the pruned model still predicts."""
    from helpers import make_checkpoint

    from synthloop.deploy.prune import prune_checkpoint
    from synthloop.training.checkpoints import load_model
    from synthloop.training.toydata import make_toy_dataset

    make_checkpoint(tmp_path / "mr.pt", family="mask_rcnn", size=(64, 48))
    toy = make_toy_dataset(tmp_path / "toy", num_frames=2, width=80, height=60, seed=2)
    images = [f.image_path for f in toy.frames]
    _, rep = prune_checkpoint(
        tmp_path / "mr.pt",
        tmp_path / "p.pt",
        threshold=0.3,
        min_filters=8,
        allocation="uniform",
        calibration=images,
    )
    assert rep.recalibrated_bn > 0 and rep.calibration_images == 2 and rep.param_ratio < 1
    model = load_model(tmp_path / "p.pt").model.eval()
    # the first batch norm's mean is conv1's output mean on the *normalized* images
    from synthloop.deploy.recalibrate import image_batches

    x = torch.cat(list(image_batches(images, 64, 48)))
    mean = torch.tensor(model.transform.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.transform.image_std).view(1, 3, 1, 1)
    body = model.backbone.body.body
    with torch.no_grad():
        want = body.conv1((x - mean) / std).mean((0, 2, 3))
    torch.testing.assert_close(body.bn1.running_mean, want, atol=1e-4, rtol=1e-4)
    assert (
        model.backbone.fpn.layer_blocks[0][0].out_channels
        == load_model(tmp_path / "mr.pt").model.backbone.fpn.layer_blocks[0][0].out_channels
    )
    with torch.no_grad():
        out = model([torch.rand(3, 48, 64)])
    assert set(out[0]) >= {"boxes", "scores", "labels", "masks"}


def test_recalibrate_bn_puts_the_statistics_back_when_a_batch_fails():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    net[1].running_mean.fill_(0.7)
    net[1].running_var.fill_(2.0)

    def batches():
        yield torch.rand(2, 3, 8, 8)
        raise OSError("corrupt image")

    with pytest.raises(OSError):
        recalibrate_bn(net, batches())
    assert torch.all(net[1].running_mean == 0.7) and torch.all(net[1].running_var == 2.0)
    assert not net.training


class _Concat(nn.Module):
    """Two convs concatenated into a 1x1 conv with a bias: that conv loses inputs to two groups."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c(torch.relu(torch.cat([self.a(x), self.b(x)], 1)))


def test_bias_folding_follows_channel_indices_across_groups():
    """After the first group shrinks c's input, the second group's indices are shifted: the folded
    means must still be the removed channels' own (constant channels: exact)."""
    from synthloop.deploy.prune import prune_traced

    torch.manual_seed(0)
    net = _Concat().eval()
    with torch.no_grad():  # channel 1 of a and channels 0, 2 of b output constants
        for conv, chans in ((net.a, [1]), (net.b, [0, 2])):
            conv.weight[chans] = 0
            conv.bias[chans] = torch.tensor([0.5, 1.5, 2.5])[: len(chans)]
    x = _batches(1)[0]
    with torch.no_grad():
        ref = net(x)
    means = conv_input_means(net, _batches(2, seed=1))
    layers = prune_traced(net, [net.c], x[:1], 1e-9, 1, 1, input_means=means)
    assert sorted((lay.before, lay.after) for lay in layers) == [(4, 2), (4, 3)]
    assert net.c.in_channels == 5
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)
