"""From a validated :class:`ExperimentSpec` to datasets and a model (no training here).

:func:`prepare_data` loads every dataset the spec names, checks that class names agree (after each
dataset's ``class_mapping``) and relabels all frames to the experiment's labels 1..C. :func:`build_model`
makes the detector for those classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Category, Dataset
from synthloop.errors import SynthloopError
from synthloop.importers.coco import load_coco
from synthloop.training.backbones import build_backbone
from synthloop.training.detectnet import DetectNetV2
from synthloop.training.errors import SpecError
from synthloop.training.keypointrcnn import build_keypointrcnn
from synthloop.training.maskrcnn import anchor_sizes_from_boxes, build_maskrcnn
from synthloop.training.postprocess import ClusterParams
from synthloop.training.rasterizer import RasterParams
from synthloop.training.rcnn import RCNNSettings
from synthloop.training.spec import DetectNetParams, ExperimentSpec, RealData, expand_synthetic_paths

# families built on torchvision's GeneralizedRCNN (transform, RPN, RoI heads, data anchor sizes)
RCNN_FAMILIES: tuple[str, ...] = ("mask_rcnn", "keypoint_rcnn")


@dataclass
class PreparedData:
    """Datasets relabelled to the experiment's classes (``categories`` ids 1..C, names canonical).

    ``category_ids``: for each label 1..C, the category id of the reference dataset (the real one if
    any, else the first synthetic one) - what predictions report.
    """

    classes: list[str]
    category_ids: list[int]
    synthetic: Dataset | None
    real: Dataset | None
    validation: Dataset | None

    @property
    def categories(self) -> list[Category]:
        return [Category(id=i + 1, name=n) for i, n in enumerate(self.classes)]


def _load_real(entry: RealData, source: str, where: str) -> Dataset:
    if not Path(entry.coco_json).is_file():
        raise SpecError(f"COCO json {entry.coco_json!r} not found", path=source, where=f"{where}.coco_json")
    if entry.images_dir is not None and not Path(entry.images_dir).is_dir():
        raise SpecError(
            f"images folder {entry.images_dir!r} not found", path=source, where=f"{where}.images_dir"
        )
    return load_coco(entry.coco_json, entry.images_dir)


def _mapped_names(ds: Dataset, mapping: dict[str, str], source: str, where: str) -> dict[int, str]:
    names = {c.name for c in ds.categories}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise SpecError(
            f"class_mapping names {unknown} are not classes of this dataset (it has {sorted(names)})",
            path=source,
            where=f"{where}.class_mapping",
        )
    return {c.id: mapping.get(c.name, c.name) for c in ds.categories}


def _relabel(ds: Dataset, id_to_name: dict[int, str], classes: list[str], name: str) -> Dataset:
    label = {cid: classes.index(n) + 1 for cid, n in id_to_name.items()}
    frames = [
        dataclasses.replace(
            f, objects=[dataclasses.replace(o, category_id=label[o.category_id]) for o in f.objects]
        )
        for f in ds.frames
    ]
    # a class keeps its keypoint names, skeleton and OKS sigmas (Keypoint R-CNN targets, evaluation)
    src = {c.name: c for c in ds.categories}
    src.update({n: ds.category_by_id()[cid] for cid, n in id_to_name.items() if cid in ds.category_by_id()})
    cats = [
        dataclasses.replace(src[n], id=i + 1, name=n) if n in src else Category(id=i + 1, name=n)
        for i, n in enumerate(classes)
    ]
    return Dataset(categories=cats, frames=frames, name=name, root=ds.root, info=ds.info)


def prepare_data(spec: ExperimentSpec, source: str = "<spec>") -> PreparedData:
    """Load and check the spec's datasets. Errors name ``source`` and the spec field."""
    loaded = _load_entries(spec, source)
    classes, ref_sorted = _common_classes(loaded, source)
    synth_parts = [_relabel(x.ds, x.names, classes, x.ds.name) for x in loaded if x.kind == "synthetic"]
    real_parts = [_relabel(x.ds, x.names, classes, x.ds.name) for x in loaded if x.kind == "real"]
    validation = None
    if spec.validation is not None:
        vds = _load_real(spec.validation, source, "validation")
        vnames = _mapped_names(vds, spec.validation.class_mapping, source, "validation")
        if set(vnames.values()) != set(classes):
            raise SpecError(
                f"validation classes {sorted(set(vnames.values()))} differ from training classes {classes}",
                path=source,
                where="validation.class_mapping",
            )
        validation = _relabel(vds, vnames, classes, vds.name)
    return PreparedData(
        classes=classes,
        category_ids=[cid for cid, _ in ref_sorted],
        synthetic=_merged(synth_parts, "synthetic"),
        real=_merged(real_parts, "real"),
        validation=validation,
    )


