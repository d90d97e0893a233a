"""Checkpoints and the model description: read a training / pruned checkpoint, rebuild its model.

A model is described by :class:`ModelDesc`: family (``detectnet_v2`` or ``mask_rcnn``), backbone,
classes (training label ``i + 1`` is dataset category ``category_ids[i]`` named ``class_names[i]``),
the fixed network input size (``input_width`` x ``input_height`` pixels; images are resized to it
for export and inference) and the post-processing parameters.

Checkpoint kinds read by :func:`load_model` (all through
:func:`synthloop.training.checkpoint_io.read_checkpoint`, ``weights_only=True``):

* training checkpoints of :mod:`synthloop.training.loop` (schema :data:`CHECKPOINT_SCHEMA`:
  ``{"model": state_dict, "optimizer", ..., "spec": ExperimentSpec JSON, "classes",
  "category_ids", "family", "anchor_sizes"}``): the family and backbone are read from the
  state_dict itself (head / backbone keys, so a checkpoint is never silently loaded into the wrong
  model) and checked against the saved spec, which describes everything else
  (:func:`desc_from_experiment`); the model is rebuilt by
  :func:`synthloop.training.build.build_model`;
* pruned checkpoints written by :mod:`synthloop.deploy.prune` (``format`` :data:`PRUNED_FORMAT`):
  the unpruned model is rebuilt from ``desc`` and every conv / batch-norm layer is resized to its
  stored shape before the weights are loaded (:func:`apply_layer_shapes`), so no pickled code is
  needed.

:func:`load_graph` (``model.load_graph``: retrain a pruned model), :func:`read_init_weights`
(``model.init_from``: fine-tune a trained model) and :func:`load_teacher` (``distill.teacher``) read
checkpoints for a training run; :func:`resolve_checkpoint` turns a run
folder into the checkpoint to use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from synthloop.errors import SynthloopError
from synthloop.training.backbones import FeatureBackbone, build_backbone
from synthloop.training.build import DETECTNET_PARAMS, RCNN_FAMILIES, build_model, detectnet_params
from synthloop.training.checkpoint_io import read_checkpoint, save_checkpoint, state_dict_mismatch
from synthloop.training.detectnet import DetectNetV2, as_detectnet
from synthloop.training.errors import CheckpointError, SpecError
from synthloop.training.legacy import drop_legacy_classifier, is_legacy_classifier_key
from synthloop.training.maskrcnn import build_maskrcnn
from synthloop.training.postprocess import ClusterParams
from synthloop.training.rasterizer import RasterParams
from synthloop.training.rcnn import BackboneFPN, RCNNSettings
from synthloop.training.spec import ExperimentSpec

CHECKPOINT_SCHEMA = "synthloop.checkpoint/1"
Family = Literal["detectnet_v2", "mask_rcnn", "keypoint_rcnn"]
FAMILIES: tuple[str, ...] = ("detectnet_v2", "mask_rcnn", "keypoint_rcnn")
PRUNED_FORMAT = "synthloop.pruned/1"
_FAMILY_ALIASES = {
    "detectnet_v2": "detectnet_v2",
    "detectnetv2": "detectnet_v2",
    "detectnet": "detectnet_v2",
    "mask_rcnn": "mask_rcnn",
    "maskrcnn": "mask_rcnn",
    "mask-rcnn": "mask_rcnn",
    "keypoint_rcnn": "keypoint_rcnn",
    "keypointrcnn": "keypoint_rcnn",
    "keypoint-rcnn": "keypoint_rcnn",
}


class ModelDesc(BaseModel):
    """Everything needed to rebuild a model and decode its outputs (JSON-able, see module docstring).

    DetectNet_v2 fields: ``head_channels``, ``bbox_norm`` (pixels), ``raster`` / ``cluster`` /
    ``class_weights`` (one per class) and the loss settings used when fine-tuning. Mask R-CNN fields:
    ``anchor_sizes`` (one per FPN level), ``aspect_ratios``, ``min_size`` / ``max_size`` (None: the
    input size, so the network does not resize a fixed-size input), ``box_detections_per_img``,
    ``box_score_thresh``, ``mask_threshold`` (probability above which a mask pixel is on).
    ``spec``: the training :class:`~synthloop.training.spec.ExperimentSpec` (JSON) when known; the
    model is then rebuilt with :func:`synthloop.training.build.build_model` so every architecture
    option matches.
    """

    model_config = ConfigDict(extra="forbid")

    family: Family
    backbone: str
    class_names: list[str]
    category_ids: list[int]
    input_width: int = Field(gt=0)
    input_height: int = Field(gt=0)
    head_channels: int = 128
    bbox_norm: float = 35.0
    raster: list[RasterParams] | None = None
    cluster: list[ClusterParams] | None = None
    class_weights: list[float] | None = None
    cov_loss: Literal["bce", "l2"] = "bce"
    cov_loss_weight: float = 1.0
    bbox_loss_weight: float = 10.0
    cov_normalize: Literal["cells", "positives"] = "positives"
    anchor_sizes: list[int] = Field(default_factory=lambda: [32, 64, 128, 256])
    aspect_ratios: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    min_size: int | None = None
    max_size: int | None = None
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    mask_threshold: float = 0.5
    spec: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        """Object classes C (without background)."""
        return len(self.class_names)

    def label_to_category(self) -> dict[int, int]:
        """Training label (1..C) -> dataset category id."""
        return {i + 1: int(c) for i, c in enumerate(self.category_ids)}


@dataclass
class LoadedModel:
    """A rebuilt model (eval mode, CPU) with its description and where it came from.

    ``kind``: ``"training"`` or ``"pruned"``; ``spec``: the training spec dict saved in the checkpoint
    (None when absent); ``extra``: other checkpoint entries worth keeping (pruning report, epoch).
    """

    model: nn.Module
    desc: ModelDesc
    kind: str
    path: Path
    spec: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_family(name: str, path: str | None = None, where: str = "family") -> str:
    """``"DetectNet_v2"``, ``"detectnet"``, ``"maskrcnn"``... -> ``detectnet_v2`` / ``mask_rcnn``."""
    key = str(name).strip().lower().replace(" ", "_")
    if key not in _FAMILY_ALIASES:
        raise CheckpointError(
            f"unknown model family {name!r} (expected one of {', '.join(FAMILIES)})", path=path, where=where
        )
    return _FAMILY_ALIASES[key]


# ----------------------------------------------------------------------------------- building


def build_from_desc(desc: ModelDesc) -> nn.Module:
    """A freshly initialized (random weights) model of ``desc``'s architecture, eval mode, CPU."""
    if desc.spec is not None:
        spec = ExperimentSpec.model_validate(desc.spec)
        anchors = tuple(desc.anchor_sizes) if desc.family in RCNN_FAMILIES else None
        return build_model(spec, list(desc.class_names), anchors, pretrained=False).eval()
    backbone = build_backbone(desc.backbone, weights=None)
    if desc.family == "detectnet_v2":
        params = {k: getattr(desc, k) for k in DETECTNET_PARAMS}
        model: nn.Module = DetectNetV2(backbone, desc.num_classes, head_channels=desc.head_channels, **params)
    else:
        model = build_maskrcnn(
            backbone,
            desc.num_classes + 1,
            RCNNSettings(
                anchor_sizes=tuple(desc.anchor_sizes),
                aspect_ratios=tuple(desc.aspect_ratios),
                min_size=desc.min_size or min(desc.input_width, desc.input_height),
                max_size=desc.max_size or max(desc.input_width, desc.input_height),
                box_detections_per_img=desc.box_detections_per_img,
                box_score_thresh=desc.box_score_thresh,
            ),
        )
    return model.eval()


