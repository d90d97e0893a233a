"""CUDA-graph replay of a training forward/backward (synthloop.training.cuda_graph).

The replay tests need a CUDA device (run them on the GPU machine); on CPU the dispatcher must stay
out of the way, which the CPU tests check."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from synthloop.training.cuda_graph import (
    GraphCaptureError,
    graph_training_forward,
    input_signature,
    remove_graph,
)

torch.set_num_threads(1)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


class Net(nn.Module):
    """conv-BN-ReLU x2 with a dict output, like a backbone returning FPN levels, and a layer the
    forward never reaches."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.unused = nn.Conv2d(8, 8, 1)  # as a backbone's layers after its last returned level

    def forward(self, x):
        fa = self.a(x)
        return {"0": fa, "1": self.b(fa)}


def _loss(out):
    return out["0"].square().mean() + out["1"].mean()


def test_refuses_cpu_examples_eval_mode_and_a_replaced_forward():
    net = Net()
    with pytest.raises(ValueError, match="CUDA"):
        graph_training_forward(net, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="training mode"):
        graph_training_forward(net.eval(), torch.zeros(1, 3, 8, 8))
    net.forward = lambda x: x
    with pytest.raises(ValueError, match="already replaced"):
        graph_training_forward(net.train(), torch.zeros(1, 3, 8, 8))
    remove_graph(net)  # not graphed: nothing to undo
    assert "forward" in net.__dict__


def test_signature_tells_layouts_apart():
    x = torch.randn(2, 3, 4, 5)
    assert input_signature(x) != input_signature(x.contiguous(memory_format=torch.channels_last))
    assert input_signature(x) != input_signature(x[:1])


def _train_steps(net, xs, amp: bool):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    losses = []
    for x in xs:
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = _loss(net(x))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    return losses


@cuda
@pytest.mark.parametrize("amp,frozen_first", [(False, False), (True, False), (True, True)])
def test_graphed_training_equals_eager(amp, frozen_first):
    """frozen_first: the first level comes from frozen layers only (``freeze_blocks``), so it is an
    output that does not require grad, next to one that does."""
    torch.manual_seed(0)
    torch.backends.cudnn.deterministic = True
    dev = torch.device("cuda")
    eager = Net().to(dev).train()
    if frozen_first:
        eager.a.requires_grad_(False)
    graphed = copy.deepcopy(eager)
    xs = [torch.randn(4, 3, 32, 32, device=dev) for _ in range(4)]
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        stats = graph_training_forward(graphed, torch.zeros_like(xs[0]))
    want = _train_steps(eager, xs, amp)
    got = _train_steps(graphed, xs, amp)
    assert stats.replays == 4 and stats.eager == 0
    assert graphed.unused.weight.grad is None  # untouched, as in eager mode
    tol = 2e-3 if amp else 1e-5
    assert got == pytest.approx(want, rel=tol, abs=tol)
    for (name, p), q in zip(eager.named_parameters(), graphed.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=tol, atol=tol), name
    # BatchNorm statistics moved once per step, not also during capture's warm-up passes
    for (name, b), c in zip(eager.named_buffers(), graphed.buffers(), strict=True):
        assert torch.allclose(b.float(), c.float(), rtol=tol, atol=tol), name
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        out = graphed(xs[0])
    assert stats.replays == 5 and out["0"].requires_grad is not frozen_first and out["1"].requires_grad
    remove_graph(graphed)
    assert "forward" not in graphed.__dict__


@cuda
def test_other_shapes_eval_no_grad_and_autocast_off_run_eagerly():
    dev = torch.device("cuda")
    net = Net().to(dev).train()
    x = torch.randn(4, 3, 32, 32, device=dev)
    stats = graph_training_forward(net, x)
    _loss(net(x)).backward()
    assert stats.replays == 1
    short = torch.randn(3, 3, 32, 32, device=dev)
    ref = type(net).forward(net, short)
    assert torch.allclose(net(short)["1"], ref["1"])
    with torch.no_grad():
        net(x)
    with torch.autocast("cuda", dtype=torch.float16):
        net(x)
    net(x.contiguous(memory_format=torch.channels_last))
    net.eval()
    net(x)
    assert stats.replays == 1 and stats.eager == 5
    # the replayed output follows the parameters as they are now
    net.train()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    out = net(x)["0"]
    assert stats.replays == 2
    assert torch.allclose(out, type(net).forward(net, x)["0"], atol=1e-5)


class Syncing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * float(y.mean())  # a host sync: cannot be captured


@cuda
def test_capture_failure_is_a_clear_error_and_leaves_the_module_as_it_was():
    dev = torch.device("cuda")
    net = Syncing().to(dev).train()
    x = torch.randn(2, 3, 8, 8, device=dev)
    with pytest.raises(GraphCaptureError, match="Syncing"):
        graph_training_forward(net, x)
    assert "forward" not in net.__dict__
    frozen = Net().to(dev).train().requires_grad_(False)
    with pytest.raises(GraphCaptureError, match="no tensor that requires grad"):
        graph_training_forward(frozen, x)
