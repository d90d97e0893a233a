"""The training package as the packages above it use it: train, find a checkpoint, predict.

``experiments/``, ``active/`` and ``synthloop evaluate`` go through these functions only, so the
loop, the checkpoint layout and the predictor can change behind them:

* :func:`train_run`: train an :class:`ExperimentSpec` into a run folder (resumed when it holds a
  checkpoint); :func:`train_stats`: the run's throughput from its ``metrics.jsonl``;
* :func:`resolve_checkpoint`: a run folder or checkpoint file -> the checkpoint to use;
  :func:`read_training_checkpoint`: a training checkpoint's contents (spec, classes, model state);
* :func:`load_predictor`, :func:`predict_dataset`: inference with a checkpoint (training or pruned).

Specs are edited as pydantic models (``spec.model_copy(update=...)``), never as dicts.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections
from synthloop.training.checkpoints import load_checkpoint, resolve_checkpoint
from synthloop.training.loop import train
from synthloop.training.predictor import Predictor
from synthloop.training.spec import ExperimentSpec

__all__ = [
    "load_predictor",
    "predict_dataset",
    "read_training_checkpoint",
    "resolve_checkpoint",
    "train_run",
    "train_stats",
]


def train_run(
    spec: ExperimentSpec,
    run_dir: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    source: str = "",
    *,
    resume: bool = True,
    quiet: bool = True,
) -> Path:
    """Train ``spec`` into ``run_dir`` (``resume``: from its last checkpoint when it has one);
    returns the last checkpoint. ``quiet``: the loop logs JSON lines instead of a progress bar, to
    stdout, or appended to ``log_path`` when given. ``source``: the file errors name (default:
    ``run_dir``)."""
    run_dir = Path(run_dir)
    src = source or str(run_dir)
    if log_path is None:
        return Path(train(spec, run_dir, resume=resume, quiet=quiet, source=src))
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh, contextlib.redirect_stdout(fh):
        return Path(train(spec, run_dir, resume=resume, quiet=quiet, source=src))


def train_stats(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Throughput of a run from its ``metrics.jsonl``: ``{"images_per_s": mean}`` over the train
    records (empty when none is logged yet); torn lines are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    vals: list[float] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec.get("images_per_s"), int | float):
                vals.append(float(rec["images_per_s"]))
    return {"images_per_s": sum(vals) / len(vals)} if vals else {}


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a training checkpoint (see :mod:`synthloop.training.loop`): ``spec``,
    ``classes``, ``category_ids``, ``model`` (state_dict), ``state``..."""
    return load_checkpoint(path)


def load_predictor(
    checkpoint: str | os.PathLike, device: str = "auto", score_threshold: float = 0.0
) -> Predictor:
    """The :class:`Predictor` of a checkpoint or run folder (its best, else last, checkpoint);
    it drops detections scoring below ``score_threshold``."""
    return Predictor.from_checkpoint(checkpoint, device=device, score_threshold=score_threshold)


def predict_dataset(checkpoint: str | os.PathLike, ds: Dataset, batch_size: int = 4) -> Detections:
    """Predictions of ``checkpoint`` (training or pruned; a run folder: its best, else last) on every
    frame of ``ds``, ``batch_size`` images per model call; labels are ``ds``'s category ids (matched
    by class name)."""
    pred = load_predictor(checkpoint)
    return Detections.from_frames(pred.predict_dataset(ds, batch_size=batch_size))