@dataclass(frozen=True)
class _Loaded:
    """One loaded dataset of the spec: its kind, its spec field, and its category id -> class name
    (after the entry's class_mapping)."""

    kind: str
    where: str
    ds: Dataset
    names: dict[int, str]


def _load_entries(spec: ExperimentSpec, source: str) -> list[_Loaded]:
    """Every enabled dataset of ``spec.datasets`` (each folder of a synthetic entry), loaded."""
    loaded: list[_Loaded] = []
    for i, entry in enumerate(spec.datasets):
        where = f"datasets.{i}"
        if entry.kind == "synthetic":
            if not entry.enabled:
                continue
            for folder in expand_synthetic_paths(entry, i, source):
                try:
                    ds = load_dataset(folder)
                except SynthloopError as e:
                    raise SpecError(
                        f"cannot load dataset folder {str(folder)!r}: {e}",
                        path=source,
                        where=f"{where}.paths",
                    ) from None
                loaded.append(
                    _Loaded("synthetic", where, ds, _mapped_names(ds, entry.class_mapping, source, where))
                )
        else:
            ds = _load_real(entry, source, where)
            if len(ds.frames) == 0:
                raise SpecError(
                    "the real train split is empty (no images)", path=source, where=f"{where}.coco_json"
                )
            loaded.append(_Loaded("real", where, ds, _mapped_names(ds, entry.class_mapping, source, where)))
    if not loaded:
        raise SpecError("no enabled dataset", path=source, where="datasets")
    return loaded


