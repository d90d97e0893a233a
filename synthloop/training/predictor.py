"""Inference API: ``Predictor.from_checkpoint(path).predict(images)`` for both detector families.

Images are (H, W, 3) uint8 RGB arrays of any size; each is resized to the model input
(``input_width`` x ``input_height`` of the run's spec, as in training) and the results are mapped
back to the image's own pixels. Per image the result is a dict: ``boxes`` (N, 4) float32 pixel
x1, y1, x2, y2 (pixel i covers [i, i+1)), ``scores`` (N,) float32, ``labels`` (N,) int64 category
ids (those of the run's reference dataset), and for Mask R-CNN ``masks`` (N, H, W) bool.
:meth:`Predictor.predict_dataset` gives :class:`synthloop.evaluation.detections.FrameDetections`
(masks as COCO RLE) with labels mapped to the given dataset's category ids by class name.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import FrameDetections
from synthloop.training.checkpoints import LoadedModel, load_model, resolve_checkpoint
from synthloop.training.data import load_rgb
from synthloop.training.detectnet import as_detectnet
from synthloop.training.loop import resolve_device


class Predictor:
    """A trained detector in eval mode (any checkpoint :func:`load_model` reads: training, pruned,
    retrained from a pruned graph). ``score_threshold`` drops lower-scored detections.

    ``classes`` / ``category_ids``: label ``i + 1`` is class ``classes[i]``, reported as category id
    ``category_ids[i]``; ``input_size``: the network input (width, height) in pixels.
    """

    def __init__(
        self, loaded: LoadedModel, device: str | torch.device = "auto", score_threshold: float = 0.0
    ):
        self.loaded = loaded
        self.desc = loaded.desc
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = loaded.model.eval().to(self.device)
        self.score_threshold = score_threshold
        self.classes = list(self.desc.class_names)
        self.category_ids = list(self.desc.category_ids)
        self.family = self.desc.family
        self.input_size = (self.desc.input_width, self.desc.input_height)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        score_threshold: float = 0.0,
        family: str | None = None,
    ) -> Predictor:
        """Load a checkpoint, or a run folder's best (else last) one (:func:`resolve_checkpoint`).
        ``family``: refuse a checkpoint of the other family."""
        return cls(load_model(resolve_checkpoint(path, prefer="best"), family), device, score_threshold)

    @torch.no_grad()
    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs for one input ``x`` (3, H, W) float32 in [0, 1] at the input size,
        before any decoding: DetectNet_v2 ``cov`` (1, C, H/16, W/16) coverage logits and ``bbox``
        (1, C, 4, H/16, W/16) encoded boxes; Mask R-CNN its detections ``boxes`` (N, 4) input
        pixels, ``labels`` (N,) 1..C, ``scores`` (N,), ``masks`` (N, 1, H, W) probabilities;
        Keypoint R-CNN ``boxes``, ``labels``, ``scores``, ``keypoints`` (N, K, 3) ``u, v, 1`` input
        pixels and ``keypoints_scores`` (N, K)."""
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        if self.family == "detectnet_v2":
            cov, bbox = as_detectnet(self.model).head(t[None])
            return {"cov": cov.cpu().numpy(), "bbox": bbox.cpu().numpy()}
        return {k: v.cpu().numpy() for k, v in self.model([t])[0].items()}

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Detections for each (H, W, 3) uint8 image (see module docstring)."""
        if not images:
            return []
        iw, ih = self.input_size
        batch = []
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"images must be (H, W, 3) uint8, got {im.shape} {im.dtype}")
            r = cv2.resize(im, (iw, ih), interpolation=cv2.INTER_LINEAR) if im.shape[:2] != (ih, iw) else im
            batch.append(torch.from_numpy(np.array(r)).permute(2, 0, 1).float().div_(255.0).to(self.device))
        outs = self.model(batch)
        ids = np.asarray(self.category_ids, np.int64)
        results = []
        for im, o in zip(images, outs, strict=True):
            h, w = im.shape[:2]
            sx, sy = w / iw, h / ih
            keep = o["scores"] >= self.score_threshold
            boxes = o["boxes"][keep].float().cpu().numpy().astype(np.float32)
            boxes *= np.array([sx, sy, sx, sy], np.float32)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            labels = o["labels"][keep].cpu().numpy().astype(np.int64)
            res: dict[str, Any] = {
                "boxes": boxes,
                "scores": o["scores"][keep].float().cpu().numpy().astype(np.float32),
                "labels": ids[labels - 1] if len(labels) else labels,
            }
            if "masks" in o:
                m = o["masks"][keep].float()
                if len(m):
                    m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
                res["masks"] = (m[:, 0] >= 0.5).cpu().numpy() if len(m) else np.zeros((0, h, w), bool)
            if "keypoints" in o:  # Keypoint R-CNN: (N, K, 3) u, v, 1 in original-image pixels
                kp = o["keypoints"][keep].float().cpu().numpy().astype(np.float32)
                kp[..., 0] *= sx
                kp[..., 1] *= sy
                res["keypoints"] = kp
            results.append(res)
        return results

    def predict_dataset(self, ds: Dataset, batch_size: int = 4) -> list[FrameDetections]:
        """:class:`FrameDetections` for every frame of ``ds``; labels become ``ds``'s category ids
        (matched by class name; the run's ids where ``ds`` lacks the name)."""
        by_name = ds.category_by_name()
        remap = {
            cid: (by_name[n].id if n in by_name else cid)
            for cid, n in zip(self.category_ids, self.classes, strict=True)
        }
        out = []
        for k in range(0, len(ds.frames), batch_size):
            frames = ds.frames[k : k + batch_size]
            for f, r in zip(frames, self.predict([load_rgb(f) for f in frames]), strict=True):
                masks = None
                if "masks" in r:
                    masks = []
                    for m in r["masks"]:
                        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                        masks.append(
                            {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}
                        )
                labels = np.array([remap.get(int(v), int(v)) for v in r["labels"]], np.int64)
                out.append(
                    FrameDetections(
                        f.frame_id, r["boxes"], r["scores"], labels, masks=masks, keypoints=r.get("keypoints")
                    )
                )
        return out
