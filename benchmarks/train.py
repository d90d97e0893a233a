"""Mask R-CNN training throughput: synthloop's loop vs torchvision's reference training loop.

    python benchmarks/train.py --spec SPEC.yaml [--iters 60] [--warmup 10] [--out results/train.json]

Both loops train the same model (``synthloop.training.build.build_model`` from the spec: family,
backbone, anchors), on the same images (the spec's synthetic datasets, resized to the spec's input
size, no augmentation), with the same batch size, on the same device:

* **reference**: the loop of torchvision's ``references/detection/engine.py::train_one_epoch`` as
  its README runs it (no ``--amp``): fp32, contiguous tensors, DataLoader with 4 workers
  (``--workers 4``), pageable memory, ``loss.item()`` + finiteness check every iteration. Optimizer
  and lr schedule are the spec's (the same as the synthloop run): Mask R-CNN's step cost depends on
  how far it has learned (positive proposals feed the mask head), so with torchvision's SGD and its
  1/1000 warm-up the reference would run cheaper steps, not a faster loop.
* **synthloop**: ``synthloop.training.loop.train`` with the spec's settings (AMP, channels_last,
  torch.compile of the backbone, TF32 as the spec says; DataLoader workers from the spec, pinned
  memory, fused AdamW, no per-step GPU sync; the backbone + FPN forward/backward replayed as CUDA
  graphs, ``synthloop.training.cuda_graph``; Mask R-CNN's matching, sampling, proposal filtering and
  proposal NMS once per batch, ``synthloop.training.rcnn_batched``, where the reference keeps
  torchvision's per-image modules — same parameters, same math); images/s from its
  ``metrics.jsonl`` between the end of the warm-up and the last step. ``--variants`` adds runs with
  settings overridden (``no_cuda_graph``, ``torchvision_nms``, ``per_image_heads``, ``fp32``, ...).

Images/s are counted over steady-state iterations only (after ``--warmup``). Prints both, their
ratio (goal >= 1.3x) and peak GPU memory of each, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from synthloop.atomic import atomic_write_json
from synthloop.training.build import build_model, data_anchor_sizes, prepare_data
from synthloop.training.data import AugmentConfig, DetectionDataset, collate
from synthloop.training.loop import LRFactor, make_optimizer
from synthloop.training.spec import load_spec


def with_batched_heads(spec, on: bool, matrix_nms: bool | None = None):
    """The spec with ``model.mask_rcnn.batched_heads`` (and ``matrix_nms``) set."""
    mr = spec.model.mask_rcnn.model_copy(update={"batched_heads": on, "matrix_nms": matrix_nms})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"mask_rcnn": mr})})


def reference_loop(spec, data, iters: int, warmup: int, device: torch.device) -> dict:
    """torchvision references/detection train_one_epoch, fp32, 4 loader workers, torchvision's own
    per-image transform / RPN / RoI heads (``batched_heads: false``)."""
    spec = with_batched_heads(spec, False)
    anchors = data_anchor_sizes(spec, data)
    model = build_model(spec, data.classes, anchors, pretrained=True).to(device)
    aug = AugmentConfig(
        enabled=False, output_width=spec.model.input_width, output_height=spec.model.input_height
    )
    ds = DetectionDataset(data.synthetic, aug, train=True, with_masks=True)
    g = torch.Generator().manual_seed(0)
    sampler = torch.utils.data.RandomSampler(
        ds, replacement=True, num_samples=iters * spec.batch_size, generator=g
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=spec.batch_size, sampler=sampler, num_workers=4, collate_fn=collate
    )
    # the same optimizer and lr schedule as the synthloop run: how fast Mask R-CNN learns changes what
    # a step costs (more positive proposals -> more mask-head work), so both must learn alike
    optimizer = make_optimizer(spec, model)
    warmup_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(spec.lr_schedule, iters))
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n_img, t0, nonfinite = 0, None, 0
    for it, (images, targets) in enumerate(loader):
        if it == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            n_img = 0
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items() if k != "source"} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        loss_value = losses.item()
        if not math.isfinite(loss_value):  # the reference exits here; we skip the step and count it
            nonfinite += 1
            optimizer.zero_grad()
            continue
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        warmup_sched.step()
        n_img += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "images_per_s": n_img / dt,
        "iterations_timed": iters - warmup,
        "nonfinite_loss_steps": nonfinite,
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }


def synthloop_loop(spec, spec_path: Path, iters: int, warmup: int, **variant) -> dict:
    """``variant``: spec fields to override (e.g. ``amp=False``, ``channels_last=False``;
    ``batched_heads=False`` for torchvision's per-image Mask R-CNN modules)."""
    from synthloop.training.loop import train

    if "batched_heads" in variant or "matrix_nms" in variant:
        spec = with_batched_heads(spec, variant.pop("batched_heads", True), variant.pop("matrix_nms", None))

    # one phase over the same images as the reference: the synthetic frames, shuffled
    mix = spec.mix.model_copy(update={"real_fraction": 0.0})
    spec = spec.model_copy(
        update={
            **variant,
            "mix": mix,
            "iterations": iters,
            "epochs": None,
            "validation_interval": 0,
            "checkpoint_interval": iters,
            # a record at the end of the warm-up and at the last step, as few as a real run logs
            "log_interval": math.gcd(warmup, iters),
            "augment": AugmentConfig(enabled=False),
        }
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        train(spec, Path(tmp) / "run", quiet=True, source=str(spec_path))
        recs = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in recs if r.get("kind") == "train"}
    a, b = steps[warmup], steps[iters]  # wall_s: seconds since the loop started
    bs = spec.batch_size
    return {
        "images_per_s": (b["step"] - a["step"]) * bs / (b["wall_s"] - a["wall_s"]),
        "iterations_timed": b["step"] - a["step"],
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def profile_synthloop(spec, spec_path: Path, iters: int, top: int = 25, **variant) -> dict:
    """torch.profiler over a short synthloop run (``variant``: spec overrides, as for
    :func:`synthloop_loop`): where the main process and the GPU spend time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        synthloop_loop(spec, spec_path, iters, 2, **variant)
    wall = time.perf_counter() - t0
    ev = prof.key_averages()
    print(ev.table(sort_by="self_cpu_time_total", row_limit=top))
    if torch.cuda.is_available():
        print(ev.table(sort_by="self_device_time_total", row_limit=top))
    dev_us = sum(getattr(e, "self_device_time_total", 0) for e in ev)
    data_us = sum(e.cpu_time_total for e in ev if "DataLoader" in e.key and "__next__" in e.key)
    return {"wall_s": wall, "gpu_busy_s": dev_us / 1e6, "dataloader_wait_s": data_us / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    ap.add_argument("--profile", action="store_true", help="also profile a short synthloop run")
    ap.add_argument("--variants", default="compile,no_channels_last,fp32", help="comma list or ''")
    ap.add_argument("--profile-variant", default="", help="profile this variant instead of the default")
    args = ap.parse_args()
    spec_path = Path(args.spec).resolve()
    spec = load_spec(spec_path)
    if spec.model.family != "mask_rcnn":
        raise SystemExit("benchmarks/train.py compares Mask R-CNN loops: give a mask_rcnn spec")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = prepare_data(spec, str(spec_path))
    ref = reference_loop(spec, data, args.iters, args.warmup, device)
    ours = synthloop_loop(spec, spec_path, args.iters, args.warmup)
    known = {
        "compile": ("synthloop_compiled_backbone", {"compile": True}),
        "fp32": ("synthloop_fp32", {"amp": False, "channels_last": False}),
        "fp32_compile": ("synthloop_fp32_compiled", {"amp": False, "channels_last": False, "compile": True}),
        "no_tf32": ("synthloop_no_tf32", {"tf32": False}),
        "workers4": ("synthloop_4_workers", {"num_workers": 4}),
        "no_pin": ("synthloop_no_pin_memory", {"pin_memory": False}),
        "no_channels_last": ("synthloop_amp_no_channels_last", {"channels_last": False}),
        "per_image_heads": ("synthloop_per_image_heads", {"batched_heads": False}),
        "torchvision_nms": ("synthloop_torchvision_nms", {"matrix_nms": False}),
        "no_cuda_graph": ("synthloop_no_cuda_graph", {"cuda_graph": False}),
    }
    variants = {}
    for v in filter(None, args.variants.split(",")):
        name, over = known[v]
        variants[name] = synthloop_loop(spec, spec_path, args.iters, args.warmup, **over)
        print(name, round(variants[name]["images_per_s"], 1), flush=True)
    over = known[args.profile_variant][1] if args.profile_variant else {}
    prof = profile_synthloop(spec, spec_path, 20, **over) if args.profile else None
    if prof is not None:
        prof["variant"] = args.profile_variant or "default"
    fig = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch_size": spec.batch_size,
        "input_size": [spec.model.input_width, spec.model.input_height],
        "backbone": spec.backbone.name,
        "reference_torchvision_loop": ref,
        "synthloop_loop": ours,
        "synthloop_variants": variants,
        "speedup": ours["images_per_s"] / ref["images_per_s"],
        "speedup_best_variant": max([ours["images_per_s"]] + [v["images_per_s"] for v in variants.values()])
        / ref["images_per_s"],
        "goal_speedup": 1.3,
        "profile": prof,
    }
    print(json.dumps(fig, indent=1))
    atomic_write_json(args.out, fig)


if __name__ == "__main__":
    main()
