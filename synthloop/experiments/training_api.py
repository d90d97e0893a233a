"""The thin seam between experiments/evaluation and :mod:`synthloop.training`.

Every use of the training package by ``synthloop.experiments`` and ``synthloop evaluate`` goes
through one function here, so a rename in training is a one-line fix:

* :func:`load_spec_data` / :func:`normalize_spec`: ExperimentSpec (pydantic) <-> plain JSON data;
* :func:`with_mix` / :func:`real_only`: the matrix's edits of a spec (mix fraction, schedule, seed;
  dropping the synthetic datasets);
* :func:`train_run`, :func:`train_stats`: train into a run folder, read its throughput;
* :func:`resolve_checkpoint`: a run folder or checkpoint file -> the checkpoint to use;
* :func:`predict_dataset`: batched predictions of a checkpoint on a Dataset -> Detections.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError
from synthloop.evaluation.detections import Detections


class TrainingApiError(SynthloopError):
    """The training package cannot do what an experiment asks (missing API, bad spec)."""


def _spec_module() -> Any:
    try:
        from synthloop.training import spec
    except ImportError as e:  # training is written in parallel; say so instead of a traceback
        raise TrainingApiError(f"synthloop.training.spec is not available ({e})") from None
    return spec


# ---------------------------------------------------------------- specs
def normalize_spec(data: dict[str, Any], source: str = "<spec>", where: str | None = None) -> dict[str, Any]:
    """Validate ``data`` as an ExperimentSpec and return its canonical JSON form (defaults filled).

    A bad field raises the training package's SpecError naming ``source`` and ``where: field``."""
    spec = _spec_module()
    try:
        model = spec.parse_spec(data, source)
    except SynthloopError as e:
        if where is None:
            raise
        raise type(e)(e.message, path=source, where=f"{where}: {e.where}" if e.where else where) from None
    return model.model_dump(mode="json")


def load_spec_data(
    base: str | dict[str, Any], base_dir: Path, source: str = "<experiment>"
) -> dict[str, Any]:
    """The base ExperimentSpec as canonical JSON data: ``base`` is a YAML path (relative to
    ``base_dir``; its own relative paths resolve against its folder) or an inline mapping (its
    relative paths resolved against ``base_dir``)."""
    spec = _spec_module()
    if isinstance(base, str):
        p = Path(base).expanduser()
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            raise TrainingApiError(f"base spec {str(p)!r} not found", path=source, where="base")
        return spec.load_spec(p).model_dump(mode="json")
    try:
        model = spec.parse_spec(base, source)
    except SynthloopError as e:
        raise type(e)(e.message, path=source, where=f"base.{e.where}" if e.where else "base") from None
    return model.resolve_paths(base_dir).model_dump(mode="json")


def with_mix(spec: dict[str, Any], *, schedule: str, real_fraction: float, seed: int) -> dict[str, Any]:
    """A copy of ``spec`` with ``mix.schedule``, ``mix.real_fraction`` and ``seed`` set."""
    out = copy.deepcopy(spec)
    out.setdefault("mix", {})
    out["mix"]["schedule"] = schedule
    out["mix"]["real_fraction"] = float(real_fraction)
    out["seed"] = int(seed)
    return out


def real_only(spec: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """A copy of ``spec`` that trains on all of its real data only (synthetic datasets dropped;
    a spec without real data then fails validation, naming ``datasets``)."""
    out = with_mix(spec, schedule="blend", real_fraction=1.0, seed=seed)
    out["datasets"] = [d for d in out["datasets"] if d.get("kind") != "synthetic"]
    return out


# ---------------------------------------------------------------- training
def train_run(spec: dict[str, Any], train_dir: Path, log_path: Path | None = None) -> Path:
    """Train ``spec`` into ``train_dir`` (resumed from its last checkpoint when it has one) and
    return the final checkpoint. The loop's JSON-line log goes to ``log_path`` (default
    ``train_dir/../train.log``), not to the console."""
    import contextlib

    from synthloop.training.loop import train

    model = _spec_module().parse_spec(spec, str(train_dir))
    log = Path(log_path) if log_path is not None else Path(train_dir).parent / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh, contextlib.redirect_stdout(fh):
        ckpt = train(model, Path(train_dir), resume=True, quiet=True, source=str(log.parent / "spec.json"))
    return Path(ckpt)


def train_stats(train_dir: Path) -> dict[str, Any]:
    """Throughput of a finished run from its ``metrics.jsonl``: ``{"images_per_s": mean}`` over the
    records that log one (empty when none does)."""
    path = Path(train_dir) / "metrics.jsonl"
    vals: list[float] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            for k in ("images_per_s", "img_per_s", "images_per_sec"):
                if isinstance(rec.get(k), int | float):
                    vals.append(float(rec[k]))
                    break
    return {"images_per_s": sum(vals) / len(vals)} if vals else {}


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file as is; a run folder -> its best (``prefer="best"``) or last checkpoint."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise TrainingApiError("no such checkpoint file or run folder", path=str(p))
    order = ["best", "last"] if prefer == "best" else ["last", "best"]
    for stem in order:
        for cand in (p / "checkpoints" / f"{stem}.pt", p / f"{stem}.pt"):
            if cand.is_file():
                return cand
    pts = sorted((p / "checkpoints").glob("*.pt"), key=lambda q: q.stat().st_mtime)
    if pts:
        return pts[-1]
    raise TrainingApiError("run folder holds no checkpoint (checkpoints/*.pt)", path=str(p))


# ---------------------------------------------------------------- inference
def predict_dataset(checkpoint: Path, ds: Dataset, batch_size: int = 4) -> Detections:
    """Predictions of ``checkpoint`` on every frame of ``ds`` (``batch_size`` images per model call;
    labels mapped to ``ds``'s category ids by class name)."""
    from synthloop.training.predictor import Predictor

    if _is_deploy_model(Path(checkpoint)):  # pruned / QAT checkpoints, ONNX files, TensorRT engines
        from synthloop.deploy.infer import open_backend
        from synthloop.deploy.infer import predict_dataset as deploy_predict

        return deploy_predict(open_backend(checkpoint), ds)
    pred = Predictor.from_checkpoint(checkpoint)
    return Detections.from_frames(pred.predict_dataset(ds, batch_size=batch_size))


def _is_deploy_model(path: Path) -> bool:
    """True for what ``synthloop prune|qat|export-model`` write (evaluated through synthloop.deploy)."""
    if path.suffix.lower() in (".onnx", ".engine", ".plan"):
        return True
    if path.is_file() and path.suffix == ".pt":
        from synthloop.deploy.checkpoints import read_checkpoint

        try:
            ck = read_checkpoint(path)
        except Exception:  # noqa: BLE001 - unreadable: let the training predictor report it
            return False
        return "format" in ck  # deploy checkpoints carry a "format" tag; training ones a "schema"
