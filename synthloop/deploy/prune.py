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

``allocation="uniform"`` replaces step 3: every group loses the same fraction (``threshold`` is then
that fraction) of its lowest-scoring channels, under the same ``-nf`` / ``-pg`` rules. TLT's rule
follows each layer's score spread, and in EfficientNet's MBConv blocks it cuts some blocks to a
sliver; on the fruits-nuts detector at 0.3x parameters, uniform retrained 2.6 points AP50 better
(``docs/results/prune_v2_h200.md``). :func:`threshold_for_ratio` (``prune --target-ratio``)
searches the threshold or fraction that meets a parameter budget.

``exclude`` (``prune -el NAME``, TLT's ``--excluded_layers``) leaves the groups rooted under those
module names whole. Keeping the stem, stages 1-3 and the DetectNet head convs (``lat16``, ``lat32``,
``fuse``) at full width and cutting the rest uniformly to 0.289x parameters retrained to the base's
AP50 on the fruits-nuts photos, where the plain uniform cut lost 4.4 points; but it keeps 0.89x of
the MACs, as the 3x3 ``fuse`` conv at stride 16 is most of them, and runs at 0.68x of the base's
time in ONNX Runtime against the uniform cut's 0.49x (``docs/results/prune_v2_h200.md``).

With calibration images (``prune --calib``) the pruner folds each removed input channel's mean
into the bias of the conv reading it, then re-estimates every batch norm's statistics
(:mod:`synthloop.deploy.recalibrate`). This helps light pruning; heavy pruning needs retraining.

The output layers are never pruned (DetectNet ``cov_head`` / ``bbox_head``; for Mask R-CNN only the
backbone is pruned, the FPN output width (256, shared by RPN and RoI heads) stays, the FPN's lateral
convs lose the input channels their backbone stage lost), so output shapes do not change.

The pruned model is saved as :data:`~synthloop.training.checkpoints.PRUNED_FORMAT`: model
description (incl. the training ExperimentSpec), every conv / BN layer's shape and the weights,
readable with ``weights_only=True``. It carries its own graph (TLT ``load_graph``): retrain it
through the usual spec with ``model: {load_graph: pruned.pt}``, or build it in code::

    model = load_pruned("pruned.pt")          # DetectNetV2 / MaskRCNN with the pruned widths
    model.train()                              # then the usual loss dict: model(images, targets)
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from synthloop.deploy.errors import DeployError
from synthloop.deploy.graph import DetectNetRaw, count_used_params
from synthloop.training.checkpoint_io import save_checkpoint
from synthloop.training.checkpoints import (
    PRUNED_FORMAT,
    LoadedModel,
    ModelDesc,
    layer_shapes,
    load_model,
    refresh_out_channels,
)
from synthloop.training.detectnet import as_detectnet


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
    recalibrated_bn: int = 0  # batch norms whose statistics were re-estimated after pruning
    calibration_images: int = 0
    excluded: list[str] = field(default_factory=list)  # TLT --excluded_layers: module name prefixes

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
        net = as_detectnet(model)
        return DetectNetRaw(net), [net.cov_head, net.bbox_head]
    fpn = model.get_submodule("backbone.fpn")
    return model.get_submodule("backbone"), [m for m in fpn.modules() if isinstance(m, nn.Conv2d)]


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    import torch_pruning as tp

    macs, _ = tp.utils.count_ops_and_params(module, x)
    return int(macs)


def channel_scores(l1: torch.Tensor, normalizer: Literal["max", "l2"]) -> torch.Tensor:
    """Normalized per-channel L1 norms (C,): divided by the max (``max``) or the L2 norm (``l2``)."""
    den = l1.max() if normalizer == "max" else l1.norm()
    return l1 / den.clamp_min(1e-12)


def bias_shifts(
    group: Any,
    dg: Any,
    drop: list[int],
    input_means: dict[nn.Module, torch.Tensor],
    alive: dict[nn.Module, torch.Tensor],
) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """(conv, bias delta (C_out,)) for every dense conv with a bias whose input channels the group
    removes when it drops root channels ``drop``: ``sum over kernel of W[:, c] * mean_c`` over the
    removed input channels ``c``. Computed before pruning, added after.

    ``input_means[conv]`` is indexed by the conv's *original* input channels, while the group's
    indices are the current ones (a conv reading a concatenation loses inputs to several groups):
    ``alive[conv]`` maps current to original indices and is updated here for the removal."""
    dropped = set(drop)
    out = []
    for item in group:
        conv = item.dep.target.module
        if not (isinstance(conv, nn.Conv2d) and conv.bias is not None and conv.groups == 1):
            continue
        if not dg.is_in_channel_pruning_fn(item.dep.handler) or conv not in input_means:
            continue
        idx = [i for i, r in zip(item.idxs, item.root_idxs, strict=True) if r in dropped]
        if not idx:
            continue
        local = torch.as_tensor(idx, dtype=torch.long)
        current = alive.setdefault(conv, torch.arange(input_means[conv].numel()))
        w = conv.weight.detach().float()[:, local].sum((2, 3))  # (C_out, k)
        out.append((conv, w @ input_means[conv][current[local]].to(w)))
        keep = torch.ones(len(current), dtype=torch.bool)
        keep[local] = False
        alive[conv] = current[keep]
    return out


def kept_count_uniform(n: int, fraction: float, min_filters: int, granularity: int) -> int:
    """How many of ``n`` channels to keep when removing ``fraction`` of them: ``n - floor(n *
    fraction)``, at least ``min_filters``, rounded up to a multiple of ``granularity``, at most n."""
    k = max(n - int(math.floor(n * fraction)), min(min_filters, n), 1)
    return min(int(math.ceil(k / granularity) * granularity), n)


def kept_count(scores: torch.Tensor, threshold: float, min_filters: int, granularity: int) -> int:
    """How many of the C channels to keep: score >= threshold, at least ``min_filters``, rounded up to
    a multiple of ``granularity``, at most C."""
    n = int(scores.numel())
    k = int((scores >= threshold).sum())
    k = max(k, min(min_filters, n), 1)
    k = int(math.ceil(k / granularity) * granularity)
    return min(k, n)


def prune_traced(
    traced: nn.Module,
    ignored: list[nn.Module],
    example: torch.Tensor,
    threshold: float,
    min_filters: int,
    granularity: int,
    normalizer: Literal["max", "l2"] = "max",
    allocation: Literal["threshold", "uniform"] = "threshold",
    input_means: dict[nn.Module, torch.Tensor] | None = None,
    names: dict[nn.Module, str] | None = None,
) -> list[PrunedLayer]:
    """Prune every channel group of ``traced`` (any module; ``example`` its input) whose root conv
    is not in ``ignored``, in place, by the rules of :func:`prune_model`. Layers are reported by
    ``names[root conv]`` (default: the conv's repr)."""
    import torch_pruning as tp

    l1 = {m: m.weight.detach().abs().flatten(1).sum(1) for m in traced.modules() if isinstance(m, nn.Conv2d)}
    dg = tp.DependencyGraph().build_dependency(traced, example_inputs=example)
    alive: dict[nn.Module, torch.Tensor] = {}
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
        if allocation == "uniform":
            keep = kept_count_uniform(n, threshold, min_filters, granularity)
        else:
            keep = kept_count(score, threshold, min_filters, granularity)
        if keep >= n:
            continue
        drop = torch.argsort(score, stable=True)[: n - keep].tolist()
        root_mod = group[0].dep.target.module
        shifts = bias_shifts(group, dg, drop, input_means, alive) if input_means else []
        group.prune(idxs=sorted(drop))
        with torch.no_grad():
            for conv, delta in shifts:
                bias = conv.bias  # read after pruning: the pruner gives the conv a new bias
                if bias is not None:  # always: bias_shifts lists convs with a bias only
                    bias.add_(delta.to(bias.dtype))
        layers.append(PrunedLayer((names or {}).get(root_mod, str(root_mod)), n, keep))
    return layers


def prune_model(
    model: nn.Module,
    desc: ModelDesc,
    threshold: float = 0.1,
    min_filters: int = 16,
    granularity: int = 8,
    normalizer: Literal["max", "l2"] = "max",
    allocation: Literal["threshold", "uniform"] = "threshold",
    input_means: dict[nn.Module, torch.Tensor] | None = None,
    exclude: Sequence[str] = (),
) -> PruneReport:
    """Prune ``model`` in place (see module docstring) and return the report.

    ``exclude`` (TLT ``--excluded_layers``): module names or name prefixes (``backbone.body.stem``,
    ``backbone.body.blocks.3``); no channel group rooted at a conv under them is pruned. Groups
    coupled to them through a residual addition are not pruned either (torch-pruning skips a group
    that contains an excluded layer). An entry that names no conv raises :class:`DeployError`.

    ``allocation``: ``"threshold"`` (TLT) keeps the channels scoring >= ``threshold``, so how much
    each group loses follows its score distribution (a group whose filters are all alike can lose
    almost everything at once); ``"uniform"`` removes the fraction ``threshold`` of every group's
    channels (its lowest-scoring ones), then applies the same ``-nf`` / ``-pg`` rules.

    ``input_means`` (from :func:`synthloop.deploy.recalibrate.conv_input_means` on this model):
    each removed input channel of a conv that has a bias is replaced by its mean, folded into the
    bias (see :mod:`synthloop.deploy.recalibrate`).

    ``threshold`` (TLT ``-pth``) in [0, 1] for ``normalizer="max"``; ``min_filters`` (``-nf``) >= 1;
    ``granularity`` (``-pg``) >= 1.
    """
    if threshold < 0.0:
        raise DeployError(f"pruning threshold must be >= 0, got {threshold}", where="threshold")
    if allocation == "uniform" and threshold > 1.0:
        raise DeployError(
            f"with allocation 'uniform', -pth is the fraction of each group to remove (0..1), "
            f"got {threshold}",
            where="threshold",
        )
    if min_filters < 1 or granularity < 1:
        raise DeployError("min_filters and granularity must be >= 1", where="min_filters/granularity")
    model.eval()
    traced, ignored = prunable_graph(model, desc)
    ignored = ignored + excluded_convs(model, exclude)
    x = torch.rand(1, 3, desc.input_height, desc.input_width, generator=torch.Generator().manual_seed(0))
    params_before = count_used_params(traced, lambda: traced(x))
    macs_before = _macs(traced, x)
    names = {m: n for n, m in model.named_modules()}
    layers = prune_traced(
        traced, ignored, x, threshold, min_filters, granularity, normalizer, allocation, input_means, names
    )
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
        excluded=list(exclude),
    )


