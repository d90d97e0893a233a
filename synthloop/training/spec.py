"""Experiment spec: what to train on, which model, how (pydantic, loaded from YAML).

Example::

    name: fruits-mix
    datasets:
      - kind: synthetic            # synthloop dataset folders (globs allowed)
        paths: [data/synth_fruits_*]
        class_mapping: {dattel: date}   # this dataset's class name -> the experiment's name
      - kind: real                 # a COCO json + images; this json is the train split
        coco_json: /data/fruits-nuts/train.json
        images_dir: /data/fruits-nuts/images
    model:
      family: detectnet_v2         # or mask_rcnn
      input_width: 800
      input_height: 608
    backbone: {name: efficientnet_lite0, weights: package, freeze_blocks: [0], freeze_bn: false}
    mix: {real_fraction: 0.25, schedule: blend, ratio: [3, 1]}
    optimizer: {name: adamw, lr: 0.001, weight_decay: 0.0001}
    lr_schedule: {name: soft_start_annealing, soft_start: 0.1, annealing: 0.7, min_lr_ratio: 0.01}
    epochs: 20
    batch_size: 8                  # per process: `train --gpus N` trains on N x 8 images per step
    distributed: {lr_scaling: linear, sync_bn: false}
    distill: {teacher: runs/full/checkpoints/last.pt, weight: 1.0}   # optional, DetectNet_v2 only

Relative paths resolve against the YAML file's folder (:meth:`ExperimentSpec.resolve_paths`).
:func:`validate_inputs` checks what pydantic cannot (paths exist, class names agree, real split
not empty) before any training starts; errors name the file and the field.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthloop.training.backbones import BACKBONES
from synthloop.training.data import AugmentConfig
from synthloop.training.errors import SpecError
from synthloop.training.postprocess import ClusterParams
from synthloop.training.rasterizer import RasterParams
from synthloop.userfiles import load_yaml_file
from synthloop.validation import invalid, require_one_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticData(_Strict):
    """synthloop dataset folders (``paths``: folders or glob patterns)."""

    kind: Literal["synthetic"] = "synthetic"
    paths: list[str] = Field(min_length=1)
    enabled: bool = True
    class_mapping: dict[str, str] = Field(default_factory=dict)


class RealData(_Strict):
    """A COCO instances json (the train split) and its images folder."""

    kind: Literal["real"] = "real"
    coco_json: str
    images_dir: str | None = None
    class_mapping: dict[str, str] = Field(default_factory=dict)


DatasetEntry = Annotated[SyntheticData | RealData, Field(discriminator="kind")]


class DetectNetParams(_Strict):
    """DetectNet_v2 settings; per-class dicts are keyed by class name (``"*"`` = default)."""

    raster: dict[str, RasterParams] = Field(default_factory=dict)
    cluster: dict[str, ClusterParams] = Field(default_factory=dict)
    class_weights: dict[str, float] = Field(default_factory=dict)
    cov_loss: Literal["bce", "l2"] = "bce"
    cov_normalize: Literal["cells", "positives"] = "positives"
    cov_loss_weight: float = Field(1.0, ge=0)
    bbox_loss_weight: float = Field(10.0, ge=0)
    bbox_norm: float = Field(35.0, gt=0)


class MaskRCNNParams(_Strict):
    """Mask R-CNN settings; ``anchor_sizes`` None = from the training boxes' size quantiles."""

    anchor_sizes: list[int] | None = None
    aspect_ratios: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    box_score_thresh: float = Field(0.05, ge=0, le=1)
    detections_per_img: int = Field(100, gt=0)
    fpn_channels: int = Field(256, gt=0)
    box_head_dim: int = Field(1024, gt=0)
    mask_head_dim: int = Field(256, gt=0)
    rpn_batch_size_per_image: int = Field(256, gt=0)
    rpn_pre_nms_top_n_train: int = Field(2000, gt=0)
    rpn_post_nms_top_n_train: int = Field(2000, gt=0)
    rpn_pre_nms_top_n_test: int = Field(1000, gt=0)
    rpn_post_nms_top_n_test: int = Field(1000, gt=0)
    box_batch_size_per_image: int = Field(512, gt=0)
    # anchor/proposal matching, sampling and proposal filtering once per batch instead of per image
    # (synthloop.training.rcnn_batched; same math); false = torchvision's per-image modules
    batched_heads: bool = True
    # the RPN's proposal NMS for the whole batch on CUDA (exact; greedy_nms_batched), instead of
    # torchvision's per image; unset = on with batched_heads (CPU always uses torchvision's)
    matrix_nms: bool | None = None

    @model_validator(mode="after")
    def _nms_needs_batched(self) -> MaskRCNNParams:
        if self.matrix_nms and not self.batched_heads:
            raise ValueError("matrix_nms: true needs batched_heads: true")
        return self

    @property
    def use_matrix_nms(self) -> bool:
        """``matrix_nms`` with its default resolved."""
        return self.batched_heads if self.matrix_nms is None else self.matrix_nms

    @field_validator("anchor_sizes")
    @classmethod
    def _four(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 4 or any(s <= 0 for s in v)):
            raise ValueError("anchor_sizes needs 4 positive sizes (FPN levels at strides 8/16/32/64)")
        return v


