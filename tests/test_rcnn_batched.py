"""Batched Mask R-CNN bookkeeping (synthloop.training.rcnn_batched) against torchvision's per-image
modules: same matches, same proposals, same samples' statistics, same losses."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.ops import batched_nms, box_iou

from synthloop.training import rcnn_batched
from synthloop.training.backbones import build_backbone
from synthloop.training.maskrcnn import build_maskrcnn
from synthloop.training.rcnn import RCNNSettings
from synthloop.training.rcnn_batched import (
    BatchedRoIHeads,
    BatchedRPN,
    BatchedTransform,
    CachedAnchorGenerator,
    batch_the_heads,
    batched_box_iou,
    batched_match,
    batched_sample,
    greedy_nms_batched,
    pad_stack,
)

torch.set_num_threads(1)


def _boxes(n: int, g: torch.Generator, w: float = 96, h: float = 64) -> torch.Tensor:
    x1, y1 = torch.rand(n, generator=g) * w * 0.8, torch.rand(n, generator=g) * h * 0.8
    bw, bh = 2 + torch.rand(n, generator=g) * w * 0.3, 2 + torch.rand(n, generator=g) * h * 0.3
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


@pytest.mark.parametrize("allow_low", [True, False])
def test_batched_match_equals_torchvision_matcher(allow_low):
    g = torch.Generator().manual_seed(0)
    gts = [_boxes(5, g), _boxes(1, g), _boxes(0, g), _boxes(9, g)]
    preds = [_boxes(40, g), _boxes(33, g), _boxes(12, g), _boxes(40, g)]
    preds[0][7] = gts[0][2]  # an exact match, and a tie for gt 2's best
    preds[0][8] = gts[0][2]
    gt, gv = pad_stack(gts)
    pr, pv = pad_stack(preds)
    got = batched_match(batched_box_iou(gt, pr), gv, pv, 0.7, 0.3, allow_low)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=allow_low)
    for b, (gb, pb) in enumerate(zip(gts, preds, strict=True)):
        n = len(pb)
        if len(gb) == 0:  # torchvision's callers treat such an image as all background
            assert (got[b, :n] == -1).all()
        else:
            assert torch.equal(got[b, :n], matcher(box_iou(gb, pb)))
        assert (got[b, n:] == -1).all()  # padding never matches
    assert torch.allclose(batched_box_iou(gt, pr)[3, :9, :40], box_iou(gts[3], preds[3]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_nms_batched_equals_torchvision_nms(seed):
    """Clustered boxes make long suppression chains; groups are NMS'd apart; invalid boxes
    neither survive nor suppress."""
    g = torch.Generator().manual_seed(seed)
    b, n = 3, 300
    centres = torch.rand(b, 12, 2, generator=g) * 80
    pick = torch.randint(0, 12, (b, n), generator=g)
    c = centres.gather(1, pick[..., None].expand(-1, -1, 2)) + torch.randn(b, n, 2, generator=g) * 3
    wh = 8 + torch.rand(b, n, 2, generator=g) * 10
    boxes = torch.cat([c - wh / 2, c + wh / 2], -1)
    scores = torch.rand(b, n, generator=g)
    groups = torch.randint(0, 3, (b, n), generator=g)
    valid = torch.rand(b, n, generator=g) > 0.1
    order, keep = greedy_nms_batched(boxes, scores, groups, valid, 0.5)
    for i in range(b):
        idx = torch.where(valid[i])[0]
        want = idx[batched_nms(boxes[i, idx], scores[i, idx], groups[i, idx], 0.5)]
        got = order[i][keep[i]]
        assert torch.equal(got, want)
        assert 20 < len(want) < 250  # the case is not trivial
    assert not rcnn_batched.use_matrix_nms(boxes)  # CPU tensors keep torchvision's NMS


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_nms_batched_by_segments_equals_whole(seed):
    """Groups laid out as consecutive column blocks (FPN levels after top-k): NMS block by block
    gives the same order and keep as over all pairs, and as torchvision."""
    g = torch.Generator().manual_seed(seed)
    b, segments = 2, [120, 0, 90, 40]
    n = sum(segments)
    c = torch.rand(b, n, 2, generator=g) * 60
    wh = 6 + torch.rand(b, n, 2, generator=g) * 12
    boxes = torch.cat([c - wh / 2, c + wh / 2], -1)
    scores = torch.rand(b, n, generator=g).round(decimals=2)  # ties: order must break them alike
    groups = torch.cat([torch.full((k,), i) for i, k in enumerate(segments)]).expand(b, -1)
    valid = torch.rand(b, n, generator=g) > 0.1
    whole = greedy_nms_batched(boxes, scores, groups, valid, 0.4)
    blocks = greedy_nms_batched(boxes, scores, groups, valid, 0.4, segments=segments)
    assert torch.equal(whole[0], blocks[0]) and torch.equal(whole[1], blocks[1])
    for i in range(b):
        idx = torch.where(valid[i])[0]
        want = idx[batched_nms(boxes[i, idx], scores[i, idx], groups[i, idx], 0.4)]
        assert torch.equal(blocks[0][i][blocks[1][i]], want)
    with pytest.raises(ValueError, match="partition"):
        greedy_nms_batched(boxes, scores, groups, valid, 0.4, segments=[n - 1])


def test_batched_sample_counts_subsets_and_uniformity():
    g = torch.Generator().manual_seed(0)
    labels = torch.full((3, 50), -1)
    labels[0, :30] = 0
    labels[0, 30:34] = 2  # 4 positives < 8 allowed -> all 4, and 12 negatives
    labels[1, :] = 1  # only positives: 8 of them, no negatives
    labels[2, 10:20] = 0  # only negatives: 10 (fewer than 16 asked)
    counts = torch.zeros(3, 50)
    for _ in range(400):
        pos, neg = batched_sample(labels, 16, 0.5, generator=g)
        assert pos.sum(1).tolist() == [4, 8, 0] and neg.sum(1).tolist() == [12, 0, 10]
        assert not (pos & (labels < 1)).any() and not (neg & (labels != 0)).any()
        counts += (pos | neg).float()
    # negatives of image 0: 12 of 30 per draw -> each drawn with p = 0.4 (sd of the mean ~0.024)
    freq = counts[0, :30] / 400
    assert (freq - 0.4).abs().max() < 0.1
    assert torch.equal(counts[0, 30:34], torch.full((4,), 400.0))
    # torchvision's sampler gives the same counts
    tv_pos, tv_neg = BalancedPositiveNegativeSampler(16, 0.5)(list(labels))
    assert [int(p.sum()) for p in tv_pos] == [4, 8, 0] and [int(n.sum()) for n in tv_neg] == [12, 0, 10]


def _model(batched: bool, big_samples: bool = False):
    torch.manual_seed(0)
    kw = dict(rpn_batch_size_per_image=10**6, box_batch_size_per_image=10**6) if big_samples else {}
    settings = RCNNSettings(
        anchor_sizes=(16, 24, 32, 48),
        min_size=64,
        max_size=96,
        fpn_channels=16,
        box_head_dim=32,
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=200,
        **kw,
    )
    backbone = build_backbone("efficientnet_lite0", None, [], False)
    return build_maskrcnn(backbone, 4, settings, mask_head_dim=8, batched_heads=batched)


def _batch(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 64, 96, generator=g) for _ in range(n)]
    targets = []
    for i in range(n):
        k = 0 if i == 1 else 3  # image 1 has no objects
        boxes = _boxes(k, g)
        masks = torch.zeros(k, 64, 96, dtype=torch.uint8)
        for j, b in enumerate(boxes.int().tolist()):
            masks[j, b[1] : b[3], b[0] : b[2]] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, 4, (k,), generator=g), "masks": masks})
    return images, targets


def test_build_switches_classes_and_keeps_state_dict():
    fast, stock = _model(True), _model(False)
    assert isinstance(fast.rpn, BatchedRPN) and isinstance(fast.roi_heads, BatchedRoIHeads)
    assert isinstance(fast.transform, BatchedTransform)
    assert type(stock.rpn).__name__ == "RegionProposalNetwork"
    a, b = fast.state_dict(), stock.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="model.rpn"):
        m = _model(False)
        m.rpn = torch.nn.Identity()
        batch_the_heads(m)


def test_cached_anchors_equal_torchvision_and_are_reused():
    fast, stock = _model(True), _model(False)
    assert isinstance(fast.rpn.anchor_generator, CachedAnchorGenerator)
    fast.train(), stock.train()
    from torchvision.models.detection.image_list import ImageList

    bigger = ImageList(torch.rand(2, 3, 128, 160), [(128, 160)] * 2)
    for il in (stock.transform(_batch()[0])[0], bigger, stock.transform(_batch(2, seed=3)[0])[0]):
        feats = list(stock.backbone(il.tensors).values())
        want = stock.rpn.anchor_generator(il, feats)
        got = fast.rpn.anchor_generator(il, feats)
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert len(fast.rpn.anchor_generator._anchor_cache) == 2  # the 64x96 batches share one entry


def test_transform_fast_path_equals_torchvision():
    fast, stock = _model(True), _model(False)
    images, targets = _batch()
    fast.train(), stock.train()
    il_f, t_f = fast.transform(images, copy.deepcopy(targets))
    il_s, t_s = stock.transform(images, copy.deepcopy(targets))
    assert il_f.image_sizes == il_s.image_sizes
    assert torch.equal(il_f.tensors, il_s.tensors)
    for a, b in zip(t_f, t_s, strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    # a batch of another size goes through torchvision's resize
    odd = [torch.rand(3, 50, 70)] * 2
    assert torch.equal(fast.transform(odd)[0].tensors, stock.transform(odd)[0].tensors)


def test_rpn_filter_and_anchor_targets_equal_torchvision(monkeypatch):
    fast, stock = _model(True), _model(False)
    images, targets = _batch()
    fast.train(), stock.train()
    il, tg = stock.transform(images, copy.deepcopy(targets))
    feats = stock.backbone(il.tensors)
    fl = list(feats.values())
    obj, deltas = stock.rpn.head(fl)
    anchors = stock.rpn.anchor_generator(il, fl)
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    n_per_level = [o[0].numel() for o in obj]
    obj, deltas = concat_box_prediction_layers(obj, deltas)
    props = stock.rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    bs, ss = stock.rpn.filter_proposals(props, obj, il.image_sizes, n_per_level)
    for matrix_nms in (False, True):  # per-image torchvision NMS (CPU default), the GPU's batched one
        monkeypatch.setattr(rcnn_batched, "use_matrix_nms", lambda boxes: True)  # CUDA-only otherwise
        fast.rpn.matrix_nms = matrix_nms
        bf, sf = fast.rpn.filter_proposals(props, obj, il.image_sizes, n_per_level)
        for a, b, c, d in zip(bf, bs, sf, ss, strict=True):
            assert torch.equal(a, b) and torch.equal(c, d)
    lf, mf = fast.rpn.assign_targets_to_anchors(anchors, tg)
    ls, ms = stock.rpn.assign_targets_to_anchors(anchors, tg)
    for a, b, c, d in zip(lf, ls, mf, ms, strict=True):
        assert torch.equal(a, b) and torch.equal(c, d)
    assert (lf[1] == 0).all()  # the empty image: all background
    # float16 anchors (as under AMP) against float32 ground truth: torchvision promotes to float32
    half = [a.half() for a in anchors]
    lf, mf = fast.rpn.assign_targets_to_anchors(half, tg)
    ls, ms = stock.rpn.assign_targets_to_anchors(half, tg)
    for a, b, c, d in zip(lf, ls, mf, ms, strict=True):
        assert torch.equal(a, b) and torch.equal(c, d) and c.dtype == d.dtype == torch.float32


def test_roi_sampling_selects_valid_samples():
    fast = _model(True)
    images, targets = _batch()
    fast.train()
    il, tg = fast.transform(images, copy.deepcopy(targets))
    g = torch.Generator().manual_seed(1)
    proposals = [_boxes(50, g), _boxes(20, g), _boxes(35, g)]
    p, m, lab, reg = fast.roi_heads.select_training_samples(proposals, tg)
    for i, (pi, mi, li, ri) in enumerate(zip(p, m, lab, reg, strict=True)):
        assert len(pi) == len(mi) == len(li) == len(ri) > 0
        cand = torch.cat([proposals[i], tg[i]["boxes"]])
        assert all((cand == row).all(1).any() for row in pi)  # every sample is a proposal or a gt
        if len(tg[i]["boxes"]):
            iou = box_iou(tg[i]["boxes"], pi).max(0).values
            assert ((li > 0) == (iou >= 0.5)).all()  # fg iff IoU >= 0.5 with some gt
            assert torch.equal(li[li > 0], tg[i]["labels"][mi[li > 0]])
        else:
            assert (li == 0).all()


def test_losses_equal_torchvision_when_sampling_takes_everything():
    """With sampling sizes above the candidate counts the samplers are deterministic, so the
    whole forward pass must give torchvision's losses."""
    fast, stock = _model(True, big_samples=True), _model(False, big_samples=True)
    stock.load_state_dict(fast.state_dict())
    images, targets = _batch()
    fast.train(), stock.train()
    lf = fast(images, copy.deepcopy(targets))
    ls = stock(images, copy.deepcopy(targets))
    assert lf.keys() == ls.keys()
    for k in lf:
        assert torch.allclose(lf[k], ls[k], rtol=1e-5, atol=1e-6), (k, lf[k], ls[k])
    sum(lf.values()).backward()  # and it trains
    assert all(p.grad is not None for p in fast.rpn.parameters())


def test_spec_refuses_matrix_nms_without_batched_heads():
    from pydantic import ValidationError

    from synthloop.training.spec import MaskRCNNParams

    assert MaskRCNNParams(matrix_nms=True).batched_heads
    with pytest.raises(ValidationError, match="matrix_nms"):
        MaskRCNNParams(matrix_nms=True, batched_heads=False)


def test_losses_equal_torchvision_under_autocast():
    """Under autocast (bfloat16 on the CPU; float16 on CUDA) features, anchors and proposals are
    low precision while the ground truth is float32: both paths must mix them the same way."""
    fast, stock = _model(True, big_samples=True), _model(False, big_samples=True)
    stock.load_state_dict(fast.state_dict())
    images, targets = _batch()
    fast.train(), stock.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lf = fast(images, copy.deepcopy(targets))
        ls = stock(images, copy.deepcopy(targets))
    for k in lf:
        assert torch.allclose(lf[k], ls[k], rtol=1e-6, atol=1e-7), (k, lf[k], ls[k])
