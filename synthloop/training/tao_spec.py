"""NVIDIA TAO DetectNet_v2 training specs (protobuf text format) <-> :class:`ExperimentSpec`.

:func:`spec_to_tao` writes the spec ``tao detectnet_v2 train -e`` takes, from a synthloop spec and
the dataset's classes (:func:`export_tao`: with the dataset itself);
:func:`synthloop.training.tao_import.tao_to_spec` reads one back, mapping every field with a
synthloop counterpart (:data:`MAPPING`) and listing every other field found in the file as
unmapped. The round trip synthloop -> TAO -> synthloop keeps every field of :data:`MAPPING`.

Field names and nesting follow TAO's published DetectNet_v2 spec (``dataset_config``,
``augmentation_config``, ``postprocessing_config``, ``model_config``, ``evaluation_config``,
``cost_function_config``, ``training_config``, ``bbox_rasterizer_config``). Per-class blocks are
keyed by class name; synthloop's ``"*"`` defaults are expanded to every class when writing.
Conversions: ``hue_rotation_max`` is in degrees (synthloop ``augment.hue`` is a fraction of the
circle); ``min_learning_rate`` is absolute (synthloop: ``lr * min_lr_ratio``); TAO's single
``deadzone_radius`` is every class's ``raster.deadzone_radius``; an L2 ``regularizer`` weight is
``optimizer.weight_decay``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloop.dataset.types import Dataset
from synthloop.exporters.kitti import kitti_type
from synthloop.exporters.tao import KITTI_DIR, round_to_stride, write_tao_dataset
from synthloop.prototext import Enum, Message, dumps
from synthloop.training.data import AugmentConfig
from synthloop.training.postprocess import ClusterParams
from synthloop.training.rasterizer import RasterParams
from synthloop.training.spec import ExperimentSpec

# TAO field (flattened, {c} = per class) -> synthloop field (dotted, {c} = per class key)
MAPPING: dict[str, str] = {
    "random_seed": "seed",
    "dataset_config.target_class_mapping[{k}]": "datasets.*.class_mapping",
    "augmentation_config.preprocessing.output_image_width": "model.input_width",
    "augmentation_config.preprocessing.output_image_height": "model.input_height",
    "augmentation_config.spatial_augmentation.hflip_probability": "augment.hflip_prob",
    "augmentation_config.spatial_augmentation.vflip_probability": "augment.vflip_prob",
    "augmentation_config.spatial_augmentation.zoom_min": "augment.zoom_min",
    "augmentation_config.spatial_augmentation.zoom_max": "augment.zoom_max",
    "augmentation_config.spatial_augmentation.translate_max_x": "augment.translate_max_x",
    "augmentation_config.spatial_augmentation.translate_max_y": "augment.translate_max_y",
    "augmentation_config.color_augmentation.hue_rotation_max": "augment.hue (x 1/360)",
    "augmentation_config.color_augmentation.saturation_shift_max": "augment.saturation",
    "augmentation_config.color_augmentation.contrast_scale_max": "augment.contrast",
    "postprocessing_config.target_class_config[{c}].clustering_config.coverage_threshold": (
        "model.detectnet.cluster.{c}.coverage_threshold"
    ),
    "postprocessing_config.target_class_config[{c}].clustering_config.dbscan_eps": (
        "model.detectnet.cluster.{c}.eps"
    ),
    "postprocessing_config.target_class_config[{c}].clustering_config.dbscan_min_samples": (
        "model.detectnet.cluster.{c}.min_samples"
    ),
    "postprocessing_config.target_class_config[{c}].clustering_config.dbscan_confidence_threshold": (
        "model.detectnet.cluster.{c}.min_confidence"
    ),
    "postprocessing_config.target_class_config[{c}].clustering_config.clustering_algorithm": (
        "(DBSCAN only)"
    ),
    "model_config.arch + num_layers": "backbone.name (resnet18/34/50)",
    "model_config.pretrained_model_file (.pt/.pth)": (
        "backbone.weights, or model.load_graph if load_graph, or model.init_from (a whole trained model)"
    ),
    "model_config.load_graph": "model.load_graph",
    "model_config.freeze_blocks": "backbone.freeze_blocks",
    "model_config.freeze_bn": "backbone.freeze_bn",
    "model_config.objective_set.bbox.scale": "model.detectnet.bbox_norm",
    "cost_function_config.target_classes[{c}]": "classes, in output order",
    "cost_function_config.target_classes[{c}].class_weight": "model.detectnet.class_weights.{c}",
    "cost_function_config.target_classes[{c}].objectives[cov].initial_weight": (
        "model.detectnet.cov_loss_weight"
    ),
    "cost_function_config.target_classes[{c}].objectives[bbox].initial_weight": (
        "model.detectnet.bbox_loss_weight"
    ),
    "training_config.batch_size_per_gpu": "batch_size",
    "training_config.num_epochs": "epochs",
    "training_config.checkpoint_interval": "checkpoint_interval",
    "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate": "optimizer.lr",
    "training_config.learning_rate.soft_start_annealing_schedule.min_learning_rate": (
        "lr_schedule.min_lr_ratio (x lr)"
    ),
    "training_config.learning_rate.soft_start_annealing_schedule.soft_start": "lr_schedule.soft_start",
    "training_config.learning_rate.soft_start_annealing_schedule.annealing": "lr_schedule.annealing",
    "training_config.regularizer.type + weight (L2)": "optimizer.weight_decay",
    "training_config.optimizer.adam": "optimizer.name: adam",
    "evaluation_config.validation_period_during_training": "validation_interval",
    "bbox_rasterizer_config.target_class_config[{c}].cov_center_x": "model.detectnet.raster.{c}.cov_center_x",
    "bbox_rasterizer_config.target_class_config[{c}].cov_center_y": "model.detectnet.raster.{c}.cov_center_y",
    "bbox_rasterizer_config.target_class_config[{c}].cov_radius_x": "model.detectnet.raster.{c}.cov_radius_x",
    "bbox_rasterizer_config.target_class_config[{c}].cov_radius_y": "model.detectnet.raster.{c}.cov_radius_y",
    "bbox_rasterizer_config.target_class_config[{c}].bbox_min_radius": (
        "model.detectnet.raster.{c}.bbox_min_radius"
    ),
    "bbox_rasterizer_config.deadzone_radius": "model.detectnet.raster.*.deadzone_radius",
}

# synthloop fields a TAO DetectNet_v2 spec cannot express (spec_to_tao notes them when not default)
NOT_IN_TAO = (
    "optimizer.name other than adam",
    "lr_schedule.name other than soft_start_annealing",
    "augment.brightness/blur/noise/jpeg/rotate90/affine_prob/color_prob",
    "model.detectnet.cluster.*.distance/confidence",
    "model.detectnet.cov_loss/cov_normalize",
    "mix, distributed, distill, amp, compile, cuda_graph, device, validation",
)

TORCH_WEIGHTS = (".pt", ".pth")  # pretrained_model_file suffixes synthloop can load
RASTER_FIELDS = ("cov_center_x", "cov_center_y", "cov_radius_x", "cov_radius_y", "bbox_min_radius")
ARCHS = {("resnet", 18): "resnet18", ("resnet", 34): "resnet34", ("resnet", 50): "resnet50"}


def _per_class(d: dict[str, Any], cls: str, default: Any) -> Any:
    return d.get(cls, d.get("*", default))


def _kv(key: str, value: Any) -> Message:
    return {"key": [key], "value": [value]}


def spec_to_tao(
    spec: ExperimentSpec,
    classes: list[str],
    data_sources: list[tuple[str, str]],
    image_extension: str = "png",
    label_map: dict[str, str] | None = None,
) -> tuple[Message, list[str]]:
    """The DetectNet_v2 training spec of ``spec`` for ``classes`` (output order) and
    ``data_sources`` ((tfrecords_path, image_directory_path) pairs). ``label_map``: label class in
    the KITTI files -> class (TAO's ``target_class_mapping``; default: the spec's class_mapping,
    then each class to itself). Returns the message and notes on synthloop settings TAO cannot
    express (non-default ones only)."""
    notes: list[str] = []
    if label_map is None:
        label_map = _default_label_map(spec, classes)
    dataset_config: Message = {
        "data_sources": [{"tfrecords_path": [t], "image_directory_path": [i]} for t, i in data_sources],
        "image_extension": [image_extension],
        "target_class_mapping": [_kv(k, v) for k, v in label_map.items()],
        "validation_fold": [0],
    }
    post, raster, targets, deadzone = _class_configs(spec, classes, notes)
    msg: Message = {
        "random_seed": [spec.seed],
        "dataset_config": [dataset_config],
        "augmentation_config": [_augmentation_config(spec)],
        "postprocessing_config": [{"target_class_config": post}],
        "model_config": [_model_config(spec, notes)],
        "evaluation_config": [_evaluation_config(spec, classes)],
        "cost_function_config": [
            {
                "target_classes": targets,
                "enable_autoweighting": [False],
                "max_objective_weight": [0.9999],
                "min_objective_weight": [0.0001],
            }
        ],
        "training_config": [_training_config(spec, notes)],
        "bbox_rasterizer_config": [{"target_class_config": raster, "deadzone_radius": [deadzone]}],
    }
    notes += _default_notes(spec)
    return msg, notes


def _default_label_map(spec: ExperimentSpec, classes: list[str]) -> dict[str, str]:
    """The datasets' class mappings, then each class to itself."""
    label_map: dict[str, str] = {}
    for entry in spec.datasets:
        label_map.update(entry.class_mapping)
    return label_map | {c: c for c in classes if c not in label_map}