class KeypointRCNNParams(_Strict):
    """Keypoint R-CNN settings beyond the shared R-CNN ones (``model.mask_rcnn``: anchors, RPN,
    box head). ``num_keypoints``: keypoints per instance (17 = COCO persons); ``head_dim``: width
    of the 8 keypoint-head convolutions (torchvision: 512)."""

    num_keypoints: int = Field(17, gt=0)
    head_dim: int = Field(512, gt=0)


class ModelSpec(_Strict):
    """``load_graph`` (TLT's name): a pruned checkpoint (``synthloop prune``) whose whole graph —
    pruned layer widths and weights — is the starting model, to retrain after pruning. The family and
    classes must agree with the spec's; the backbone weights setting is then ignored.

    ``init_from``: a training checkpoint (a run's ``last.pt`` / ``best.pt``) whose weights start this
    run: fine-tune a pre-trained run, e.g. synthetic pre-training then real fine-tuning as two runs.
    The model is built from this spec (its heads, thresholds and input size), with the checkpoint's
    anchor sizes, and must take every weight of the checkpoint (same family, backbone, classes and
    head widths); the optimizer and lr schedule start fresh. Not with ``load_graph``."""

    family: Literal["detectnet_v2", "mask_rcnn", "keypoint_rcnn"] = "detectnet_v2"
    input_width: int = Field(640, gt=0)
    input_height: int = Field(480, gt=0)
    load_graph: str | None = None
    init_from: str | None = None
    detectnet: DetectNetParams = Field(default_factory=DetectNetParams)
    mask_rcnn: MaskRCNNParams = Field(default_factory=MaskRCNNParams)
    keypoint_rcnn: KeypointRCNNParams = Field(default_factory=KeypointRCNNParams)


class BackboneSpec(_Strict):
    """``weights``: None = random init, a file path, or ``package`` (efficientnet_lite0 only)."""

    name: str = "efficientnet_lite0"
    weights: str | None = "package"
    freeze_blocks: list[int] = Field(default_factory=list)
    freeze_bn: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        msg = f"unknown backbone {v!r} (expected one of {', '.join(BACKBONES)})"
        return require_one_of(v, BACKBONES, msg)


