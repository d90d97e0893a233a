"""Host work of one Mask R-CNN training step: aten ops dispatched per part of the model.

    python benchmarks/rcnn_ops.py [--size 480 640] [--batch 8] [--out results/rcnn_ops.json]

On a GPU a Mask R-CNN step is bound by the host (each small op is a kernel launch, some are syncs),
so the number of ops the step dispatches is a machine-independent measure of that cost. This counts
them with a ``TorchDispatchMode`` for torchvision's per-image modules (``batched_heads=False``)
and synthloop's batched ones (:mod:`synthloop.training.rcnn_batched`), on the CPU, for one step
of the same model (EfficientNet-Lite0 + FPN, random init) on the same random batch (12 boxes with
masks per image). Optimizer ops are left out (they differ between CPU and fused CUDA AdamW). Note:
on the CPU torchvision's ``batched_nms`` takes its per-level path above 4,000 boxes (on CUDA above
5,000), so the ``rpn_filter`` count is higher here than on a GPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from synthloop.atomic import atomic_write_json
from synthloop.training.backbones import build_backbone
from synthloop.training.maskrcnn import build_maskrcnn
from synthloop.training.rcnn import RCNNSettings

PARTS = (  # (attribute path, method, region name)
    ("transform", "forward", "transform"),
    ("backbone", "forward", "backbone"),
    ("rpn.anchor_generator", "forward", "rpn_anchors"),
    ("rpn", "filter_proposals", "rpn_filter"),
    ("rpn", "assign_targets_to_anchors", "rpn_assign"),
    ("rpn", "compute_loss", "rpn_loss"),
    ("rpn", "forward", "rpn_other"),
    ("roi_heads", "select_training_samples", "roi_select"),
    ("roi_heads.box_roi_pool", "forward", "roi_pool"),
    ("roi_heads.mask_roi_pool", "forward", "roi_pool"),
    ("roi_heads", "forward", "roi_other"),
)


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.region = ["other"]
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[self.region[-1]] += 1
        return func(*args, **(kwargs or {}))


def _instrument(model: torch.nn.Module, counter: _Counter) -> None:
    for path, method, name in PARTS:
        mod = model
        for p in path.split("."):
            mod = getattr(mod, p)
        fn = getattr(mod, method)

        def wrapped(*a, _fn=fn, _name=name, **k):
            counter.region.append(_name)
            try:
                return _fn(*a, **k)
            finally:
                counter.region.pop()

        setattr(mod, method, wrapped)


def random_batch(n: int, h: int, w: int, seed: int = 0):
    """``n`` images ``(3, h, w)`` in [0, 1] and targets with 12 boxes (x1y1x2y2 px) and masks each."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, h, w, generator=g))
        x1, y1 = torch.rand(12, generator=g) * w * 0.7, torch.rand(12, generator=g) * h * 0.7
        bw, bh = 20 + torch.rand(12, generator=g) * w * 0.2, 20 + torch.rand(12, generator=g) * h * 0.2
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
        masks = torch.zeros(12, h, w, dtype=torch.uint8)
        for j, b in enumerate(boxes.int().tolist()):
            masks[j, b[1] : b[3], b[0] : b[2]] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, 4, (12,), generator=g), "masks": masks})
    return images, targets


def count_step(batched: bool, h: int, w: int, batch: int) -> dict[str, int]:
    """aten ops per region for one forward + backward step (after one warm-up step)."""
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0", None, [], False)
    model = build_maskrcnn(backbone, 4, RCNNSettings(min_size=h, max_size=w), batched_heads=batched)
    counter = _Counter()
    _instrument(model, counter)
    images, targets = random_batch(batch, h, w)
    model.train()
    for _ in range(2):  # the first step fills caches (anchors, pooler scales)
        counter.counts.clear()
        with counter:
            loss = sum(model(images, targets).values())
            counter.region.append("backward")
            loss.backward()
            counter.region.pop()
        model.zero_grad()
    return dict(sorted(counter.counts.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rcnn_ops.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    h, w = args.size
    per_image = count_step(False, h, w, args.batch)
    batched = count_step(True, h, w, args.batch)
    fig = {
        "batch_size": args.batch,
        "input_size": [w, h],
        "torch": torch.__version__,
        "ops_per_step_per_image_heads": sum(per_image.values()),
        "ops_per_step_batched_heads": sum(batched.values()),
        "ratio": sum(batched.values()) / sum(per_image.values()),
        "per_region": {"per_image_heads": per_image, "batched_heads": batched},
    }
    print(json.dumps(fig, indent=1))
    atomic_write_json(args.out, fig)


if __name__ == "__main__":
    main()