def feature_backbone(model: nn.Module) -> FeatureBackbone:
    """The :class:`~synthloop.training.backbones.FeatureBackbone` inside a DetectNetV2 or an R-CNN
    (under its :class:`~synthloop.training.rcnn.BackboneFPN`)."""
    bb = model.backbone
    inner = bb.body if isinstance(bb, BackboneFPN) else bb
    if not isinstance(inner, FeatureBackbone):
        raise TypeError(f"{type(model).__name__} has no FeatureBackbone (found {type(inner).__name__})")
    return inner


# ------------------------------------------------------------------ state_dict inspection


def family_of_state_dict(sd: Mapping[str, Any]) -> str | None:
    """``detectnet_v2`` / ``mask_rcnn`` / ``keypoint_rcnn`` from characteristic keys, None if none."""
    if "cov_head.weight" in sd and "bbox_head.weight" in sd:
        return "detectnet_v2"
    if any(k.startswith("roi_heads.keypoint_predictor.") for k in sd):
        return "keypoint_rcnn"
    if any(k.startswith("roi_heads.mask_predictor.") for k in sd):
        return "mask_rcnn"
    return None


def backbone_of_state_dict(sd: Mapping[str, Any], family: str) -> str | None:
    """Backbone name from the keys below the family's backbone prefix (None if unknown)."""
    prefix = "backbone." if family == "detectnet_v2" else "backbone.body."
    keys = [k[len(prefix) :] for k in sd if k.startswith(prefix)]
    if any(k.startswith("body.blocks.") for k in keys):
        return "efficientnet_lite0"
    if any(k.startswith("body.layer1.0.conv3.") for k in keys):
        return "resnet50"
    if any(k.startswith("body.layer3.") for k in keys):
        blocks = {k.split(".")[2] for k in keys if k.startswith("body.layer3.")}
        return "resnet34" if len(blocks) > 2 else "resnet18"
    return None


