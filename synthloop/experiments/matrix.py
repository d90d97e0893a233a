"""The mixing experiment: a YAML (pydantic) that expands into a list of training runs.

Example ``mix.yaml``::

    name: fruits-mix
    base: train.yaml                  # an ExperimentSpec YAML (path relative to this file) or inline
    overrides: {epochs: 2}            # optional, deep-merged into the base spec
    real_fractions: [0, 0.25, 0.5, 1.0]
    schedules: [blend, pretrain_finetune]
    seeds: [0, 1]
    baselines: {synthetic_only: true, real_only: true}
    eval: {dataset: ../real/fruits-nuts/val.json, iou_types: [bbox], voc_mode: integrate}

:func:`expand` gives one :class:`RunSpec` per distinct training spec: for every schedule, real
fraction and seed the base spec with ``mix.schedule``, ``mix.real_fraction`` and ``seed`` set,
plus, per seed, the synthetic-only baseline (no real data) and the real-only baseline (no
synthetic data). Runs whose specs are equal are merged into one (a real fraction of 0 trains the
same model under every schedule, and equals the synthetic-only baseline); the merged run keeps
every (series, fraction) point it stands for in ``points``. Each run has a stable name
(``blend-r0.25-s1``, ``real_only-s0``) and the sha256 of its spec's canonical JSON.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synthloop.atomic import canonical_json
from synthloop.errors import SynthloopError
from synthloop.training.spec import ExperimentSpec, load_spec, parse_spec
from synthloop.userfiles import load_yaml_file
from synthloop.validation import invalid

Schedule = Literal["blend", "pretrain_finetune"]
SYNTHETIC_ONLY = "synthetic_only"
REAL_ONLY = "real_only"
BASELINES = (SYNTHETIC_ONLY, REAL_ONLY)


class MixExperimentError(SynthloopError):
    """A mixing-experiment YAML (or its run folder) that cannot be used; names file and field."""


class Baselines(BaseModel):
    """Which baseline runs to add (one per seed)."""

    model_config = ConfigDict(extra="forbid")

    synthetic_only: bool = True
    real_only: bool = True


class EvalConfig(BaseModel):
    """How every run is evaluated.

    ``dataset``: ground truth (synthloop folder, COCO json, KITTI folder), relative to the
    experiment file. ``score_thr``: operating point for P/R, overlays. ``batch_size``: images per
    predictor call. ``sample_frames``: overlays of the first N eval frames per run (the same frames
    for every run); ``worst_frames``: overlays of the N worst frames (per-frame F1) per run.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    iou_types: list[Literal["bbox", "segm", "keypoints"]] = Field(default=["bbox"], min_length=1)
    voc_mode: Literal["integrate", "sample"] = "integrate"
    score_thr: float = Field(0.5, ge=0, le=1)
    min_iou: float | dict[int | str, float] | None = None
    batch_size: int = Field(4, ge=1)
    sample_frames: int = Field(3, ge=0)
    worst_frames: int = Field(4, ge=0)


