"""What each validation adds to TensorBoard: COCO box AP of the validation split, the run's
hyperparameters (``add_hparams``, next to the latest validation metrics) and a few prediction
overlays (matched detections green, missed objects red, false positives orange).

Detections are computed at the model's input size and scaled back to each frame's own pixels, so
AP is pycocotools' on the original annotations (:func:`synthloop.evaluation.coco_evaluate`).
Called from one place in :mod:`synthloop.training.loop` (rank 0 only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthloop.dataset.types import Dataset
from synthloop.evaluation.coco_metrics import coco_evaluate
from synthloop.evaluation.detections import FrameDetections
from synthloop.evaluation.frame_outcomes import frame_outcome, render_outcome_overlay
from synthloop.evaluation.matching import resolve_min_iou
from synthloop.training.data import load_rgb
from synthloop.training.spec import ExperimentSpec

MAX_IMAGES = 4  # prediction overlays written per validation


@torch.no_grad()
def predict_frames(model: torch.nn.Module, ds: Dataset, size: tuple[int, int], device: torch.device):
    """FrameDetections (frame pixels; labels as the model's 1..C = ``ds``'s category ids) per frame."""
    iw, ih = size
    out = []
    was_training = model.training
    model.eval()
    try:
        for f in ds.frames:
            x = torch.from_numpy(np.array(load_rgb(f))).permute(2, 0, 1).float().div_(255.0)
            x = F.interpolate(x[None], size=(ih, iw), mode="bilinear", align_corners=False)[0]
            o = model([x.to(device)])[0]
            sx, sy = f.width / iw, f.height / ih
            boxes = o["boxes"].float().cpu().numpy() * np.array([sx, sy, sx, sy], np.float32)
            labels = o["labels"].cpu().numpy().astype(np.int64)
            out.append(FrameDetections(f.frame_id, boxes, o["scores"].float().cpu().numpy(), labels))
    finally:
        model.train(was_training)
    return out


def hparams(spec: ExperimentSpec) -> dict[str, Any]:
    """Flat scalar hyperparameters of a spec for ``add_hparams`` (str / int / float / bool only)."""
    keys = {
        "family": spec.model.family,
        "backbone": spec.backbone.name,
        "input": f"{spec.model.input_width}x{spec.model.input_height}",
        "optimizer": spec.optimizer.name,
        "lr": spec.optimizer.lr,
        "weight_decay": spec.optimizer.weight_decay,
        "lr_schedule": spec.lr_schedule.name,
        "batch_size": spec.batch_size,
        "epochs": spec.epochs or 0,
        "iterations": spec.iterations or 0,
        "real_fraction": spec.mix.real_fraction,
        "mix_schedule": spec.mix.schedule,
        "seed": spec.seed,
        "amp": spec.amp,
    }
    return {k: v for k, v in keys.items() if isinstance(v, str | int | float | bool)}


def log_validation(
    tb: Any | None, model, ds: Dataset, spec: ExperimentSpec, device: torch.device, step: int
) -> dict[str, float]:
    """COCO box AP, AP50, AP75 of ``model`` on ``ds`` (returned, for the run's metrics log); with a
    SummaryWriter ``tb`` also the hparams and up to :data:`MAX_IMAGES` prediction overlays
    (``validation/predictions/<frame>``)."""
    dets = predict_frames(model, ds, (spec.model.input_width, spec.model.input_height), device)
    by_frame = {d.frame_id: d for d in dets}
    coco = coco_evaluate(ds, by_frame, iou_types=("bbox",))
    stats = coco.get("bbox", {}).get("stats", {})
    metrics = {k: float(stats[k]) for k in ("AP", "AP50", "AP75") if k in stats}
    if tb is None:
        return metrics
    ious = resolve_min_iou(ds, None)
    cats = ds.category_by_id()
    for f, fd in list(zip(ds.frames, dets, strict=True))[:MAX_IMAGES]:
        img = render_outcome_overlay(f, fd, frame_outcome(f, fd, ious, 0.5), cats)
        tb.add_image(f"validation/predictions/{f.frame_id}", np.asarray(img), step, dataformats="HWC")
    tb.add_hparams(
        hparams(spec), {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".", global_step=step
    )
    tb.flush()
    return metrics