def num_classes_of_state_dict(sd: Mapping[str, Any], family: str) -> int:
    """Object classes C (without background) from the output layers' shapes."""
    if family == "detectnet_v2":
        return int(sd["cov_head.weight"].shape[0])
    return int(sd["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1


def desc_from_experiment(ck: Mapping[str, Any], family: str) -> ModelDesc:
    """:class:`ModelDesc` of a :mod:`synthloop.training.loop` checkpoint: ``classes``,
    ``category_ids``, ``anchor_sizes`` from the checkpoint, the rest from its ExperimentSpec."""
    try:
        exp = ExperimentSpec.model_validate(ck["spec"])
    except ValidationError as e:
        err = e.errors()[0]
        raise CheckpointError(
            f"invalid training spec in checkpoint: {err['msg']}",
            where="spec." + ".".join(str(p) for p in err["loc"]),
        ) from None
    classes = [str(c) for c in ck.get("classes") or []]
    ids = [int(c) for c in ck.get("category_ids") or range(1, len(classes) + 1)]
    m = exp.model
    d: dict[str, Any] = {
        "family": family,
        "backbone": exp.backbone.name,
        "class_names": classes,
        "category_ids": ids,
        "input_width": m.input_width,
        "input_height": m.input_height,
        "spec": exp.model_dump(mode="json"),
    }
    if family == "detectnet_v2":
        try:
            d.update(detectnet_params(m.detectnet, classes))
        except SpecError as e:
            raise CheckpointError(e.message, where=f"spec.{e.where}") from None
    else:
        mr = m.mask_rcnn
        d.update(
            anchor_sizes=list(ck.get("anchor_sizes") or mr.anchor_sizes or (32, 64, 128, 256)),
            aspect_ratios=list(mr.aspect_ratios),
            box_score_thresh=mr.box_score_thresh,
            box_detections_per_img=mr.detections_per_img,
        )
    return ModelDesc.model_validate(d)


# ---------------------------------------------------------------------- pruned layer shapes


def layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Shape attributes of every conv / batch-norm / linear layer (what pruning changes)."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {"in_channels": m.in_channels, "out_channels": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"num_features": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {"in_features": m.in_features, "out_features": m.out_features}
    return out


def apply_layer_shapes(model: nn.Module, shapes: Mapping[str, Mapping[str, int]]) -> nn.Module:
    """Resize layers in place to ``shapes`` (from :func:`layer_shapes`); parameters become empty
    tensors of the new shapes, to be filled by ``load_state_dict``."""
    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        m = modules.get(name)
        if is_legacy_classifier_key(name + ".") and not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue  # the unused Lite0 classifier, no longer built (synthloop.training.legacy)
        if m is None:
            raise CheckpointError(f"pruned checkpoint names layer {name!r} that the model lacks", where=name)
        for k, v in attrs.items():
            setattr(m, k, int(v))
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            m.weight = nn.Parameter(torch.empty(m.out_channels, m.in_channels // m.groups, kh, kw))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(m.out_channels))
        elif isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            if m.affine:
                m.weight, m.bias = nn.Parameter(torch.empty(n)), nn.Parameter(torch.empty(n))
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(n), torch.ones(n)
        elif isinstance(m, nn.Linear):
            m.weight = nn.Parameter(torch.empty(m.out_features, m.in_features))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.empty(m.out_features))
    return model


def shapes_from_state_dict(model: nn.Module, sd: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The :func:`layer_shapes` entries that ``sd``'s weights give ``model``'s conv / batch-norm /
    linear layers where they differ from the built ones: a model retrained from a pruned graph
    (``model.load_graph``) rebuilt from its training checkpoint alone, without the pruned file.
    Depthwise convs (groups = channels) stay depthwise; other grouped convs keep their groups."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        w = sd.get(f"{name}.weight")
        if not isinstance(w, torch.Tensor):
            continue
        if isinstance(m, nn.Conv2d) and w.dim() == 4:
            n_out, per_group = int(w.shape[0]), int(w.shape[1])
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            groups = n_out if depthwise else m.groups
            shape = {"in_channels": per_group * groups, "out_channels": n_out, "groups": groups}
            if shape != {"in_channels": m.in_channels, "out_channels": m.out_channels, "groups": m.groups}:
                out[name] = shape
        elif isinstance(m, nn.BatchNorm2d) and int(w.shape[0]) != m.num_features:
            out[name] = {"num_features": int(w.shape[0])}
        elif isinstance(m, nn.Linear) and w.dim() == 2 and tuple(w.shape) != (m.out_features, m.in_features):
            out[name] = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0])}
    return out


def refresh_out_channels(model: nn.Module, desc: ModelDesc | None = None) -> None:
    """Update ``out_channels_list`` of the feature backbone after pruning (one forward pass)."""
    bb = feature_backbone(model)
    with torch.no_grad():
        feats = bb(torch.zeros(1, 3, 64, 64))
    bb.out_channels_list = [int(f.shape[1]) for f in feats.values()]


# ----------------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A :mod:`synthloop.training.loop` checkpoint as written (schema :data:`CHECKPOINT_SCHEMA`)."""
    ck = read_checkpoint(path)
    if ck.get("schema") != CHECKPOINT_SCHEMA:
        raise CheckpointError("not a synthloop training checkpoint", path=str(path))
    return ck


def _load_weights(model: nn.Module, sd: Mapping[str, Any], path: str) -> None:
    own = model.state_dict()
    sd = drop_legacy_classifier(sd, own)
    problem = state_dict_mismatch(own, sd)
    if problem:
        raise CheckpointError(f"weights do not fit the model: {problem}", path=path, where="model")
    model.load_state_dict(dict(sd), strict=True)


def _check_family(found: str, expected: str | None, path: str) -> None:
    if expected is not None and found != normalize_family(expected):
        raise CheckpointError(
            f"checkpoint holds a {found} model, but a {normalize_family(expected)} model was asked for",
            path=path,
            where="family",
        )


def _load_pruned(ck: Mapping[str, Any], family: str | None, path: Path) -> LoadedModel:
    p = str(path)
    try:
        desc = ModelDesc.model_validate(ck["desc"])
    except (KeyError, ValidationError) as e:
        raise CheckpointError(
            f"pruned checkpoint has no valid model description ({e})".splitlines()[0], path=p, where="desc"
        ) from None
    _check_family(desc.family, family, p)
    model = apply_layer_shapes(build_from_desc(desc), ck.get("layer_shapes") or {})
    _load_weights(model, ck.get("model") or {}, p)
    refresh_out_channels(model, desc)
    return LoadedModel(model.eval(), desc, "pruned", path, ck.get("spec"), {"prune_report": ck.get("report")})


def _training_desc(ck: Mapping[str, Any], family: str | None, p: str) -> ModelDesc:
    """The description of a training checkpoint, its family and backbone read from the weights and
    checked against what its spec says."""
    sd = ck.get("model")
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("checkpoint has no 'model' state_dict", path=p, where="model")
    spec = ck.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("model"), Mapping):
        raise CheckpointError("not a synthloop training checkpoint (no training spec)", path=p, where="spec")
    found = family_of_state_dict(sd)
    if found is None:
        raise CheckpointError(
            "cannot tell the model family from the weights (neither DetectNet_v2 nor Mask R-CNN)",
            path=p,
            where="model",
        )
    _check_family(found, family, p)
    desc = desc_from_experiment(ck, found)
    named = desc.spec["model"]["family"] if desc.spec else found
    if named != found:
        raise CheckpointError(f"spec names a {named} model but the weights are {found}", path=p, where="spec")
    backbone = backbone_of_state_dict(sd, found)
    if backbone is None:
        raise CheckpointError("cannot tell the backbone from the weights", path=p, where="model")
    if desc.backbone != backbone:
        raise CheckpointError(
            f"spec names backbone {desc.backbone} but the weights are {backbone}",
            path=p,
            where="spec.backbone.name",
        )
    n = num_classes_of_state_dict(sd, found)
    if desc.num_classes != n:
        raise CheckpointError(
            f"checkpoint lists {desc.num_classes} classes but the weights have {n}", path=p, where="classes"
        )
    return desc