class MixExperiment(BaseModel):
    """See the module docstring. ``base`` is a path (str) or an inline ExperimentSpec mapping."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    base: str | dict[str, Any]
    overrides: dict[str, Any] = Field(default_factory=dict)
    real_fractions: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0], min_length=1)
    schedules: list[Schedule] = Field(default=["blend", "pretrain_finetune"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    baselines: Baselines = Field(default_factory=Baselines)
    eval: EvalConfig

    @field_validator("real_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for i, r in enumerate(v):
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"real_fractions[{i}] = {r} is not in [0, 1]")
        if len(set(v)) != len(v):
            raise ValueError("real_fractions has duplicates")
        return [float(r) for r in v]

    @field_validator("seeds", "schedules")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError("has duplicates")
        return v


@dataclass
class LoadedExperiment:
    """A validated experiment with the folder its relative paths are resolved against."""

    experiment: MixExperiment
    path: Path | None
    base_dir: Path

    @property
    def name(self) -> str:
        return self.experiment.name or (self.path.stem if self.path else "experiment")

    def eval_dataset(self) -> Path:
        p = Path(self.experiment.eval.dataset).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def parse_experiment(
    data: Any, path: str | Path | None = None, base_dir: str | Path | None = None
) -> LoadedExperiment:
    """Validate a parsed YAML mapping. Errors name ``path`` and the first bad field."""
    src = str(path) if path is not None else "<experiment>"
    if not isinstance(data, dict):
        raise MixExperimentError("the experiment must be a YAML mapping", path=src)
    try:
        exp = MixExperiment.model_validate(data)
    except ValidationError as e:
        raise invalid(MixExperimentError, e, src) from None
    p = Path(path).resolve() if path is not None else None
    bdir = Path(base_dir).resolve() if base_dir is not None else (p.parent if p else Path.cwd())
    return LoadedExperiment(exp, p, bdir)


def load_experiment(path: str | Path) -> LoadedExperiment:
    """Read and validate a MixExperiment YAML file."""
    path = Path(path)
    data = load_yaml_file(path, MixExperimentError)
    return parse_experiment(data, path)


# ---------------------------------------------------------------- expansion
@dataclass
class RunSpec:
    """One training run of the matrix.

    ``schedule``/``real_fraction``/``seed``: the effective mix of this spec; ``series``: the first
    series it was made for (a schedule name or a baseline name); ``points``: every
    ``(series, real_fraction)`` the run stands for after merging equal specs; ``spec``: the full
    ExperimentSpec as plain JSON data; ``spec_hash``: sha256 hex of its canonical JSON.
    """

    name: str
    series: str
    schedule: str
    real_fraction: float
    seed: int
    spec: dict[str, Any]
    spec_hash: str
    points: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "series": self.series,
            "schedule": self.schedule,
            "real_fraction": self.real_fraction,
            "seed": self.seed,
            "spec_hash": self.spec_hash,
            "points": [[s, r] for s, r in self.points],
        }


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, fixed separators) of ``spec``."""
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in (nested mappings merged, everything else replaced); no mutation."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def fraction_label(r: float) -> str:
    """``0.25 -> "0.25"``, ``1.0 -> "1"``, ``0.0 -> "0"`` (``%g``)."""
    return f"{r:g}"


def _candidates(
    loaded: LoadedExperiment, base: dict[str, Any], ops: Any
) -> list[tuple[str, str, str, float, int, dict]]:
    """(name, series, effective schedule, fraction, seed, spec) for every point, in matrix order."""
    exp = loaded.experiment
    out: list[tuple[str, str, str, float, int, dict]] = []
    for schedule in exp.schedules:
        for r in exp.real_fractions:
            # without real data there is nothing to fine-tune on: every schedule is the blend
            eff = "blend" if r == 0.0 else schedule
            for seed in exp.seeds:
                spec = ops.with_mix(base, schedule=eff, real_fraction=r, seed=seed)
                out.append((f"{eff}-r{fraction_label(r)}-s{seed}", schedule, eff, r, seed, spec))
    for kind in BASELINES:
        if not getattr(exp.baselines, kind):
            continue
        for seed in exp.seeds:
            if kind == SYNTHETIC_ONLY:
                spec = ops.with_mix(base, schedule="blend", real_fraction=0.0, seed=seed)
                r = 0.0
            else:
                spec = ops.real_only(base, seed=seed)
                r = 1.0
            out.append((f"{kind}-s{seed}", kind, "blend", r, seed, spec))
    return out


# ---------------------------------------------------------------- spec operations
def normalize_spec(data: dict[str, Any], source: str = "<spec>", where: str | None = None) -> dict[str, Any]:
    """Validate ``data`` as an ExperimentSpec and return its canonical JSON form (defaults filled).

    A bad field raises the training package's SpecError naming ``source`` and ``where: field``."""
    try:
        spec = parse_spec(data, source)
    except SynthloopError as e:
        if where is None:
            raise
        raise type(e)(e.message, path=source, where=f"{where}: {e.where}" if e.where else where) from None
    return spec.model_dump(mode="json")