def _augmentation_config(spec: ExperimentSpec) -> Message:
    """Input size (pixels) and the spatial and colour augmentation (hue in degrees)."""
    aug = spec.augment
    return {
        "preprocessing": [
            {
                "output_image_width": [spec.model.input_width],
                "output_image_height": [spec.model.input_height],
                "min_bbox_width": [1.0],
                "min_bbox_height": [1.0],
                "output_image_channel": [3],
            }
        ],
        "spatial_augmentation": [
            {
                "hflip_probability": [aug.hflip_prob],
                "vflip_probability": [aug.vflip_prob],
                "zoom_min": [aug.zoom_min],
                "zoom_max": [aug.zoom_max],
                "translate_max_x": [float(aug.translate_max_x)],
                "translate_max_y": [float(aug.translate_max_y)],
            }
        ],
        "color_augmentation": [
            {
                "hue_rotation_max": [aug.hue * 360.0],
                "saturation_shift_max": [aug.saturation],
                "contrast_scale_max": [aug.contrast],
                "contrast_center": [0.5],
            }
        ],
    }


def _class_configs(
    spec: ExperimentSpec, classes: list[str], notes: list[str]
) -> tuple[list[Message], list[Message], list[Message], float]:
    """Per class: the clustering (post-processing), rasterizer and cost-function entries, and
    the one deadzone radius TAO has (the first class's; a note when the classes differ)."""
    dn = spec.model.detectnet
    post: list[Message] = []
    raster: list[Message] = []
    targets: list[Message] = []
    deadzones = set()
    for c in classes:
        cp: ClusterParams = _per_class(dn.cluster, c, ClusterParams())
        rp: RasterParams = _per_class(dn.raster, c, RasterParams())
        deadzones.add(rp.deadzone_radius)
        clustering = {
            "clustering_algorithm": [Enum("DBSCAN")],
            "coverage_threshold": [cp.coverage_threshold],
            "dbscan_eps": [cp.eps],
            "dbscan_min_samples": [cp.min_samples],
            "dbscan_confidence_threshold": [cp.min_confidence],
            "minimum_bounding_box_height": [0],
        }
        post.append(_kv(c, {"clustering_config": [clustering]}))
        raster.append(_kv(c, {k: [getattr(rp, k)] for k in RASTER_FIELDS}))
        objectives = [
            {"name": [name], "initial_weight": [weight], "weight_target": [weight]}
            for name, weight in (("cov", dn.cov_loss_weight), ("bbox", dn.bbox_loss_weight))
        ]
        targets.append(
            {
                "name": [c],
                "class_weight": [float(_per_class(dn.class_weights, c, 1.0))],
                "coverage_foreground_weight": [0.05],
                "objectives": objectives,
            }
        )
    if len(deadzones) > 1:
        notes.append(
            "model.detectnet.raster.*.deadzone_radius differs by class; TAO has one (the first is used)"
        )
    return post, raster, targets, next(iter(deadzones), 0.67)


