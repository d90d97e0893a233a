"""End-to-end CPU mixing experiment with the real training API: a tiny synthetic dataset folder +
the real fruits-nuts train split (downscaled by the model input size), 3 real fractions x 1 seed
+ the real-only baseline, evaluated on fruits-nuts val; then `synthloop mix report` and
`synthloop evaluate RUN --data`. Tiny resolution and few iterations: it checks the plumbing and
the files, not the accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import REAL as REAL_DATA
from typer.testing import CliRunner

REAL = REAL_DATA / "fruits-nuts"
CLASSES = ("date", "fig", "hazelnut")

# about 25 s on 2 shared CPU cores: under the ~60 s bar for @pytest.mark.slow
pytestmark = pytest.mark.skipif(not (REAL / "train.json").exists(), reason=f"real data not found at {REAL}")


def test_mix_experiment_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("synthloop.training.loop", reason="training loop not available")
    pytest.importorskip("synthloop.training.predictor", reason="training predictor not available")
    import torch

    torch.set_num_threads(1)
    from synthloop.commands.evaluate import evaluate_cmd
    from synthloop.commands.mix import app as mix_app
    from synthloop.training.toydata import write_toy_folder

    write_toy_folder(tmp_path / "synth", num_frames=6, width=160, height=120, class_names=CLASSES, seed=1)
    base = {
        "name": "tiny",
        "datasets": [
            {"kind": "synthetic", "paths": ["synth"]},
            {"kind": "real", "coco_json": str(REAL / "train.json"), "images_dir": str(REAL / "images")},
        ],
        "model": {"family": "detectnet_v2", "input_width": 160, "input_height": 128},
        "backbone": {"name": "efficientnet_lite0", "weights": "package"},
        "augment": {"enabled": False},
        "mix": {"ratio": [1, 1], "finetune_epochs": 1},
        "iterations": 3,
        "batch_size": 2,
        "amp": False,
        "device": "cpu",
        "checkpoint_interval": 3,
        "log_interval": 1,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(base))
    exp = {
        "name": "tiny-mix",
        "base": "train.yaml",
        "real_fractions": [0.0, 0.5, 1.0],
        "schedules": ["blend"],
        "seeds": [0],
        "baselines": {"synthetic_only": True, "real_only": True},
        "eval": {"dataset": str(REAL / "val.json"), "batch_size": 3, "sample_frames": 2, "worst_frames": 1},
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(exp))
    out = tmp_path / "out"
    r = CliRunner().invoke(mix_app, ["run", str(tmp_path / "mix.yaml"), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    names = ["blend-r0-s0", "blend-r0.5-s0", "blend-r1-s0", "real_only-s0"]
    for n in names:
        rd = out / "runs" / n
        assert (rd / "DONE").exists(), (rd / "error.json").read_text() if (rd / "error.json").exists() else n
        ev = json.loads((rd / "eval.json").read_text())
        assert ev["summary"]["num_frames"] == 6 and "bbox" in ev["coco"]
        assert len(list((rd / "samples").glob("*.png"))) == 2
    res = json.loads((out / "results.json").read_text())
    assert [x["name"] for x in res["runs"]] == names and res["counts"]["done"] == 4
    assert res["classes"] == list(CLASSES)
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 3
    # resumable: a second run trains nothing
    r = CliRunner().invoke(
        mix_app, ["run", str(tmp_path / "mix.yaml"), "--out", str(out), "--quiet", "--no-report"]
    )
    assert r.exit_code == 0 and "0 trained, 0 re-evaluated, 4 already done" in r.output
    # evaluate a run folder on the val split
    import typer

    app = typer.Typer()
    app.command("evaluate")(evaluate_cmd)
    app.command("noop")(lambda: None)
    ev_out = tmp_path / "ev"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(out / "runs/real_only-s0/train"),
            "--data",
            str(REAL / "val.json"),
            "--out",
            str(ev_out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((ev_out / "report.json").read_text())
    assert rep["summary"]["num_frames"] == 6
    dets = json.loads((ev_out / "detections.json").read_text())
    saved = json.loads((out / "runs/real_only-s0/detections.json").read_text())
    assert {f["frame_id"] for f in dets["frames"]} <= {f["frame_id"] for f in saved["frames"]}
    assert len(list((ev_out / "overlays").glob("*.png"))) == 6
