"""Fixtures shared by several test modules (plain builders and constants: helpers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_done_shard_frame

from synthloop.generators.renderer import RenderedFrame
from synthloop.geometry.annotate import zbuffer_scene
from synthloop.geometry.preview import preview_frame
from synthloop.scenes.spec import SceneSpec


@pytest.fixture(scope="session")
def ui_workspace(tmp_path_factory) -> Path:
    """A small workspace for the web UI: a toy synthloop dataset whose records carry scene
    parameters and occlusions, a COCO export, a broken dataset, a farm job with one frame done and
    one failed, a KITTI export, a mix experiment and an active loop with
    their report.html, a run with metrics, an evaluation (frame 0
    missed) and a DetectNet checkpoint whose coverage head is set to find class ``date`` (id 1)
    everywhere (untrained otherwise), and a training spec.

    Frame ``i`` of ``toy`` has ``scene_params`` {"light": 0.1 * i, "dist": 1 + i} and occlusion
    ``0.1 * i`` on each of its objects."""
    import numpy as np
    import torch

    from synthloop.dataset.folder import load_dataset
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.evaluation.frame_outcomes import write_outcome_overlays
    from synthloop.evaluation.report import evaluate
    from synthloop.exporters.coco import write_coco
    from synthloop.exporters.kitti import write_kitti
    from synthloop.farm.plan import plan_job
    from synthloop.training.build import build_model
    from synthloop.training.checkpoints import save_training_checkpoint
    from synthloop.training.spec import parse_spec
    from synthloop.training.toydata import make_toy_dataset, write_toy_folder

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ui_ws")
    toy = write_toy_folder(root / "toy", num_frames=6, seed=0)
    for p in sorted((toy / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        i = int(p.stem)
        rec["scene_params"] = {"light": round(0.1 * i, 3), "dist": 1.0 + i, "kind": "toy"}
        for o in rec["objects"]:
            o["occlusion"] = round(0.1 * i, 3)
        p.write_text(json.dumps(rec))
    write_coco(make_toy_dataset(root / "realimg", 3, seed=7, source="real"), root / "real")
    (root / "broken").mkdir()
    (root / "broken" / "dataset.json").write_text("{not json")
    plan_job("tabletop", 4, 0, 2, root / "job")
    write_done_shard_frame(root / "job" / "shards" / "0000", 0)
    (root / "job" / "shards" / "0001" / "failures").mkdir(parents=True)
    (root / "job" / "shards" / "0001" / "failures" / "000003.json").write_text('{"error": "render crashed"}')
    spec_d = {
        "datasets": [{"kind": "synthetic", "paths": ["../toy"]}],  # relative to the spec file
        "model": {
            "family": "detectnet_v2",
            "input_width": 128,
            "input_height": 96,
            # a few iterations leave coverage low: cluster from 0.05 so "try it" has boxes to draw
            "detectnet": {"cluster": {"*": {"coverage_threshold": 0.05}}},
        },
        "backbone": {"name": "efficientnet_lite0", "weights": "package", "freeze_bn": True},
        "augment": {"enabled": False},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0},
        "lr_schedule": {"name": "constant"},
        "batch_size": 2,
        "device": "cpu",
        "amp": False,
        "log_interval": 1,
        "iterations": 6,
    }
    import yaml

    (root / "specs").mkdir()
    (root / "specs" / "tiny.yaml").write_text(yaml.safe_dump(spec_d))
    spec = parse_spec({**spec_d, "datasets": [{"kind": "synthetic", "paths": [str(toy)]}]})
    run = root / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    model = build_model(spec, ["date", "fig"], pretrained=False)
    with torch.no_grad():  # a detector that sees "date" everywhere: boxes to draw, deterministically
        model.cov_head.weight.zero_()
        model.cov_head.bias.copy_(torch.tensor([4.0, -10.0]))
        model.bbox_head.weight.zero_()  # and a 35 px box around every grid cell (bbox_norm 35)
        model.bbox_head.bias.copy_(torch.tensor([-0.5, -0.5, 0.5, 0.5] * 2))
    save_training_checkpoint(
        run / "checkpoints" / "last.pt",
        model,
        spec.model_dump(mode="json"),
        classes=["date", "fig"],
        category_ids=[1, 2],
        family="detectnet_v2",
    )
    lines = [{"kind": "train", "step": s, "loss": 10.0 / s, "lr": 0.001} for s in (1, 2, 3)]
    lines.append(
        {"kind": "validation", "step": 3, "precision": 0.5, "recall": 0.25, "f1": 1 / 3, "AP": 0.125}
    )
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "spec.json").write_text(json.dumps(spec.model_dump(mode="json")))
    # an evaluation of the run: ground truth with frame 0's boxes dropped (missed), so AP < 1
    ds = load_dataset(toy)
    dets = {
        f.frame_id: FrameDetections(
            f.frame_id,
            np.array([o.bbox for o in f.objects] if i else np.zeros((0, 4)), np.float32).reshape(-1, 4),
            np.ones(len(f.objects) if i else 0, np.float32),
            np.array([o.category_id for o in f.objects] if i else [], np.int64),
        )
        for i, f in enumerate(ds.frames)
    }
    evaluate(ds, dets, iou_types=("bbox",)).save(run / "eval" / "report.json")
    write_outcome_overlays(ds, dets, run / "eval" / "overlays", worst=2)
    write_kitti(ds, root / "kitti")
    (root / "loop").mkdir()
    (root / "loop" / "loop.yaml").write_text("name: toy-loop\n")
    (root / "loop" / "report.html").write_text("<html><body><h1>Active loop report</h1></body></html>")
    (root / "mix").mkdir()
    (root / "mix" / "experiment.json").write_text(json.dumps({"schema": "synthloop.mix-experiment/1"}))
    (root / "mix" / "report.html").write_text("<html><body><h1>Mixing report</h1></body></html>")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthloop folder of 4 toy frames (``synth``) and a COCO file of 4 other toy frames
    (``real``), for the training tests' blend specs. A module may override it with its own."""
    from synthloop.exporters.coco import write_coco
    from synthloop.training.toydata import make_toy_dataset, write_toy_folder

    root = tmp_path_factory.mktemp("toydata")
    synth = write_toy_folder(root / "synth", num_frames=4, seed=0)
    real = write_coco(make_toy_dataset(root / "realimg", 4, seed=7, source="real"), root / "real")
    return {"synth": synth, "real": real}


class ZBufferRenderer:
    """``Renderer`` stand-in: the z-buffer preview as rgb, exact ids and depth. Counts its renders."""

    renders = 0

    def render(self, spec: SceneSpec) -> RenderedFrame:
        ZBufferRenderer.renders += 1
        rgb, _ = preview_frame(spec)
        ids, depth = zbuffer_scene(spec)
        return RenderedFrame(rgb=rgb, instance_ids=ids.astype(np.int32), depth=depth.astype(np.float32))

    def close(self) -> None:
        pass


@pytest.fixture
def zbuffer_renderer():
    """A factory of :class:`ZBufferRenderer` (``ZBufferRenderer.renders`` reset to 0)."""
    ZBufferRenderer.renders = 0
    return ZBufferRenderer


def _colour_features(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1, 3).astype(np.float64) / 255.0
    return np.concatenate([x.mean(1), x.std(1)], axis=1) * 10


@pytest.fixture
def colour_features():
    """A cheap stand-in for the Lite0 embedder: (N, H, W, 3) uint8 -> (N, 6) mean and std of RGB."""
    return _colour_features
