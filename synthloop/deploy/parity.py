"""Exported model vs PyTorch: raw-output differences and accuracy through the same evaluator.

:func:`raw_diffs` runs both backends on the same network inputs (real photos resized to the model
input) and reports the max absolute difference of every raw output (DetectNet ``cov`` logits and
``bbox``; Mask R-CNN ``boxes``/``scores``/``masks``, Keypoint R-CNN ``boxes``/``scores``/``keypoints``/
``keypoints_scores``, when both return the same number of detections).
:func:`accuracy` decodes each backend's outputs with the same post-processing into
:class:`~synthloop.evaluation.Detections` and scores them with
:func:`synthloop.evaluation.coco_evaluate` (bbox AP, AP50).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synthloop.dataset.types import Dataset
from synthloop.deploy.infer import Backend, predict_dataset


def raw_diffs(a: Backend, b: Backend, inputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Max |a - b| per raw output over ``inputs`` ((3, H, W) float32 in [0, 1]); outputs whose
    shapes differ (another detection count) are reported as ``nan``."""
    out: dict[str, float] = {}
    for x in inputs:
        ra, rb = a.run(x), b.run(x)
        for k in ra:
            if ra[k].shape != rb[k].shape:
                out[k] = float("nan")
            elif k in out and np.isnan(out[k]):
                continue
            else:
                d = (
                    float(np.abs(ra[k].astype(np.float64) - rb[k].astype(np.float64)).max())
                    if ra[k].size
                    else 0.0
                )
                out[k] = max(out.get(k, 0.0), d)
    return out


def accuracy(backend: Backend, ds: Dataset, score_thr: float = 0.0) -> dict[str, Any]:
    """COCO bbox AP / AP50 (and segm AP for Mask R-CNN, OKS keypoint AP for Keypoint R-CNN) of
    ``backend`` on ``ds``."""
    from synthloop.evaluation.coco_metrics import coco_evaluate

    dets = predict_dataset(backend, ds, score_thr)
    types = {"mask_rcnn": ("bbox", "segm"), "keypoint_rcnn": ("bbox", "keypoints")}.get(
        backend.desc.family, ("bbox",)
    )
    res = coco_evaluate(ds, dets, iou_types=types)
    out: dict[str, Any] = {"num_detections": sum(len(d) for d in dets.values())}
    for t in types:
        if t in res:
            out[f"{t}_AP"] = res[t]["stats"]["AP"]
            out[f"{t}_AP50"] = res[t]["stats"]["AP50"]
    return out


def parity_report(
    reference: Backend, exported: Backend, ds: Dataset, max_images: int | None = None
) -> dict[str, Any]:
    """Raw max-abs differences on ``ds``'s images and both backends' COCO metrics on ``ds``."""
    from synthloop.deploy.preprocess import load_input

    frames = ds.frames[:max_images] if max_images else ds.frames
    d = reference.desc
    inputs = [load_input(f.image_path, d.input_width, d.input_height)[0] for f in frames]
    sub = Dataset(categories=ds.categories, frames=list(frames), name=ds.name, root=ds.root)
    return {
        "max_abs_diff": raw_diffs(reference, exported, inputs),
        "reference": {"backend": reference.name, **accuracy(reference, sub)},
        "exported": {"backend": exported.name, **accuracy(exported, sub)},
        "num_images": len(frames),
    }
