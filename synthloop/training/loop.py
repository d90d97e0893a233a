"""The training loop: ``train(spec, out_dir, resume=False)``.

Run folder layout::

    RUN/
      spec.json            the validated spec (canonical JSON) + its sha256 in spec.sha256
      versions.json        python / torch / torchvision / albumentations / numpy versions
      metrics.jsonl        one JSON object per logged step / epoch end / validation
      tensorboard/         the same scalars for TensorBoard
      checkpoints/last.pt  {model, optimizer, lr_scheduler, scaler, phase, epoch, batch, global_step,
                            rng, spec, classes, category_ids, family, anchor_sizes} (atomic)
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
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthloop.atomic import atomic_write_bytes, atomic_write_json, canonical_json
from synthloop.training import distributed as dist_utils
from synthloop.training.build import (
    RCNN_FAMILIES,
    PreparedData,
    build_model,
    data_anchor_sizes,
    prepare_data,
)
from synthloop.training.cuda_graph import GraphCaptureError, graph_training_forward, remove_graph
from synthloop.training.data import AugmentConfig, DetectionDataset, collate
from synthloop.training.errors import TrainingError
from synthloop.training.legacy import drop_legacy_classifier, has_legacy_classifier, upgrade_optimizer_state
from synthloop.training.mixing import ListBatchSampler, MixedDataset, Phase, build_phases
from synthloop.training.safe_load import UnreadableWeights, load_weights_only
from synthloop.training.spec import ExperimentSpec, LRScheduleSpec
from synthloop.training.tb_validation import log_validation

CHECKPOINT_SCHEMA = "synthloop.checkpoint/1"


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


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainingError("checkpoint not found", path=str(path))
    try:
        ck = load_weights_only(path)
    except UnreadableWeights as e:
        raise TrainingError(f"cannot read checkpoint: {e}", path=str(path)) from None
    if not isinstance(ck, dict) or ck.get("schema") != CHECKPOINT_SCHEMA:
        raise TrainingError("not a synthloop training checkpoint", path=str(path))
    return ck


def _backbone_example(
    model: torch.nn.Module, family: str, batch_size: int, spec: ExperimentSpec, device: torch.device
) -> torch.Tensor:
    """What the backbone receives for a full training batch at the spec's input size: the model's
    own preprocessing (Mask R-CNN's transform: normalize, pad; DetectNet: normalize, channels_last)
    applied to blank images. ``(B, 3, H, W)`` float32."""
    blank = [torch.zeros(3, spec.model.input_height, spec.model.input_width, device=device)] * batch_size
    with torch.no_grad():
        if family in RCNN_FAMILIES:
            return model.transform(blank)[0].tensors
        x = model._batch(blank)
        return (x - model.mean) / model.std


def _to_device(images, targets, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


class _Logger:
    """metrics.jsonl + TensorBoard + rich progress (or JSON lines on stdout when quiet)."""

    def __init__(self, out: Path, quiet: bool, total_steps: int, start_step: int):
        self.path = out / "metrics.jsonl"
        self.quiet = quiet
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.tb = None
        self.progress = None
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")

    def log(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, int | float) and k not in ("step", "epoch", "phase_index"):
                    self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, rec.get("step", 0))
        if self.quiet:
            print(json.dumps(rec, sort_keys=True), flush=True)

    def advance(self, step: int, info: str | None) -> None:
        if self.progress is not None:
            if info is None:
                self.progress.update(self.task, completed=step)
            else:
                self.progress.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (the part of an interrupted run that is replayed)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n").encode() if keep else b"")


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
    from synthloop.geometry.masks import box_iou as pairwise_iou

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
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
    spec_json = spec.model_dump(mode="json")
    device = dist_utils.device_for(ctx, resolve_device(spec.device))
    cuda = device.type == "cuda"
    world = ctx.world_size
    lr_scale = dist_utils.scaled_lr(1.0, world, spec.distributed.lr_scaling)

    data = prepare_data(spec, source)
    family = spec.model.family
    anchors = data_anchor_sizes(spec, data) if family in RCNN_FAMILIES else None
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
    if spec.iterations is not None:  # the first phase runs exactly `iterations` steps
        p0 = phases[0]
        # epochs only bound the loop (it stops at `iterations`); one spare epoch lets a run resumed on
        # more or fewer processes (a shorter or longer epoch) reach the same step count
        phases[0] = Phase(
            p0.name,
            p0.synthetic,
            p0.real,
            math.ceil(spec.iterations / p0.batches_per_epoch()) + (1 if ck is not None else 0),
            p0.lr,
            p0.batch_size,
            p0.ratio,
        )
    steps = [
        spec.iterations if (i == 0 and spec.iterations) else p.epochs * p.batches_per_epoch()
        for i, p in enumerate(phases)
    ]

    model = build_model(spec, data.classes, anchors, pretrained=ck is None)
    if ctx.distributed and cuda and spec.distributed.sync_bn and not spec.backbone.freeze_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cuda and spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.compile:
        # in place (nn.Module.compile): parameter names, hence checkpoints, stay as they are; the
        # backbone sees one input size, so it compiles once (plus once for a short last batch)
        model.backbone.compile(dynamic=False)
    teacher, teacher_sha = None, None
    if spec.distill is not None:
        from synthloop.training.build import load_teacher

        teacher = load_teacher(spec, data.classes).to(device)
        teacher_sha = hashlib.sha256(Path(spec.distill.teacher).read_bytes()).hexdigest()
        if cuda and spec.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model)
    use_amp = spec.amp and cuda
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    dataset = _datasets(spec, data, family)

    main = ctx.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    state = {
        "phase": 0,
        "epoch": 0,
        "consumed": 0,
        "global_step": 0,
        "global_epoch": 0,
        "best": -1.0,
        "world_size": world,
        "teacher_sha256": teacher_sha,  # a resumed run must distill from the same teacher file
    }
    if ck is None:
        if main:
            (out / "metrics.jsonl").unlink(missing_ok=True)
            atomic_write_json(out / "spec.json", spec_json)
            atomic_write_bytes(
                out / "spec.sha256",
                (hashlib.sha256(canonical_json(spec_json)).hexdigest() + "\n").encode(),
            )
            atomic_write_json(out / "versions.json", versions())
    else:
        saved_teacher = ck["state"].get("teacher_sha256")
        if saved_teacher and saved_teacher != teacher_sha:
            raise TrainingError(
                "the distillation teacher file changed since this run started (sha256 differs)",
                path=str(spec.distill.teacher if spec.distill else out),
            )
        opt_state = ck["optimizer"]
        if has_legacy_classifier(ck["model"]):  # saved before the unused Lite0 classifier was removed
            opt_state = upgrade_optimizer_state(opt_state, ck["model"], model)
        model.load_state_dict(drop_legacy_classifier(ck["model"], model.state_dict()))
        saved_world = int(ck["state"].get("world_size", 1))
        optimizer.load_state_dict(opt_state)
        scaler.load_state_dict(ck["scaler"])
        state.update(ck["state"])
        if "consumed" not in ck["state"]:  # a checkpoint from before item positions
            state["consumed"] = ck["state"].get("batch", 0) * spec.batch_size * saved_world
        state.pop("batch", None)
        state["world_size"] = world
        if main:
            _truncate_metrics(out / "metrics.jsonl", state["global_step"])
    graph_stats = None
    trainable_backbone = any(p.requires_grad for p in model.backbone.parameters())  # not all frozen
    if cuda and spec.cuda_graph and not spec.compile and not ctx.distributed and trainable_backbone:
        # after every move, layout change and load of the parameters: the graphs read them in place
        model.train()
        example = _backbone_example(model, family, spec.batch_size // world, spec, device)
        try:
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                graph_stats = graph_training_forward(model.backbone, example)
        except GraphCaptureError as e:
            raise TrainingError(f"{e} (set cuda_graph: false to train it eagerly)", path=source) from None
    # the module DDP wraps; checkpoints, validation and the predictor use `model` itself
    net: torch.nn.Module = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if cuda else None,
            find_unused_parameters=spec.distributed.find_unused_parameters,
        )

    meta = {
        "schema": CHECKPOINT_SCHEMA,
        "spec": json.loads(canonical_json(spec_json)),
        "classes": data.classes,
        "category_ids": data.category_ids,
        "family": family,
        "anchor_sizes": list(anchors) if anchors else None,
        "versions": versions(),
    }

    def checkpoint(sched, path: Path = last) -> None:
        """Every rank calls this for ``last`` (the replicas are checked to agree); rank 0 writes."""
        if path == last and ctx.distributed:
            spread = dist_utils.replica_spread(model)
            if spread != 0.0:
                raise TrainingError(
                    f"model replicas differ across ranks (checksum spread {spread:g})", path=str(out)
                )
            if main:
                logger.log({"kind": "replicas", "step": state["global_step"], "spread": spread})
        if not main:
            return
        save_checkpoint(
            path,
            {
                **meta,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict(),
                "state": dict(state),
                "rng": _rng_state(),
            },
        )

    total_steps = sum(steps)
    wall_start = time.perf_counter()
    logger = _Logger(out, quiet, total_steps, state["global_step"]) if main else _NullLogger()
    model.train()
    try:
        for pi in range(state["phase"], len(phases)):
            phase = phases[pi]
            sched = _phase_scheduler(optimizer, spec, phase, steps[pi], first=pi == 0)
            # steps done in this phase: counted from the item position, so a run resumed on another
            # number of processes (another global batch) continues at the same fraction of the phase
            phase_step = state["epoch"] * phase.batches_per_epoch() + math.ceil(
                state["consumed"] / phase.batch_size
            )
            if pi == 0 and spec.iterations and ck is not None and pi == state["phase"]:
                phase_step = state["global_step"]
            if ck is not None and pi == state["phase"]:
                if phase_step:
                    _fast_forward(sched, optimizer, phase_step)
                if saved_world == world:
                    _set_rng_state(ck["rng"])
            # one loader per phase with persistent workers: each epoch only swaps the (main-process)
            # batch list, so workers are not restarted every epoch
            batch_sampler = ListBatchSampler([], 0)
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=batch_sampler,
                collate_fn=collate,
                num_workers=spec.num_workers,
                pin_memory=cuda and spec.pin_memory,
                persistent_workers=spec.num_workers > 0,
            )
            per_batch = phase.per_batch() if phase.ratio is not None else None
            for epoch in range(state["epoch"], phase.epochs):
                global_batches = phase.epoch_batches(spec.seed, pi, epoch, start=state["consumed"])
                global_batches = global_batches[: max(0, steps[pi] - phase_step)]  # never load unused ones
                batch_sampler.batches = [
                    dist_utils.rank_items(b, ctx.rank, world, per_batch) for b in global_batches
                ]
                batch_sampler.start = 0
                t0, n_img, running = time.perf_counter(), 0, {}
                for bi, (images, targets) in enumerate(loader):
                    if phase_step >= steps[pi]:
                        break
                    share = float(np.mean([float(t["source"]) for t in targets]))  # on CPU: no sync
                    images, targets = _to_device(images, targets, device)
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        if teacher is None:
                            losses = net(images, targets)
                        else:
                            with torch.no_grad():
                                soft = teacher.head(teacher._batch(images))
                            losses = distill_weighted(net(images, targets, soft=soft), spec.distill.weight)
                    loss = sum(losses.values())
                    # checking finiteness syncs the GPU: on CUDA only at log steps (the GradScaler
                    # already skips non-finite steps in between)
                    check_now = not cuda or (state["global_step"] + 1) % spec.log_interval == 0
                    if check_now and not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss became {loss.item()} at step {state['global_step']} (lower the lr?)",
                            path=str(out),
                        )
                    lr_used = optimizer.param_groups[0]["lr"]
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    sched.step()
                    phase_step += 1
                    n_img += len(images) * world
                    state.update(
                        consumed=state["consumed"] + len(global_batches[bi]),
                        global_step=state["global_step"] + 1,
                    )
                    for k, v in losses.items():  # tensors: no GPU sync until the log step
                        running[k] = running.get(k, 0.0) + v.detach()
                    running["loss"] = running.get("loss", 0.0) + loss.detach()
                    running["real_share"] = running.get("real_share", 0.0) + share
                    running["n"] = running.get("n", 0) + 1
                    gs = state["global_step"]
                    if gs % spec.log_interval == 0 or phase_step == steps[pi]:
                        n = running.pop("n")
                        means = dist_utils.all_reduce_mean({k: float(v) / n for k, v in running.items()})
                        rec = {
                            "kind": "train",
                            "step": gs,
                            "phase": phase.name,
                            "epoch": epoch,
                            "lr": lr_used,
                            "images_per_s": n_img / max(time.perf_counter() - t0, 1e-9),
                            "wall_s": time.perf_counter() - wall_start,
                            **(
                                {"gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30}
                                if cuda
                                else {}
                            ),
                            **means,
                        }
                        if graph_stats is not None:  # whether the backbone replays its CUDA graphs
                            rec["cuda_graph_replays"] = graph_stats.replays
                            rec["cuda_graph_eager"] = graph_stats.eager
                        logger.log(rec)
                        running = {}
                    info = None  # formatting the loss syncs the GPU: only on log steps
                    if logger.progress is not None and gs % spec.log_interval == 0:
                        info = f"{phase.name} ep {epoch} loss {float(loss.detach()):.4f}"
                    logger.advance(gs, info)
                    if spec.unit == "iteration" and gs % spec.checkpoint_interval == 0:
                        checkpoint(sched)
                    if (
                        spec.unit == "iteration"
                        and spec.validation_interval
                        and gs % spec.validation_interval == 0
                    ):
                        _validate(model, data, spec, device, state, logger, checkpoint, sched, ckpt_dir)
                    if stop_after is not None and gs >= stop_after:
                        checkpoint(sched)
                        return last
                # epoch end
                state.update(epoch=epoch + 1, consumed=0, global_epoch=state["global_epoch"] + 1)
                logger.log(
                    {"kind": "epoch", "step": state["global_step"], "phase": phase.name, "epoch": epoch}
                )
                ge = state["global_epoch"]
                if spec.unit == "epoch" and spec.validation_interval and ge % spec.validation_interval == 0:
                    _validate(model, data, spec, device, state, logger, checkpoint, sched, ckpt_dir)
                if spec.unit == "epoch" and ge % spec.checkpoint_interval == 0:
                    checkpoint(sched)
                if phase_step >= steps[pi]:
                    break
            state.update(phase=pi + 1, epoch=0, consumed=0)
            ck = None
            checkpoint(None)  # the next phase starts a fresh lr schedule
    finally:
        logger.close()
        if graph_stats is not None:
            remove_graph(model.backbone)  # frees the graphs' memory pool with them
    return last


def _fast_forward(sched, optimizer, step: int) -> None:
    """Put a fresh LambdaLR at ``step`` (its lr is a pure function of the step)."""
    sched.last_epoch = step
    for g, base in zip(optimizer.param_groups, sched.base_lrs, strict=True):
        g["lr"] = base * sched.lr_lambdas[0](step)
    sched._last_lr = [g["lr"] for g in optimizer.param_groups]


class _NullLogger:
    """What ranks other than 0 log: nothing."""

    progress = None

    def log(self, rec: dict[str, Any]) -> None:
        pass

    def advance(self, step: int, info: str | None) -> None:
        pass

    def close(self) -> None:
        pass


def _validate(model, data, spec, device, state, logger, checkpoint, sched, ckpt_dir: Path) -> None:
    """Rank 0 validates the bare model (no collectives); the other ranks wait at a barrier."""
    if data.validation is None:
        return
    if not isinstance(logger, _NullLogger):
        m = validation_metrics(model, data, spec, device)
        m |= log_validation(logger.tb, model, data.validation, spec, device, state["global_step"])
        logger.log({"kind": "validation", "step": state["global_step"], **m})
        if m["f1"] > state["best"]:
            state["best"] = m["f1"]
            checkpoint(sched, ckpt_dir / "best.pt")
    dist_utils.barrier()
