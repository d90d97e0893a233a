"""Replay a module's training forward and backward as CUDA graphs.

A detection backbone (+FPN) sees one input shape for a whole run: ``(B, 3, H, W)`` at the spec's
input size. Run eagerly, its forward and backward are a few hundred small kernels whose launches,
not the GPU, bound the training step (``benchmarks/train.py --profile``). Captured once, each step
replays them as two graph launches.

:func:`graph_training_forward` captures the forward and the backward (gradients of the parameters
that require grad) for one example input, before training starts, and installs a dispatcher as
``module.forward``:

* calls in training mode, with grad enabled, whose input has the example's signature (shape, dtype,
  device, memory layout, autocast state) replay the graphs;
* any other call (eval mode, ``no_grad``, another shape such as a short last batch, autocast off)
  runs the module's own forward, on the same parameters.

An output computed by frozen layers only (a backbone's stride-8 level under ``freeze_blocks``) is
replayed as a non-differentiable tensor, as eager autograd would treat it; at least one output
must require grad.

Capture runs a few warm-up passes on a side stream; the module's buffers (BatchNorm running
statistics, ``num_batches_tracked``) are restored afterwards, so a graphed run updates them once
per step, as an eager run does. Parameters receive gradients through autograd as before (the
optimizer, GradScaler and ``zero_grad(set_to_none=True)`` work unchanged; a parameter's ``.grad``
may alias the graph's gradient buffer until the next replay, so accumulate over several forwards
only in eager mode). The graphs read parameters in place: moving or replacing a parameter tensor
after capture (``module.to(...)``, ``param.data = ...``) is not allowed; ``load_state_dict`` copies
in place and is. Autocast's weight-cast cache is off inside the graph: the casts are part of it
and re-run at every replay on the parameters as they are then.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten


class GraphCaptureError(RuntimeError):
    """The module could not be captured (a host sync or a data-dependent shape inside it)."""


def _layout(x: Tensor) -> str:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return "channels_last"
    return "contiguous" if x.is_contiguous() else "strided"


def input_signature(x: Tensor) -> tuple[Any, ...]:
    """What a captured graph is specific to: shape, dtype, device, memory layout and the autocast
    state (enabled, lower-precision dtype) of the call."""
    amp = torch.is_autocast_enabled(x.device.type)
    amp_dtype = torch.get_autocast_dtype(x.device.type) if amp else None
    return (tuple(x.shape), x.dtype, str(x.device), _layout(x), amp, amp_dtype)


@dataclass
class GraphStats:
    """How often the dispatcher replayed the graphs and ran eagerly, and for which input."""

    signature: tuple[Any, ...]
    replays: int = 0
    eager: int = 0


@dataclass
class _Graphs:
    fwd: torch.cuda.CUDAGraph
    bwd: torch.cuda.CUDAGraph
    static_in: Tensor
    static_outs: list[Tensor]
    out_spec: Any
    static_grad_outs: list[Tensor]  # one per differentiable output
    static_grads: list[Tensor | None]
    differentiable: list[bool]  # per output: False for one computed by frozen layers only


class _Replay(torch.autograd.Function):
    """Forward: copy the input in, replay the forward graph. Backward: copy the output gradients in,
    replay the backward graph, hand out the parameter gradients it wrote."""

    @staticmethod
    def forward(ctx, g: _Graphs, x: Tensor, *params: Tensor) -> tuple[Tensor, ...]:
        if g.static_in.data_ptr() != x.data_ptr():
            g.static_in.copy_(x)
        g.fwd.replay()
        ctx.graphs = g
        outs = tuple(o.detach() for o in g.static_outs)
        ctx.mark_non_differentiable(*(o for o, d in zip(outs, g.differentiable, strict=True) if not d))
        return outs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        g: _Graphs = ctx.graphs
        grads = tuple(gr for gr, d in zip(grads, g.differentiable, strict=True) if d)
        for static, grad in zip(g.static_grad_outs, grads, strict=True):
            if grad is None:
                static.zero_()
            elif static.data_ptr() != grad.data_ptr():
                static.copy_(grad)
        g.bwd.replay()
        return (None, None, *(None if s is None else s.detach() for s in g.static_grads))


def _capture(
    module: nn.Module, example: Tensor, amp_dtype: torch.dtype | None, warmup: int
) -> tuple[_Graphs, tuple[nn.Parameter, ...]]:
    params = tuple(p for p in module.parameters() if p.requires_grad)
    forward = type(module).forward.__get__(module)
    static_in = example.detach().clone(memory_format=torch.preserve_format)

    def run() -> tuple[list[Tensor], Any]:
        dtype, enabled = amp_dtype or torch.float16, amp_dtype is not None
        with torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False):
            outs, spec = tree_flatten(forward(static_in))
        if not outs or not all(isinstance(o, Tensor) for o in outs):
            raise GraphCaptureError(f"{type(module).__name__} must return tensors")
        if not any(o.requires_grad for o in outs):
            raise GraphCaptureError(f"{type(module).__name__} returns no tensor that requires grad")
        return outs, spec

    def grads_of(outs: list[Tensor], grad_outs: list[Tensor]) -> tuple[Tensor | None, ...]:
        # only the outputs that require grad (an early level computed by frozen stages does not);
        # allow_unused: parameters the forward does not reach (layers after a backbone's last
        # returned level) get no gradient, as in eager mode
        diff = [o for o in outs if o.requires_grad]
        return torch.autograd.grad(diff, params, grad_outputs=grad_outs, allow_unused=True)

    torch.cuda.synchronize()
    gc.collect()  # nothing may be freed back to the driver while a capture runs
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up: cuDNN autotuning and lazy init stay out of the graph
        for _ in range(warmup):
            outs, _ = run()
            grads_of(outs, [torch.zeros_like(o) for o in outs if o.requires_grad])
        del outs
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    pool = torch.cuda.graph_pool_handle()
    fwd, bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    # thread_local: another thread's CUDA call (the DataLoader's pin-memory thread) cannot void it
    with torch.cuda.graph(fwd, pool=pool, stream=stream, capture_error_mode="thread_local"):
        outs, spec = run()
    differentiable = [o.requires_grad for o in outs]
    static_grad_outs = [torch.empty_like(o) for o in outs if o.requires_grad]
    with torch.cuda.graph(bwd, pool=pool, stream=stream, capture_error_mode="thread_local"):
        grads = grads_of(outs, static_grad_outs)
    # keep the output buffers, not the captured autograd graph: its nodes were made on the capture
    # stream, and training's backward runs on the default one
    static_outs = [o.detach() for o in outs]
    del outs
    static_grads = [None if g is None else g.detach() for g in grads]
    graphs = _Graphs(fwd, bwd, static_in, static_outs, spec, static_grad_outs, static_grads, differentiable)
    return graphs, params


class _Dispatcher:
    """``module.forward`` replacement; see the module docstring."""

    def __init__(
        self, module: nn.Module, graphs: _Graphs, params: tuple[nn.Parameter, ...], sig: tuple[Any, ...]
    ):
        self.module = module
        self.eager = type(module).forward.__get__(module)
        self.graphs = graphs
        self.params = params
        self.stats = GraphStats(signature=sig)

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            not args
            and not kwargs
            and isinstance(x, Tensor)
            and self.module.training
            and torch.is_grad_enabled()
            and not torch.cuda.is_current_stream_capturing()
            and input_signature(x) == self.stats.signature
        ):
            self.stats.replays += 1
            outs = _Replay.apply(self.graphs, x, *self.params)
            return tree_unflatten(list(outs), self.graphs.out_spec)
        self.stats.eager += 1
        return self.eager(x, *args, **kwargs)


def graph_training_forward(module: nn.Module, example: Tensor, warmup: int = 3) -> GraphStats:
    """Capture ``module``'s training forward/backward for inputs like ``example`` (a CUDA tensor;
    the current autocast state is captured with it) and install the replaying dispatcher, in place.
    Returns its live stats. ``module``: in training mode, one tensor in, tensors (any nesting of
    dicts/tuples/lists) out, no hooks, staying where it is from now on. Raises
    :class:`GraphCaptureError` when capture fails (the module is left as it was)."""
    if "forward" in module.__dict__:
        raise ValueError(f"{type(module).__name__}.forward is already replaced on the instance")
    if not module.training:
        raise ValueError(f"{type(module).__name__} must be in training mode to capture its training step")
    if not example.is_cuda:
        raise ValueError("CUDA graphs need a CUDA example input")
    amp_dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
    sig = input_signature(example)
    saved = [b.detach().clone() for b in module.buffers()]
    try:
        graphs, params = _capture(module, example, amp_dtype, warmup)
    except GraphCaptureError:
        raise
    except RuntimeError as e:
        raise GraphCaptureError(f"CUDA graph capture of {type(module).__name__} failed: {e}") from e
    finally:
        with torch.no_grad():
            for b, s in zip(module.buffers(), saved, strict=True):
                b.copy_(s)
    d = _Dispatcher(module, graphs, params, sig)
    module.forward = d
    return d.stats


def remove_graph(module: nn.Module) -> None:
    """Undo :func:`graph_training_forward`: the module runs its own forward again (and the graphs
    and their memory pool are freed)."""
    if isinstance(module.__dict__.get("forward"), _Dispatcher):
        del module.forward
