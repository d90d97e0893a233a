"""TAO DetectNet_v2 specs both ways: the text-format parser/writer, TAO -> synthloop mapping, the
round trip synthloop -> TAO -> synthloop, and ``export tao`` / ``spec from-tao``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from synthloop.cli import app
from synthloop.exporters.tao import CONVERT_SPEC
from synthloop.prototext import Enum, ProtoTextError, dumps, loads
from synthloop.training.postprocess import ClusterParams
from synthloop.training.rasterizer import RasterParams
from synthloop.training.spec import ExperimentSpec
from synthloop.training.tao_import import tao_to_spec
from synthloop.training.tao_spec import TRAIN_SPEC, export_tao, spec_to_tao
from synthloop.training.toydata import make_toy_dataset

# Written in the layout of TAO's published DetectNet_v2 training spec (field names and nesting).
TAO_SPEC = """
random_seed: 42
dataset_config {
  data_sources {
    tfrecords_path: "/workspace/data/tfrecords/kitti_trainval/*"
    image_directory_path: "/workspace/data/training"
  }
  image_extension: "png"
  target_class_mapping { key: "Date" value: "date" }
  target_class_mapping {
    key: "fig"
    value: "fig"
  }
  validation_fold: 0
}
augmentation_config {
  preprocessing {
    output_image_width: 960
    output_image_height: 544
    min_bbox_width: 1.0
    min_bbox_height: 1.0
    output_image_channel: 3
  }
  spatial_augmentation {
    hflip_probability: 0.5
    zoom_min: 0.8
    zoom_max: 1.2
    translate_max_x: 8.0
    translate_max_y: 8.0
  }
  color_augmentation {
    hue_rotation_max: 25.0
    saturation_shift_max: 0.2
    contrast_scale_max: 0.1
    contrast_center: 0.5
  }
}
postprocessing_config {
  target_class_config {
    key: "date"
    value: {
      clustering_config {
        clustering_algorithm: DBSCAN
        dbscan_confidence_threshold: 0.9
        coverage_threshold: 0.005
        dbscan_eps: 0.2
        dbscan_min_samples: 1
        minimum_bounding_box_height: 20
      }
    }
  }
  target_class_config {
    key: "fig"
    value {
      clustering_config {
        clustering_algorithm: DBSCAN
        dbscan_confidence_threshold: 0.8
        coverage_threshold: 0.01
        dbscan_eps: 0.15
        dbscan_min_samples: 2
        minimum_bounding_box_height: 4
      }
    }
  }
}
model_config {
  pretrained_model_file: "/workspace/pretrained/resnet_18.hdf5"  # ImageNet weights
  num_layers: 18
  use_batch_norm: True
  objective_set {
    bbox {
      scale: 35.0
      offset: 0.5
    }
    cov {
    }
  }
  arch: "resnet"
  freeze_blocks: 0
  freeze_blocks: 1
  freeze_bn: false
  all_projections: true
}
evaluation_config {
  validation_period_during_training: 10
  first_validation_epoch: 30
  minimum_detection_ground_truth_overlap { key: "date" value: 0.7 }
  average_precision_mode: INTEGRATE
}
cost_function_config {
  target_classes {
    name: "date"
    class_weight: 1.0
    coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 }
  }
  target_classes {
    name: "fig"
    class_weight: 2.5
    coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 }
  }
  enable_autoweighting: true
  max_objective_weight: 0.9999
  min_objective_weight: 0.0001
}
training_config {
  batch_size_per_gpu: 4
  num_epochs: 120
  learning_rate {
    soft_start_annealing_schedule {
      min_learning_rate: 5e-06
      max_learning_rate: 5e-04
      soft_start: 0.1
      annealing: 0.7
    }
  }
  regularizer { type: L2 weight: 3e-09 }
  optimizer { adam { epsilon: 1e-08 beta1: 0.9 beta2: 0.999 } }
  cost_scaling { initial_exponent: 20.0 increment: 0.005 decrement: 1.0 }
  checkpoint_interval: 10
}
bbox_rasterizer_config {
  target_class_config {
    key: "date"
    value { cov_center_x: 0.5 cov_center_y: 0.5 cov_radius_x: 0.4 cov_radius_y: 0.4 bbox_min_radius: 1.0 }
  }
  target_class_config {
    key: "fig"
    value { cov_center_x: 0.5 cov_center_y: 0.6 cov_radius_x: 1.0 cov_radius_y: 1.0 bbox_min_radius: 1.0 }
  }
  deadzone_radius: 0.4
}
"""


def test_prototext_parses_tao_layout_and_round_trips():
    msg = loads(TAO_SPEC, "spec.txt")
    model = msg["model_config"][0]
    assert model["freeze_blocks"] == [0, 1] and model["use_batch_norm"] == [True]
    assert model["objective_set"][0]["cov"] == [{}]
    post = msg["postprocessing_config"][0]["target_class_config"]
    assert [p["key"][0] for p in post] == ["date", "fig"]
    algo = post[0]["value"][0]["clustering_config"][0]["clustering_algorithm"][0]
    assert isinstance(algo, Enum) and algo == "DBSCAN"
    assert msg["training_config"][0]["learning_rate"][0]["soft_start_annealing_schedule"][0][
        "min_learning_rate"
    ] == [5e-06]
    assert loads(dumps(msg)) == msg


def test_prototext_escapes_hostile_strings_and_names_bad_lines():
    nasty = 'a"b\\c\nrandom_seed: 7 }'
    msg = {"image_directory_path": [nasty], "n": [3], "x": [1.5e-9], "on": [False], "e": [Enum("L2")]}
    text = dumps(msg)
    assert text.count("\n") == 5  # one line per field: the newline inside the value is escaped
    assert loads(text) == msg
    with pytest.raises(ProtoTextError, match="line 3"):
        loads("a: 1\nb {\n  c: }\n", "bad.txt")
    with pytest.raises(ProtoTextError, match="missing"):
        loads("a {\n b: 1\n", "bad.txt")
    with pytest.raises(ValueError, match="finite"):
        dumps({"x": [math.inf]})
    with pytest.raises(ValueError, match="identifier"):
        dumps({"bad name": [1]})


def test_tao_spec_maps_fields_and_lists_the_rest():
    imp = tao_to_spec(TAO_SPEC, "tao_train.txt")
    spec = imp.spec()
    assert imp.classes == ["date", "fig"]
    assert spec.seed == 42 and spec.batch_size == 4 and spec.epochs == 120
    assert spec.model.input_width == 960 and spec.model.input_height == 544
    assert spec.backbone.name == "resnet18" and spec.backbone.freeze_blocks == [0, 1]
    assert spec.backbone.weights is None  # TAO's .hdf5 weights are listed, not loaded
    assert spec.datasets[0].paths == ["/workspace/data/training"]
    assert spec.datasets[0].class_mapping == {"Date": "date"}
    assert spec.augment.zoom_min == 0.8 and spec.augment.translate_max_x == 8
    assert spec.augment.hue == pytest.approx(25 / 360)
    dn = spec.model.detectnet
    assert dn.cluster["fig"] == ClusterParams(
        coverage_threshold=0.01, eps=0.15, min_samples=2, min_confidence=0.8
    )
    assert dn.raster["fig"].cov_center_y == 0.6 and dn.raster["date"].deadzone_radius == 0.4
    assert dn.class_weights == {"date": 1.0, "fig": 2.5} and dn.bbox_loss_weight == 10.0
    assert spec.optimizer.name == "adam" and spec.optimizer.lr == 5e-4
    assert spec.optimizer.weight_decay == 3e-09
    assert spec.lr_schedule.min_lr_ratio == pytest.approx(0.01)
    assert spec.validation_interval == 10 and spec.checkpoint_interval == 10
    unmapped = {line.split(" = ")[0] for line in imp.unmapped}
    for path in (
        "dataset_config.data_sources.tfrecords_path",
        "model_config.pretrained_model_file",
        "model_config.use_batch_norm",
        "model_config.objective_set.bbox.offset",
        "training_config.optimizer.adam.beta1",
        "cost_function_config.target_classes[fig].coverage_foreground_weight",
        "postprocessing_config.target_class_config[date].clustering_config.minimum_bounding_box_height",
        "evaluation_config.minimum_detection_ground_truth_overlap[date]",
    ):
        assert path in unmapped, path
    assert not any("dbscan_eps" in u or "class_weight " in u for u in imp.unmapped)


def _rich_spec() -> ExperimentSpec:
    """A spec with a non-default value in every field of the TAO mapping."""
    return ExperimentSpec.model_validate(
        {
            "datasets": [
                {"kind": "synthetic", "paths": ["/data/synth"], "class_mapping": {"dattel": "date"}}
            ],
            "seed": 7,
            "model": {
                "input_width": 320,
                "input_height": 256,
                "detectnet": {
                    "bbox_norm": 20.0,
                    "cov_loss_weight": 2.0,
                    "bbox_loss_weight": 5.0,
                    "class_weights": {"date": 1.5, "fig": 0.5},
                    "cluster": {
                        "*": {
                            "coverage_threshold": 0.2,
                            "eps": 0.25,
                            "min_samples": 2,
                            "min_confidence": 0.3,
                        },
                        "fig": {"coverage_threshold": 0.4},
                    },
                    "raster": {
                        "*": {"cov_radius_x": 0.6, "deadzone_radius": 0.5},
                        "fig": {"cov_center_y": 0.7, "deadzone_radius": 0.5},
                    },
                },
            },
            "backbone": {
                "name": "resnet34",
                "weights": "/w/r34.pt",
                "freeze_blocks": [0, 2],
                "freeze_bn": True,
            },
            "augment": {
                "hflip_prob": 0.3,
                "vflip_prob": 0.1,
                "zoom_min": 0.7,
                "zoom_max": 1.3,
                "translate_max_x": 5,
                "translate_max_y": 6,
                "hue": 0.1,
                "saturation": 0.3,
                "contrast": 0.4,
            },
            "optimizer": {"name": "adam", "lr": 0.002, "weight_decay": 0.0005},
            "lr_schedule": {
                "name": "soft_start_annealing",
                "soft_start": 0.2,
                "annealing": 0.6,
                "min_lr_ratio": 0.05,
            },
            "epochs": 33,
            "batch_size": 6,
            "checkpoint_interval": 3,
            "validation_interval": 2,
        }
    )


MAPPED = (
    "seed",
    "model.input_width",
    "model.input_height",
    "model.detectnet.bbox_norm",
    "model.detectnet.cov_loss_weight",
    "model.detectnet.bbox_loss_weight",
    "backbone.name",
    "backbone.weights",
    "backbone.freeze_blocks",
    "backbone.freeze_bn",
    "augment.hflip_prob",
    "augment.vflip_prob",
    "augment.zoom_min",
    "augment.zoom_max",
    "augment.translate_max_x",
    "augment.translate_max_y",
    "augment.hue",
    "augment.saturation",
    "augment.contrast",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "lr_schedule.name",
    "lr_schedule.soft_start",
    "lr_schedule.annealing",
    "lr_schedule.min_lr_ratio",
    "epochs",
    "batch_size",
    "checkpoint_interval",
    "validation_interval",
)


def _get(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_round_trip_synthloop_tao_synthloop_keeps_every_mapped_field():
    a = _rich_spec()
    msg, notes = spec_to_tao(a, ["date", "fig"], [("/tf/*", "/data/kitti")])
    assert notes == []
    imp = tao_to_spec(dumps(msg), "rt.txt", datasets=["/data/synth"])
    b = imp.spec()
    assert imp.classes == ["date", "fig"]
    for path in MAPPED:
        va, vb = _get(a, path), _get(b, path)
        assert va == pytest.approx(vb) if isinstance(va, float) else va == vb, path
    assert b.datasets[0].class_mapping == {"dattel": "date"}
    for c in ("date", "fig"):
        da, db = a.model.detectnet, b.model.detectnet
        assert db.cluster[c] == da.cluster.get(c, da.cluster["*"]), c  # effective per-class values
        assert db.raster[c] == da.raster.get(c, da.raster["*"]), c
        assert db.class_weights[c] == da.class_weights[c]
    assert isinstance(b.model.detectnet.raster["fig"], RasterParams)


def test_spec_to_tao_writes_the_starting_model_as_pretrained_model_file():
    """`model.init_from` (a whole trained model) is TAO's pretrained_model_file without load_graph."""
    a = _rich_spec().model_copy(deep=True)
    a.model.load_graph, a.model.init_from = None, "/runs/synth/checkpoints/last.pt"
    mc = spec_to_tao(a, ["date", "fig"], [])[0]["model_config"][0]
    assert mc["pretrained_model_file"] == ["/runs/synth/checkpoints/last.pt"]
    assert mc["load_graph"] == [False]


