"""Graph helpers shared by pruning, quantization and export: the raw-output DetectNet module,
batch-norm folding, half-precision islands, and counting what a forward pass actually uses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from synthloop.training.detectnet import as_detectnet


class DetectNetRaw(nn.Module):
    """DetectNetV2 without post-processing (TLT style).

    ``forward(x)``: x (B, 3, H, W) float RGB in [0, 1] (the model normalizes internally) ->
    ``cov`` (B, C, H/16, W/16) coverage *logits* and ``bbox`` (B, C, 4, H/16, W/16) encoded boxes
    (see :mod:`synthloop.training.rasterizer`). Sigmoid and DBSCAN clustering happen outside.
    """

    def __init__(self, detectnet: nn.Module):
        super().__init__()
        self.net = as_detectnet(detectnet)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.head(x)


def cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating-point tensor cast to ``dtype``, through tuples, lists and dicts
    (an FPN's ``OrderedDict`` of feature maps stays one); other values are returned as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, cast_floats(v, dtype)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cast_floats(v, dtype) for v in obj)
    return obj


class HalfIO(nn.Module):
    """``module`` computing in float16 behind float32 inputs and outputs (casts at the boundary,
    which the ONNX exporter writes as ``Cast`` nodes around a half-precision subgraph)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module.half()

    def forward(self, *args: Any) -> Any:
        return cast_floats(self.inner(*cast_floats(args, torch.float16)), torch.float32)


def half_submodules(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """Wrap each named submodule of ``model`` (dotted paths, e.g. ``roi_heads.box_head``) in
    :class:`HalfIO`, in place; the rest of the model keeps computing in float32. Returns ``model``."""
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, HalfIO(getattr(owner, attr)))
    return model


def executed_modules(module: nn.Module, run: Callable[[], object]) -> list[nn.Module]:
    """Leaf modules of ``module`` that ``run()`` calls, in first-call order."""
    seen: dict[int, nn.Module] = {}

    def hook(mod: nn.Module, inputs: object, output: object) -> None:  # must return None
        seen.setdefault(id(mod), mod)

    hooks = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return list(seen.values())


def count_used_params(module: nn.Module, run: Callable[[], object]) -> int:
    """Parameters of the leaf modules ``run()`` executes (unused heads, e.g. the EfficientNet
    classifier kept for weight compatibility, do not count)."""
    return sum(p.numel() for m in executed_modules(module, run) for p in m.parameters(recurse=False))


def fold_batchnorm(model: nn.Module, example: torch.Tensor | tuple, call: Callable | None = None) -> int:
    """Fold every BatchNorm2d that directly consumes a Conv2d's output into that conv (eval mode).

    The pairs are found by running ``model`` once on ``example`` (``call(model, example)`` when
    given) and matching the BN input tensor to the conv output tensor, so it works for any module
    structure (Sequential conv-bn-act, torchvision ResNets' ``conv1``/``bn1``). The conv gets the
    folded weight and bias, the BN becomes ``nn.Identity``. Returns the number of folded pairs.
    Numerically exact up to float rounding for a model in eval mode.
    """
    produced: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(mod: nn.Conv2d, inputs: object, output: torch.Tensor) -> None:
        produced[id(output)] = mod

    def before_bn(mod: nn.BatchNorm2d, inputs: tuple) -> None:
        if id(inputs[0]) in produced:
            pairs.append((produced[id(inputs[0])], mod))

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(before_bn))
    was_training = model.training
    model.eval()
    _run_once(model, example, call, hooks)
    names = {m: n for n, m in model.named_modules()}

    def replace(mod: nn.Module, new: nn.Module) -> None:
        parent, _, attr = names[mod].rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)

    done = 0
    for conv, bn in dict((id(b), (c, b)) for c, b in pairs).values():
        replace(conv, fuse_conv_bn_eval(conv, bn))
        replace(bn, nn.Identity())
        done += 1
    model.train(was_training)
    return done


def static_same_padding(model: nn.Module, example: torch.Tensor | tuple, call: Callable | None = None) -> int:
    """Replace every TF-"SAME" conv (``Conv2dSame``, padding computed from the input shape at run
    time) by a plain ``nn.Conv2d`` with the padding it applies at the input size of ``example``
    (symmetric -> the conv's own ``padding``; asymmetric -> ``ZeroPad2d`` + conv). Valid for that
    input size only: use for fixed-size export / quantization, so the ONNX has no shape arithmetic
    and TensorRT / onnxruntime can fuse the padding into the conv. Returns the number replaced."""
    from synthloop.training.backbones import Conv2dSame

    sizes: dict[int, tuple[int, int]] = {}

    def record(mod: nn.Module, inputs: tuple) -> None:
        sizes[id(mod)] = tuple(inputs[0].shape[-2:])

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Conv2dSame)]
    _run_once(model, example, call, hooks)
    names = {m: n for n, m in model.named_modules()}
    done = 0
    for conv in [m for m in model.modules() if isinstance(m, Conv2dSame) and id(m) in sizes]:
        ih, iw = sizes[id(conv)]
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        top, left = ph // 2, pw // 2
        symmetric = ph % 2 == 0 and pw % 2 == 0
        new = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            (kh, kw),
            (sh, sw),
            (top, left) if symmetric else 0,
            (conv.dilation[0], conv.dilation[1]),
            conv.groups,
            conv.bias is not None,
        )
        new.weight = conv.weight
        if conv.bias is not None:
            new.bias = conv.bias
        repl: nn.Module = (
            new if symmetric else nn.Sequential(nn.ZeroPad2d((left, pw - left, top, ph - top)), new)
        )
        parent, _, attr = names[conv].rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, repl)
        done += 1
    return done


def _run_once(model: nn.Module, example: torch.Tensor | tuple, call: Callable | None, hooks: list) -> None:
    """One no-grad forward of ``model`` on ``example`` (or ``call(model, example)``); removes
    ``hooks`` afterwards, also on error."""
    try:
        with torch.no_grad():
            if call is not None:
                call(model, example)
            elif isinstance(example, tuple):
                model(*example)
            else:
                model(example)
    finally:
        for h in hooks:
            h.remove()
