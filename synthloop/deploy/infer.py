"""Inference on image files with one of three backends and one decoding path.

``MODEL`` is a checkpoint (torch backend), an ``.onnx`` (onnxruntime) or a TensorRT ``.engine``
/ ``.plan``, the latter two with the sidecar ``<model>.json`` written by export. Every backend maps a
network input (3, H, W) float32 in [0, 1] to the raw outputs described in :mod:`decode`, so torch,
onnxruntime and TensorRT detections differ only by the numerics of the network itself.

:func:`run_inference` writes, per image, ``<stem>.json`` (detections in original-image pixels, boxes
x1 y1 x2 y2, dataset category ids, class names, RLE masks for Mask R-CNN, (N, K, 3) keypoints for
Keypoint R-CNN) and ``<stem>.png`` (the overlay, with predicted skeletons), plus ``detections.json``
(schema ``synthloop.detections/1``, frame ids = image stems) that ``synthloop evaluate`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from synthloop.atomic import atomic_save_image, atomic_write_json
from synthloop.dataset.staging import unique_names
from synthloop.dataset.types import Dataset
from synthloop.deploy.decode import decode
from synthloop.deploy.errors import DeployError
from synthloop.deploy.preprocess import load_input, read_rgb, to_input
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.overlays import draw_detections
from synthloop.training.checkpoints import LoadedModel, ModelDesc, load_model
from synthloop.training.predictor import Predictor

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class Backend(Protocol):
    """What every backend offers: ``desc`` and ``run(x (3, H, W) float32) -> raw outputs``."""

    name: str
    desc: ModelDesc

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchBackend:
    """PyTorch model from a checkpoint through the training package's :class:`Predictor` (its
    :meth:`~synthloop.training.predictor.Predictor.raw` outputs), eval mode, CPU unless ``device``."""

    name = "torch"

    def __init__(self, loaded: LoadedModel, device: str = "cpu"):
        self.predictor = Predictor(loaded, device)
        self.desc = loaded.desc
        self.model = self.predictor.model

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.predictor.raw(x)


def open_backend(
    model_path: str | os.PathLike,
    backend: str = "auto",
    family: str | None = None,
    threads: int | None = None,
) -> Backend:
    """A backend for ``model_path``; ``auto`` picks by suffix (.onnx, .engine/.plan, else a checkpoint)."""
    p = Path(model_path)
    if backend not in BACKENDS:
        raise DeployError(
            f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})", where="backend"
        )
    suffix = p.suffix.lower()
    if backend == "auto":
        backend = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}.get(suffix, "torch")
    if backend == "torch":
        if suffix in (".onnx", ".engine", ".plan"):
            raise DeployError(
                "the torch backend needs a checkpoint, not an exported model", path=str(p), where="backend"
            )
        if threads:
            torch.set_num_threads(threads)
        return TorchBackend(load_model(p, family))
    if backend == "onnxruntime":
        if suffix != ".onnx":
            raise DeployError(
                "the onnxruntime backend needs an .onnx model (run export-model first)",
                path=str(p),
                where="backend",
            )
        from synthloop.deploy.ort_runtime import OrtBackend

        return OrtBackend(p, threads=threads)
    from synthloop.deploy.tensorrt_build import TrtBackend

    return TrtBackend(p)


def list_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expand to their image files (sorted, by suffix)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    if not out:
        raise DeployError("no images given", where="images")
    return out


def predict_rgb(backend: Backend, rgb: np.ndarray, frame_id: str, score_thr: float = 0.0) -> FrameDetections:
    """Detections of one (H, W, 3) uint8 image in its own pixel coordinates."""
    d = backend.desc
    raw = backend.run(to_input(rgb, d.input_width, d.input_height))
    return decode(raw, d, (rgb.shape[1], rgb.shape[0]), frame_id, score_thr)


def predict_dataset(backend: Backend, ds: Dataset, score_thr: float = 0.0) -> Detections:
    """Detections of every frame of ``ds`` (frame ids kept), for :func:`synthloop.evaluation.evaluate`.

    Labels are mapped to ``ds``'s category ids by class name (the model's own ids where ``ds`` lacks
    the name), like the training package's Predictor."""
    d = backend.desc
    by_name = {c.name: c.id for c in ds.categories}
    remap = {cid: by_name.get(n, cid) for cid, n in zip(d.category_ids, d.class_names, strict=True)}
    out = []
    for frame in ds.frames:
        x, size = load_input(frame.image_path, d.input_width, d.input_height)
        fd = decode(backend.run(x), d, size, frame.frame_id, score_thr)
        fd.labels = np.array([remap[int(v)] for v in fd.labels], np.int64)
        out.append(fd)
    return Detections.from_frames(out)


@dataclass
class InferResult:
    """Files written by :func:`run_inference` (one JSON and one overlay per image)."""

    json_files: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    detections_file: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)


def run_inference(
    model_path: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    backend: str = "auto",
    score_thr: float = 0.5,
    family: str | None = None,
) -> InferResult:
    """Detect objects in ``images`` and write JSON + overlays to ``out_dir`` (see module docstring).

    An image that cannot be decoded raises :class:`DeployError` naming it (earlier images' outputs
    stay written)."""
    be = open_backend(model_path, backend, family)
    names = dict(zip(be.desc.category_ids, be.desc.class_names, strict=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = InferResult()
    frames = []
    paths = list_images(images)
    for path, stem in zip(paths, unique_names([p.stem for p in paths]), strict=True):
        rgb = read_rgb(path)
        fd = predict_rgb(be, rgb, stem, score_thr)
        frames.append(fd)
        record: dict[str, Any] = {
            "image": str(path),
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "backend": be.name,
            "model": str(model_path),
            **fd.to_dict(),
            "class_names": [names[int(v)] for v in fd.labels],
        }
        result.json_files.append(atomic_write_json(out / f"{stem}.json", record))
        result.overlays.append(atomic_save_image(out / f"{stem}.png", draw_detections(rgb, fd, names)))
        result.counts[stem] = len(fd)
    result.detections_file = Detections.from_frames(frames).save(out / "detections.json")
    return result
