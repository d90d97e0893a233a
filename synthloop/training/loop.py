"""The training loop: ``train(spec, out_dir, resume=False)``.

Run folder layout::

    RUN/
      spec.json            the validated spec (canonical JSON) + its sha256 in spec.sha256
      versions.json        python / torch / torchvision / albumentations / numpy versions
      metrics.jsonl        one JSON object per logged step / epoch end / validation
      tensorboard/         the same scalars for TensorBoard
      checkpoints/last.pt  {model, optimizer, lr_scheduler, scaler, state (phase, epoch, consumed,
                            global_step, ...), rng, spec, classes, category_ids, family,
                            anchor_sizes} (atomic)
      checkpoints/best.pt  the best validation checkpoint (when validation runs)

Determinism: each epoch's item stream is a pure function of (seed, phase, epoch) (:mod:`mixing`)
and each item's augmentation of its own seed, so ``resume=True`` continues from the last
checkpoint's (phase, epoch, items consumed) with the saved torch/python RNG states; in
``deterministic`` CPU mode the resumed run ends with the same weights as an uninterrupted one.

Data parallel (:mod:`distributed`): run under ``torchrun``/``srun`` (or ``synthloop train --gpus N``)
each process trains a DDP replica on its share of every global batch; only rank 0 writes the run
folder. A run resumes on another number of processes: the position is kept in items, the lr
schedule continues at the same fraction of the phase.

AMP (float16 autocast + GradScaler) and channels_last apply on CUDA only.

Structure (as torchvision's detection references): :func:`train` sets the process-wide switches
and calls :func:`setup_run` (data, phases, model or pruned graph, teacher, optimizer, scaler, and
on resume the checkpoint's weights and :class:`TrainState`) and then, per phase and epoch,
:func:`train_one_epoch`; a :class:`CheckpointWriter` writes ``last.pt`` / ``best.pt``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthloop.atomic import atomic_write_bytes, atomic_write_json, canonical_json
from synthloop.geometry.masks import box_iou as pairwise_iou
from synthloop.training import distributed as dist_utils
from synthloop.training.build import RCNN_FAMILIES, PreparedData, build_model, data_anchor_sizes, prepare_data
from synthloop.training.checkpoint_io import save_checkpoint
from synthloop.training.checkpoints import (
    CHECKPOINT_SCHEMA,
    InitWeights,
    load_checkpoint,
    load_graph,
    load_init_weights,
    load_teacher,
    read_init_weights,
)
from synthloop.training.cuda_graph import GraphCaptureError, graph_training_forward, remove_graph
from synthloop.training.data import AugmentConfig, DetectionDataset, collate
from synthloop.training.detectnet import DetectNetV2, as_detectnet, total_loss
from synthloop.training.errors import TrainingError
from synthloop.training.legacy import drop_legacy_classifier, has_legacy_classifier, upgrade_optimizer_state
from synthloop.training.mixing import Item, ListBatchSampler, MixedDataset, Phase, build_phases
from synthloop.training.rcnn import anchor_sizes_of
from synthloop.training.run_log import NullLogger, RunLogger, truncate_metrics
from synthloop.training.spec import ExperimentSpec, LRScheduleSpec
from synthloop.training.tb_validation import log_validation


# ---------------------------------------------------------------- lr schedules (pure)
class LRFactor:
    """Multiplier of the base lr at step ``s`` of ``total`` (picklable for LambdaLR state_dicts)."""

    def __init__(self, cfg: LRScheduleSpec, total: int):
        self.name, self.total = cfg.name, max(1, total)
        self.soft_start, self.annealing, self.min_ratio = cfg.soft_start, cfg.annealing, cfg.min_lr_ratio

    def __call__(self, step: int) -> float:
        p = min(1.0, step / self.total)
        if self.name == "constant":
            return 1.0
        if self.name == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        if p < self.soft_start:
            return self.min_ratio ** (1 - p / self.soft_start)
        if p < self.annealing or self.annealing >= 1:
            return 1.0
        return self.min_ratio ** ((p - self.annealing) / (1 - self.annealing))


def make_optimizer(spec: ExperimentSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The spec's optimizer; on CUDA the fused (one kernel per step) Adam/AdamW implementation."""
    params = [p for p in model.parameters() if p.requires_grad]
    o = spec.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused or None)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused or None)


