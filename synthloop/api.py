"""synthloop's Python API: the main entry points, one call each (``import synthloop`` gives them).

Example (the README's)::

    import synthloop

    ds = synthloop.generate("tabletop", frames=8, out="out/tabletop", seed=0)   # renders (Blender)
    real = synthloop.load_dataset("data/fruits-nuts/val.json")                  # COCO/KITTI/synthloop
    ckpt = synthloop.train("train.yaml", out="runs/a")                          # spec YAML/dict/model
    dets = synthloop.predict(ckpt, real)                                        # per-frame detections
    report = synthloop.evaluate(real, dets)                                     # COCO + VOC AP, slices
    print(report.coco["bbox"]["stats"]["AP"])

Each function is a thin layer over the package that does the work (importers, generators,
training, evaluation); heavy modules (torch, bpy) are imported on the first call, not by
``import synthloop``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: importing them here would load torch / bpy at `import synthloop`
    from synthloop.dataset.types import Dataset
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.evaluation.report import EvaluationReport
    from synthloop.training.spec import ExperimentSpec

PathLike = str | os.PathLike


def load_dataset(path: PathLike, *, skip_invalid: bool = False) -> Dataset:
    """A dataset from a synthloop folder, a COCO .json (or its folder), a KITTI folder or a
    BlenderProc output (format detected)."""
    from synthloop.importers import load_any

    return load_any(Path(path), skip_invalid=skip_invalid)


def generate(
    recipe: PathLike, frames: int, out: PathLike, *, seed: int = 0, start: int = 0, quiet: bool = True
) -> Dataset:
    """Render frames ``start .. start + frames - 1`` of ``recipe`` (a bundled name such as
    ``"tabletop"`` or a YAML path) with ``seed`` into the dataset folder ``out`` (resumable) and
    return it. Raises :class:`~synthloop.errors.RenderError` when frames failed after a retry."""
    from synthloop.dataset.folder import load_dataset as load_folder
    from synthloop.errors import RenderError
    from synthloop.generators.generate import default_renderer_factory, generate_dataset
    from synthloop.scenes.recipe import load_recipe

    result = generate_dataset(
        load_recipe(Path(recipe)),
        seed,
        frames,
        Path(out),
        start=start,
        renderer_factory=default_renderer_factory(0),
        quiet=quiet,
    )
    if result.failed:
        raise RenderError(f"{out}: frames {sorted(result.failed)} failed after retry (see {out}/failures/)")
    return load_folder(Path(out))


def load_spec(spec: PathLike | Mapping[str, Any] | ExperimentSpec) -> ExperimentSpec:
    """An :class:`~synthloop.training.spec.ExperimentSpec` from a YAML path (relative paths resolve
    against its folder), a plain dict, or a spec (returned as is)."""
    from synthloop.training.spec import ExperimentSpec, parse_spec
    from synthloop.training.spec import load_spec as load_yaml

    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec))
    return load_yaml(Path(spec))


def train(
    spec: PathLike | Mapping[str, Any] | ExperimentSpec,
    out: PathLike,
    *,
    resume: bool = False,
    quiet: bool = True,
) -> Path:
    """Train the detector ``spec`` describes into the run folder ``out``; returns the last checkpoint."""
    from synthloop.training.api import train_run

    exp = load_spec(spec)
    source = str(spec) if isinstance(spec, str | os.PathLike) else "<spec>"
    return train_run(exp, Path(out), source=source, resume=resume, quiet=quiet)


def predict(
    model: PathLike, data: Dataset | PathLike, *, score_threshold: float = 0.0, device: str = "auto"
) -> list[FrameDetections]:
    """Detections of a checkpoint (or run folder: its best/last checkpoint) on every frame of
    ``data`` (a Dataset or anything :func:`load_dataset` reads), labels as ``data``'s category ids."""
    from synthloop.training.api import load_predictor

    ds = data if not isinstance(data, str | os.PathLike) else load_dataset(data)
    predictor = load_predictor(Path(model), device=device, score_threshold=score_threshold)
    return predictor.predict_dataset(ds)


def evaluate(
    data: Dataset | PathLike,
    detections: Sequence[FrameDetections] | Mapping[str, FrameDetections] | PathLike,
    **options: Any,
) -> EvaluationReport:
    """COCO AP (pycocotools), VOC AP, per-class P/R and slices of ``detections`` (a list of
    FrameDetections, a mapping frame id -> FrameDetections, or a ``detections.json`` file) on
    ``data``. ``options`` go to :func:`synthloop.evaluation.evaluate`."""
    from synthloop.evaluation.detections import Detections
    from synthloop.evaluation.report import evaluate as run_evaluation

    ds = data if not isinstance(data, str | os.PathLike) else load_dataset(data)
    if isinstance(detections, str | os.PathLike):
        dets: Mapping[str, FrameDetections] = Detections.load(Path(detections))
    elif isinstance(detections, Mapping):
        dets = detections
    else:
        dets = Detections.from_frames(list(detections))
    return run_evaluation(ds, dets, **options)


__all__ = ["evaluate", "generate", "load_dataset", "load_spec", "predict", "train"]
