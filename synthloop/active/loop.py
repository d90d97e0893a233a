"""The active-learning loop: render -> train -> evaluate -> mine -> derive -> render more.

A :class:`LoopSpec` (YAML) names the initial recipe, how many frames round 0 and each later round
render, the number of later rounds, the exploration share, the base training spec, whether each
round fine-tunes the previous checkpoint or trains from scratch, the synthetic validation set
(own seed), an optional real evaluation set, and the farm workers.

Example (paths relative to the YAML; ``recipe`` may also be a bundled name)::

    name: fruits-active
    recipe: tabletop              # initial recipe
    seed: 0                       # render seed of every round (frame index ranges never overlap)
    initial_frames: 2000          # round 0
    frames_per_round: 500         # each later round
    rounds: 4                     # rounds after round 0
    exploration: 0.3              # share kept on the original distribution of a re-weighted knob
    arm: active                   # or random: the same frame counts from the initial recipe
    train: experiment.yaml        # base ExperimentSpec; its synthetic data is replaced per round
    retrain: finetune             # or scratch
    val_frames: 300               # synthetic validation set, initial recipe, own seed
    val_seed: 1000003
    real_eval: /data/fruits-nuts/val.json   # optional: any dataset load_any reads
    workers: 2                    # farm workers (shards default to workers)
    score_thr: 0.5                # operating point for recall and the mined outcomes
    mining: {n_bins: 5, min_effect: 0.05, min_support: 10, max_regions: 5, exclude: []}
    mine_on: synthetic            # or real: steer by the model's errors on real photos (below)
    real_train: /data/fruits-nuts/train.json  # labeled real split that steers (never real_eval)
    real_pool: /data/unlabeled/   # optional folder of unlabeled photos (uncertainty)
    real_mining: {min_support: 5, params_per_region: 3, pool_top: 10}

``run_loop(spec_path, out_dir)`` lays out::

    OUT/loop.yaml              the spec as run (+ its hash in loop.json)
    OUT/val/                   synthetic validation set (initial recipe, val_seed), DONE marker
    OUT/round_000/             round 0: initial recipe
      recipe.yaml              recipe rendered in this round (+ recipe.diff, recipe.derivation.json
                               for derived rounds)
      job/  data/              farm job and the merged dataset of this round's frames
      params.json              sampled params of this round's frames (for histograms)
      train/  train.json       training run; train.json names the checkpoint
      val_eval.json            evaluation report on the synthetic val set
      val_slices.json          its SliceTable; weak_regions.json: mining result
      real_mining.json         (mine_on: real) the real split's weak property regions, their
                               mapping to recipe parameters; weak_regions.json then holds those
                               parameter regions; render_properties.json: measured properties of
                               this round's rendered objects (cached)
      real_eval.json           metrics on the real set (when given)
      metrics.json             the round's summary
      DONE                     written last: a finished round is never redone
    OUT/round_001/ ...

Round K > 0 derives a recipe from the **initial** recipe and round K-1's weak regions (weak
regions are measured on the fixed val set drawn from the initial recipe, so deriving from the
initial recipe keeps every round's mixture one level deep with the stated exploration share),
renders ``frames_per_round`` frames with frame indices after all earlier rounds' (same seed, new
index range: never the same scene twice), and trains on the union of all rounds' data. The
``random`` arm renders the same number of frames from the initial recipe instead (the baseline of
the comparison experiment). Every step leaves a marker, so a killed loop resumes at the step it
was in; the farm resumes within a render job.

With ``mine_on: real`` the weak regions come from real photos instead
(:mod:`synthloop.active.real_guided`): after training, the round's model predicts on ``real_train``
(and ``real_pool``), its errors are described by measured properties and mined, and the weak
property regions are mapped to recipe parameters through the measured properties and sampled
parameters of every frame rendered so far; the next round derives its recipe from those parameter
regions. The synthetic val set is still evaluated (its metrics are reported), not mined.

The render / train / evaluate / predict steps are :class:`LoopHooks` (defaults: the farm, the training
package, :func:`synthloop.evaluation.evaluate`); tests inject tiny fakes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthloop.active.derive import Derivation, derive, save_derivation
from synthloop.active.describe import describe_renders, pool_frames
from synthloop.active.errors import ActiveError
from synthloop.active.mining import MiningOptions, MiningResult, mine
from synthloop.active.outcomes import outcome_table
from synthloop.active.real_guided import (
    PredictFn,
    RealMining,
    RealMiningOptions,
    check_classes,
    mine_real_errors,
)
from synthloop.active.select import detection_arrays, list_pool_images, load_rgb
from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.report import evaluate
from synthloop.importers import load_any
from synthloop.scenes.recipe import Recipe, load_recipe, recipe_hash, recipe_to_yaml
from synthloop.training import api as training_api
from synthloop.training.backbones import build_backbone
from synthloop.training.checkpoint_io import save_checkpoint
from synthloop.training.spec import ExperimentSpec, SyntheticData, load_spec, parse_spec
from synthloop.userfiles import load_yaml_file
from synthloop.validation import invalid

LOOP_SCHEMA = "synthloop.loop/1"
DONE = "DONE"


class MiningConfig(BaseModel):
    """Mining options of the loop (see :class:`~synthloop.active.mining.MiningOptions`)."""

    model_config = ConfigDict(extra="forbid")
    n_bins: int = Field(5, ge=2)
    confidence: float = Field(0.95, gt=0, lt=1)
    adjust: Literal["bonferroni", "none"] = "bonferroni"
    min_effect: float = Field(0.05, ge=0)
    min_support: int = Field(10, ge=1)
    max_regions: int = Field(5, ge=1)
    max_depth: int = Field(3, ge=1)
    model: Literal["tree", "gbm"] = "tree"
    exclude: list[str] = Field(default_factory=list)
    include_measured: bool = True
    seed: int = 0

    def options(self) -> MiningOptions:
        d = self.model_dump(exclude={"exclude", "include_measured"})
        return MiningOptions(**d)


class RealMiningConfig(MiningConfig):
    """Real-guided mining options of the loop (see :class:`~synthloop.active.real_guided.
    RealMiningOptions`): the miner's knobs on the (small) real tables (``min_support`` 5 by
    default), ``map_min_support`` for the render table, and how many parameter regions / pool
    photos to keep. ``exclude`` applies to both tables; ``include_measured`` is not used."""

    min_support: int = Field(5, ge=1)
    map_min_support: int = Field(10, ge=1)
    params_per_region: int = Field(3, ge=1)
    pool_top: int = Field(10, ge=1)
    pool_min_score: float = Field(0.1, ge=0, le=1)

    def real_options(self, score_thr: float) -> RealMiningOptions:
        mining = self.options()
        return RealMiningOptions(
            score_thr=score_thr,
            mining=mining,
            mapping=replace(mining, min_support=self.map_min_support, max_regions=10),
            params_per_region=self.params_per_region,
            pool_top=self.pool_top,
            pool_min_score=self.pool_min_score,
            exclude=tuple(self.exclude),
        )

    def options(self) -> MiningOptions:
        return MiningConfig(**self.model_dump(include=set(MiningConfig.model_fields))).options()


class LoopSpec(BaseModel):
    """The loop's inputs. Paths (``recipe`` unless a bundled name, ``train``, ``real_eval``) are
    relative to the spec file. ``rounds``: rounds after round 0 (total ``rounds + 1``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "loop"
    recipe: str
    seed: int = Field(0, ge=0)
    initial_frames: int = Field(ge=1)
    frames_per_round: int = Field(ge=1)
    rounds: int = Field(ge=0)
    exploration: float = Field(0.3, ge=0, le=1)
    arm: Literal["active", "random"] = "active"
    train: str | None = None
    retrain: Literal["finetune", "scratch"] = "finetune"
    val_frames: int = Field(ge=1)
    val_seed: int = Field(1_000_003, ge=0)
    real_eval: str | None = None
    workers: int = Field(1, ge=1)
    shards: int | None = Field(None, ge=1)
    score_thr: float = Field(0.5, ge=0, le=1)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    mine_on: Literal["synthetic", "real"] = "synthetic"
    real_train: str | None = None
    real_pool: str | None = None
    real_mining: RealMiningConfig = Field(default_factory=RealMiningConfig)

    @model_validator(mode="after")
    def _check(self) -> LoopSpec:
        if self.val_seed == self.seed:
            raise ValueError("val_seed must differ from seed (the val set would repeat training scenes)")
        if self.mine_on == "real" and not self.real_train:
            raise ValueError("mine_on: real needs real_train (the labeled real split that steers)")
        if self.real_train and self.real_eval and self.real_train == self.real_eval:
            raise ValueError("real_train is real_eval: the evaluation split must never steer the loop")
        return self

    def round_start(self, k: int) -> int:
        """First frame index rendered in round ``k``."""
        return 0 if k == 0 else self.initial_frames + (k - 1) * self.frames_per_round

    def round_frames(self, k: int) -> int:
        return self.initial_frames if k == 0 else self.frames_per_round


def _resolve(base: Path, p: str | None) -> str | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    if q.is_absolute():
        return str(q)
    cand = (base / q).resolve()
    return str(cand) if cand.exists() or "/" in p or q.suffix else p


def load_loop_spec(path: str | Path) -> LoopSpec:
    """Read and validate a loop YAML; relative paths resolve against its folder (a bare recipe name
    that is no file there stays a bundled-recipe name). ActiveError names file and field."""
    path = Path(path)
    data = load_yaml_file(path, ActiveError)
    if not isinstance(data, dict):
        raise ActiveError("expected a mapping of loop fields", path=str(path))
    try:
        spec = LoopSpec.model_validate(data)
    except ValidationError as e:
        raise invalid(ActiveError, e, str(path), brackets=True) from None
    base = path.resolve().parent
    out = spec.model_copy(
        update={
            "recipe": _resolve(base, spec.recipe),
            "train": _resolve(base, spec.train),
            "real_eval": _resolve(base, spec.real_eval),
            "real_train": _resolve(base, spec.real_train),
            "real_pool": _resolve(base, spec.real_pool),
        }
    )
    if out.real_train and out.real_eval and Path(out.real_train).resolve() == Path(out.real_eval).resolve():
        msg = "real_train is real_eval: the evaluation split must never steer the loop"
        raise ActiveError(msg, path=str(path), where="real_train")
    return out


# ----------------------------------------------------------------------------- hooks
@dataclass
class EvalResult:
    """What an evaluation step returns: a flat ``metrics`` dict (JSON numbers) and, for synthetic
    data, the :class:`~synthloop.evaluation.slices.SliceTable` to mine (None otherwise)."""

    metrics: dict[str, Any]
    slices: Any = None


RenderFn = Callable[[Recipe, int, int, int, Path, LoopSpec], Path]
"""``render(recipe, seed, start, frames, work_dir, spec) -> dataset folder`` (inside ``work_dir``)."""
TrainFn = Callable[[LoopSpec, Sequence[Path], Path, "Path | None"], Path]
"""``train(spec, dataset_folders, out_dir, init_checkpoint) -> checkpoint``."""
EvalFn = Callable[[Path, Path, Path, LoopSpec], EvalResult]
"""``evaluate(checkpoint, dataset, report_path, spec) -> EvalResult`` (writes the report)."""


def farm_render(recipe: Recipe, seed: int, start: int, frames: int, work_dir: Path, spec: LoopSpec) -> Path:
    """Render through the farm: ``plan_job`` + ``run_local`` + ``merge_job`` into ``work_dir/data``."""
    from synthloop.farm.executors import run_local
    from synthloop.farm.merge import merge_job
    from synthloop.farm.plan import plan_job

    data = work_dir / "data"
    if data.exists():
        return data
    job = work_dir / "job"
    plan_job(recipe, frames, seed, spec.shards or spec.workers, job, start=start)
    summary = run_local(job, workers=spec.workers, quiet=True)
    if summary.shards_failed or summary.frames_failed:
        raise ActiveError(
            f"render job failed ({len(summary.shards_failed)} shard(s), {summary.frames_failed} frame(s));"
            " re-run to resume",
            path=str(job),
        )
    return merge_job(job, data)


def training_spec(
    spec: LoopSpec, datasets: Sequence[Path], backbone_weights: str | Path | None = None
) -> ExperimentSpec:
    """The base ExperimentSpec (``spec.train``) with its synthetic data replaced by ``datasets`` (its
    real entries, mixing and everything else kept; the first synthetic entry's ``class_mapping``
    carried over) and, when given, ``backbone.weights`` set to ``backbone_weights``."""
    if spec.train is None:
        raise ActiveError("the loop spec has no 'train' (base ExperimentSpec YAML)", where="train")
    base = load_spec(spec.train)
    synth = [d for d in base.datasets if d.kind == "synthetic"]
    entry = SyntheticData(
        paths=[str(Path(d).resolve()) for d in datasets],
        class_mapping=dict(synth[0].class_mapping) if synth else {},
    )
    update: dict[str, Any] = {"datasets": [entry] + [d for d in base.datasets if d.kind != "synthetic"]}
    if backbone_weights is not None:
        update["backbone"] = base.backbone.model_copy(update={"weights": str(backbone_weights)})
    return parse_spec(base.model_copy(update=update).model_dump(mode="json"), source=str(spec.train))


def backbone_weights_from_checkpoint(checkpoint: str | Path, out_file: str | Path) -> Path:
    """Write the backbone part of a training checkpoint as a plain state_dict file that the
    training package's ``backbone.weights`` loads (the body's own key names), atomically.

    The backbone is found by its parameter names: the prefix under which every key of a freshly
    built body of the checkpoint's backbone appears in the checkpoint's model state."""
    ck = training_api.read_training_checkpoint(checkpoint)
    name = ck["spec"]["backbone"]["name"]
    sd = ck["model"]
    keys = list(build_backbone(name, None).body.state_dict())
    first = keys[0]
    for k in sd:
        if k == first or k.endswith("." + first):
            prefix = k[: len(k) - len(first)]
            if all(prefix + q in sd for q in keys):
                return save_checkpoint(out_file, {q: sd[prefix + q] for q in keys})
    raise ActiveError(f"no {name} backbone found in the checkpoint's model state", path=str(checkpoint))


def default_train(spec: LoopSpec, datasets: Sequence[Path], out_dir: Path, init: Path | None) -> Path:
    """Train through :func:`synthloop.training.api.train_run` on :func:`training_spec`; returns the
    last checkpoint. Fine-tuning (``init``): the previous checkpoint's backbone initializes the new
    run (``backbone.weights``; detection heads start fresh -- the training API has no whole-model
    init). Re-running resumes an interrupted training from its last checkpoint."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = None
    if init is not None:
        weights = out_dir / "init_backbone.pt"
        if not weights.exists():
            backbone_weights_from_checkpoint(init, weights)
    exp = training_spec(spec, datasets, weights)
    return training_api.train_run(exp, out_dir / "run", source=str(spec.train))


def _metrics_of(report: Any) -> dict[str, Any]:
    coco = report.coco.get("bbox", {}).get("stats", {})
    objs = [o for o in report.slices.objects if not o.get("ignored")]
    recall = sum(1 for o in objs if o.get("matched")) / len(objs) if objs else None
    return {
        "num_frames": report.summary.get("num_frames"),
        "num_gt": report.summary.get("num_gt"),
        "recall": recall,
        "voc_mAP": report.voc.get("mAP"),
        "coco_AP": coco.get("AP"),
        "coco_AP50": coco.get("AP50"),
    }


def default_evaluate(checkpoint: Path, dataset: Path, report_path: Path, spec: LoopSpec) -> EvalResult:
    """Predict with the training package's ``Predictor`` and evaluate (report saved at ``report_path``)."""
    ds = load_any(dataset)
    predictor = training_api.load_predictor(checkpoint)
    to_ds = label_map(predictor.classes, ds, predictor.category_ids)
    dets = Detections()
    for f in ds.frames:
        (pred,) = predictor.predict([load_rgb(f.image_path)])
        b, s, lab, _ = detection_arrays(pred)
        mapped = np.array([to_ds.get(int(v), -1) for v in lab], dtype=np.int64)
        keep = mapped > 0
        dets[f.frame_id] = FrameDetections(f.frame_id, b[keep], s[keep], mapped[keep])
    report = evaluate(ds, dets, score_thr=spec.score_thr, slice_options={"score_thr": spec.score_thr})
    report.save(report_path)
    return EvalResult(_metrics_of(report), report.slices)


def label_map(
    class_names: Sequence[str] | None, ds: Any, label_ids: Sequence[int] | None = None
) -> dict[int, int]:
    """Predicted label -> dataset category id, matching classes by name. The predictor labels class
    ``class_names[i]`` as ``label_ids[i]`` (default ``i + 1``). Without names, labels are taken as
    the dataset's ids. Labels with no dataset category are absent (their detections are dropped)."""
    ids = {c.id for c in ds.categories}
    if not class_names:
        return {i: i for i in ids}
    by_name = {c.name: c.id for c in ds.categories}
    labels = list(label_ids) if label_ids is not None else list(range(1, len(class_names) + 1))
    return {int(lab): by_name[n] for lab, n in zip(labels, class_names, strict=True) if n in by_name}


@dataclass
class LoopHooks:
    render: RenderFn = farm_render
    train: TrainFn = default_train
    evaluate: EvalFn = default_evaluate
    predict: PredictFn = training_api.predict_dataset


# ----------------------------------------------------------------------------- params
def sampled_params(dataset: Path) -> dict[str, dict[str, list[Any]]]:
    """``{"scene": {param: [value per frame]}, "attr": {param: [value per labeled object]}}`` of a
    synthloop dataset folder (the values its frames were rendered with)."""
    ds = load_dataset(dataset)
    scene: dict[str, list[Any]] = {}
    attr: dict[str, list[Any]] = {}
    for f in ds.frames:
        for k, v in f.scene_params.items():
            scene.setdefault(k, []).append(v)
        for o in f.objects:
            for k, v in o.attributes.items():
                if isinstance(v, str | int | float | bool) or v is None:
                    attr.setdefault(k, []).append(v)
    return {"scene": scene, "attr": attr}


# ----------------------------------------------------------------------------- loop
def round_dir(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"round_{k:03d}"


def _step(marker: Path, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless ``marker`` (JSON holding its result) exists; store the result after."""
    if marker.exists():
        return json.loads(marker.read_text())["result"]
    result = fn()
    atomic_write_json(marker, {"result": result})
    return result


def _spec_hash(spec: LoopSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def run_loop(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    hooks: LoopHooks | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the loop; returns every round's ``metrics.json`` content, in order.

    A different spec in an existing ``out_dir`` is refused (ActiveError): its rounds would mix."""
    spec = load_loop_spec(spec_path)
    hooks = hooks or LoopHooks()
    say = log or (lambda _m: None)
    out = Path(out_dir)
    _open_loop_dir(spec, out)
    base = load_recipe(spec.recipe)
    val_data = _validation_set(spec, hooks, base, out, say)
    results: list[dict[str, Any]] = []
    prev_weak: MiningResult | None = None
    prev_ckpt: Path | None = None
    datasets: list[Path] = []
    for k in range(spec.rounds + 1):
        rdir = round_dir(out, k)
        if (rdir / DONE).exists():
            m = json.loads((rdir / "metrics.json").read_text())
            prev_ckpt, prev_weak = Path(m["checkpoint"]), MiningResult.load(rdir / "weak_regions.json")
            say(f"round {k}: done (skipped)")
        else:
            rdir.mkdir(parents=True, exist_ok=True)
            m, prev_ckpt, prev_weak = _run_round(
                _RoundInputs(spec, hooks, base, out, k, datasets, prev_ckpt, prev_weak, val_data), say
            )
        results.append(m)
        datasets.append(Path(m["data"]))
    return results


def _open_loop_dir(spec: LoopSpec, out: Path) -> None:
    """Create ``out`` with the spec (``loop.yaml``, ``loop.json``), or check that an existing one
    ran the same spec (ActiveError otherwise: its rounds would mix)."""
    out.mkdir(parents=True, exist_ok=True)
    h = _spec_hash(spec)
    meta = out / "loop.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("spec_hash") != h:
            raise ActiveError("a different loop spec was run in this folder; use a new --out", path=str(meta))
        return
    atomic_write_bytes(
        out / "loop.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).encode()
    )
    atomic_write_json(meta, {"schema": LOOP_SCHEMA, "spec_hash": h, "spec": spec.model_dump(mode="json")})


def _validation_set(
    spec: LoopSpec, hooks: LoopHooks, base: Recipe, out: Path, say: Callable[[str], None]
) -> Path:
    """The loop's fixed synthetic validation set, rendered once into ``out/val``."""
    val_dir = out / "val"
    if not (val_dir / DONE).exists():
        say(f"rendering validation set ({spec.val_frames} frames, seed {spec.val_seed})")
        val_dir.mkdir(parents=True, exist_ok=True)
        data = hooks.render(base, spec.val_seed, 0, spec.val_frames, val_dir, spec)
        atomic_write_json(val_dir / DONE, {"data": str(Path(data).resolve())})
    return Path(json.loads((val_dir / DONE).read_text())["data"])


@dataclass
class _RoundInputs:
    """What round ``k`` starts from: the datasets of the earlier rounds, the last checkpoint and
    weak regions (None before round 1), and the validation set."""

    spec: LoopSpec
    hooks: LoopHooks
    base: Recipe
    out: Path
    k: int
    datasets: list[Path]
    prev_ckpt: Path | None
    prev_weak: MiningResult | None
    val_data: Path


def _round_recipe(r: _RoundInputs, rdir: Path) -> tuple[Recipe, Derivation | None]:
    """Round ``k``'s recipe, saved in ``rdir``: the base recipe (round 0, the random arm, or no
    weak regions yet), else the one derived from the last round's weak regions; and the
    derivation (None for the base)."""
    if r.k == 0 or r.spec.arm == "random" or r.prev_weak is None:
        atomic_write_bytes(rdir / "recipe.yaml", recipe_to_yaml(r.base).encode())
        return r.base, None
    derivation = derive(r.base, r.prev_weak.regions, r.spec.exploration, name=f"{r.base.name}-r{r.k}")
    save_derivation(derivation, r.base, rdir, stem="recipe")
    return derivation.recipe, derivation


def _run_round(r: _RoundInputs, say: Callable[[str], None]) -> tuple[dict[str, Any], Path, MiningResult]:
    """Recipe -> render -> train -> evaluate -> mine for round ``r.k`` (each step resumable);
    returns its metrics (also written to ``metrics.json``), checkpoint and mining result."""
    spec, hooks, k = r.spec, r.hooks, r.k
    rdir = round_dir(r.out, k)
    recipe, derivation = _round_recipe(r, rdir)
    start, n = spec.round_start(k), spec.round_frames(k)
    say(f"round {k}: rendering {n} frames (indices {start}..{start + n - 1}) from {recipe.name}")
    data_s = _step(
        rdir / "render.done",
        lambda: str(Path(hooks.render(recipe, spec.seed, start, n, rdir, spec)).resolve()),
    )
    data = Path(data_s)
    if not (rdir / "params.json").exists():
        atomic_write_json(rdir / "params.json", _jsonable(sampled_params(data)))
    datasets_k = [*r.datasets, data]
    init = r.prev_ckpt if (spec.retrain == "finetune" and k > 0) else None
    say(f"round {k}: training on {len(datasets_k)} dataset(s){' from ' + str(init) if init else ''}")
    ckpt = Path(_step(rdir / "train.json", lambda: str(hooks.train(spec, datasets_k, rdir / "train", init))))
    say(f"round {k}: evaluating")
    val = hooks.evaluate(ckpt, r.val_data, rdir / "val_eval.json", spec)
    if val.slices is None:
        raise ActiveError("the synthetic evaluation returned no slice table", path=str(r.val_data))
    val.slices.save(rdir / "val_slices.json")
    table = outcome_table(
        val.slices, exclude=spec.mining.exclude, include_measured=spec.mining.include_measured
    )
    real_train = None
    if spec.mine_on == "real":
        say(f"round {k}: mining the model's errors on {spec.real_train}")
        real_mined = mine_real_round(spec, hooks, ckpt, datasets_k, r.out)
        atomic_write_json(rdir / "real_mining.json", _jsonable(real_mined.to_dict()))
        mined = real_mined.as_mining_result()
        real_train = real_mined.summary()
    else:
        mined = mine(table, spec.mining.options())
    mined.save(rdir / "weak_regions.json")
    real = None
    if spec.real_eval:
        real = hooks.evaluate(ckpt, Path(spec.real_eval), rdir / "real_eval.json", spec).metrics
    metrics = {
        "round": k,
        "arm": spec.arm,
        "recipe": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "frames_round": n,
        "frames_total": sum(spec.round_frames(j) for j in range(k + 1)),
        "frame_range": [start, start + n],
        "data": str(data),
        "checkpoint": str(ckpt),
        "val": val.metrics,
        "real": real,
        "real_train": real_train,
        "outcomes": table.counts(),
        "weak_regions": [w.describe() for w in mined.regions],
        "derived_changes": [c.path for c in derivation.changes] if derivation else [],
        "unmapped": [u.param for u in derivation.unmapped] if derivation else [],
    }
    atomic_write_json(rdir / "metrics.json", _jsonable(metrics))
    atomic_write_json(rdir / DONE, {"round": k})
    say(f"round {k}: val recall {val.metrics.get('recall')}, {len(mined.regions)} weak region(s)")
    return metrics, ckpt, mined


def render_rows(out_dir: Path, k: int, data: Path) -> list[dict[str, Any]]:
    """Measured-property rows of round ``k``'s rendered objects (:func:`~synthloop.active.describe.
    describe_renders`), cached in the round folder as ``render_properties.json``."""
    cache = round_dir(out_dir, k) / "render_properties.json"
    if cache.exists():
        return json.loads(cache.read_text())["rows"]
    rows = describe_renders(load_dataset(data))
    atomic_write_json(cache, {"data": str(data), "rows": _jsonable(rows)})
    return rows


def refuse_eval_images(paths: Sequence[Path], eval_images: set[Path], source: str, field: str) -> None:
    """ActiveError when a steering image is one of the evaluation split's (``real_eval``)."""
    shared = [Path(p) for p in paths if Path(p).resolve() in eval_images]
    if shared:
        raise ActiveError(
            f"{len(shared)} image(s) also belong to real_eval (e.g. {shared[0].name}): "
            "the evaluation split must never steer the loop",
            path=source,
            where=field,
        )


def mine_real_round(
    spec: LoopSpec, hooks: LoopHooks, checkpoint: Path, datasets: Sequence[Path], out_dir: Path
) -> RealMining:
    """Real-guided mining of one round: ``checkpoint``'s errors on ``spec.real_train`` (and
    uncertainty on ``spec.real_pool``), mapped through every round's renders so far."""
    assert spec.real_train is not None
    real = load_any(spec.real_train)
    if not real.frames:
        raise ActiveError("the real split has no images", path=spec.real_train)
    check_classes(real, load_dataset(datasets[0]), spec.real_train, str(datasets[0]))
    eval_images = set()
    if spec.real_eval:
        eval_images = {Path(f.image_path).resolve() for f in load_any(spec.real_eval).frames}
    refuse_eval_images([f.image_path for f in real.frames], eval_images, spec.real_train, "real_train")
    rows = [r for j, d in enumerate(datasets) for r in render_rows(out_dir, j, Path(d))]
    pool = None
    if spec.real_pool:
        paths = list_pool_images(spec.real_pool)
        refuse_eval_images(paths, eval_images, spec.real_pool, "real_pool")
        frames = pool_frames(paths)
        pool = (frames, hooks.predict(checkpoint, Dataset(real.categories, frames, name="pool")))
    result, _ = mine_real_errors(
        real,
        hooks.predict(checkpoint, real),
        None,
        pool=pool,
        options=spec.real_mining.real_options(spec.score_thr),
        render_rows=rows,
    )
    return result


def _jsonable(v: Any) -> Any:
    import math

    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def reset_round(out_dir: str | Path, k: int) -> None:
    """Delete round ``k`` and every later round (to redo them with a changed hook or code)."""
    out = Path(out_dir)
    for d in sorted(out.glob("round_*")):
        if int(d.name.split("_")[1]) >= k:
            shutil.rmtree(d)
