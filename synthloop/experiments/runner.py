"""Run a mixing experiment: train and evaluate every run of the matrix, resumably.

Layout of the output folder::

    OUT/
      experiment.json        the validated experiment (eval dataset path resolved) + its runs
      runs/<name>/spec.json  the run's ExperimentSpec + spec hash
      runs/<name>/train/     the training run folder (checkpoints, metrics.jsonl, ...)
      runs/<name>/train.log  the training loop's JSON-line log
      runs/<name>/eval.json  EvaluationReport of the final checkpoint on the eval dataset
      runs/<name>/detections.json
      runs/<name>/samples/   overlays of the first eval frames (the same frames for every run)
      runs/<name>/worst/     overlays of the worst eval frames (per-frame F1)
      runs/<name>/DONE       {"spec_hash", "eval_hash", "checkpoint", "train": {...}}, written last
      runs/<name>/error.json a failed attempt (type, message, traceback); removed on success

A run whose ``DONE`` carries its current spec hash and eval-settings hash is skipped; when only
the eval settings changed, its checkpoint is evaluated again without training. A run folder
made for another spec (the experiment changed) is moved to ``runs/.stale/`` before the run
starts again. A run that fails leaves ``error.json`` and the next runs go on; re-running the
experiment retries it (the training run folder is resumed when it exists). Every file is
written atomically.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_json, canonical_json
from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections
from synthloop.evaluation.frame_outcomes import write_outcome_overlays
from synthloop.evaluation.report import evaluate
from synthloop.experiments.matrix import LoadedExperiment, RunSpec, expand, load_experiment
from synthloop.progress import JobProgress
from synthloop.training import api as training_api
from synthloop.training.spec import parse_spec

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_SCHEMA = "synthloop.mix-experiment/1"

TrainFn = Callable[[RunSpec, Path], "TrainResult"]
PredictFn = Callable[[Path, Dataset, int], Detections]


@dataclass
class TrainResult:
    """What training a run produced: the checkpoint to evaluate and optional stats (JSON-able,
    e.g. ``{"images_per_s": 41.2}``) that go into ``DONE`` and the report."""

    checkpoint: Path
    stats: dict[str, Any]


@dataclass
class RunOutcome:
    """``status``: ``"done"`` (trained and evaluated now), ``"evaluated"`` (trained before, evaluated
    again because the eval settings changed), ``"skipped"`` (already done), ``"failed"``."""

    name: str
    status: str
    error: str | None = None


def default_train(run: RunSpec, train_dir: Path) -> TrainResult:
    """Train with :mod:`synthloop.training` (resuming ``train_dir`` when it exists)."""
    spec = parse_spec(run.spec, str(train_dir))
    log = Path(train_dir).parent / "train.log"
    ckpt = training_api.train_run(spec, train_dir, log_path=log, source=str(log.parent / "spec.json"))
    return TrainResult(ckpt, training_api.train_stats(train_dir))


def run_dir(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / "runs" / name


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when missing or unreadable (a torn or foreign file)."""
    try:
        d = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None


def eval_hash(loaded: LoadedExperiment) -> str:
    """sha256 of the eval settings that change results (dataset path resolved; batch size left out)."""
    ev = loaded.experiment.eval.model_dump(mode="json", exclude={"batch_size"})
    ev["dataset"] = str(loaded.eval_dataset())
    return hashlib.sha256(canonical_json(ev)).hexdigest()


def is_done(out_dir: str | Path, run: RunSpec, eval_h: str | None = None) -> bool:
    """True when ``runs/<name>/DONE`` exists and names ``run.spec_hash`` (and ``eval_h``, if given)."""
    d = read_json_or_none(run_dir(out_dir, run.name) / "DONE")
    if d is None or d.get("spec_hash") != run.spec_hash:
        return False
    return eval_h is None or d.get("eval_hash") == eval_h


def _move_stale(out_dir: Path, run: RunSpec) -> None:
    """Move a run folder made for a different spec to ``runs/.stale/<name>-<hash8>[-k]``."""
    rd = run_dir(out_dir, run.name)
    if not rd.exists():
        return
    old = read_json_or_none(rd / "spec.json")
    if old is not None and old.get("spec_hash") == run.spec_hash:
        return
    tag = (old or {}).get("spec_hash", "unknown")[:8]
    stale = out_dir / "runs" / ".stale"
    stale.mkdir(parents=True, exist_ok=True)
    dst, k = stale / f"{run.name}-{tag}", 1
    while dst.exists():
        dst, k = stale / f"{run.name}-{tag}-{k}", k + 1
    rd.rename(dst)


def evaluate_run(loaded: LoadedExperiment, ds: Dataset, dets: Detections, rd: Path) -> dict[str, Any]:
    """Evaluate ``dets`` on ``ds`` with the experiment's eval settings; write eval.json,
    detections.json and the sample/worst overlays into ``rd``. Returns the report dict."""
    ev = loaded.experiment.eval
    report = evaluate(
        ds, dets, voc_mode=ev.voc_mode, min_iou=ev.min_iou, score_thr=ev.score_thr, iou_types=ev.iou_types
    )
    dets.save(rd / "detections.json")
    report.save(rd / "eval.json")
    if ev.sample_frames:
        sample_ids = [f.frame_id for f in ds.frames[: ev.sample_frames]]
        write_outcome_overlays(
            ds, dets, rd / "samples", frames=sample_ids, score_thr=ev.score_thr, min_iou=ev.min_iou
        )
    if ev.worst_frames:
        write_outcome_overlays(
            ds, dets, rd / "worst", worst=ev.worst_frames, score_thr=ev.score_thr, min_iou=ev.min_iou
        )
    return report.to_dict()