class MixSpec(_Strict):
    """Synthetic/real mixing. ``real_fraction``: seeded share of the real train split used.

    ``blend``: every batch holds synthetic:real = ``ratio`` exactly (both sampled with replacement).
    ``pretrain_finetune``: synthetic only for the main epochs, then the real subset for
    ``finetune_epochs`` at ``finetune_lr``.
    """

    real_fraction: float = Field(1.0, ge=0, le=1)
    schedule: Literal["blend", "pretrain_finetune"] = "blend"
    ratio: tuple[int, int] = (1, 1)
    finetune_epochs: int = Field(1, ge=0)
    finetune_lr: float | None = Field(None, gt=0)

    @field_validator("ratio", mode="before")
    @classmethod
    def _ratio(cls, v: Any) -> Any:
        if isinstance(v, str) and ":" in v:
            a, b = v.split(":", 1)
            return (int(a), int(b))
        return v

    @field_validator("ratio")
    @classmethod
    def _nonneg(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[1] < 0 or v[0] + v[1] == 0:
            raise ValueError("ratio needs two non-negative integers, not both 0 (synthetic:real)")
        return v


class OptimizerSpec(_Strict):
    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class LRScheduleSpec(_Strict):
    """``soft_start_annealing`` (TLT): lr rises log-linearly from ``lr * min_lr_ratio`` to ``lr``
    over the first ``soft_start`` fraction of steps, holds, and decays log-linearly back to
    ``lr * min_lr_ratio`` from ``annealing`` on. ``cosine``: cosine to ``lr * min_lr_ratio``.
    ``constant``: no schedule."""

    name: Literal["soft_start_annealing", "cosine", "constant"] = "soft_start_annealing"
    soft_start: float = Field(0.1, ge=0, le=1)
    annealing: float = Field(0.7, ge=0, le=1)
    min_lr_ratio: float = Field(0.01, gt=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> LRScheduleSpec:
        if self.name == "soft_start_annealing" and self.annealing < self.soft_start:
            raise ValueError("annealing must be >= soft_start")
        return self


class DistributedSpec(_Strict):
    """Data-parallel settings (used when run by ``--gpus N``, torchrun or srun with N > 1 processes).

    ``batch_size`` stays per process. ``lr_scaling``: the optimizer (and fine-tune) lr is multiplied
    by N (``linear``, as TLT's ``--gpus``), by sqrt(N) (``sqrt``) or kept (``none``).
    ``sync_bn``: BatchNorm statistics over the global batch (CUDA only; ignored with ``freeze_bn``).
    """

    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    sync_bn: bool = False
    find_unused_parameters: bool = False


class DistillSpec(_Strict):
    """Knowledge distillation while (re)training a DetectNet_v2, e.g. a pruned one from the model it
    was cut from. ``teacher``: a DetectNet_v2 checkpoint (training, pruned or stripped) with the
    experiment's classes and input size; it runs frozen in eval mode on the same augmented batch.
    The student adds ``weight`` x (the soft coverage loss: BCE against the teacher's coverage
    probabilities, + the bbox L1 to the teacher's boxes weighted by the teacher's coverage), both
    normalized and weighted like the ground-truth losses. ``--resume`` refuses a teacher file whose
    contents changed since the run started (its sha256 is kept in the checkpoints)."""

    teacher: str
    weight: float = Field(1.0, gt=0)


class ExperimentSpec(_Strict):
    name: str = "experiment"
    datasets: list[DatasetEntry] = Field(min_length=1)
    model: ModelSpec = Field(default_factory=ModelSpec)
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    mix: MixSpec = Field(default_factory=MixSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    lr_schedule: LRScheduleSpec = Field(default_factory=LRScheduleSpec)
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    distill: DistillSpec | None = None
    epochs: int | None = Field(None, gt=0)
    iterations: int | None = Field(None, gt=0)
    batch_size: int = Field(8, gt=0)
    amp: bool = True
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the backbone (+FPN): fewer kernel launches, slower start
    # CUDA, one process, no compile: replay the backbone (+FPN) forward/backward as CUDA graphs
    # (synthloop.training.cuda_graph); other input shapes and eval run eagerly
    cuda_graph: bool = True
    tf32: bool = True  # CUDA only: TF32 tensor cores for float32 matmuls and convolutions
    seed: int = 0
    checkpoint_interval: int = Field(1, gt=0)
    validation_interval: int = Field(0, ge=0)
    validation: RealData | None = None
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    deterministic: bool = False
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = True  # CUDA only: page-locked batches, copied to the GPU without blocking
    log_interval: int = Field(10, gt=0)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", v):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="after")
    def _length(self) -> ExperimentSpec:
        if self.epochs is None and self.iterations is None:
            self.epochs = 10
        if self.epochs is not None and self.iterations is not None:
            raise ValueError("give either epochs or iterations, not both")
        m = self.model
        if m.load_graph and m.init_from:
            raise ValueError("give either model.load_graph or model.init_from, not both")
        if self.distill is not None and m.family != "detectnet_v2":
            raise ValueError("distill is implemented for model.family detectnet_v2 only")
        if self.augment.enabled and self.augment.rotate90_prob > 0 and m.input_width != m.input_height:
            raise ValueError(
                "augment.rotate90_prob > 0 needs a square input (model.input_width == input_height)"
            )
        return self

    @property
    def unit(self) -> str:
        """``"epoch"`` or ``"iteration"``: what ``checkpoint_interval``/``validation_interval`` count."""
        return "epoch" if self.epochs is not None else "iteration"

    def synthetic(self) -> list[SyntheticData]:
        return [d for d in self.datasets if isinstance(d, SyntheticData) and d.enabled]

    def real(self) -> list[RealData]:
        return [d for d in self.datasets if isinstance(d, RealData)]

    def resolve_paths(self, base_dir: str | Path) -> ExperimentSpec:
        """A copy whose relative dataset/weights paths are made absolute against ``base_dir``."""
        base = Path(base_dir)

        def fix(p: str | None) -> str | None:
            if p is None or p == "package":
                return p
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else (base / q))

        data = self.model_dump(mode="json")
        for d in data["datasets"]:
            if d["kind"] == "synthetic":
                d["paths"] = [fix(p) for p in d["paths"]]
            else:
                d["coco_json"], d["images_dir"] = fix(d["coco_json"]), fix(d["images_dir"])
        if data.get("validation"):
            v = data["validation"]
            v["coco_json"], v["images_dir"] = fix(v["coco_json"]), fix(v["images_dir"])
        data["backbone"]["weights"] = fix(data["backbone"]["weights"])
        data["model"]["load_graph"] = fix(data["model"].get("load_graph"))
        data["model"]["init_from"] = fix(data["model"].get("init_from"))
        if data.get("distill"):
            data["distill"]["teacher"] = fix(data["distill"]["teacher"])
        return ExperimentSpec.model_validate(data)


def parse_spec(data: Any, source: str = "<spec>") -> ExperimentSpec:
    """Validate plain data; bad fields raise one :class:`SpecError` naming ``source`` and listing
    every field (one ``file: field: message`` line each)."""
    if not isinstance(data, dict):
        raise SpecError("an experiment spec must be a mapping", path=source)
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as e:
        raise invalid(SpecError, e, source) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a YAML spec; relative paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("spec file not found", path=str(path))
    data = load_yaml_file(path, SpecError)
    return parse_spec(data, str(path)).resolve_paths(path.parent.resolve())


def expand_synthetic_paths(entry: SyntheticData, index: int, source: str) -> list[Path]:
    """The dataset folders an entry names (globs expanded, sorted); none found -> :class:`SpecError`."""
    out: list[Path] = []
    for j, pat in enumerate(entry.paths):
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else ([pat] if Path(pat).exists() else [])
        if not hits:
            raise SpecError(
                f"no dataset folder matches {pat!r}", path=source, where=f"datasets.{index}.paths.{j}"
            )
        out.extend(Path(h) for h in hits)
    return out
