"""Mask R-CNN training bookkeeping done once per batch instead of once per image.

torchvision's ``RegionProposalNetwork`` and ``RoIHeads`` match anchors/proposals to ground truth,
sample positives and negatives, and filter proposals in Python loops over the images of a batch,
and its ``GeneralizedRCNNTransform`` normalizes and resizes image by image (masks too). On a GPU
each of those small ops is a kernel launch and some are host syncs (``torch.where``, ``randperm``),
so a batch of 8 costs ~2,000 ops before any convolution and the training step is bound by the
host, not the GPU (``benchmarks/rcnn_ops.py`` counts them). This module does the same math on padded
``(B, ...)`` tensors:

* :func:`batched_box_iou`, :func:`batched_match` — ``box_iou`` + ``Matcher`` (thresholds, the -1 /
  -2 codes, ``allow_low_quality_matches``) for every image at once; results equal torchvision's.
* :func:`batched_sample` — ``BalancedPositiveNegativeSampler``: per image, ``min(#pos, n*f)``
  positives and ``min(#neg, n - pos)`` negatives drawn uniformly without replacement (the k
  smallest of i.i.d. uniform keys, the same distribution as ``randperm(..)[:k]``), with no host sync.
* :func:`greedy_nms_batched` — exact greedy NMS for the whole batch as a fixed-point iteration
  over ``(B, n, n)`` suppression masks, one per FPN level (``BatchedRPN.matrix_nms``, CUDA only).
* :class:`BatchedRPN`, :class:`BatchedRoIHeads`, :class:`BatchedTransform`,
  :class:`CachedAnchorGenerator` — drop-in subclasses (same parameters and buffers, so checkpoints
  are interchangeable) that use them. Export (tracing) and CPU runs keep torchvision's per-image
  proposal NMS (``batched_nms`` over levels).

Boxes are x1y1x2y2 in input-image pixels throughout. Padding rows are marked by ``valid`` masks and
never match, are never sampled and never reach a loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import boxes as box_ops

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


def pad_stack(tensors: list[Tensor], min_len: int = 1, fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack ``B`` tensors of shape ``(n_i, *rest)`` into ``(B, max(n_i, min_len), *rest)``.

    Returns the padded tensor and ``valid`` ``(B, M)`` bool (True where a row is real)."""
    if not tensors:
        raise ValueError("pad_stack needs at least one tensor")
    lengths = [t.shape[0] for t in tensors]
    m = max(max(lengths), min_len)
    ref = tensors[0]
    out = ref.new_full((len(tensors), m, *ref.shape[1:]), fill)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    n = torch.tensor(lengths, device=ref.device)
    valid = torch.arange(m, device=ref.device)[None, :] < n[:, None]
    return out, valid


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of ``(B, G, 4)`` against ``(B, N, 4)`` x1y1x2y2 boxes → ``(B, G, N)``:
    ``torchvision.ops.box_iou`` mapped over the batch (``torch.vmap``), so values are identical."""
    return torch.vmap(box_ops.box_iou)(boxes1, boxes2)


def batched_match(
    quality: Tensor,
    gt_valid: Tensor,
    pred_valid: Tensor,
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool,
) -> Tensor:
    """torchvision ``Matcher`` for a batch: ``quality`` ``(B, G, N)`` (IoU of ground truth ``g``
    with prediction ``n``), ``gt_valid`` ``(B, G)``, ``pred_valid`` ``(B, N)`` → matches ``(B, N)``
    int64: the matched ground-truth index, ``-1`` below ``low_threshold`` (also for images without
    ground truth and for padding predictions), ``-2`` between the thresholds."""
    mask = gt_valid[:, :, None] & pred_valid[:, None, :]
    q = quality.masked_fill(~mask, -1.0)
    vals, matches = q.max(dim=1)
    all_matches = matches
    below = vals < low_threshold
    between = (vals >= low_threshold) & (vals < high_threshold)
    matches = matches.masked_fill(below, BELOW_LOW_THRESHOLD).masked_fill(between, BETWEEN_THRESHOLDS)
    if allow_low_quality_matches:
        # every prediction tied for a ground truth's best quality keeps its best (argmax) match
        best_per_gt = q.max(dim=2, keepdim=True).values
        update = ((q == best_per_gt) & mask).any(dim=1)
        matches = torch.where(update, all_matches, matches)
    return matches


def match_boxes(matcher: Matcher, gt: Tensor, gt_valid: Tensor, preds: Tensor, pred_valid: Tensor) -> Tensor:
    """:func:`batched_match` of boxes ``preds`` ``(B, N, 4)`` to ``gt`` ``(B, G, 4)`` by IoU, with
    the thresholds of torchvision ``matcher`` → ``(B, N)`` int64."""
    return batched_match(
        batched_box_iou(gt, preds),
        gt_valid,
        pred_valid,
        matcher.high_threshold,
        matcher.low_threshold,
        matcher.allow_low_quality_matches,
    )


def _random_subset(candidates: Tensor, k: Tensor, generator: torch.Generator | None) -> Tensor:
    """``(B, N)`` bool: per row, ``k[b]`` of the row's True entries, uniformly without replacement."""
    keys = torch.rand(candidates.shape, device=candidates.device, generator=generator)
    keys = keys.masked_fill(~candidates, 2.0)
    kth = keys.sort(dim=1).values.gather(1, (k - 1).clamp(min=0)[:, None])
    return candidates & (keys <= kth) & (k > 0)[:, None]


