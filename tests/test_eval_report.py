"""EvaluationReport end to end (real fruits-nuts val when present, else skipped), printing, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL
from pycocotools import mask as mask_utils

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.report import EvaluationReport, evaluate, print_report

FRUITS_VAL = REAL / "fruits-nuts" / "val.json"
needs_fruits = pytest.mark.skipif(not FRUITS_VAL.exists(), reason=f"real data not found at {FRUITS_VAL}")


def _fruits() -> Dataset:
    from synthloop.importers.coco import load_coco

    return load_coco(FRUITS_VAL)


def _perturb(ds: Dataset, seed: int) -> Detections:
    """Jittered GT boxes (sd 6%), 25% dropped, 15% relabelled, 0-2 false boxes per frame; box masks."""
    rng = np.random.default_rng(seed)
    cat_ids = [c.id for c in ds.categories]
    out = []
    for f in ds.frames:
        boxes, labels = [], []
        for o in f.objects:
            if rng.random() < 0.25:
                continue
            x1, y1, x2, y2 = o.bbox
            w, h = x2 - x1, y2 - y1
            j = rng.normal(0, 0.06, 4) * [w, h, w, h]
            boxes.append([x1 + j[0], y1 + j[1], max(x1 + j[0] + 1, x2 + j[2]), max(y1 + j[1] + 1, y2 + j[3])])
            labels.append(int(rng.choice(cat_ids)) if rng.random() < 0.15 else o.category_id)
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, f.width - 60), rng.uniform(0, f.height - 60)
            boxes.append([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)])
            labels.append(int(rng.choice(cat_ids)))
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        masks = []
        for x1, y1, x2, y2 in b.astype(float):
            rle = mask_utils.merge(
                mask_utils.frPyObjects([[x1, y1, x2, y1, x2, y2, x1, y2]], f.height, f.width)
            )
            masks.append(rle)
        out.append(FrameDetections(f.frame_id, b, rng.uniform(0.05, 1, len(b)), labels, masks=masks))
    return Detections.from_frames(out)


@needs_fruits
def test_report_on_real_val_is_consistent(tmp_path: Path) -> None:
    ds = _fruits()
    dets = _perturb(ds, 5)
    rep = evaluate(ds, dets, score_thr=0.3)
    assert set(rep.coco) >= {"bbox", "segm"} and "keypoints" in rep.coco["skipped"]
    assert 0.1 < rep.coco["bbox"]["stats"]["AP50"] < 0.95
    n_gt = rep.summary["num_gt"]
    assert n_gt == 55 and sum(v["num_gt"] for v in rep.voc["per_class"].values()) == n_gt
    # confusion diagonal = VOC TP at the same operating point; each GT row sums to the class GT count
    cm = rep.confusion.matrix
    for k, r in enumerate(rep.voc["per_class"].values()):
        assert cm[k, k] == r["tp"]
        assert cm[k].sum() == r["num_gt"]
    # detections at the threshold: every one is somewhere in the matrix (no ignored GT here)
    n_at_thr = sum(int((fd.scores >= 0.3).sum()) for fd in dets.values())
    assert cm.sum() - cm[:-1, -1].sum() == n_at_thr
    # slices: size bins partition the GT; matched total = VOC TP over all scores
    size = rep.slices.by_group("size")
    assert sum(s.num_gt for s in size.values()) == n_gt
    tp_all = evaluate(ds, dets, score_thr=0.0).voc["per_class"]
    assert sum(s.num_matched for s in size.values()) == sum(r["tp"] for r in tp_all.values())
    # real frames have no occlusion values: one 'unknown' bin
    assert list(rep.slices.by_group("occlusion")) == ["unknown"]
    # JSON round trip through an atomic save
    p = rep.save(tmp_path / "report.json")
    back = EvaluationReport.load(p)
    assert back.to_dict() == json.loads(p.read_text()) == json.loads(rep.to_json())
    # printing
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, record=True)
    print_report(rep, console)
    text = console.export_text()
    for needle in ("COCO (pycocotools)", "AP50", "VOC AP", "hazelnut", "Confusion", "background", "small"):
        assert needle in text


@needs_fruits
def test_min_iou_and_voc_mode_flow_through() -> None:
    ds = _fruits()
    dets = _perturb(ds, 1)
    loose = evaluate(ds, dets, min_iou=0.3, voc_mode="sample", iou_types=("bbox",))
    strict = evaluate(ds, dets, min_iou={"date": 0.9, "fig": 0.9, "hazelnut": 0.9}, iou_types=("bbox",))
    assert loose.voc["mode"] == "sample" and loose.slices.voc_mode == "sample"
    assert loose.slices.min_iou == {"1": 0.3, "2": 0.3, "3": 0.3}
    assert strict.voc["mAP"] < loose.voc["mAP"]
    assert sum(r["matched"] for r in strict.slices.objects) < sum(r["matched"] for r in loose.slices.objects)


@needs_fruits
def test_cli_evaluate(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from synthloop.commands.evaluate import evaluate_cmd

    app = typer.Typer()
    app.command("evaluate")(evaluate_cmd)
    app.command("noop")(lambda: None)  # keep 'evaluate' a sub-command as in the real CLI
    ds = _fruits()
    dets_path = _perturb(ds, 2).save(tmp_path / "dets.json")
    out = tmp_path / "rep.json"
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "evaluate",
            str(FRUITS_VAL),
            str(dets_path),
            "--out",
            str(out),
            "--min-iou",
            "fig=0.6",
            "--max-bins",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "VOC AP" in r.output and out.exists()
    rep = EvaluationReport.load(out)
    assert rep.voc["per_class"]["fig"]["min_iou"] == 0.6 and rep.voc["per_class"]["date"]["min_iou"] == 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "synthloop.detections/1", "frames": [{"frame_id": "1"}]}))
    r = runner.invoke(app, ["evaluate", str(FRUITS_VAL), str(bad)])
    assert r.exit_code == 2 and "bad.json: frames[0]" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["evaluate", str(FRUITS_VAL), str(dets_path), "--min-iou", "plum=0.5", "--quiet"])
    assert r.exit_code == 2 and "plum" in r.output