def _model_config(spec: ExperimentSpec, notes: list[str]) -> Message:
    """Backbone arch and depth (resnet 18 with a note where TAO has none), pretrained weights or
    pruned graph, frozen blocks and the bbox normalisation."""
    bb = spec.backbone
    arch = {v: k for k, v in ARCHS.items()}.get(bb.name)
    if arch is None:
        notes.append(f"backbone.name {bb.name!r} has no TAO DetectNet_v2 arch (resnet 18 written)")
        arch = ("resnet", 18)
    model_config: Message = {"arch": [arch[0]], "num_layers": [arch[1]]}
    own = bb.weights if bb.weights not in (None, "package") else None
    pretrained = spec.model.load_graph or spec.model.init_from or own
    if pretrained:
        model_config["pretrained_model_file"] = [pretrained]
    model_config["load_graph"] = [spec.model.load_graph is not None]
    if bb.freeze_blocks:
        model_config["freeze_blocks"] = list(bb.freeze_blocks)
    return model_config | {
        "freeze_bn": [bb.freeze_bn],
        "use_batch_norm": [True],
        "all_projections": [True],
        "objective_set": [
            {"bbox": [{"scale": [spec.model.detectnet.bbox_norm], "offset": [0.5]}], "cov": [{}]}
        ],
    }