def load_spec_data(
    base: str | dict[str, Any], base_dir: Path, source: str = "<experiment>"
) -> dict[str, Any]:
    """The base ExperimentSpec as canonical JSON data: ``base`` is a YAML path (relative to
    ``base_dir``; its own relative paths resolve against its folder) or an inline mapping (its
    relative paths resolved against ``base_dir``)."""
    if isinstance(base, str):
        p = Path(base).expanduser()
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            raise MixExperimentError(f"base spec {str(p)!r} not found", path=source, where="base")
        return load_spec(p).model_dump(mode="json")
    try:
        spec = parse_spec(base, source)
    except SynthloopError as e:
        raise type(e)(e.message, path=source, where=f"base.{e.where}" if e.where else "base") from None
    return spec.resolve_paths(base_dir).model_dump(mode="json")


def with_mix(spec: dict[str, Any], *, schedule: str, real_fraction: float, seed: int) -> dict[str, Any]:
    """``spec`` with ``mix.schedule``, ``mix.real_fraction`` and ``seed`` set (validated later, by
    :func:`normalize_spec`)."""
    s = ExperimentSpec.model_validate(spec)
    mix = s.mix.model_copy(update={"schedule": schedule, "real_fraction": float(real_fraction)})
    return s.model_copy(update={"mix": mix, "seed": int(seed)}).model_dump(mode="json")


def real_only(spec: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """``spec`` training on all of its real data only (synthetic datasets dropped; a spec without
    real data then fails :func:`normalize_spec`, naming ``datasets``)."""
    s = ExperimentSpec.model_validate(with_mix(spec, schedule="blend", real_fraction=1.0, seed=seed))
    real = [d for d in s.datasets if d.kind != "synthetic"]
    return s.model_copy(update={"datasets": real}).model_dump(mode="json")


SPEC_OPS = SimpleNamespace(
    load_spec_data=load_spec_data, normalize_spec=normalize_spec, with_mix=with_mix, real_only=real_only
)
"""The spec operations :func:`expand` uses by default (tests pass their own)."""


def base_spec(loaded: LoadedExperiment, ops: Any = None) -> dict[str, Any]:
    """The experiment's base ExperimentSpec (validated, paths absolute) with ``overrides`` merged."""
    ops = ops if ops is not None else SPEC_OPS
    exp = loaded.experiment
    src = str(loaded.path) if loaded.path else "<experiment>"
    base = ops.load_spec_data(exp.base, loaded.base_dir, source=src)
    if exp.overrides:
        base = ops.normalize_spec(deep_merge(base, exp.overrides), source=src, where="overrides")
    return base


def expand(loaded: LoadedExperiment | MixExperiment, ops: Any = None) -> list[RunSpec]:
    """Every distinct run of the experiment, in matrix order (schedules x fractions x seeds, then
    baselines); equal specs merged (see module docstring). Names are unique.

    ``ops``: the spec operations (``load_spec_data``, ``normalize_spec``, ``with_mix``,
    ``real_only``); default :data:`SPEC_OPS` (the training package's ExperimentSpec)."""
    ops = ops if ops is not None else SPEC_OPS
    if isinstance(loaded, MixExperiment):
        loaded = LoadedExperiment(loaded, None, Path.cwd())
    src = str(loaded.path) if loaded.path else "<experiment>"
    base = base_spec(loaded, ops)
    runs: list[RunSpec] = []
    by_hash: dict[str, RunSpec] = {}
    for name, series, eff, r, seed, spec in _candidates(loaded, base, ops):
        spec = ops.normalize_spec(spec, source=src, where=name)
        h = spec_hash(spec)
        run = by_hash.get(h)
        if run is None:
            run = RunSpec(name, series, eff, r, seed, spec, h)
            by_hash[h] = run
            runs.append(run)
        if (series, r) not in run.points:
            run.points.append((series, r))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # two different specs under one name: a bug, not user input
        raise MixExperimentError(f"run names are not unique: {names}", path=src)
    return runs