def excluded_convs(model: nn.Module, exclude: Sequence[str]) -> list[nn.Module]:
    """The convs of ``model`` named by ``exclude`` (exact module names or dotted prefixes)."""
    out: list[nn.Module] = []
    for prefix in exclude:
        hits = [
            m
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and (n == prefix or n.startswith(prefix.rstrip(".") + "."))
        ]
        if not hits:
            raise DeployError(f"--exclude {prefix!r} names no conv layer of the model", where="exclude")
        out += hits
    return out


def threshold_for_ratio(
    model: nn.Module,
    desc: ModelDesc,
    target_ratio: float,
    min_filters: int = 16,
    granularity: int = 8,
    normalizer: Literal["max", "l2"] = "max",
    allocation: Literal["threshold", "uniform"] = "threshold",
    steps: int = 14,
    exclude: Sequence[str] = (),
) -> tuple[float, float]:
    """The smallest threshold whose pruned model has at most ``target_ratio`` of the parameters.

    Returns ``(threshold, param_ratio it gives)``. Bisection on copies of ``model`` (left unchanged):
    every group's kept count is non-increasing in the threshold (scores come from the unpruned
    weights), so the parameter ratio is too. The answer is within ``2**-steps`` of the exact
    boundary and always meets the target. ``min_filters`` can make a target unreachable: then a
    :class:`DeployError` says the smallest ratio these settings allow."""
    if not 0.0 < target_ratio <= 1.0:
        raise DeployError(f"target ratio must be in (0, 1], got {target_ratio}", where="target_ratio")

    def ratio(t: float) -> float:
        trial = copy.deepcopy(model)
        return prune_model(
            trial, desc, t, min_filters, granularity, normalizer, allocation, exclude=exclude
        ).param_ratio

    # every score is <= 1 (l1 / max, or l1 / ||l1||), and a fraction of 1 removes everything:
    # at ``hi`` all groups go down to -nf / -pg
    hi = 1.0 if allocation == "uniform" else 1.0 + 1e-6
    r_hi = ratio(hi)
    if r_hi > target_ratio:
        raise DeployError(
            f"no threshold reaches a parameter ratio of {target_ratio:.3f}: pruning every group down to "
            f"-nf {min_filters} / -pg {granularity} leaves {r_hi:.3f}; lower -nf or -pg"
            + (" or exclude fewer layers" if exclude else ""),
            where="target_ratio",
        )
    lo = 0.0
    r_lo = ratio(lo)
    if r_lo <= target_ratio:
        return lo, r_lo
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        r = ratio(mid)
        if r <= target_ratio:
            hi, r_hi = mid, r
        else:
            lo = mid
    return hi, r_hi