def _common_classes(loaded: list[_Loaded], source: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The class names (in the reference dataset's id order: the first real one, else the first)
    and the reference's sorted (id, name) pairs; every dataset must name the same classes."""
    ref = next((x for x in loaded if x.kind == "real"), loaded[0])
    ref_sorted = sorted(ref.names.items())
    classes = [n for _, n in ref_sorted]
    if len(set(classes)) != len(classes):
        raise SpecError(
            f"class_mapping maps two classes to one name ({classes})",
            path=source,
            where=f"{ref.where}.class_mapping",
        )
    for x in loaded:
        got = set(x.names.values())
        if got != set(classes) or len(got) != len(x.names):
            only_here = sorted(got - set(classes))
            only_ref = sorted(set(classes) - got)
            raise SpecError(
                f"class names differ between {x.kind} dataset {x.ds.name!r} "
                f"and {ref.kind} dataset {ref.ds.name!r}: "
                f"only in {x.kind}: {only_here}, only in {ref.kind}: {only_ref}; "
                f"add class_mapping ({{{x.kind}_name: {ref.kind}_name}}) to {x.where}",
                path=source,
                where=f"{x.where}.class_mapping",
            )
    return classes, ref_sorted


def _merged(parts: list[Dataset], name: str) -> Dataset | None:
    """One dataset of all ``parts``' frames (they share categories after relabelling); None if none."""
    if not parts:
        return None
    return Dataset(categories=parts[0].categories, frames=[f for p in parts for f in p.frames], name=name)


def box_sizes(datasets: list[Dataset], width: int, height: int) -> np.ndarray:
    """sqrt(w * h) of every non-crowd box, in network-input pixels (frames resized to width x height)."""
    out = []
    for ds in datasets:
        for f in ds.frames:
            sx, sy = width / f.width, height / f.height
            for o in f.objects:
                if not o.iscrowd:
                    out.append(
                        np.sqrt(max(o.bbox[2] - o.bbox[0], 0) * sx * max(o.bbox[3] - o.bbox[1], 0) * sy)
                    )
    return np.asarray(out)


DETECTNET_PARAMS = (
    "raster",
    "cluster",
    "class_weights",
    "cov_loss",
    "cov_loss_weight",
    "bbox_loss_weight",
    "bbox_norm",
    "cov_normalize",
)
"""The DetectNetV2 keyword arguments a spec sets (and a :class:`ModelDesc` stores), by name."""


def _per_class(table: dict[str, Any], classes: list[str], default: Any) -> list[Any]:
    """Per-class list from a dict keyed by class name (``"*"``: every other class)."""
    fallback = table.get("*", default)
    return [table.get(c, fallback) for c in classes]


def detectnet_params(d: DetectNetParams, classes: list[str]) -> dict[str, Any]:
    """The :data:`DETECTNET_PARAMS` of spec section ``model.detectnet`` for ``classes`` (labels 1..C):
    per-class ``raster`` / ``cluster`` / ``class_weights`` lists, the loss settings and ``bbox_norm``
    (pixels). Raises :class:`SpecError` for per-class settings naming an unknown class."""
    unknown = sorted((set(d.raster) | set(d.cluster) | set(d.class_weights)) - set(classes) - {"*"})
    if unknown:
        raise SpecError(
            f"per-class settings for unknown classes {unknown} (classes: {classes})", where="model.detectnet"
        )
    return {
        "raster": _per_class(d.raster, classes, RasterParams()),
        "cluster": _per_class(d.cluster, classes, ClusterParams()),
        "class_weights": _per_class(d.class_weights, classes, 1.0),
        **{k: getattr(d, k) for k in DETECTNET_PARAMS[3:]},
    }


def build_model(
    spec: ExperimentSpec,
    classes: list[str],
    anchor_sizes: tuple[int, ...] | None = None,
    pretrained: bool = True,
) -> nn.Module:
    """A fresh detector of ``spec`` for ``classes`` (labels 1..C). ``pretrained=False`` skips loading
    the backbone weights file (a checkpoint's state_dict follows). ``model.load_graph`` is not read
    here: a run retrained from a pruned graph starts from
    :func:`synthloop.training.checkpoints.load_graph` instead (the caller picks)."""
    b = spec.backbone
    backbone = build_backbone(b.name, b.weights if pretrained else None, b.freeze_blocks, b.freeze_bn)
    m = spec.model
    if m.family == "detectnet_v2":
        return DetectNetV2(backbone, len(classes), **detectnet_params(m.detectnet, classes))
    r = m.mask_rcnn
    settings = RCNNSettings(
        anchor_sizes=tuple(anchor_sizes or r.anchor_sizes or (32, 64, 128, 256)),
        aspect_ratios=tuple(r.aspect_ratios),
        min_size=min(m.input_width, m.input_height),
        max_size=max(m.input_width, m.input_height),
        box_detections_per_img=r.detections_per_img,
        box_score_thresh=r.box_score_thresh,
        rpn_batch_size_per_image=r.rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=r.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=r.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=r.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=r.rpn_post_nms_top_n_test,
        box_batch_size_per_image=r.box_batch_size_per_image,
        fpn_channels=r.fpn_channels,
        box_head_dim=r.box_head_dim,
    )
    if m.family == "keypoint_rcnn":
        k = m.keypoint_rcnn
        return build_keypointrcnn(
            backbone, len(classes) + 1, settings, num_keypoints=k.num_keypoints, keypoint_head_dim=k.head_dim
        )
    return build_maskrcnn(
        backbone,
        len(classes) + 1,
        settings,
        mask_head_dim=r.mask_head_dim,
        batched_heads=r.batched_heads,
        matrix_nms=r.use_matrix_nms,
    )


def data_anchor_sizes(spec: ExperimentSpec, data: PreparedData) -> tuple[int, ...]:
    """Anchor sizes for Mask R-CNN: the spec's, else quantiles of the training boxes."""
    if spec.model.mask_rcnn.anchor_sizes:
        return tuple(spec.model.mask_rcnn.anchor_sizes)
    parts = [d for d in (data.synthetic, data.real) if d is not None]
    return anchor_sizes_from_boxes(box_sizes(parts, spec.model.input_width, spec.model.input_height))