def load_model(path: str | os.PathLike, family: str | None = None) -> LoadedModel:
    """Rebuild the model stored at ``path`` (a training or pruned checkpoint), eval mode, CPU.

    ``family``: when given, a checkpoint of the other family raises :class:`CheckpointError`.
    A training checkpoint retrained from a pruned graph (``model.load_graph``) gets its layer widths
    from its own weights, so it stands alone (the pruned file the run read need not exist here).
    """
    p = str(path)
    ck = read_checkpoint(path, where="model")
    if ck.get("format") == PRUNED_FORMAT:
        return _load_pruned(ck, family, Path(path))
    desc = _training_desc(ck, family, p)
    sd = ck["model"]
    model = build_from_desc(desc)
    shapes = shapes_from_state_dict(model, sd)  # retrained from a pruned graph: its widths
    if shapes:
        apply_layer_shapes(model, shapes)
    _load_weights(model, sd, p)
    if shapes:
        refresh_out_channels(model, desc)
    extra: dict[str, Any] = {k: ck[k] for k in ("epoch", "iteration", "step") if k in ck}
    return LoadedModel(model.eval(), desc, "training", Path(path), dict(ck["spec"]), extra)


def save_training_checkpoint(
    path: str | os.PathLike, model: nn.Module, spec: Mapping[str, Any], **meta: Any
) -> Path:
    """Write ``{"model": state_dict, "spec": spec, **meta}`` atomically (the layout of
    :mod:`synthloop.training.loop` checkpoints, whose ``meta`` holds ``classes``, ``category_ids``,
    ``family``, ``anchor_sizes``; used by tests and tools that make models outside the loop)."""
    return save_checkpoint(path, {"model": model.state_dict(), "spec": dict(spec), **meta})


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file as is; a run folder (or its ``checkpoints/``) -> its ``best.pt``
    (``prefer="best"``) or ``last.pt``, the other one when the preferred one does not exist."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise CheckpointError("no such checkpoint file or run folder", path=str(p))
    order = ["best", "last"] if prefer == "best" else ["last", "best"]
    for stem in order:
        for cand in (p / "checkpoints" / f"{stem}.pt", p / f"{stem}.pt"):
            if cand.is_file():
                return cand
    raise CheckpointError("run folder holds no checkpoint (checkpoints/best.pt or last.pt)", path=str(p))