def _calibration_forward(
    model: nn.Module, desc: ModelDesc, images: Sequence[str | os.PathLike], batch_size: int
) -> tuple[nn.Module, Any, Any]:
    """(traced module, its batches, forward) for calibrating the part pruning changes."""
    from synthloop.deploy.recalibrate import image_batches

    traced, _ = prunable_graph(model, desc)
    batches = image_batches([Path(p) for p in images], desc.input_width, desc.input_height, batch_size)
    if desc.family == "detectnet_v2":  # DetectNetRaw normalizes inside
        return traced, batches, traced
    transform = model.get_submodule("transform")
    if not isinstance(transform, GeneralizedRCNNTransform):
        raise DeployError(f"the model's transform is a {type(transform).__name__}", where="model")
    mean = torch.tensor(transform.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(transform.image_std).view(1, 3, 1, 1)
    return traced, batches, lambda x: traced((x - mean) / std)


def calibration_means(
    model: nn.Module, desc: ModelDesc, images: Sequence[str | os.PathLike], batch_size: int = 8
) -> dict[nn.Module, torch.Tensor]:
    """Every conv's per-input-channel mean on ``images`` (for :func:`prune_model`'s ``input_means``)."""
    from synthloop.deploy.recalibrate import conv_input_means

    return conv_input_means(*_calibration_forward(model, desc, images, batch_size))


def recalibrate_pruned(
    model: nn.Module, desc: ModelDesc, images: Sequence[str | os.PathLike], batch_size: int = 8
) -> int:
    """Re-estimate the batch-norm statistics of the part pruning changed (DetectNet: the whole
    network; Mask R-CNN: backbone + FPN) on ``images`` at the model's input size (see
    :mod:`synthloop.deploy.recalibrate`). Returns the number of batch norms recalibrated."""
    from synthloop.deploy.recalibrate import recalibrate_bn

    return recalibrate_bn(*_calibration_forward(model, desc, images, batch_size))


def save_pruned(
    path: str | os.PathLike,
    model: nn.Module,
    desc: ModelDesc,
    report: PruneReport | None = None,
    spec: dict[str, Any] | None = None,
) -> Path:
    """Write a pruned checkpoint atomically (format :data:`PRUNED_FORMAT`; ``weights_only``-safe)."""
    obj = {
        "format": PRUNED_FORMAT,
        "desc": desc.model_dump(mode="json"),
        "layer_shapes": layer_shapes(model),
        "model": model.state_dict(),
        "report": report.to_dict() if report else None,
        "spec": spec,
    }
    return save_checkpoint(path, obj)


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
    target_ratio: float | None = None,
    allocation: Literal["threshold", "uniform"] = "threshold",
    calibration: Sequence[str | os.PathLike] | None = None,
    exclude: Sequence[str] = (),
) -> tuple[LoadedModel, PruneReport]:
    """Load ``src`` (training or pruned checkpoint), prune it, save to ``dst``; returns both.

    With ``target_ratio`` the threshold is searched (:func:`threshold_for_ratio`) and ``threshold``
    is ignored; the report holds the threshold used. With ``calibration`` image paths the pruned
    model's batch-norm statistics are re-estimated on them (:func:`recalibrate_pruned`)."""
    loaded = load_model(src, family)
    if target_ratio is not None:
        threshold, _ = threshold_for_ratio(
            loaded.model,
            loaded.desc,
            target_ratio,
            min_filters,
            granularity,
            normalizer,
            allocation,
            exclude=exclude,
        )
    means = calibration_means(loaded.model, loaded.desc, calibration) if calibration else None
    report = prune_model(
        loaded.model, loaded.desc, threshold, min_filters, granularity, normalizer, allocation, means, exclude
    )
    if calibration:
        report.recalibrated_bn = recalibrate_pruned(loaded.model, loaded.desc, calibration)
        report.calibration_images = len(calibration)
    save_pruned(dst, loaded.model, loaded.desc, report, loaded.spec)
    return loaded, report