def test_spec_to_tao_notes_what_tao_cannot_express():
    a = _rich_spec().model_copy(deep=True)
    a.optimizer.name = "adamw"
    a.lr_schedule.name = "cosine"
    _, notes = spec_to_tao(a, ["date", "fig"], [])
    assert any("adamw" in n for n in notes) and any("cosine" in n for n in notes)


def test_export_tao_writes_resized_kitti_and_both_specs(tmp_path):
    ds = make_toy_dataset(tmp_path / "toy", num_frames=3, width=90, height=70, seed=1)
    spec = _rich_spec()
    res = export_tao(ds, tmp_path / "tao", spec, size=(100, 60))
    assert (res.width, res.height) == (96, 64) and any("rounded" in n for n in res.notes)
    from PIL import Image

    images = sorted((tmp_path / "tao" / "kitti" / "images").iterdir())
    assert len(images) == 3 and Image.open(images[0]).size == (96, 64)
    lines = (tmp_path / "tao" / "kitti" / "labels" / (images[0].stem + ".txt")).read_text().splitlines()
    got = sorted(tuple(float(v) for v in line.split()[4:8]) for line in lines)
    want = sorted(
        (o.bbox[0] * 96 / 90, o.bbox[1] * 64 / 70, o.bbox[2] * 96 / 90, o.bbox[3] * 64 / 70)
        for o in ds.frames[0].objects
    )
    assert len(got) == len(want) and np.allclose(got, want, atol=0.01)  # boxes scaled to the new size
    conv = loads((tmp_path / "tao" / CONVERT_SPEC).read_text())
    assert conv["kitti_config"][0]["image_dir_name"] == ["images"]
    imp = tao_to_spec((tmp_path / "tao" / TRAIN_SPEC).read_text(), "t.txt", datasets=["/data/synth"])
    assert imp.classes == ["date", "fig"]
    assert (imp.spec().model.input_width, imp.spec().model.input_height) == (96, 64)