# ------------------------------------------------------------------- checkpoints a run reads


def _check_starting_model(
    desc: ModelDesc, spec: ExperimentSpec, classes: list[str], what: str, where: str
) -> None:
    """A run's starting model (``what``, read from the spec field ``where``) has the data's
    ``classes`` in label order and the spec's backbone; else :class:`SpecError`."""
    if list(desc.class_names) != list(classes):
        raise SpecError(f"{what}'s classes {desc.class_names} differ from the data's {classes}", where=where)
    if desc.backbone != spec.backbone.name:
        raise SpecError(
            f"{what} has a {desc.backbone} backbone, the spec names {spec.backbone.name}",
            where="backbone.name",
        )


def load_graph(spec: ExperimentSpec, classes: list[str]) -> nn.Module:
    """The pruned model of ``spec.model.load_graph`` (train mode), checked against the spec's family,
    backbone and ``classes``; the spec's backbone freezing applies (TLT's retrain spec)."""
    path = spec.model.load_graph
    assert path is not None
    try:
        loaded = load_model(path, spec.model.family)
    except SynthloopError as e:
        raise SpecError(f"cannot load the pruned graph: {e}", where="model.load_graph") from None
    if loaded.kind != "pruned":
        raise SpecError(
            f"{path} is not a pruned checkpoint (made by `synthloop prune`)", where="model.load_graph"
        )
    _check_starting_model(loaded.desc, spec, classes, "the pruned graph", "model.load_graph")
    feature_backbone(loaded.model).freeze(spec.backbone.freeze_blocks, spec.backbone.freeze_bn)
    return loaded.model.train()