def write_plan(loaded: LoadedExperiment, runs: list[RunSpec], out_dir: Path) -> Path:
    """``OUT/experiment.json``: the validated experiment (eval dataset resolved) and its runs."""
    exp = loaded.experiment.model_dump(mode="json")
    exp["eval"]["dataset"] = str(loaded.eval_dataset())
    return atomic_write_json(
        out_dir / EXPERIMENT_FILE,
        {
            "schema": EXPERIMENT_SCHEMA,
            "name": loaded.name,
            "source": str(loaded.path) if loaded.path else None,
            "experiment": exp,
            "runs": [r.to_dict() for r in runs],
        },
    )


def run_one(
    loaded: LoadedExperiment,
    run: RunSpec,
    ds: Dataset,
    out_dir: Path,
    train_fn: TrainFn,
    predict_fn: PredictFn,
) -> str:
    """Train (unless this spec's model is already trained), predict, evaluate one run and write
    its DONE marker. Returns ``"done"`` (trained and evaluated) or ``"evaluated"`` (only the eval
    settings changed: the finished checkpoint was evaluated again). Raises on failure."""
    _move_stale(out_dir, run)
    rd = run_dir(out_dir, run.name)
    eval_h = eval_hash(loaded)
    prev = read_json_or_none(rd / "DONE")
    if (
        prev is not None
        and prev.get("spec_hash") == run.spec_hash
        and Path(prev.get("checkpoint", "")).is_file()
    ):
        result, status = TrainResult(Path(prev["checkpoint"]), dict(prev.get("train") or {})), "evaluated"
        (rd / "DONE").unlink()
    else:
        atomic_write_json(rd / "spec.json", {"name": run.name, "spec_hash": run.spec_hash, "spec": run.spec})
        result, status = train_fn(run, rd / "train"), "done"
    dets = predict_fn(Path(result.checkpoint), ds, loaded.experiment.eval.batch_size)
    evaluate_run(loaded, ds, dets, rd)
    atomic_write_json(
        rd / "DONE",
        {
            "name": run.name,
            "spec_hash": run.spec_hash,
            "eval_hash": eval_h,
            "checkpoint": str(result.checkpoint),
            "train": result.stats,
        },
    )
    (rd / "error.json").unlink(missing_ok=True)
    return status


def run_experiment(
    exp_path: str | Path,
    out_dir: str | Path,
    quiet: bool = False,
    *,
    train_fn: TrainFn | None = None,
    predict_fn: PredictFn | None = None,
    load_dataset_fn: Callable[[Path], Dataset] | None = None,
    spec_ops: Any = None,
) -> list[RunOutcome]:
    """Run every run of the experiment at ``exp_path`` into ``out_dir`` (see module docstring).

    ``train_fn(run, train_dir) -> TrainResult`` (default: :mod:`synthloop.training`),
    ``predict_fn(checkpoint, dataset, batch_size) -> Detections`` (default: the training
    Predictor), ``load_dataset_fn(path) -> Dataset`` (default: ``load_any``) and ``spec_ops`` (see
    :func:`~synthloop.experiments.matrix.expand`) can be replaced, e.g. by tests.
    Returns one outcome per run, in matrix order.
    """
    from synthloop.importers import load_any

    loaded = load_experiment(exp_path)
    runs = expand(loaded, spec_ops)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_plan(loaded, runs, out)
    ds = (load_dataset_fn or load_any)(loaded.eval_dataset())
    train_fn = train_fn or default_train
    predict_fn = predict_fn or training_api.predict_dataset
    outcomes: list[RunOutcome] = []
    eval_h = eval_hash(loaded)
    todo = [r for r in runs if not is_done(out, r, eval_h)]
    todo_names = {r.name for r in todo}
    outcomes += [RunOutcome(r.name, "skipped") for r in runs if r.name not in todo_names]
    with JobProgress(
        len(runs), f"mix {loaded.name}", quiet=quiet, unit="run", completed=len(runs) - len(todo)
    ) as prog:
        for r in todo:
            prog.log("run", name=r.name, spec_hash=r.spec_hash[:12])
            try:
                status = run_one(loaded, r, ds, out, train_fn, predict_fn)
            except Exception as e:  # noqa: BLE001 - a failed run is recorded, the others go on
                rd = run_dir(out, r.name)
                atomic_write_json(
                    rd / "error.json",
                    {
                        "name": r.name,
                        "spec_hash": r.spec_hash,
                        "type": type(e).__name__,
                        "message": str(e),
                        "traceback": traceback.format_exc(),
                    },
                )
                outcomes.append(RunOutcome(r.name, "failed", f"{type(e).__name__}: {e}"))
                prog.log("failed", name=r.name, error=f"{type(e).__name__}: {e}")
            else:
                outcomes.append(RunOutcome(r.name, status))
            prog.advance(1, name=r.name)
    order = {r.name: i for i, r in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order[o.name])
