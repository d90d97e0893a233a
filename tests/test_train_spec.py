"""Experiment spec: YAML loading, relative paths, and the clear errors before training starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synthloop.exporters.coco import write_coco
from synthloop.training.build import prepare_data
from synthloop.training.errors import SpecError
from synthloop.training.spec import ExperimentSpec, load_spec
from synthloop.training.toydata import make_toy_dataset, write_toy_folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("specdata")
    write_toy_folder(root / "synth_a", num_frames=2, seed=1)
    write_toy_folder(root / "synth_b", num_frames=2, seed=2, class_names=("dattel", "fig"))
    write_coco(make_toy_dataset(root / "realimg", 3, seed=3, source="real"), root / "real")
    empty = make_toy_dataset(root / "emptyimg", 1, seed=4)
    empty.frames = []
    write_coco(empty, root / "real_empty")
    return root


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base(data_dir: Path) -> dict:
    return {
        "datasets": [
            {"kind": "synthetic", "paths": [str(data_dir / "synth_*")]},
            {"kind": "real", "coco_json": str(data_dir / "real" / "annotations.json")},
        ],
        "epochs": 1,
    }


def test_load_resolves_relative_paths_and_defaults(tmp_path, data_dir):
    spec_dir = data_dir
    p = spec_dir / "rel.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "datasets": [{"kind": "synthetic", "paths": ["synth_a"]}],
                "mix": {"ratio": "3:1"},
                "iterations": 5,
            }
        )
    )
    s = load_spec(p)
    assert s.datasets[0].paths == [str(spec_dir.resolve() / "synth_a")]
    assert s.mix.ratio == (3, 1) and s.unit == "iteration" and s.backbone.name == "efficientnet_lite0"
    data = prepare_data(s, str(p))
    assert data.classes == ["date", "fig"] and data.real is None and len(data.synthetic.frames) == 2


def test_missing_dataset_path_names_file_and_field(tmp_path, data_dir):
    d = _base(data_dir)
    d["datasets"][0]["paths"] = [str(tmp_path / "nope")]
    p = _write(tmp_path, d)
    with pytest.raises(SpecError) as e:
        prepare_data(load_spec(p), str(p))
    assert (
        str(p) in str(e.value)
        and "datasets.0.paths.0" in str(e.value)
        and "no dataset folder" in str(e.value)
    )
    d = _base(data_dir)
    d["datasets"][1]["coco_json"] = str(tmp_path / "missing.json")
    p = _write(tmp_path, d)
    with pytest.raises(SpecError, match="datasets.1.coco_json: COCO json .* not found"):
        prepare_data(load_spec(p), str(p))


def test_unknown_backbone_and_bad_fields(tmp_path, data_dir):
    d = {**_base(data_dir), "backbone": {"name": "resnet101"}}
    with pytest.raises(SpecError, match=r"backbone.name: .*unknown backbone 'resnet101'") as e:
        load_spec(_write(tmp_path, d))
    assert "spec.yaml" in str(e.value)
    with pytest.raises(SpecError, match="mix.ratio"):
        load_spec(_write(tmp_path, {**_base(data_dir), "mix": {"ratio": [0, 0]}}))
    with pytest.raises(SpecError, match="optimizer.name"):
        load_spec(_write(tmp_path, {**_base(data_dir), "optimizer": {"name": "rmsprop"}}))
    with pytest.raises(SpecError, match="rotate90_prob > 0 needs a square input"):
        load_spec(_write(tmp_path, {**_base(data_dir), "augment": {"rotate90_prob": 0.5}}))
    with pytest.raises(SpecError, match="epochs or iterations"):
        load_spec(_write(tmp_path, {**_base(data_dir), "iterations": 3}))


def test_class_names_differ_says_which_and_suggests_class_mapping(tmp_path, data_dir):
    d = _base(data_dir)
    d["datasets"][0]["paths"] = [str(data_dir / "synth_b")]
    p = _write(tmp_path, d)
    with pytest.raises(SpecError) as e:
        prepare_data(load_spec(p), str(p))
    msg = str(e.value)
    assert "only in synthetic: ['dattel']" in msg and "only in real: ['date']" in msg
    assert "class_mapping" in msg and "datasets.0" in msg
    d["datasets"][0]["class_mapping"] = {"dattel": "date"}
    data = prepare_data(load_spec(_write(tmp_path, d)), "x")
    assert data.classes == ["date", "fig"]
    # the renamed synthetic class trains as the real label
    labels = {o.category_id for f in data.synthetic.frames for o in f.objects}
    assert labels <= {1, 2}
    d["datasets"][0]["class_mapping"] = {"olive": "date"}
    with pytest.raises(SpecError, match=r"class_mapping names \['olive'\]"):
        prepare_data(load_spec(_write(tmp_path, d)), "x")


def test_empty_real_split(tmp_path, data_dir):
    d = _base(data_dir)
    d["datasets"][1]["coco_json"] = str(data_dir / "real_empty" / "annotations.json")
    p = _write(tmp_path, d)
    with pytest.raises(SpecError, match="datasets.1.coco_json: the real train split is empty"):
        prepare_data(load_spec(p), str(p))


def test_spec_roundtrips_as_json():
    s = ExperimentSpec.model_validate({"datasets": [{"kind": "synthetic", "paths": ["a"]}]})
    again = ExperimentSpec.model_validate(s.model_dump(mode="json"))
    assert again == s and again.epochs == 10