@dataclass
class InitWeights:
    """The starting weights of ``model.init_from``: the checkpoint's state_dict and, for the R-CNN
    families, its anchor sizes in pixels (one per FPN level; None for DetectNet_v2); ``path`` is the
    file they were read from."""

    path: str
    state_dict: Mapping[str, torch.Tensor]
    anchor_sizes: tuple[int, ...] | None


def read_init_weights(spec: ExperimentSpec, classes: list[str]) -> InitWeights:
    """The training checkpoint of ``spec.model.init_from``, checked against the spec's family and
    backbone and against ``classes`` (the data's, in label order); errors name ``model.init_from``."""
    path = spec.model.init_from
    assert path is not None
    try:
        ck = read_checkpoint(path, where="model.init_from")
        if ck.get("format") == PRUNED_FORMAT:
            raise CheckpointError("a pruned checkpoint: start from it with model.load_graph", path=path)
        desc = _training_desc(ck, spec.model.family, path)
    except SynthloopError as e:
        raise SpecError(f"cannot start from the checkpoint: {e}", where="model.init_from") from None
    _check_starting_model(desc, spec, classes, "the checkpoint", "model.init_from")
    anchors = tuple(desc.anchor_sizes) if desc.family in RCNN_FAMILIES else None
    return InitWeights(path, ck["model"], anchors)


def load_init_weights(model: nn.Module, init: InitWeights) -> None:
    """Load ``init`` into ``model`` (built from the run's spec), every weight of both (strict);
    a shape or name mismatch raises :class:`SpecError` naming ``model.init_from``."""
    try:
        _load_weights(model, init.state_dict, init.path)
    except CheckpointError as e:
        raise SpecError(f"cannot start from the checkpoint: {e}", where="model.init_from") from None


def load_teacher(spec: ExperimentSpec, classes: list[str]) -> DetectNetV2:
    """The frozen DetectNet_v2 of ``spec.distill.teacher`` (eval mode, CPU, no gradients), checked
    against the experiment's classes, input size and bbox encoding (``bbox_norm``)."""
    assert spec.distill is not None
    path = spec.distill.teacher
    try:
        loaded = load_model(path, "detectnet_v2")
    except SynthloopError as e:
        raise SpecError(f"cannot load the teacher: {e}", where="distill.teacher") from None
    if list(loaded.desc.class_names) != list(classes):
        raise SpecError(
            f"the teacher's classes {loaded.desc.class_names} differ from the data's {classes}",
            where="distill.teacher",
        )
    size = (loaded.desc.input_width, loaded.desc.input_height)
    if size != (spec.model.input_width, spec.model.input_height):
        raise SpecError(
            f"the teacher's input size {size} differs from model.input_width/height "
            f"{(spec.model.input_width, spec.model.input_height)}",
            where="distill.teacher",
        )
    if loaded.desc.bbox_norm != spec.model.detectnet.bbox_norm:
        raise SpecError(
            f"the teacher encodes boxes with bbox_norm {loaded.desc.bbox_norm}, the spec with "
            f"{spec.model.detectnet.bbox_norm}: its bbox outputs would be wrong targets",
            where="distill.teacher",
        )
    teacher = as_detectnet(loaded.model.float().eval())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
