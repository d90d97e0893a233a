"""The experiment runner: resumable (finished runs are not repeated), failures recorded, stale runs moved.

Training is replaced by a tiny function injected through ``train_fn`` (it writes a one-line
"checkpoint" holding a detection quality); prediction reads it back and returns that share of the
eval dataset's boxes, so the evaluation, overlays, DONE markers and report are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from helpers import BASE, PLAIN

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.experiments.matrix import RunSpec
from synthloop.experiments.report import write_report
from synthloop.experiments.runner import TrainResult, run_experiment
from synthloop.training.toydata import make_toy_dataset


class FakeTrainer:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()

    def __call__(self, run: RunSpec, train_dir: Path) -> TrainResult:
        self.calls.append(run.name)
        if run.name in self.fail:
            raise RuntimeError(f"boom in {run.name}")
        train_dir.mkdir(parents=True, exist_ok=True)
        ckpt = train_dir / "last.pt"
        quality = 0.2 + 0.6 * run.real_fraction + 0.05 * run.seed
        ckpt.write_text(json.dumps({"quality": quality, "spec_hash": run.spec_hash}))
        return TrainResult(ckpt, {"images_per_s": 100.0})


def fake_predict(ckpt: Path, ds: Dataset, batch_size: int) -> Detections:
    q = json.loads(ckpt.read_text())["quality"]
    rng = np.random.default_rng(0)
    out = []
    for f in ds.frames:
        keep = [o for o in f.objects if rng.random() < q]
        out.append(
            FrameDetections(
                f.frame_id,
                np.array([o.bbox for o in keep]).reshape(-1, 4),
                [0.9] * len(keep),
                [o.category_id for o in keep],
            )
        )
    return Detections.from_frames(out)


def _setup(tmp_path: Path, **over: object) -> tuple[Path, Dataset]:
    ds = make_toy_dataset(tmp_path / "val", num_frames=3, objects_per_frame=(2, 3), seed=5)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    exp = {
        "name": "t",
        "base": "base.yaml",
        "real_fractions": [0.0, 0.5],
        "schedules": ["blend", "pretrain_finetune"],
        "seeds": [0],
        "baselines": {"synthetic_only": True, "real_only": True},
        "eval": {"dataset": "val", "sample_frames": 2, "worst_frames": 1},
        **over,
    }
    p = tmp_path / "mix.yaml"
    p.write_text(yaml.safe_dump(exp))
    return p, ds


def _run(p: Path, out: Path, ds: Dataset, trainer: FakeTrainer):
    return run_experiment(
        p,
        out,
        quiet=True,
        train_fn=trainer,
        predict_fn=fake_predict,
        load_dataset_fn=lambda _: ds,
        spec_ops=PLAIN,
    )


def test_resumable_and_failures(tmp_path: Path, capsys) -> None:
    p, ds = _setup(tmp_path)
    out = tmp_path / "out"
    names = ["blend-r0-s0", "blend-r0.5-s0", "pretrain_finetune-r0.5-s0", "real_only-s0"]
    # first pass: one run fails, the others finish
    t1 = FakeTrainer(fail={"blend-r0.5-s0"})
    res = _run(p, out, ds, t1)
    assert [o.name for o in res] == names
    assert [o.status for o in res] == ["done", "failed", "done", "done"]
    assert sorted(t1.calls) == sorted(names)
    err = json.loads((out / "runs/blend-r0.5-s0/error.json").read_text())
    assert err["type"] == "RuntimeError" and "boom" in err["message"] and "Traceback" in err["traceback"]
    assert not (out / "runs/blend-r0.5-s0/DONE").exists()
    for n in ("blend-r0-s0", "real_only-s0"):
        rd = out / "runs" / n
        done = json.loads((rd / "DONE").read_text())
        spec = json.loads((rd / "spec.json").read_text())
        assert done["spec_hash"] == spec["spec_hash"] and done["train"] == {"images_per_s": 100.0}
        assert json.loads((rd / "eval.json").read_text())["summary"]["num_frames"] == 3
        assert len(list((rd / "samples").glob("*.png"))) == 2 and len(list((rd / "worst").glob("*.png"))) == 1
    # quiet mode logs JSON lines
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert any(x["event"] == "failed" and x["name"] == "blend-r0.5-s0" for x in lines)
    # second pass: only the failed run is trained again
    t2 = FakeTrainer()
    res = _run(p, out, ds, t2)
    assert t2.calls == ["blend-r0.5-s0"]
    assert [o.status for o in res] == ["skipped", "done", "skipped", "skipped"]
    assert not (out / "runs/blend-r0.5-s0/error.json").exists()
    # third pass: nothing to do
    t3 = FakeTrainer()
    assert [o.status for o in _run(p, out, ds, t3)] == ["skipped"] * 4 and t3.calls == []
    # the report sees 4 finished runs, the r=0 run standing for both schedules and the baseline
    res = json.loads(write_report(out).results_json.read_text())
    assert res["counts"] == {"done": 4, "failed": 0, "pending": 0}
    assert res["series"]["pretrain_finetune"][0]["runs"] == ["blend-r0-s0"]
    assert res["baselines"]["synthetic_only"]["runs"] == ["blend-r0-s0"]
    by = {r["name"]: r for r in res["runs"]}
    assert by["real_only-s0"]["AP50"] > by["blend-r0-s0"]["AP50"]  # quality 0.8 vs 0.2


def test_changed_spec_reruns_and_keeps_old(tmp_path: Path) -> None:
    p, ds = _setup(
        tmp_path,
        real_fractions=[0.5],
        schedules=["blend"],
        baselines={"synthetic_only": False, "real_only": False},
    )
    out = tmp_path / "out"
    t1 = FakeTrainer()
    _run(p, out, ds, t1)
    old_hash = json.loads((out / "runs/blend-r0.5-s0/DONE").read_text())["spec_hash"]
    # a DONE marker for another spec does not count: edit the experiment (more epochs)
    p2, _ = _setup(
        tmp_path,
        real_fractions=[0.5],
        schedules=["blend"],
        baselines={"synthetic_only": False, "real_only": False},
        overrides={"epochs": 9},
    )
    t2 = FakeTrainer()
    res = _run(p2, out, ds, t2)
    assert t2.calls == ["blend-r0.5-s0"] and res[0].status == "done"
    new = json.loads((out / "runs/blend-r0.5-s0/DONE").read_text())
    assert new["spec_hash"] != old_hash
    stale = list((out / "runs/.stale").iterdir())
    assert [s.name for s in stale] == [f"blend-r0.5-s0-{old_hash[:8]}"]
    assert json.loads((stale[0] / "DONE").read_text())["spec_hash"] == old_hash
    # a torn DONE (e.g. hand-edited) is not trusted either
    (out / "runs/blend-r0.5-s0/DONE").write_text("{not json")
    t3 = FakeTrainer()
    _run(p2, out, ds, t3)
    assert t3.calls == ["blend-r0.5-s0"]


def test_training_api_checkpoint_and_stats(tmp_path: Path) -> None:
    import pytest

    from synthloop.errors import SynthloopError
    from synthloop.training.api import resolve_checkpoint, train_stats

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.pt"
    (run / "checkpoints" / "best.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "checkpoints" / "best.pt"
    assert resolve_checkpoint(run, prefer="last") == run / "checkpoints" / "last.pt"
    assert resolve_checkpoint(run / "checkpoints" / "last.pt") == run / "checkpoints" / "last.pt"
    with pytest.raises(SynthloopError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SynthloopError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path / "empty")
    assert train_stats(run) == {}
    recs = [
        {"kind": "train", "images_per_s": 10.0},
        {"kind": "epoch"},
        {"kind": "train", "images_per_s": 20.0},
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n{torn")
    assert train_stats(run) == {"images_per_s": 15.0}


def test_mix_plan_cli(tmp_path: Path) -> None:
    import pytest
    from typer.testing import CliRunner

    pytest.importorskip("synthloop.training.spec", reason="training package has no ExperimentSpec")
    from synthloop.commands.mix import app

    spec = {"datasets": [{"kind": "real", "coco_json": "train.json"}], "epochs": 1}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(spec))
    exp = {
        "base": "train.yaml",
        "real_fractions": [0, 1],
        "schedules": ["blend"],
        "seeds": [0],
        "eval": {"dataset": "v"},
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(exp))
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "mix.yaml")])
    assert r.exit_code == 0, r.output
    # without synthetic data, blend r=1 and the real-only baseline are the same spec: one run
    assert "2 runs" in r.output and "blend-r1-s0" in r.output and "real_only r=1" in r.output
    assert "real_only-s0" not in r.output
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump({**exp, "seeds": [0, 0]}))
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "mix.yaml")])
    assert r.exit_code == 2 and r.output.strip().startswith(f"{tmp_path / 'mix.yaml'}: seeds")


def test_changed_eval_settings_reevaluate_without_training(tmp_path: Path) -> None:
    single = {
        "real_fractions": [0.5],
        "schedules": ["blend"],
        "baselines": {"synthetic_only": False, "real_only": False},
    }
    p, ds = _setup(tmp_path, **single)
    out = tmp_path / "out"
    _run(p, out, ds, FakeTrainer())
    done1 = json.loads((out / "runs/blend-r0.5-s0/DONE").read_text())
    rep1 = json.loads((out / "runs/blend-r0.5-s0/eval.json").read_text())
    assert rep1["params"]["score_thr"] == 0.5
    # only the eval settings change: the checkpoint is evaluated again, nothing is trained
    p2, _ = _setup(
        tmp_path, **single, eval={"dataset": "val", "score_thr": 0.95, "sample_frames": 1, "worst_frames": 0}
    )
    t2 = FakeTrainer()
    res = _run(p2, out, ds, t2)
    assert t2.calls == [] and [o.status for o in res] == ["evaluated"]
    done2 = json.loads((out / "runs/blend-r0.5-s0/DONE").read_text())
    assert done2["spec_hash"] == done1["spec_hash"] and done2["eval_hash"] != done1["eval_hash"]
    assert done2["checkpoint"] == done1["checkpoint"] and done2["train"] == done1["train"]
    assert json.loads((out / "runs/blend-r0.5-s0/eval.json").read_text())["params"]["score_thr"] == 0.95
    assert not (out / "runs/.stale").exists()
    # the eval batch size does not change results: no re-evaluation
    p3, _ = _setup(
        tmp_path,
        **single,
        eval={"dataset": "val", "score_thr": 0.95, "sample_frames": 1, "worst_frames": 0, "batch_size": 7},
    )
    assert [o.status for o in _run(p3, out, ds, FakeTrainer())] == ["skipped"]
