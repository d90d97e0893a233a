"""Read an NVIDIA TAO DetectNet_v2 training spec (protobuf text format) into synthloop's
:class:`~synthloop.training.spec.ExperimentSpec`: every field of
:data:`synthloop.training.tao_spec.MAPPING` is mapped (same conversions as the writer), every other
field found in the file is listed as unmapped (``path = value``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthloop.prototext import Message, first, loads
from synthloop.training.errors import SpecError
from synthloop.training.spec import ExperimentSpec, parse_spec
from synthloop.training.tao_spec import ARCHS, RASTER_FIELDS, TORCH_WEIGHTS


def flatten(msg: Message, prefix: str = "") -> dict[str, Any]:
    """Leaf fields as ``{path: value}``: map entries (``key``/``value``) and named entries
    (``name``) are indexed by key/name (``target_class_config[car].clustering_config.dbscan_eps``),
    other repeated messages by position; repeated scalars become lists."""
    out: dict[str, Any] = {}
    for name, values in msg.items():
        path = f"{prefix}{name}"
        if values and all(not isinstance(v, dict) for v in values):
            out[path] = values[0] if len(values) == 1 else list(values)
            continue
        for i, v in enumerate(values):
            if not isinstance(v, dict):
                out[f"{path}[{i}]"] = v
            elif "key" in v:
                val = first(v, "value")
                key = f"{path}[{first(v, 'key')}]"
                if isinstance(val, dict):
                    out.update(flatten(val, key + ".") or {key: {}})
                else:
                    out[key] = val
            elif "name" in v and name in ("target_classes", "objectives"):
                rest = {k: w for k, w in v.items() if k != "name"}
                key = f"{path}[{first(v, 'name')}]"
                out.update(flatten(rest, key + ".") or {key: {}})
            else:
                out.update(flatten(v, f"{path}[{i}]." if len(values) > 1 else f"{path}.") or {path: {}})
    return out


@dataclass
class TaoImport:
    """A TAO spec read into synthloop: the spec (as plain data, validated by :meth:`spec`), the
    classes in output order, and the TAO fields without a synthloop counterpart (``path = value``)."""

    data: dict[str, Any]
    classes: list[str]
    unmapped: list[str] = field(default_factory=list)
    source: str = "<tao spec>"

    def spec(self) -> ExperimentSpec:
        return parse_spec(self.data, self.source)


class _Flat:
    def __init__(self, flat: dict[str, Any]):
        self.rest = dict(flat)

    def take(self, path: str, default: Any = None) -> Any:
        return self.rest.pop(path, default)

    def take_prefix(self, prefix: str) -> dict[str, Any]:
        keys = [k for k in self.rest if k.startswith(prefix)]
        return {k[len(prefix) :]: self.rest.pop(k) for k in keys}


def _set(d: dict[str, Any], dotted: str | list[str], value: Any) -> None:
    """``d[a][b][c] = value`` for ``"a.b.c"`` (or ``[a, b, c]``: keys that may contain dots); None skips."""
    if value is None:
        return
    *parents, leaf = dotted.split(".") if isinstance(dotted, str) else dotted
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def _classes(f: _Flat, msg: Message) -> list[str]:
    cost = first(msg, "cost_function_config", {})
    names = [first(t, "name") for t in cost.get("target_classes", [])]
    if names:
        return [str(n) for n in names]
    mapping = first(msg, "dataset_config", {}).get("target_class_mapping", [])
    return list(dict.fromkeys(str(first(m, "value")) for m in mapping))


def tao_to_spec(text: str, source: str = "<tao spec>", datasets: list[str] | None = None) -> TaoImport:
    """Read a TAO DetectNet_v2 training spec (see module docstring). ``datasets``: synthloop dataset
    folders or COCO .json files to train on (TAO's TFRecords cannot be read); None = each
    ``data_sources.image_directory_path`` as a dataset folder."""
    msg = loads(text, source)
    f = _Flat(flatten(msg))
    classes = _classes(f, msg)
    d: dict[str, Any] = {"name": Path(source).stem or "tao"}
    _set(d, "seed", f.take("random_seed"))
    class_mapping = {}
    for key, value in f.take_prefix("dataset_config.target_class_mapping[").items():
        k = key[:-1]
        if k != value:
            class_mapping[k] = value
    d["datasets"] = _datasets(f, datasets, class_mapping)
    _augment(f, d)
    _model(f, d, classes, source)
    _training(f, d)
    _set(d, "validation_interval", f.take("evaluation_config.validation_period_during_training"))
    unmapped = [f"{k} = {v}" for k, v in f.rest.items()]
    return TaoImport(d, classes, unmapped, source)


def _datasets(f: _Flat, given: list[str] | None, class_mapping: dict[str, str]) -> list[dict[str, Any]]:
    if given is None:
        given = []
        for k in list(f.rest):
            if k.startswith("dataset_config.data_sources") and k.endswith("image_directory_path"):
                given.append(str(f.take(k)))
    out = []
    for p in given:
        if str(p).endswith(".json"):
            out.append({"kind": "real", "coco_json": str(p), "class_mapping": class_mapping})
        else:
            out.append({"kind": "synthetic", "paths": [str(p)], "class_mapping": class_mapping})
    return out


def _augment(f: _Flat, d: dict[str, Any]) -> None:
    pre = "augmentation_config.preprocessing."
    _set(d, "model.input_width", f.take(pre + "output_image_width"))
    _set(d, "model.input_height", f.take(pre + "output_image_height"))
    sp = "augmentation_config.spatial_augmentation."
    for tao, ours in (
        ("hflip_probability", "hflip_prob"),
        ("vflip_probability", "vflip_prob"),
        ("zoom_min", "zoom_min"),
        ("zoom_max", "zoom_max"),
    ):
        _set(d, f"augment.{ours}", f.take(sp + tao))
    for axis in ("x", "y"):
        v = f.take(f"{sp}translate_max_{axis}")
        _set(d, f"augment.translate_max_{axis}", None if v is None else int(round(v)))
    col = "augmentation_config.color_augmentation."
    hue = f.take(col + "hue_rotation_max")
    _set(d, "augment.hue", None if hue is None else hue / 360.0)
    _set(d, "augment.saturation", f.take(col + "saturation_shift_max"))
    _set(d, "augment.contrast", f.take(col + "contrast_scale_max"))


def _model(f: _Flat, d: dict[str, Any], classes: list[str], source: str) -> None:
    m = "model_config."
    arch, layers = f.rest.get(m + "arch"), f.rest.get(m + "num_layers")
    if isinstance(arch, str) and isinstance(layers, int) and (arch, layers) in ARCHS:
        f.take(m + "arch")
        f.take(m + "num_layers")
        _set(d, "backbone.name", ARCHS[(arch, layers)])
    pretrained = f.rest.get(m + "pretrained_model_file")
    if pretrained and Path(str(pretrained)).suffix.lower() not in TORCH_WEIGHTS:
        pretrained = None  # TAO's own .hdf5 / .tlt weights: listed as unmapped, not loadable here
    else:
        f.take(m + "pretrained_model_file")
    if f.take(m + "load_graph", False):
        _set(d, "model.load_graph", pretrained)
    else:
        d.setdefault("backbone", {})["weights"] = pretrained or None
    blocks = f.take(m + "freeze_blocks")
    if blocks is not None:
        _set(
            d, "backbone.freeze_blocks", [int(b) for b in (blocks if isinstance(blocks, list) else [blocks])]
        )
    _set(d, "backbone.freeze_bn", f.take(m + "freeze_bn"))
    dn = "model.detectnet."
    _set(d, dn + "bbox_norm", f.take(m + "objective_set.bbox.scale"))
    deadzone = f.take("bbox_rasterizer_config.deadzone_radius")
    for c in classes:
        pc = f"postprocessing_config.target_class_config[{c}].clustering_config."
        algo = f.rest.get(pc + "clustering_algorithm", "DBSCAN")
        if algo != "DBSCAN":
            raise SpecError(
                f"clustering_algorithm {algo} is not supported (DBSCAN only)", path=source, where=pc
            )
        f.take(pc + "clustering_algorithm")
        cluster = {
            "coverage_threshold": f.take(pc + "coverage_threshold"),
            "eps": f.take(pc + "dbscan_eps"),
            "min_samples": f.take(pc + "dbscan_min_samples"),
            "min_confidence": f.take(pc + "dbscan_confidence_threshold"),
        }
        _set(
            d,
            ["model", "detectnet", "cluster", c],
            {k: v for k, v in cluster.items() if v is not None} or None,
        )
        rc = f"bbox_rasterizer_config.target_class_config[{c}]."
        raster = {k: f.take(rc + k) for k in RASTER_FIELDS}
        raster["deadzone_radius"] = deadzone
        _set(
            d, ["model", "detectnet", "raster", c], {k: v for k, v in raster.items() if v is not None} or None
        )
        tc = f"cost_function_config.target_classes[{c}]."
        _set(d, ["model", "detectnet", "class_weights", c], f.take(tc + "class_weight"))
        for obj, ours in (("cov", "cov_loss_weight"), ("bbox", "bbox_loss_weight")):
            w = f.take(f"{tc}objectives[{obj}].initial_weight")
            if w is not None and (d.get("model", {}).get("detectnet", {}).get(ours) in (None, w)):
                _set(d, dn + ours, w)
            elif w is not None:  # synthloop has one weight for all classes: keep the first, list others
                f.rest[f"{tc}objectives[{obj}].initial_weight"] = w


def _training(f: _Flat, d: dict[str, Any]) -> None:
    t = "training_config."
    _set(d, "batch_size", f.take(t + "batch_size_per_gpu"))
    _set(d, "epochs", f.take(t + "num_epochs"))
    _set(d, "checkpoint_interval", f.take(t + "checkpoint_interval"))
    s = t + "learning_rate.soft_start_annealing_schedule."
    lr_max, lr_min = f.take(s + "max_learning_rate"), f.take(s + "min_learning_rate")
    if lr_max is not None:
        _set(d, "optimizer.lr", lr_max)
        _set(d, "lr_schedule.name", "soft_start_annealing")
        if lr_min is not None and lr_max > 0:
            _set(d, "lr_schedule.min_lr_ratio", lr_min / lr_max)
    _set(d, "lr_schedule.soft_start", f.take(s + "soft_start"))
    _set(d, "lr_schedule.annealing", f.take(s + "annealing"))
    if f.rest.get(t + "regularizer.type") == "L2":
        f.take(t + "regularizer.type")
        _set(d, "optimizer.weight_decay", f.take(t + "regularizer.weight"))
    if any(k.startswith(t + "optimizer.adam") for k in f.rest):
        _set(d, "optimizer.name", "adam")
