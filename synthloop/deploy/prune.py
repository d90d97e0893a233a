"""Channel pruning by L1 norm (TLT ``prune -pth -nf -pg``) on a torch-pruning DependencyGraph.

Algorithm, per group of coupled channels (torch-pruning's ``DependencyGraph`` groups every conv
output dimension with everything that must shrink with it: the following batch norms and convs'
inputs, depthwise convs (channels = groups), residual additions that tie several blocks'
outputs, the lateral FPN / DetectNet head convs that read a backbone stage):

1. each conv whose *output* channels are in the group gives per-channel L1 norms of its filters
   (computed on the unpruned weights), normalized by the layer's maximum (``normalizer="max"``,
   TLT's default) or its L2 norm (``"l2"``);
2. a channel's score is the maximum over the group's convs (TLT's ``union`` equalization: a channel
   is kept if any coupled layer needs it);
3. channels with score >= ``threshold`` are kept; the kept count is raised to at least
   ``min_filters`` (``-nf``) and rounded *up* to a multiple of ``granularity`` (``-pg``), capped at
   the current count (a layer is never widened); the lowest-scoring channels are removed.

The output layers are never pruned (DetectNet ``cov_head`` / ``bbox_head``; for Mask R-CNN only the
backbone is pruned, the FPN output width (256, shared by RPN and RoI heads) stays, the FPN's lateral
convs lose the input channels their backbone stage lost), so output shapes do not change.

The pruned model is saved as :data:`~synthloop.deploy.checkpoints.PRUNED_FORMAT`: model
description (incl. the training ExperimentSpec), every conv / BN layer's shape and the weights,
readable with ``weights_only=True``. It carries its own graph (TLT ``load_graph: true``): the
training spec has no field for it yet, so fine-tuning code builds the model with
:func:`load_pruned` instead of ``synthloop.training.build.build_model``::

    model = load_pruned("pruned.pt")          # DetectNetV2 / MaskRCNN with the pruned widths
    model.train()                              # then the usual loss dict: model(images, targets)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from synthloop.deploy.checkpoints import (
    PRUNED_FORMAT,
    LoadedModel,
    ModelDesc,
    layer_shapes,
    load_model,
    refresh_out_channels,
)
from synthloop.deploy.errors import DeployError
from synthloop.deploy.graph import DetectNetRaw, count_used_params


@dataclass
class PrunedLayer:
    """One pruned group, named by its root conv: output channels before and after."""

    layer: str
    before: int
    after: int


@dataclass
class PruneReport:
    """Sizes before/after pruning. ``params_*``: parameters used by the forward pass; ``macs_*``:
    multiply-accumulates of one forward pass at the model's input size (DetectNet: whole network;
    Mask R-CNN: backbone + FPN, the part pruning changes); ``*_ratio`` = after / before."""

    threshold: float
    min_filters: int
    granularity: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    layers: list[PrunedLayer] = field(default_factory=list)

    @property
    def param_ratio(self) -> float:
        return self.params_after / max(self.params_before, 1)

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / max(self.macs_before, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["param_ratio"] = self.param_ratio
        d["macs_ratio"] = self.macs_ratio
        return d


def prunable_graph(model: nn.Module, desc: ModelDesc) -> tuple[nn.Module, list[nn.Module]]:
    """(module to trace, layers never pruned as roots) for the model's family.

    DetectNet: the raw-output network, its two output convs ignored. Mask R-CNN: backbone + FPN,
    every FPN conv ignored (their output widths feed the RPN / RoI heads)."""
    if desc.family == "detectnet_v2":
        return DetectNetRaw(model), [model.cov_head, model.bbox_head]
    fpn = model.backbone.fpn
    return model.backbone, [m for m in fpn.modules() if isinstance(m, nn.Conv2d)]


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    import torch_pruning as tp

    macs, _ = tp.utils.count_ops_and_params(module, x)
    return int(macs)


def channel_scores(l1: torch.Tensor, normalizer: Literal["max", "l2"]) -> torch.Tensor:
    """Normalized per-channel L1 norms (C,): divided by the max (``max``) or the L2 norm (``l2``)."""
    den = l1.max() if normalizer == "max" else l1.norm()
    return l1 / den.clamp_min(1e-12)


def kept_count(scores: torch.Tensor, threshold: float, min_filters: int, granularity: int) -> int:
    """How many of the C channels to keep: score >= threshold, at least ``min_filters``, rounded up to
    a multiple of ``granularity``, at most C."""
    n = int(scores.numel())
    k = int((scores >= threshold).sum())
    k = max(k, min(min_filters, n), 1)
    k = int(math.ceil(k / granularity) * granularity)
    return min(k, n)


def prune_model(
    model: nn.Module,
    desc: ModelDesc,
    threshold: float = 0.1,
    min_filters: int = 16,
    granularity: int = 8,
    normalizer: Literal["max", "l2"] = "max",
) -> PruneReport:
    """Prune ``model`` in place (see module docstring) and return the report.

    ``threshold`` (TLT ``-pth``) in [0, 1] for ``normalizer="max"``; ``min_filters`` (``-nf``) >= 1;
    ``granularity`` (``-pg``) >= 1.
    """
    import torch_pruning as tp

    if threshold < 0.0:
        raise DeployError(f"pruning threshold must be >= 0, got {threshold}", where="threshold")
    if min_filters < 1 or granularity < 1:
        raise DeployError("min_filters and granularity must be >= 1", where="min_filters/granularity")
    model.eval()
    traced, ignored = prunable_graph(model, desc)
    x = torch.rand(1, 3, desc.input_height, desc.input_width, generator=torch.Generator().manual_seed(0))
    params_before = count_used_params(traced, lambda: traced(x))
    macs_before = _macs(traced, x)
    l1 = {m: m.weight.detach().abs().flatten(1).sum(1) for m in traced.modules() if isinstance(m, nn.Conv2d)}
    names = {m: n for n, m in model.named_modules()}
    dg = tp.DependencyGraph().build_dependency(traced, example_inputs=x)
    layers: list[PrunedLayer] = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        n = len(group[0].idxs)
        score = torch.zeros(n)
        for item in group:
            mod = item.dep.target.module
            if isinstance(mod, nn.Conv2d) and dg.is_out_channel_pruning_fn(item.dep.handler) and mod in l1:
                s = channel_scores(l1[mod], normalizer)[torch.as_tensor(item.idxs, dtype=torch.long)]
                root = torch.as_tensor(item.root_idxs, dtype=torch.long)
                score[root] = torch.maximum(score[root], s)
        keep = kept_count(score, threshold, min_filters, granularity)
        if keep >= n:
            continue
        drop = torch.argsort(score, stable=True)[: n - keep].tolist()
        root_mod = group[0].dep.target.module
        group.prune(idxs=sorted(drop))
        layers.append(PrunedLayer(names.get(root_mod, str(root_mod)), n, keep))
    refresh_out_channels(model, desc)
    return PruneReport(
        threshold=threshold,
        min_filters=min_filters,
        granularity=granularity,
        params_before=params_before,
        params_after=count_used_params(traced, lambda: traced(x)),
        macs_before=macs_before,
        macs_after=_macs(traced, x),
        layers=layers,
    )


def save_pruned(
    path: str | os.PathLike,
    model: nn.Module,
    desc: ModelDesc,
    report: PruneReport | None = None,
    spec: dict[str, Any] | None = None,
) -> Path:
    """Write a pruned checkpoint atomically (format :data:`PRUNED_FORMAT`; ``weights_only``-safe)."""
    from synthloop.atomic import atomic_write_with

    obj = {
        "format": PRUNED_FORMAT,
        "desc": desc.model_dump(mode="json"),
        "layer_shapes": layer_shapes(model),
        "model": model.state_dict(),
        "report": report.to_dict() if report else None,
        "spec": spec,
    }
    return atomic_write_with(path, lambda fh: torch.save(obj, fh))


def load_pruned(path: str | os.PathLike, family: str | None = None) -> nn.Module:
    """The pruned model saved at ``path`` (eval mode, CPU), ready to fine-tune or export."""
    loaded = load_model(path, family)
    if loaded.kind != "pruned":
        raise DeployError(
            "not a pruned checkpoint (use load_model for training checkpoints)",
            path=str(path),
            where="format",
        )
    return loaded.model


def prune_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    family: str | None = None,
    threshold: float = 0.1,
    min_filters: int = 16,
    granularity: int = 8,
    normalizer: Literal["max", "l2"] = "max",
) -> tuple[LoadedModel, PruneReport]:
    """Load ``src`` (training or pruned checkpoint), prune it, save to ``dst``; returns both."""
    loaded = load_model(src, family)
    report = prune_model(loaded.model, loaded.desc, threshold, min_filters, granularity, normalizer)
    save_pruned(dst, loaded.model, loaded.desc, report, loaded.spec)
    return loaded, report
