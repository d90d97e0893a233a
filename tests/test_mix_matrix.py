"""MixExperiment YAML validation and expansion: counts, names, dedupe, stable hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import BASE, PLAIN

from synthloop.experiments.matrix import MixExperimentError, expand, load_experiment, spec_hash


def _write(tmp_path: Path, **exp: Any) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    doc = {"base": "base.yaml", "eval": {"dataset": "val.json"}, **exp}
    p = tmp_path / "mix.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_expand_counts_names_dedupe(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        real_fractions=[0, 0.25, 0.5, 1.0],
        schedules=["blend", "pretrain_finetune"],
        seeds=[0, 1],
        baselines={"synthetic_only": True, "real_only": True},
    )
    runs = expand(load_experiment(p), PLAIN)
    # 2 schedules x 4 fractions x 2 seeds + 2 baselines x 2 seeds = 20 points; r=0 is one run for
    # both schedules and the synthetic-only baseline: 20 - 2 (pf r0) - 2 (synthetic_only) = 16
    assert len(runs) == 16
    names = [r.name for r in runs]
    assert len(set(names)) == 16
    assert names[:4] == ["blend-r0-s0", "blend-r0-s1", "blend-r0.25-s0", "blend-r0.25-s1"]
    assert "pretrain_finetune-r0.25-s1" in names and "pretrain_finetune-r0-s0" not in names
    assert names[-2:] == ["real_only-s0", "real_only-s1"] and "synthetic_only-s0" not in names
    r0 = runs[0]
    assert r0.points == [("blend", 0.0), ("pretrain_finetune", 0.0), ("synthetic_only", 0.0)]
    assert r0.spec["mix"] == {"schedule": "blend", "real_fraction": 0.0} and r0.spec["seed"] == 0
    pf = next(r for r in runs if r.name == "pretrain_finetune-r0.5-s1")
    assert pf.spec["mix"] == {"schedule": "pretrain_finetune", "real_fraction": 0.5} and pf.spec["seed"] == 1
    ro = runs[-1]
    assert [d["kind"] for d in ro.spec["datasets"]] == ["real"] and ro.spec["mix"]["real_fraction"] == 1.0
    assert ro.points == [("real_only", 1.0)]
    # every point of the matrix is covered exactly once
    pts = [pt + (r.seed,) for r in runs for pt in r.points]
    assert len(pts) == len(set(pts)) == 20


def test_hashes_stable_and_distinct(tmp_path: Path) -> None:
    p = _write(tmp_path, real_fractions=[0, 0.5], schedules=["blend", "pretrain_finetune"], seeds=[0, 1])
    a = expand(load_experiment(p), PLAIN)
    b = expand(load_experiment(p), PLAIN)
    assert [(r.name, r.spec_hash) for r in a] == [(r.name, r.spec_hash) for r in b]
    assert len({r.spec_hash for r in a}) == len(a)
    for r in a:
        canon = json.dumps(r.spec, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        assert r.spec_hash == hashlib.sha256(canon.encode()).hexdigest()
    # key order in the base YAML does not matter; a changed value changes every hash
    assert spec_hash({"b": 1, "a": {"y": 2, "x": 3}}) == spec_hash({"a": {"x": 3, "y": 2}, "b": 1})
    p2 = _write(
        tmp_path,
        real_fractions=[0, 0.5],
        schedules=["blend", "pretrain_finetune"],
        seeds=[0, 1],
        overrides={"epochs": 4},
    )
    c = expand(load_experiment(p2), PLAIN)
    assert [r.name for r in c] == [r.name for r in a]
    assert not {r.spec_hash for r in c} & {r.spec_hash for r in a}
    assert all(r.spec["epochs"] == 4 for r in c)


def test_schedule_order_and_baselines_off(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        real_fractions=[0.0, 1.0],
        schedules=["pretrain_finetune", "blend"],
        seeds=[3],
        baselines={"synthetic_only": False, "real_only": False},
    )
    runs = expand(load_experiment(p), PLAIN)
    # the r=0 run is a blend whatever schedule asked for it first
    assert [r.name for r in runs] == ["blend-r0-s3", "pretrain_finetune-r1-s3", "blend-r1-s3"]
    assert runs[0].points == [("pretrain_finetune", 0.0), ("blend", 0.0)]


@pytest.mark.parametrize(
    ("exp", "where", "msg"),
    [
        ({"real_fractions": [0, 1.5]}, "real_fractions", "not in [0, 1]"),
        ({"real_fractions": [0.5, 0.5]}, "real_fractions", "duplicates"),
        ({"schedules": ["blend", "finetune"]}, "schedules.1", "blend"),
        ({"seeds": []}, "seeds", "at least 1"),
        ({"baselines": {"synthetic": True}}, "baselines.synthetic", "Extra inputs"),
        ({"eval": {"dataset": "v.json", "voc_mode": "11pt"}}, "eval.voc_mode", "integrate"),
        ({"epochs": 3}, "epochs", "Extra inputs"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path: Path, exp: dict, where: str, msg: str) -> None:
    p = _write(tmp_path, **exp)
    with pytest.raises(MixExperimentError) as ei:
        load_experiment(p)
    text = str(ei.value)
    assert text.startswith(f"{p}: {where}") and msg in text


def test_yaml_and_missing_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: x.yaml\nreal_fractions: [0, 0.5\n")
    with pytest.raises(MixExperimentError, match=r"bad.yaml: line \d+, column \d+: YAML syntax error"):
        load_experiment(bad)
    with pytest.raises(MixExperimentError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(MixExperimentError, match="must be a YAML mapping"):
        load_experiment(lst)


def test_relative_eval_dataset(tmp_path: Path) -> None:
    loaded = load_experiment(_write(tmp_path))
    assert loaded.eval_dataset() == (tmp_path / "val.json").resolve()
    assert loaded.name == "mix"


# ---------------------------------------------------------------- with the training package's ExperimentSpec
def _real_base(tmp_path: Path, with_real: bool = True) -> Path:
    datasets: list[dict] = [{"kind": "synthetic", "paths": ["synth"]}]
    if with_real:
        datasets.append({"kind": "real", "coco_json": "real/train.json", "images_dir": "real/images"})
    base = {
        "datasets": datasets,
        "epochs": 2,
        "batch_size": 2,
        "mix": {"ratio": [1, 1], "finetune_epochs": 1},
    }
    p = tmp_path / "specs" / "train.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(base))
    return p


def test_expand_with_experiment_spec(tmp_path: Path) -> None:
    pytest.importorskip("synthloop.training.spec", reason="training package has no ExperimentSpec")
    _real_base(tmp_path)
    mix = tmp_path / "mix.yaml"
    doc = {
        "base": "specs/train.yaml",
        "real_fractions": [0, 0.5, 1],
        "schedules": ["blend", "pretrain_finetune"],
        "seeds": [0, 1],
        "eval": {"dataset": "val.json"},
    }
    mix.write_text(yaml.safe_dump(doc))
    runs = expand(load_experiment(mix))
    # 2 x 3 x 2 + 2 x 2 = 16 points; pf r0 (2) and synthetic_only (2) merge into blend r0 -> 12 runs
    assert len(runs) == 12
    r0 = runs[0]
    assert r0.name == "blend-r0-s0" and len(r0.points) == 3
    assert r0.spec["mix"]["schedule"] == "blend" and r0.spec["mix"]["real_fraction"] == 0.0
    # the spec is complete (defaults filled) and its paths are absolute, against the base's folder
    assert r0.spec["model"]["family"] == "detectnet_v2" and r0.spec["epochs"] == 2
    assert r0.spec["datasets"][0]["paths"] == [str(tmp_path / "specs" / "synth")]
    assert r0.spec["datasets"][1]["coco_json"] == str(tmp_path / "specs" / "real" / "train.json")
    ro = next(r for r in runs if r.name == "real_only-s1")
    assert [d["kind"] for d in ro.spec["datasets"]] == ["real"] and ro.spec["seed"] == 1
    # real fraction 1 under blend keeps the synthetic data: not the real-only baseline
    b1 = next(r for r in runs if r.name == "blend-r1-s1")
    assert b1.spec_hash != ro.spec_hash and len(b1.spec["datasets"]) == 2
    assert [r.spec_hash for r in expand(load_experiment(mix))] == [r.spec_hash for r in runs]


def test_spec_errors_name_experiment_and_field(tmp_path: Path) -> None:
    pytest.importorskip("synthloop.training.spec", reason="training package has no ExperimentSpec")
    from synthloop.errors import SynthloopError

    _real_base(tmp_path)
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        yaml.safe_dump({"base": "specs/train.yaml", "overrides": {"batch_size": 0}, "eval": {"dataset": "v"}})
    )
    with pytest.raises(SynthloopError) as ei:
        expand(load_experiment(mix))
    assert str(ei.value).startswith(f"{mix}: overrides: batch_size")
    mix.write_text(yaml.safe_dump({"base": {"datasets": [], "epochs": 1}, "eval": {"dataset": "v"}}))
    with pytest.raises(SynthloopError) as ei:
        expand(load_experiment(mix))
    assert str(ei.value).startswith(f"{mix}: base.datasets")
    # a real-only baseline needs real data
    _real_base(tmp_path, with_real=False)
    mix.write_text(
        yaml.safe_dump({"base": "specs/train.yaml", "eval": {"dataset": "v"}, "real_fractions": [0]})
    )
    with pytest.raises(SynthloopError) as ei:
        expand(load_experiment(mix))
    assert str(ei.value).startswith(f"{mix}: real_only-s0: datasets")
    mix.write_text(yaml.safe_dump({"base": "specs/missing.yaml", "eval": {"dataset": "v"}}))
    with pytest.raises(SynthloopError, match="base spec .* not found"):
        expand(load_experiment(mix))
