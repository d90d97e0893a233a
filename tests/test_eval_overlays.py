"""Per-frame outcomes, worst-frame ranking, overlay colours, and the `evaluate` CLI forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.frame_outcomes import (
    frame_outcome,
    frame_outcomes,
    rank_worst,
    render_outcome_overlay,
    write_outcome_overlays,
)
from synthloop.evaluation.matching import resolve_min_iou
from synthloop.overlays import GREEN, ORANGE, RED
from synthloop.training.toydata import make_toy_dataset


@pytest.fixture()
def toy(tmp_path: Path) -> Dataset:
    return make_toy_dataset(tmp_path / "toy", num_frames=4, objects_per_frame=(2, 3), seed=3)


def _dets(ds: Dataset) -> Detections:
    """frame 0: every GT found; frame 1: nothing; frame 2: GT found + 1 false box; frame 3: first GT
    missed, the rest found, one low-score false box (below 0.5)."""
    out = []
    for i, f in enumerate(ds.frames):
        boxes = [o.bbox for o in f.objects]
        labels = [o.category_id for o in f.objects]
        scores = [0.9] * len(boxes)
        if i == 1:
            boxes, labels, scores = [], [], []
        if i == 2:
            boxes.append((0.0, 0.0, 6.0, 6.0))
            labels.append(1)
            scores.append(0.8)
        if i == 3:
            boxes, labels, scores = boxes[1:], labels[1:], scores[1:]
            boxes.append((100.0, 80.0, 110.0, 90.0))
            labels.append(1)
            scores.append(0.2)
        out.append(FrameDetections(f.frame_id, np.array(boxes).reshape(-1, 4), scores, labels))
    return Detections.from_frames(out)


def test_outcomes_counts_and_f1(toy: Dataset) -> None:
    dets = _dets(toy)
    oc = frame_outcomes(toy, dets, score_thr=0.5)
    n = [len(f.objects) for f in toy.frames]
    assert [(o.tp, o.fp, o.missed) for o in oc] == [
        (n[0], 0, 0),
        (0, 0, n[1]),
        (n[2], 1, 0),
        (n[3] - 1, 0, 1),
    ]
    assert oc[0].f1 == 1.0 and oc[1].f1 == 0.0
    assert oc[2].f1 == pytest.approx(2 * n[2] / (2 * n[2] + 1))
    assert oc[3].missed_gt == [0] and oc[3].det_index == list(range(n[3] - 1))  # the 0.2 box is dropped
    # at a threshold of 0.1 the low-score box of frame 3 counts as a false positive
    low = frame_outcomes(toy, dets, score_thr=0.1)
    assert low[3].fp == 1


def test_rank_worst_orders(toy: Dataset) -> None:
    oc = frame_outcomes(toy, _dets(toy))
    assert [o.frame_id for o in rank_worst(oc, "f1")][0] == toy.frames[1].frame_id
    assert [o.frame_id for o in rank_worst(oc, "f1")][-1] == toy.frames[0].frame_id
    by_missed = rank_worst(oc, "missed")
    assert by_missed[0].missed >= by_missed[1].missed >= by_missed[-1].missed
    with pytest.raises(Exception, match="f1' or 'missed"):
        rank_worst(oc, "iou")  # type: ignore[arg-type]


def _near(img: np.ndarray, x: int, y: int, color: tuple[int, int, int], r: int = 2) -> bool:
    patch = img[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(-1, 3)
    return bool(np.any(np.all(np.abs(patch.astype(int) - np.array(color)) <= 1, axis=1)))


def test_overlay_colours(toy: Dataset) -> None:
    dets = _dets(toy)
    ious = resolve_min_iou(toy, None)
    cats = toy.category_by_id()
    # frame 2: matched GT in green, the false box in orange
    f2 = toy.frames[2]
    fd2 = dets[f2.frame_id]
    img = render_outcome_overlay(f2, fd2, frame_outcome(f2, fd2, ious), cats)
    s = img.width // f2.width
    bar = img.height - f2.height * s  # the counts bar above the image
    assert s >= 2 and img.width == f2.width * s and 0 < bar < 40  # small images are enlarged
    a = np.asarray(img)[bar:]
    x1, y1, x2, y2 = f2.objects[0].bbox
    assert _near(a, int(x1 * s), int((y1 + y2) / 2 * s), GREEN)  # left edge of a matched box
    assert _near(a, int(5.5 * s), int(4 * s), ORANGE)  # right edge of the false box (0..6)
    assert not _near(a, int(5.5 * s), int(4 * s), RED)
    # frame 1: every GT missed: red dashed outline (red pixels and gaps along the left edge)
    f1 = toy.frames[1]
    fd1 = dets.get_frame(f1.frame_id)
    a = np.asarray(render_outcome_overlay(f1, fd1, frame_outcome(f1, fd1, ious), cats))[bar:]
    x1, y1, x2, y2 = f1.objects[0].bbox
    col = a[int((y1 + 1) * s) : int((y2 - 1) * s), int(x1 * s)]
    is_red = np.all(np.abs(col.astype(int) - np.array(RED)) <= 1, axis=1)
    assert is_red.any() and not is_red.all()
    assert not _near(a, int(x1 * s), int((y1 + y2) / 2 * s), GREEN)


def test_write_outcome_overlays_worst_first(toy: Dataset, tmp_path: Path) -> None:
    written = write_outcome_overlays(toy, _dets(toy), tmp_path / "ov", worst=2, by="f1")
    assert [p.name for p, _ in written] == [
        f"00_{toy.frames[1].frame_id}.png",
        f"01_{toy.frames[3].frame_id}.png",
    ]
    for p, _ in written:
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.width >= toy.frames[0].width
    chosen = write_outcome_overlays(toy, _dets(toy), tmp_path / "s", frames=[toy.frames[0].frame_id])
    assert len(chosen) == 1 and chosen[0][1].f1 == 1.0
    with pytest.raises(Exception, match="no frame with id"):
        write_outcome_overlays(toy, _dets(toy), tmp_path / "x", frames=["nope"])


# ---------------------------------------------------------------- CLI
def _app() -> typer.Typer:
    from synthloop.commands.evaluate import evaluate_cmd

    app = typer.Typer()
    app.command("evaluate")(evaluate_cmd)
    app.command("noop")(lambda: None)
    return app


def _toy_coco(toy: Dataset, tmp_path: Path) -> Path:
    from synthloop.exporters.coco import write_coco

    return write_coco(toy, tmp_path / "coco", copy_images=True)


def test_cli_detections_forms(toy: Dataset, tmp_path: Path) -> None:
    gt = _toy_coco(toy, tmp_path)
    from synthloop.importers.coco import load_coco

    ds = load_coco(gt)  # frame ids as the CLI will see them
    dets = Detections.from_frames(
        FrameDetections(f.frame_id, fd.boxes, fd.scores, fd.labels)
        for f, fd in zip(ds.frames, _dets(toy).values(), strict=True)
    )
    dpath = dets.save(tmp_path / "dets.json")
    runner = CliRunner()
    # the original two-argument form, report JSON only
    r = runner.invoke(
        _app(), ["evaluate", str(gt), str(dpath), "--out", str(tmp_path / "rep.json"), "--quiet"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["summary"]["num_frames"] == 4 and rep["coco"]["bbox"]["stats"]["AP50"] < 1.0
    # --detections with an output folder: report + worst-frame overlays
    out = tmp_path / "evalout"
    r = runner.invoke(
        _app(),
        ["evaluate", str(gt), "--detections", str(dpath), "--out", str(out), "--worst", "2", "--quiet"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text()) == rep
    pngs = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].startswith("00_")
    # a run/checkpoint without --data: one line, exit 2
    r = runner.invoke(_app(), ["evaluate", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--data" in r.output and "Traceback" not in r.output
    r = runner.invoke(_app(), ["evaluate", str(tmp_path / "run"), "--data", str(gt)])
    assert r.exit_code == 2 and "no such checkpoint" in r.output


def test_cli_bootstrap_with_compare(toy: Dataset, tmp_path: Path) -> None:
    gt = _toy_coco(toy, tmp_path)
    from synthloop.importers.coco import load_coco

    ds = load_coco(gt)
    dets = Detections.from_frames(
        FrameDetections(f.frame_id, fd.boxes, fd.scores, fd.labels)
        for f, fd in zip(ds.frames, _dets(toy).values(), strict=True)
    )
    perfect = Detections.from_frames(
        FrameDetections(
            f.frame_id,
            [o.bbox for o in f.objects],
            [1.0] * len(f.objects),
            [o.category_id for o in f.objects],
        )
        for f in ds.frames
    )
    dpath, ppath = dets.save(tmp_path / "dets.json"), perfect.save(tmp_path / "perfect.json")
    runner = CliRunner()
    rep_path = tmp_path / "rep.json"
    args = ["evaluate", str(gt), str(dpath), "--out", str(rep_path), "--quiet", "--bootstrap", "50"]
    r = runner.invoke(_app(), [*args, "--compare", str(ppath)])
    assert r.exit_code == 0, r.output
    assert "perfect.json - dets.json" in r.output
    b = json.loads(rep_path.read_text())["bootstrap"]
    assert b["resamples"] == 50 and b["num_images"] == 4
    d = b["differences"]["perfect.json - dets.json"]["AP50"]
    assert d["value"] > 0 and d["lo"] >= 0  # the perfect set is never worse
    assert b["runs"]["perfect.json"]["AP50"]["lo"] == 1.0
    r = runner.invoke(_app(), ["evaluate", str(gt), str(dpath), "--compare", str(ppath)])
    assert r.exit_code == 2 and "--bootstrap" in r.output