def _phase_scheduler(opt, spec: ExperimentSpec, phase: Phase, total: int, first: bool):
    cfg = (
        spec.lr_schedule
        if first
        else LRScheduleSpec(name="cosine", min_lr_ratio=spec.lr_schedule.min_lr_ratio)
    )
    for g in opt.param_groups:
        g["lr"] = phase.lr
        g["initial_lr"] = phase.lr
    return torch.optim.lr_scheduler.LambdaLR(opt, LRFactor(cfg, total))


# ---------------------------------------------------------------- helpers
def versions() -> dict[str, str]:
    import albumentations
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "albumentations": str(albumentations.__version__),
        "numpy": str(np.__version__),
    }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("CUDA device asked for but not available", where="device")
    return dev


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(int(v) for v in st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _backbone_example(
    model: torch.nn.Module, family: str, batch_size: int, spec: ExperimentSpec, device: torch.device
) -> torch.Tensor:
    """What the backbone receives for a full training batch at the spec's input size: the model's
    own preprocessing (Mask R-CNN's transform: normalize, pad; DetectNet: normalize, channels_last)
    applied to blank images. ``(B, 3, H, W)`` float32."""
    blank = [torch.zeros(3, spec.model.input_height, spec.model.input_width, device=device)] * batch_size
    with torch.no_grad():
        if family in RCNN_FAMILIES:
            return model.get_submodule("transform")(blank)[0].tensors
        net = as_detectnet(model)
        return (net._batch(blank) - net.mean) / net.std


def _to_device(images, targets, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


def _datasets(spec: ExperimentSpec, data: PreparedData, family: str) -> MixedDataset:
    aug = spec.augment.model_copy(
        update={"output_width": spec.model.input_width, "output_height": spec.model.input_height}
    )
    masks = family == "mask_rcnn"
    mk = lambda ds: DetectionDataset(ds, aug, train=True, with_masks=masks) if ds is not None else None  # noqa: E731
    return MixedDataset(mk(data.synthetic), mk(data.real))


def validation_metrics(
    model, data: PreparedData, spec: ExperimentSpec, device: torch.device
) -> dict[str, float]:
    """Precision / recall / F1 at IoU 0.5 (score >= 0.5) on the validation split."""
    if data.validation is None:
        raise TrainingError("no validation split to measure (spec: validation)", where="validation")
    aug = AugmentConfig(
        enabled=False, output_width=spec.model.input_width, output_height=spec.model.input_height
    )
    ds = DetectionDataset(data.validation, aug, train=False, with_masks=False)
    tp = n_pred = n_gt = 0
    model.eval()
    with torch.no_grad():
        for i in range(len(ds)):
            img, t = ds[i]
            out = model([img.to(device)])[0]
            keep = out["scores"].cpu().numpy() >= 0.5
            pb, pl = out["boxes"].cpu().numpy()[keep], out["labels"].cpu().numpy()[keep]
            gb, gl = t["boxes"].numpy(), t["labels"].numpy()
            n_pred += len(pb)
            n_gt += len(gb)
            if len(pb) and len(gb):
                iou = pairwise_iou(pb.astype(np.float64), gb.astype(np.float64))
                iou[pl[:, None] != gl[None, :]] = 0
                used = set()
                for p in np.argsort(-iou.max(1)):
                    g = int(np.argmax(iou[p]))
                    if iou[p, g] >= 0.5 and g not in used:
                        used.add(g)
                        tp += 1
    model.train()
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gt if n_gt else 0.0
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


# ---------------------------------------------------------------- train
def same_spec(saved: dict[str, Any], spec_json: dict[str, Any]) -> bool:
    """Whether a checkpoint's spec is ``spec_json``, after filling the saved one with this version's
    defaults (a spec saved before a field existed lacks its key, and must still resume)."""
    from pydantic import ValidationError

    try:
        saved = ExperimentSpec.model_validate(saved).model_dump(mode="json")
    except ValidationError:
        return False
    return json.loads(canonical_json(saved)) == json.loads(canonical_json(spec_json))


def distill_weighted(losses: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """``losses`` with the ``loss_distill_*`` terms multiplied by ``distill.weight``."""
    return {k: v * weight if k.startswith("loss_distill") else v for k, v in losses.items()}


def train(
    spec: ExperimentSpec,
    out_dir: str | Path,
    resume: bool = False,
    quiet: bool = False,
    stop_after: int | None = None,
    source: str = "<spec>",
) -> Path:
    """Train ``spec`` into ``out_dir``; returns the last checkpoint's path.

    ``resume``: continue from ``checkpoints/last.pt`` (a fresh start when there is none);
    ``stop_after``: stop after this many global steps with a checkpoint, as if interrupted.
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
    try:
        ctx = dist_utils.env_context()
    except ValueError as e:
        raise TrainingError(str(e), where="distributed") from None
    if last.exists() and not resume:
        raise TrainingError(
            "run folder already holds checkpoints; use --resume or a new folder", path=str(out)
        )
    spec_json = spec.model_dump(mode="json")
    ck = load_checkpoint(last) if (resume and last.exists()) else None
    if ck is not None and not same_spec(ck["spec"], spec_json):
        raise TrainingError(
            "the spec differs from the one this run was started with", path=str(out / "spec.json")
        )

    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    prev_det = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    # cudnn.benchmark stays off: Mask R-CNN's RoI heads change shape every step, so cuDNN would
    # re-tune every step (measured on an H100: 8 img/s with it against 58 without)
    if spec.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    prev_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = spec.tf32
    own_group = ctx.distributed and not torch.distributed.is_initialized()
    if own_group:
        dist_utils.init_process_group(ctx, resolve_device(spec.device).type)
    try:
        return _train(spec, out, resume, quiet, stop_after, source, ck, ctx)
    finally:
        torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev_tf32
        if own_group:
            dist_utils.destroy_process_group()


@dataclass
class TrainState:
    """Where a run stands; saved as a checkpoint's ``state`` (a resumed run continues from it).

    ``phase`` / ``epoch``: indices in :func:`~synthloop.training.mixing.build_phases`' list and in
    the phase; ``consumed``: items of the current epoch already trained on (global, all ranks);
    ``global_step`` / ``global_epoch``: optimizer steps and epochs since the start; ``best``: best
    validation F1 (-1 before any); ``world_size``: processes of the run that wrote it;
    ``teacher_sha256``: the distillation teacher file's hash (a resumed run must use the same one).
    """

    phase: int = 0
    epoch: int = 0
    consumed: int = 0
    global_step: int = 0
    global_epoch: int = 0
    best: float = -1.0
    world_size: int = 1
    teacher_sha256: str | None = None

    @classmethod
    def resumed(
        cls, saved: dict[str, Any], batch_size: int, world: int, teacher_sha: str | None
    ) -> TrainState:
        """The state of checkpoint ``saved["state"]`` for a run continued on ``world`` processes."""
        st = cls(teacher_sha256=teacher_sha)
        for k, v in saved.items():
            if k in cls.__dataclass_fields__:
                setattr(st, k, v)
        if "consumed" not in saved:  # a checkpoint from before item positions: batches per rank
            st.consumed = saved.get("batch", 0) * batch_size * int(saved.get("world_size", 1))
        st.world_size = world
        return st


@dataclass
class Run:
    """What :func:`setup_run` prepares for the loop: data, phases, models and optimizer state.

    ``model``: the bare module (checkpoints, validation, predictor); ``net``: what the steps call
    (``model`` or its DDP wrapper); ``steps``: optimizer steps of each phase; ``resume``: the
    checkpoint being continued (None on a fresh start) and ``saved_world`` its process count.
    """

    spec: ExperimentSpec
    out: Path
    source: str
    ctx: dist_utils.DistContext
    device: torch.device
    data: PreparedData
    family: str
    anchors: tuple[int, ...] | None
    phases: list[Phase]
    steps: list[int]
    model: torch.nn.Module
    net: torch.nn.Module
    teacher: DetectNetV2 | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dataset: MixedDataset
    state: TrainState
    resume: dict[str, Any] | None = None
    saved_world: int = 1
    graph_stats: Any = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def use_amp(self) -> bool:
        return self.spec.amp and self.cuda

    @property
    def world(self) -> int:
        return self.ctx.world_size

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    @property
    def last(self) -> Path:
        return self.ckpt_dir / "last.pt"


class CheckpointWriter:
    """Writes ``checkpoints/last.pt`` / ``best.pt``: the run's fixed metadata plus model, optimizer,
    lr schedule, scaler, :class:`TrainState` and RNG states (see the module docstring's layout).

    Every rank calls :meth:`write` for ``last`` (in DDP the replicas are first checked to agree);
    only rank 0 writes."""

    def __init__(self, run: Run, logger: Any):
        self.run = run
        self.logger = logger
        self.meta = {
            "schema": CHECKPOINT_SCHEMA,
            "spec": json.loads(canonical_json(run.spec.model_dump(mode="json"))),
            "classes": run.data.classes,
            "category_ids": run.data.category_ids,
            "family": run.family,
            "anchor_sizes": list(run.anchors) if run.anchors else None,
            "versions": versions(),
        }

    def write(self, sched: Any, path: Path | None = None) -> None:
        run = self.run
        path = path or run.last
        if path == run.last and run.ctx.distributed:
            spread = dist_utils.replica_spread(run.model)
            if spread != 0.0:
                raise TrainingError(
                    f"model replicas differ across ranks (checksum spread {spread:g})", path=str(run.out)
                )
            if run.ctx.is_main:
                self.logger.log({"kind": "replicas", "step": run.state.global_step, "spread": spread})
        if not run.ctx.is_main:
            return
        save_checkpoint(
            path,
            {
                **self.meta,
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "lr_scheduler": sched.state_dict() if sched is not None else None,
                "scaler": run.scaler.state_dict(),
                "state": asdict(run.state),
                "rng": _rng_state(),
            },
        )


def _phases(spec: ExperimentSpec, data: PreparedData, world: int, source: str, resuming: bool) -> list[Phase]:
    """The run's phases (:func:`build_phases`); with ``iterations`` the first one runs exactly that
    many steps (its epochs only bound the loop; one spare epoch lets a run resumed on more or fewer
    processes, a shorter or longer epoch, reach the same step count)."""
    lr_scale = dist_utils.scaled_lr(1.0, world, spec.distributed.lr_scaling)
    try:
        phases = build_phases(
            len(data.synthetic.frames) if data.synthetic else 0,
            len(data.real.frames) if data.real else 0,
            schedule=spec.mix.schedule,
            real_fraction=spec.mix.real_fraction,
            ratio=spec.mix.ratio,
            epochs=spec.epochs or 1,
            lr=spec.optimizer.lr * lr_scale,
            batch_size=spec.batch_size,
            finetune_epochs=spec.mix.finetune_epochs,
            finetune_lr=spec.mix.finetune_lr * lr_scale if spec.mix.finetune_lr else None,
            seed=spec.seed,
            world_size=world,
        )
    except ValueError as e:
        raise TrainingError(str(e), path=source, where="mix") from None
    if spec.iterations is not None:
        p0 = phases[0]
        epochs = math.ceil(spec.iterations / p0.batches_per_epoch()) + (1 if resuming else 0)
        phases[0] = Phase(p0.name, p0.synthetic, p0.real, epochs, p0.lr, p0.batch_size, p0.ratio)
    return phases


def _place_model(
    spec: ExperimentSpec,
    data: PreparedData,
    anchors: Any,
    ctx: dist_utils.DistContext,
    device: torch.device,
    fresh: bool,
    init: InitWeights | None = None,
) -> torch.nn.Module:
    """The model on ``device``: a pruned graph (``model.load_graph``) or a new one, whose weights on
    a ``fresh`` start are ``init``'s (``model.init_from``) or else the backbone's pretrained ones (a
    resumed run's checkpoint brings all weights)."""
    cuda = device.type == "cuda"
    if spec.model.load_graph:
        model = load_graph(spec, data.classes)
    else:
        model = build_model(spec, data.classes, anchors, pretrained=fresh and init is None)
        if fresh and init is not None:
            load_init_weights(model, init)
    if ctx.distributed and cuda and spec.distributed.sync_bn and not spec.backbone.freeze_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cuda and spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.compile:
        # in place (nn.Module.compile): parameter names, hence checkpoints, stay as they are; the
        # backbone sees one input size, so it compiles once (plus once for a short last batch)
        model.get_submodule("backbone").compile(dynamic=False)
    return model


def _start_run_folder(out: Path, spec_json: dict[str, Any]) -> None:
    """A fresh run's folder: spec.json, spec.sha256, versions.json (and no old metrics.jsonl)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    atomic_write_json(out / "spec.json", spec_json)
    atomic_write_bytes(
        out / "spec.sha256", (hashlib.sha256(canonical_json(spec_json)).hexdigest() + "\n").encode()
    )
    atomic_write_json(out / "versions.json", versions())


def setup_run(
    spec: ExperimentSpec, out: Path, ck: dict[str, Any] | None, ctx: dist_utils.DistContext, source: str
) -> Run:
    """Data, phases, model (+ teacher), optimizer and scaler of a run; from checkpoint ``ck`` when
    resuming (weights, optimizer, scaler, :class:`TrainState`), else a fresh run folder."""
    device = dist_utils.device_for(ctx, resolve_device(spec.device))
    cuda = device.type == "cuda"
    data = prepare_data(spec, source)
    family = spec.model.family
    init = read_init_weights(spec, data.classes) if (spec.model.init_from and ck is None) else None
    anchors = data_anchor_sizes(spec, data) if family in RCNN_FAMILIES else None
    if init is not None and init.anchor_sizes is not None:
        anchors = init.anchor_sizes  # the RPN learned its offsets against these
    elif spec.model.init_from and ck is not None and ck.get("anchor_sizes"):
        anchors = tuple(ck["anchor_sizes"])  # resumed: the starting checkpoint is not read again
    phases = _phases(spec, data, ctx.world_size, source, ck is not None)
    steps = [
        spec.iterations if (i == 0 and spec.iterations) else p.epochs * p.batches_per_epoch()
        for i, p in enumerate(phases)
    ]
    model = _place_model(spec, data, anchors, ctx, device, fresh=ck is None, init=init)
    if spec.model.load_graph and family in RCNN_FAMILIES:
        anchors = anchor_sizes_of(model)  # the pruned graph's own, which its RPN was trained with
    teacher, teacher_sha = None, None
    if spec.distill is not None:
        teacher = load_teacher(spec, data.classes).to(device)
        teacher_sha = hashlib.sha256(Path(spec.distill.teacher).read_bytes()).hexdigest()
        if cuda and spec.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model)
    scaler = torch.amp.GradScaler("cuda", enabled=spec.amp and cuda)
    run = Run(
        spec, out, source, ctx, device, data, family, anchors, phases, steps, model, model, teacher,
        optimizer, scaler, _datasets(spec, data, family),
        TrainState(world_size=ctx.world_size, teacher_sha256=teacher_sha),
    )  # fmt: skip
    if ck is None:
        if ctx.is_main:
            _start_run_folder(out, spec.model_dump(mode="json"))
    else:
        _resume(run, ck)
    _capture_graphs(run)
    if ctx.distributed:  # the module DDP wraps; checkpoints, validation and the predictor use `model`
        run.net = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if cuda else None,
            find_unused_parameters=spec.distributed.find_unused_parameters,
        )
    return run


def _resume(run: Run, ck: dict[str, Any]) -> None:
    """Load checkpoint ``ck`` into ``run``: weights, optimizer, scaler, state; replayed metrics dropped."""
    spec, model = run.spec, run.model
    saved_teacher = ck["state"].get("teacher_sha256")
    if saved_teacher and saved_teacher != run.state.teacher_sha256:
        raise TrainingError(
            "the distillation teacher file changed since this run started (sha256 differs)",
            path=str(spec.distill.teacher if spec.distill else run.out),
        )
    opt_state = ck["optimizer"]
    if has_legacy_classifier(ck["model"]):  # saved before the unused Lite0 classifier was removed
        opt_state = upgrade_optimizer_state(opt_state, ck["model"], model)
    model.load_state_dict(drop_legacy_classifier(ck["model"], model.state_dict()))
    run.optimizer.load_state_dict(opt_state)
    run.scaler.load_state_dict(ck["scaler"])
    run.saved_world = int(ck["state"].get("world_size", 1))
    run.state = TrainState.resumed(ck["state"], spec.batch_size, run.world, run.state.teacher_sha256)
    run.resume = ck
    if run.ctx.is_main:
        truncate_metrics(run.out / "metrics.jsonl", run.state.global_step)


def _capture_graphs(run: Run) -> None:
    """CUDA-graph the backbone's training forward where the spec asks for it and it can apply:
    after every move, layout change and load of the parameters (the graphs read them in place)."""
    spec, model = run.spec, run.model
    backbone = model.get_submodule("backbone")
    trainable_backbone = any(p.requires_grad for p in backbone.parameters())  # not all frozen
    if not (
        run.cuda and spec.cuda_graph and not spec.compile and not run.ctx.distributed and trainable_backbone
    ):
        return
    model.train()
    example = _backbone_example(model, run.family, spec.batch_size // run.world, spec, run.device)
    try:
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=run.use_amp):
            run.graph_stats = graph_training_forward(backbone, example)
    except GraphCaptureError as e:
        raise TrainingError(f"{e} (set cuda_graph: false to train it eagerly)", path=run.source) from None


def _step_losses(run: Run, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (distillation terms weighted when a teacher is set)."""
    with torch.autocast(device_type=run.device.type, dtype=torch.float16, enabled=run.use_amp):
        if run.teacher is None:
            return run.net(images, targets)
        with torch.no_grad():
            soft = run.teacher.head(run.teacher._batch(images))
        assert run.spec.distill is not None
        return distill_weighted(run.net(images, targets, soft=soft), run.spec.distill.weight)


def _optimizer_step(run: Run, loss: torch.Tensor, sched: Any) -> float:
    """Backward + (scaled) optimizer step + lr schedule step; returns the lr the step used.
    Checking finiteness syncs the GPU: on CUDA only at log steps (the GradScaler already skips
    non-finite steps in between)."""
    step = run.state.global_step
    if (not run.cuda or (step + 1) % run.spec.log_interval == 0) and not torch.isfinite(loss):
        raise TrainingError(f"loss became {loss.item()} at step {step} (lower the lr?)", path=str(run.out))
    lr_used = run.optimizer.param_groups[0]["lr"]
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    sched.step()
    return lr_used


def _train_record(
    run: Run,
    phase: str,
    epoch: int,
    lr: float,
    img_s: float,
    wall_start: float,
    running: dict[str, Any],
) -> dict[str, Any]:
    """The ``train`` record of ``metrics.jsonl``: the means of the ``running`` sums over the steps
    since the last one (``running["n"]`` of them; averaged over ranks), lr, throughput, memory."""
    n = running.pop("n")
    means = dist_utils.all_reduce_mean({k: float(v) / n for k, v in running.items()})
    rec = {
        "kind": "train",
        "step": run.state.global_step,
        "phase": phase,
        "epoch": epoch,
        "lr": lr,
        "images_per_s": img_s,
        "wall_s": time.perf_counter() - wall_start,
        **({"gpu_mem_gb": torch.cuda.max_memory_allocated(run.device) / 2**30} if run.cuda else {}),
        **means,
    }
    if run.graph_stats is not None:  # whether the backbone replays its CUDA graphs
        rec["cuda_graph_replays"] = run.graph_stats.replays
        rec["cuda_graph_eager"] = run.graph_stats.eager
    return rec


def train_one_epoch(
    run: Run,
    pi: int,
    epoch: int,
    loader: Any,
    global_batches: list[list[Item]],
    sched: Any,
    phase_step: int,
    logger: Any,
    writer: CheckpointWriter,
    stop_after: int | None,
    wall_start: float,
) -> tuple[int, bool]:
    """Train phase ``pi``'s epoch ``epoch`` over ``loader`` (its batches: ``global_batches``, this
    rank's share) until the phase's step budget; log every ``log_interval`` steps, checkpoint and
    validate on iteration units. Returns (steps done in the phase, whether ``stop_after`` hit)."""
    spec, state, phase = run.spec, run.state, run.phases[pi]
    t0, n_img = time.perf_counter(), 0
    running: dict[str, Any] = {}  # sums since the last log step: loss tensors, floats, "n" steps
    for bi, (images, targets) in enumerate(loader):
        if phase_step >= run.steps[pi]:
            break
        share = float(np.mean([float(t["source"]) for t in targets]))  # on CPU: no sync
        images, targets = _to_device(images, targets, run.device)
        losses = _step_losses(run, images, targets)
        loss = total_loss(losses)
        lr_used = _optimizer_step(run, loss, sched)
        phase_step += 1
        n_img += len(images) * run.world
        state.consumed += len(global_batches[bi])
        state.global_step += 1
        for k, v in losses.items():  # tensors: no GPU sync until the log step
            running[k] = running.get(k, 0.0) + v.detach()
        running["loss"] = running.get("loss", 0.0) + loss.detach()
        running["real_share"] = running.get("real_share", 0.0) + share
        running["n"] = running.get("n", 0) + 1
        gs = state.global_step
        if gs % spec.log_interval == 0 or phase_step == run.steps[pi]:
            speed = n_img / max(time.perf_counter() - t0, 1e-9)
            logger.log(_train_record(run, phase.name, epoch, lr_used, speed, wall_start, running))
            running = {}
        info = None  # formatting the loss syncs the GPU: only on log steps
        if logger.progress is not None and gs % spec.log_interval == 0:
            info = f"{phase.name} ep {epoch} loss {float(loss.detach()):.4f}"
        logger.advance(gs, info)
        if spec.unit == "iteration" and gs % spec.checkpoint_interval == 0:
            writer.write(sched)
        if spec.unit == "iteration" and spec.validation_interval and gs % spec.validation_interval == 0:
            _validate(run, state, logger, writer, sched)
        if stop_after is not None and gs >= stop_after:
            writer.write(sched)
            return phase_step, True
    return phase_step, False


def _start_phase(run: Run, pi: int) -> tuple[Any, int]:
    """Phase ``pi``'s lr scheduler and the steps it has done; a resumed phase gets its schedule
    position back and (on the same process count) the saved RNG states."""
    state, phase = run.state, run.phases[pi]
    sched = _phase_scheduler(run.optimizer, run.spec, phase, run.steps[pi], first=pi == 0)
    # steps done in this phase: counted from the item position, so a run resumed on another
    # number of processes (another global batch) continues at the same fraction of the phase
    phase_step = state.epoch * phase.batches_per_epoch() + math.ceil(state.consumed / phase.batch_size)
    resuming = run.resume is not None and pi == state.phase
    if pi == 0 and run.spec.iterations and resuming:
        phase_step = state.global_step
    if resuming:
        assert run.resume is not None
        if phase_step:
            _fast_forward(sched, run.optimizer, phase_step)
        if run.saved_world == run.world:
            _set_rng_state(run.resume["rng"])
    return sched, phase_step


def _train(
    spec: ExperimentSpec,
    out: Path,
    resume: bool,
    quiet: bool,
    stop_after: int | None,
    source: str,
    ck: dict[str, Any] | None,
    ctx: dist_utils.DistContext = dist_utils.SINGLE,
) -> Path:
    run = setup_run(spec, out, ck, ctx, source)
    state = run.state
    wall_start = time.perf_counter()
    logger = RunLogger(out, quiet, sum(run.steps), state.global_step) if ctx.is_main else NullLogger()
    writer = CheckpointWriter(run, logger)
    run.model.train()
    try:
        for pi in range(state.phase, len(run.phases)):
            sched, phase_step = _start_phase(run, pi)
            loader, batch_sampler = _phase_loader(run)
            for epoch in range(state.epoch, run.phases[pi].epochs):
                global_batches = _epoch_batches(run, pi, epoch, phase_step, ctx, batch_sampler)
                phase_step, stopped = train_one_epoch(
                    run,
                    pi,
                    epoch,
                    loader,
                    global_batches,
                    sched,
                    phase_step,
                    logger,
                    writer,
                    stop_after,
                    wall_start,
                )
                if stopped:
                    return run.last
                _end_epoch(run, pi, epoch, logger, writer, sched)
                if phase_step >= run.steps[pi]:
                    break
            state.phase, state.epoch, state.consumed = pi + 1, 0, 0
            run.resume = None
            writer.write(None)  # the next phase starts a fresh lr schedule
    finally:
        logger.close()
        if run.graph_stats is not None:
            remove_graph(run.model.get_submodule("backbone"))  # frees the graphs' memory pool with them
    return run.last


def _phase_loader(run: Run) -> tuple[Any, ListBatchSampler]:
    """A phase's loader and its batch sampler. One loader per phase with persistent workers: each
    epoch only swaps the (main-process) batch list, so workers are not restarted every epoch."""
    batch_sampler = ListBatchSampler([], 0)
    loader = torch.utils.data.DataLoader(
        run.dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=run.spec.num_workers,
        pin_memory=run.cuda and run.spec.pin_memory,
        persistent_workers=run.spec.num_workers > 0,
    )
    return loader, batch_sampler


def _epoch_batches(
    run: Run,
    pi: int,
    epoch: int,
    phase_step: int,
    ctx: dist_utils.DistContext,
    batch_sampler: ListBatchSampler,
) -> list[list[Item]]:
    """Phase ``pi``'s global batches of ``epoch`` from the saved item position, cut to the steps
    the phase has left (unused ones are never loaded); this rank's share of each goes into
    ``batch_sampler``."""
    phase = run.phases[pi]
    per_batch = phase.per_batch() if phase.ratio is not None else None
    global_batches = phase.epoch_batches(run.spec.seed, pi, epoch, start=run.state.consumed)
    global_batches = global_batches[: max(0, run.steps[pi] - phase_step)]
    batch_sampler.batches = [dist_utils.rank_items(b, ctx.rank, run.world, per_batch) for b in global_batches]
    batch_sampler.start = 0
    return global_batches


def _end_epoch(run: Run, pi: int, epoch: int, logger: Any, writer: CheckpointWriter, sched: Any) -> None:
    """Count a finished epoch of phase ``pi``, log it, and validate / checkpoint on epoch units."""
    state, spec = run.state, run.spec
    state.epoch, state.consumed, state.global_epoch = epoch + 1, 0, state.global_epoch + 1
    logger.log({"kind": "epoch", "step": state.global_step, "phase": run.phases[pi].name, "epoch": epoch})
    ge = state.global_epoch
    if spec.unit == "epoch" and spec.validation_interval and ge % spec.validation_interval == 0:
        _validate(run, state, logger, writer, sched)
    if spec.unit == "epoch" and ge % spec.checkpoint_interval == 0:
        writer.write(sched)


def _fast_forward(sched, optimizer, step: int) -> None:
    """Put a fresh LambdaLR at ``step`` (its lr is a pure function of the step)."""
    sched.last_epoch = step
    for g, base in zip(optimizer.param_groups, sched.base_lrs, strict=True):
        g["lr"] = base * sched.lr_lambdas[0](step)
    sched._last_lr = [g["lr"] for g in optimizer.param_groups]


def _validate(run: Run, state: TrainState, logger: Any, writer: CheckpointWriter, sched: Any) -> None:
    """Rank 0 validates the bare model (no collectives); the other ranks wait at a barrier."""
    if run.data.validation is None:
        return
    if not isinstance(logger, NullLogger):
        m = validation_metrics(run.model, run.data, run.spec, run.device)
        m |= log_validation(
            logger.tb, run.model, run.data.validation, run.spec, run.device, state.global_step
        )
        logger.log({"kind": "validation", "step": state.global_step, **m})
        if m["f1"] > state.best:
            state.best = m["f1"]
            writer.write(sched, run.ckpt_dir / "best.pt")
    dist_utils.barrier()