def batched_sample(
    labels: Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``BalancedPositiveNegativeSampler`` for a batch. ``labels`` ``(B, N)``: ``-1`` ignore, ``0``
    negative, ``>= 1`` positive → (positive mask, negative mask), both ``(B, N)`` bool."""
    pos_c = labels >= 1
    neg_c = labels == 0
    num_pos = pos_c.sum(1).clamp(max=int(batch_size_per_image * positive_fraction))
    num_neg = torch.minimum(neg_c.sum(1), batch_size_per_image - num_pos)
    return _random_subset(pos_c, num_pos, generator), _random_subset(neg_c, num_neg, generator)


def _suppression_mask(bx: Tensor, gr: Tensor, vd: Tensor, iou_threshold: float) -> Tensor:
    """``(B, n, n)`` bool: ``[b, i, j]`` when box ``j`` comes before box ``i`` (both in score order),
    is valid, is in the same group and overlaps it by IoU > ``iou_threshold``. ``bx`` float32."""
    b, n = bx.shape[:2]
    earlier = torch.ones(n, n, dtype=torch.bool, device=bx.device).tril(-1)  # [i, j]: j before i
    out = torch.empty(b, n, n, dtype=torch.bool, device=bx.device)
    # the float IoU temporaries are ~28 bytes per pair: whole batch when small, else image by image
    step = b if b * n * n <= 2**27 else 1
    for s in range(0, b, step):
        e = s + step
        m = batched_box_iou(bx[s:e], bx[s:e]) > iou_threshold
        m &= earlier
        m &= gr[s:e, :, None] == gr[s:e, None, :]
        m &= vd[s:e, None, :]
        out[s:e] = m
    return out


def greedy_nms_batched(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    valid: Tensor,
    iou_threshold: float,
    segments: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy NMS of ``B`` images at once (per ``group`` — e.g. FPN level — within an image), exact.

    ``boxes`` ``(B, N, 4)`` x1y1x2y2, ``scores``/``groups``/``valid`` ``(B, N)``. Returns ``order``
    ``(B, N)`` (indices by descending score, ties by index) and ``keep`` ``(B, N)`` bool aligned
    with ``order``. ``segments``: sizes of consecutive column blocks (summing to ``N``) whose boxes
    never suppress boxes of another block — FPN levels laid out level after level, as the RPN's
    top-k selection does — so only the ``sum(n_l^2)`` pairs within blocks are built instead of
    ``N^2``; groups still apply within a block.

    Greedy NMS keeps box ``i`` (in score order) iff no *kept* earlier box of its group overlaps it
    by IoU > ``iou_threshold``. Iterating ``keep = valid & ~any_j(suppress[i, j] & keep[j])`` from
    "all kept" reaches that fixed point: after ``k`` rounds the first ``k`` boxes are final, and
    in practice the longest suppression chain is a few boxes long, so a handful of rounds (one host
    sync each, for all blocks together) over ``(B, n, n)`` masks replaces ``B`` calls of
    torchvision's NMS (whose keep-gathering kernel is serial, one thread block per image). Memory:
    ``B * n^2`` bytes of masks plus ``28 * n^2`` bytes of float temporaries per image and block,
    so meant for the GPU (:func:`use_matrix_nms`)."""
    b, n = scores.shape
    segments = [n] if segments is None else list(segments)
    if sum(segments) != n or any(k < 0 for k in segments):
        raise ValueError(f"segments {segments} do not partition {n} columns")
    s = scores.masked_fill(~valid, float("-inf"))
    blocks: list[tuple[Tensor, Tensor, Tensor]] = []  # (global column of each sorted box, mask, valid)
    start = 0
    for size in segments:
        if size:
            local = s[:, start : start + size].sort(dim=1, descending=True, stable=True).indices
            cols = local + start
            bx = boxes.gather(1, cols[..., None].expand(-1, -1, 4)).float()  # as torchvision under AMP
            vd = valid.gather(1, cols)
            blocks.append((cols, _suppression_mask(bx, groups.gather(1, cols), vd, iou_threshold), vd))
        start += size
    keeps = [vd for _, _, vd in blocks]
    active = list(range(len(blocks)))
    for _ in range(max(segments, default=0) + 1):
        if not active:
            break
        new = {i: blocks[i][2] & ~(blocks[i][1] & keeps[i][:, None, :]).any(2) for i in active}
        changed = torch.stack([(new[i] != keeps[i]).any() for i in active]).tolist()
        for i in active:
            keeps[i] = new[i]
        active = [i for i, c in zip(active, changed, strict=True) if c]
    keep_by_col = torch.zeros(b, n, dtype=torch.bool, device=scores.device)
    for (cols, _, _), k in zip(blocks, keeps, strict=True):
        keep_by_col.scatter_(1, cols, k)
    order = s.sort(dim=1, descending=True, stable=True).indices
    return order, keep_by_col.gather(1, order)


def use_matrix_nms(boxes: Tensor, max_mask: int = 2**30, max_per_image: int = 2**27) -> bool:
    """Whether :func:`greedy_nms_batched` suits ``boxes`` ``(B, N, 4)``: on CUDA, a suppression
    mask of at most ``max_mask`` bytes (1 GiB) and at most ``max_per_image`` IoUs per image
    (~3.5 GiB of temporaries, N <= 11,585); otherwise NMS runs per image with torchvision."""
    b, n = boxes.shape[:2]
    return boxes.is_cuda and b * n * n <= max_mask and n * n <= max_per_image


class BatchedRPN(RegionProposalNetwork):
    """``RegionProposalNetwork`` with batched anchor matching, sampling and proposal filtering.

    ``matrix_nms`` (``build_maskrcnn`` turns it on): proposal NMS for the whole batch with
    :func:`greedy_nms_batched` where :func:`use_matrix_nms` allows (CUDA), block by block over the
    FPN levels. Exact, tested against torchvision on the CPU; on an H200 it made the Mask R-CNN
    training step ~14 % faster (``benchmarks/train.py --variants torchvision_nms``)."""

    matrix_nms: bool = False

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: labels ``(A,)`` float (1 fg, 0 bg, -1 ignore) and matched boxes ``(A, 4)``."""
        anc = (
            anchors[0].expand(len(anchors), -1, -1)
            if all(a is anchors[0] for a in anchors)
            else torch.stack(anchors)
        )
        # ground truth keeps its dtype: with float16 anchors (AMP) the IoUs and matched boxes are
        # float32, as torchvision's box_iou(gt, anchors) promotes them
        gt, gt_valid = pad_stack([t["boxes"] for t in targets])
        pred_valid = torch.ones(anc.shape[:2], dtype=torch.bool, device=anc.device)
        matches = match_boxes(self.proposal_matcher, gt, gt_valid, anc, pred_valid)
        matched = gt.gather(1, matches.clamp(min=0)[..., None].expand(-1, -1, 4))
        labels = (matches >= 0).to(torch.float32).masked_fill(matches == BETWEEN_THRESHOLDS, -1.0)
        return list(labels.unbind(0)), list(matched.unbind(0))

    def compute_loss(
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        s = self.fg_bg_sampler
        stacked = torch.stack(labels)  # (B, A); flattened it is torchvision's cat of the images
        pos, neg = batched_sample(stacked, s.batch_size_per_image, s.positive_fraction)
        sampled_pos_inds = torch.where(pos.flatten())[0]
        sampled_neg_inds = torch.where(neg.flatten())[0]
        sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)
        objectness = objectness.flatten()
        flat_labels = stacked.flatten()
        targets = torch.cat(regression_targets, dim=0)
        box_loss = F.smooth_l1_loss(
            pred_bbox_deltas[sampled_pos_inds], targets[sampled_pos_inds], beta=1 / 9, reduction="sum"
        ) / (sampled_inds.numel())
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness[sampled_inds], flat_labels[sampled_inds]
        )
        return objectness_loss, box_loss

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's filter (top-n per level, clip, drop small and low-score boxes, NMS per
        level, keep ``post_nms_top_n``) for the whole batch; the NMS too on the GPU
        (:func:`greedy_nms_batched`), per image with torchvision's otherwise."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
            # export (ONNX, TorchScript) traces torchvision's graph: no data-dependent Python branch
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        num_images = proposals.shape[0]
        device = proposals.device
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [
                torch.full((n,), idx, dtype=torch.int64, device=device)
                for idx, n in enumerate(num_anchors_per_level)
            ]
        )
        levels = levels.reshape(1, -1).expand_as(objectness)
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch_idx = torch.arange(num_images, device=device)[:, None]
        scores = torch.sigmoid(objectness[batch_idx, top_n_idx])
        levels = levels[batch_idx, top_n_idx]
        boxes = proposals[batch_idx, top_n_idx]

        hw = torch.tensor(image_shapes, dtype=boxes.dtype, device=device)  # (B, 2) height, width
        xs = torch.minimum(boxes[..., 0::2].clamp(min=0), hw[:, 1, None, None])
        ys = torch.minimum(boxes[..., 1::2].clamp(min=0), hw[:, 0, None, None])
        boxes = torch.stack((xs, ys), dim=-1).reshape(boxes.shape)
        ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        keep_mask = (ws >= self.min_size) & (hs >= self.min_size) & (scores >= self.score_thresh)
        post_n = self.post_nms_top_n()
        if self.matrix_nms and use_matrix_nms(boxes):
            # top-n took min(pre_nms_top_n, n_l) boxes of each level, level after level
            sizes = [min(self.pre_nms_top_n(), n) for n in num_anchors_per_level]
            segments = sizes if sum(sizes) == boxes.shape[1] else None
            order, keep = greedy_nms_batched(
                boxes, scores, levels, keep_mask, self.nms_thresh, segments=segments
            )
            keep &= keep.cumsum(1) <= post_n
            counts = keep.sum(1).tolist()
            bi, ni = torch.where(keep)  # per image, in descending score order, as torchvision's
            idx = order[bi, ni]
            return list(boxes[bi, idx].split(counts)), list(scores[bi, idx].split(counts))

        all_kept = bool(keep_mask.all())  # the usual case (score_thresh 0): one sync for the batch
        final_boxes, final_scores = [], []
        for b in range(num_images):
            bx, sc, lv = boxes[b], scores[b], levels[b]
            if not all_kept:
                k = torch.where(keep_mask[b])[0]
                bx, sc, lv = bx[k], sc[k], lv[k]
            keep = box_ops.batched_nms(bx, sc, lv, self.nms_thresh)[:post_n]
            final_boxes.append(bx[keep])
            final_scores.append(sc[keep])
        return final_boxes, final_scores


class BatchedRoIHeads(RoIHeads):
    """``RoIHeads`` whose training-sample selection (match, sample, encode) runs on the batch."""

    def select_training_samples(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        self.check_targets(targets)
        if targets is None:
            raise ValueError("targets should not be None")
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        props, pred_valid = pad_stack(self.add_gt_proposals(proposals, gt_boxes))
        gt, gt_valid = pad_stack(gt_boxes)
        gt_labels, _ = pad_stack([t["labels"].to(torch.int64) for t in targets])
        matches = match_boxes(self.proposal_matcher, gt, gt_valid, props, pred_valid)
        matched_idxs = matches.clamp(min=0)
        labels = gt_labels.gather(1, matched_idxs)
        labels = labels.masked_fill(matches == BELOW_LOW_THRESHOLD, 0)
        labels = labels.masked_fill((matches == BETWEEN_THRESHOLDS) | ~pred_valid, -1)
        s = self.fg_bg_sampler
        pos, neg = batched_sample(labels, s.batch_size_per_image, s.positive_fraction)
        sampled = pos | neg
        counts = sampled.sum(1).tolist()
        bi, ni = torch.where(sampled)  # row-major: per image in ascending index order, as torchvision
        sel_props = props[bi, ni]
        sel_matched = matched_idxs[bi, ni]
        regression_targets = self.box_coder.encode_single(gt[bi, sel_matched], sel_props)
        return (
            list(sel_props.split(counts)),
            list(sel_matched.split(counts)),
            list(labels[bi, ni].split(counts)),
            list(regression_targets.split(counts)),
        )


class BatchedTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` with a fast path for training batches whose images already have
    the size the transform would resize them to (synthloop's loaders resize to the spec's input
    size): one normalize over the stacked batch, no per-image resize of images and masks (an
    identity at scale 1). Other batches, and inference, take torchvision's path."""

    def _identity_resize(self, images: list[Tensor]) -> bool:
        if not self.training or not images or self.fixed_size is not None or len(self.min_size) != 1:
            return False
        shape = images[0].shape
        if any(im.shape != shape for im in images):
            return False
        h, w = float(shape[-2]), float(shape[-1])
        return min(self.min_size[0] / min(h, w), self.max_size / max(h, w)) == 1.0

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        if not self._identity_resize(images):
            return super().forward(images, targets)
        x = torch.stack(images)
        if not x.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got {x.dtype}")
        mean = torch.as_tensor(self.image_mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.image_std, dtype=x.dtype, device=x.device)
        x = (x - mean[:, None, None]) / std[:, None, None]
        h, w = x.shape[-2:]
        d = self.size_divisible
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        sizes = [(int(h), int(w))] * x.shape[0]
        return ImageList(x, sizes), (None if targets is None else [dict(t) for t in targets])


class CachedAnchorGenerator(AnchorGenerator):
    """``AnchorGenerator`` that keeps the anchors of the last few (feature-map sizes, padded image
    size, dtype, device) it saw: they are constants, but torchvision rebuilds them (~60 ops) on
    every step. Every image of a batch gets the same ``(A, 4)`` tensor; callers only read it."""

    max_cached: int = 8

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        f0 = feature_maps[0]
        key = (
            tuple(tuple(f.shape[-2:]) for f in feature_maps),
            tuple(image_list.tensors.shape[-2:]),
            f0.dtype,
            f0.device,
        )
        cache: dict = self.__dict__.setdefault("_anchor_cache", {})
        anchors = cache.get(key)
        if anchors is None:
            anchors = super().forward(
                ImageList(image_list.tensors[:1], image_list.image_sizes[:1]), feature_maps
            )[0]
            if len(cache) >= self.max_cached:
                cache.pop(next(iter(cache)))
            cache[key] = anchors
        return [anchors] * len(image_list.image_sizes)


def batch_the_heads(model: torch.nn.Module) -> torch.nn.Module:
    """Switch a torchvision ``MaskRCNN``/``FasterRCNN``'s transform, RPN, RoI heads and anchor
    generator to the subclasses above, in place (no parameter or buffer changes); returns it."""
    for name, cls in (("transform", BatchedTransform), ("rpn", BatchedRPN), ("roi_heads", BatchedRoIHeads)):
        mod = getattr(model, name)
        base = cls.__mro__[1]
        if type(mod) is not base and not isinstance(mod, cls):
            raise TypeError(f"model.{name} is a {type(mod).__name__}, expected torchvision's {base.__name__}")
        mod.__class__ = cls
    gen = model.get_submodule("rpn.anchor_generator")
    if type(gen) is AnchorGenerator:
        gen.__class__ = CachedAnchorGenerator
    return model