def _evaluation_config(spec: ExperimentSpec, classes: list[str]) -> Message:
    """Validation period, IoU 0.5 per class, boxes of any size, integrated AP."""
    any_size = {
        "minimum_height": [1],
        "maximum_height": [9999],
        "minimum_width": [1],
        "maximum_width": [9999],
    }
    return {
        "validation_period_during_training": [spec.validation_interval or 10],
        "first_validation_epoch": [1],
        "minimum_detection_ground_truth_overlap": [_kv(c, 0.5) for c in classes],
        "evaluation_box_config": [_kv(c, dict(any_size)) for c in classes],
        "average_precision_mode": [Enum("INTEGRATE")],
    }


def _training_config(spec: ExperimentSpec, notes: list[str]) -> Message:
    opt, sched = spec.optimizer, spec.lr_schedule
    if spec.epochs is None:
        notes.append("iterations: TAO counts epochs (num_epochs: 1 written)")
    schedule = {
        "min_learning_rate": [opt.lr * sched.min_lr_ratio],
        "max_learning_rate": [opt.lr],
        "soft_start": [sched.soft_start],
        "annealing": [sched.annealing],
    }
    return {
        "batch_size_per_gpu": [spec.batch_size],
        "num_epochs": [spec.epochs or 1],
        "learning_rate": [{"soft_start_annealing_schedule": [schedule]}],
        "regularizer": [{"type": [Enum("L2")], "weight": [opt.weight_decay]}],
        "optimizer": [{"adam": [{"epsilon": [1e-8], "beta1": [0.9], "beta2": [0.999]}]}],
        "cost_scaling": [{"initial_exponent": [20.0], "increment": [0.005], "decrement": [1.0]}],
        "checkpoint_interval": [spec.checkpoint_interval],
    }


def _default_notes(spec: ExperimentSpec) -> list[str]:
    notes = []
    if spec.optimizer.name != "adam":
        notes.append(f"optimizer.name {spec.optimizer.name!r}: TAO DetectNet_v2 trains with adam (written)")
    if spec.lr_schedule.name != "soft_start_annealing":
        notes.append(f"lr_schedule.name {spec.lr_schedule.name!r}: TAO uses soft_start_annealing (written)")
    base = AugmentConfig()
    for k in ("brightness", "blur_prob", "noise_prob", "jpeg_prob", "rotate90_prob"):
        if getattr(spec.augment, k) != getattr(base, k):
            notes.append(f"augment.{k} has no TAO counterpart")
    dn = spec.model.detectnet
    if any(p.distance != "iou" or p.confidence != "max" for p in dn.cluster.values()):
        notes.append("model.detectnet.cluster distance/confidence have no TAO counterpart")
    return notes


# ------------------------------------------------------------------------------- export tao

TRAIN_SPEC = "detectnet_v2_train.txt"


@dataclass
class TaoExport:
    """What :func:`export_tao` wrote: the folder, the image size, and notes on synthloop settings
    the TAO spec cannot express."""

    dst: Path
    width: int
    height: int
    notes: list[str]


def export_tao(
    ds: Dataset,
    dst: str | Path,
    spec: ExperimentSpec | None = None,
    size: tuple[int, int] | None = None,
    source: str = "dataset",
) -> TaoExport:
    """Write ``ds`` for TAO DetectNet_v2 (:mod:`synthloop.exporters.tao`) plus the training spec
    :data:`TRAIN_SPEC` from ``spec`` (default: a default spec training on ``source``). The size is
    ``size`` (width, height), else the spec's input size, else the first frame's, rounded to the
    nearest multiples of 16."""
    if spec is None:
        spec = ExperimentSpec.model_validate({"datasets": [{"kind": "synthetic", "paths": [source]}]})
        want = size or ((ds.frames[0].width, ds.frames[0].height) if ds.frames else (640, 480))
    else:
        want = size or (spec.model.input_width, spec.model.input_height)
    w, h = round_to_stride(want[0]), round_to_stride(want[1])
    notes = [] if (w, h) == tuple(want) else [f"size {want[0]}x{want[1]} rounded to {w}x{h} (x16)"]
    data = spec.model_dump(mode="json")
    data["model"]["input_width"], data["model"]["input_height"] = w, h
    spec = ExperimentSpec.model_validate(data)
    dst = Path(dst).absolute()
    mapping: dict[str, str] = {}
    for entry in spec.datasets:
        mapping.update(entry.class_mapping)
    # TAO reads KITTI class names lower-cased (kitti_type); the targets are the experiment's classes
    label_map = {kitti_type(c.name): mapping.get(c.name, c.name) for c in ds.categories}
    classes = list(dict.fromkeys(label_map.values()))
    sources = [(str(dst / "tfrecords" / "kitti*"), str(dst / KITTI_DIR))]
    msg, spec_notes = spec_to_tao(spec, classes, sources, "png", label_map)
    write_tao_dataset(ds, dst, w, h, {TRAIN_SPEC: dumps(msg)})
    return TaoExport(dst, w, h, notes + spec_notes)