def test_cli_spec_from_tao(tmp_path):
    (tmp_path / "tao.txt").write_text(TAO_SPEC)
    r = CliRunner().invoke(
        app, ["spec", "from-tao", str(tmp_path / "tao.txt"), "-o", str(tmp_path / "s.yaml")]
    )
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert ExperimentSpec.model_validate(data).backbone.name == "resnet18"
    assert "use_batch_norm" in r.output
    (tmp_path / "bad.txt").write_text("model_config {\n  arch: }\n")
    r = CliRunner().invoke(
        app, ["spec", "from-tao", str(tmp_path / "bad.txt"), "-o", str(tmp_path / "x.yaml")]
    )
    assert r.exit_code == 2 and "bad.txt: line 2" in r.output


def test_export_tao_maps_kitti_label_names_to_the_classes(tmp_path):
    ds = make_toy_dataset(
        tmp_path / "toy", num_frames=2, width=64, height=48, class_names=("Date Palm", "fig")
    )
    export_tao(ds, tmp_path / "tao")
    labels = {
        ln.split()[0]
        for p in (tmp_path / "tao" / "kitti" / "labels").iterdir()
        for ln in p.read_text().splitlines()
    }
    assert labels <= {"date_palm", "fig"}  # what TAO reads (lower-cased, no spaces)
    msg = loads((tmp_path / "tao" / TRAIN_SPEC).read_text())
    mapping = {m["key"][0]: m["value"][0] for m in msg["dataset_config"][0]["target_class_mapping"]}
    assert mapping == {"date_palm": "Date Palm", "fig": "fig"}
    names = [t["name"][0] for t in msg["cost_function_config"][0]["target_classes"]]
    assert names == ["Date Palm", "fig"]
