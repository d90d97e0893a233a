"""Report of a mixing experiment from a synthetic results set: results.json, summary.md, report.html."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synthloop.atomic import atomic_write_json
from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections, FrameDetections
from synthloop.evaluation.frame_outcomes import write_outcome_overlays
from synthloop.evaluation.report import evaluate
from synthloop.experiments.report import collect_results, summary_markdown, write_report
from synthloop.experiments.runner import EXPERIMENT_FILE, EXPERIMENT_SCHEMA
from synthloop.training.toydata import make_toy_dataset

# (name, series points, schedule, fraction, seed, detection quality: fraction of GT found)
RUNS = [
    (
        "blend-r0-s0",
        [["blend", 0.0], ["pretrain_finetune", 0.0], ["synthetic_only", 0.0]],
        "blend",
        0.0,
        0,
        0.3,
    ),
    (
        "blend-r0-s1",
        [["blend", 0.0], ["pretrain_finetune", 0.0], ["synthetic_only", 0.0]],
        "blend",
        0.0,
        1,
        0.4,
    ),
    ("blend-r0.5-s0", [["blend", 0.5]], "blend", 0.5, 0, 0.6),
    ("blend-r0.5-s1", [["blend", 0.5]], "blend", 0.5, 1, 0.8),
    ("pretrain_finetune-r0.5-s0", [["pretrain_finetune", 0.5]], "pretrain_finetune", 0.5, 0, 0.7),
    ("pretrain_finetune-r0.5-s1", [["pretrain_finetune", 0.5]], "pretrain_finetune", 0.5, 1, 1.0),
    ("real_only-s0", [["real_only", 1.0]], "blend", 1.0, 0, 0.5),
    ("real_only-s1", [["real_only", 1.0]], "blend", 1.0, 1, None),  # failed
    ("blend-r1-s0", [["blend", 1.0]], "blend", 1.0, 0, "pending"),
]


def _dets(ds: Dataset, found: float, seed: int) -> Detections:
    """Exact boxes for the first ``found`` share of each frame's GT (score 0.9), plus one false box."""
    rng = np.random.default_rng(seed)
    out = []
    for f in ds.frames:
        keep = [o for o in f.objects if rng.random() < found]
        boxes = [o.bbox for o in keep] + [(1.0, 1.0, 9.0, 9.0)]
        out.append(
            FrameDetections(
                f.frame_id, np.array(boxes), [0.9] * len(keep) + [0.6], [o.category_id for o in keep] + [1]
            )
        )
    return Detections.from_frames(out)


def make_results_folder(root: Path) -> tuple[Path, Dataset]:
    ds = make_toy_dataset(
        root / "toy", num_frames=6, objects_per_frame=(2, 3), class_names=("date", "fig", "hazelnut")
    )
    out = root / "exp"
    runs = []
    for name, points, sched, frac, seed, q in RUNS:
        h = f"{abs(hash(name)) % 16**12:012x}" * 5 + "abcd"
        runs.append(
            {
                "name": name,
                "series": points[0][0],
                "schedule": sched,
                "real_fraction": frac,
                "seed": seed,
                "spec_hash": h,
                "points": points,
            }
        )
        rd = out / "runs" / name
        if q is None:
            atomic_write_json(
                rd / "error.json", {"spec_hash": h, "type": "RuntimeError", "message": "CUDA out of memory"}
            )
        elif q != "pending":
            dets = _dets(ds, q, seed)
            evaluate(ds, dets, iou_types=["bbox"]).save(rd / "eval.json")
            write_outcome_overlays(ds, dets, rd / "samples", frames=[f.frame_id for f in ds.frames[:2]])
            atomic_write_json(rd / "DONE", {"spec_hash": h, "train": {"images_per_s": 10.0 + seed}})
    atomic_write_json(
        out / EXPERIMENT_FILE,
        {
            "schema": EXPERIMENT_SCHEMA,
            "name": "toy-mix",
            "experiment": {
                "schedules": ["blend", "pretrain_finetune"],
                "eval": {"dataset": str(root / "toy"), "score_thr": 0.5},
            },
            "runs": runs,
        },
    )
    return out, ds


def test_collect_results_aggregates(tmp_path: Path) -> None:
    out, _ = make_results_folder(tmp_path)
    res = collect_results(out)
    assert res["counts"] == {"done": 7, "failed": 1, "pending": 1}
    by = {r["name"]: r for r in res["runs"]}
    assert by["real_only-s1"]["status"] == "failed" and "out of memory" in by["real_only-s1"]["error"]
    assert by["blend-r1-s0"]["status"] == "pending" and by["blend-r1-s0"]["AP50"] is None
    assert res["classes"] == ["date", "fig", "hazelnut"]
    # more GT found -> higher AP50 (one false box per frame in every run)
    assert by["pretrain_finetune-r0.5-s1"]["AP50"] > by["blend-r0-s0"]["AP50"]
    assert by["blend-r0.5-s1"]["images_per_s"] == 11.0
    blend = {a["real_fraction"]: a for a in res["series"]["blend"]}
    assert set(blend) == {0.0, 0.5, 1.0}
    a = blend[0.5]["AP50"]
    vals = [by["blend-r0.5-s0"]["AP50"], by["blend-r0.5-s1"]["AP50"]]
    assert (
        a["n"] == 2
        and a["mean"] == pytest.approx(sum(vals) / 2)
        and (a["min"], a["max"]) == (min(vals), max(vals))
    )
    assert blend[1.0]["AP50"]["n"] == 0  # pending run only
    # the merged r=0 runs count for both schedules and the synthetic-only baseline
    pf0 = {a["real_fraction"]: a for a in res["series"]["pretrain_finetune"]}[0.0]
    assert pf0["runs"] == ["blend-r0-s0", "blend-r0-s1"]
    assert res["baselines"]["synthetic_only"]["AP50"]["mean"] == pytest.approx(blend[0.0]["AP50"]["mean"])
    assert res["baselines"]["real_only"]["AP50"]["n"] == 1  # the failed seed is left out
    best = max((r for r in res["runs"] if r["AP50"] is not None), key=lambda r: r["AP50"])
    assert res["best_run"] == best["name"]


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tds = 0
        self.tables = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "td":
            self.tds += 1
        if tag == "table":
            self.tables += 1
        if tag in ("script", "link") or (tag != "img" and any(k in a for k in ("src", "href"))):
            self.external.append(tag)


def test_write_report_files(tmp_path: Path) -> None:
    out, _ = make_results_folder(tmp_path)
    paths = write_report(out)
    res = json.loads(paths.results_json.read_text())
    assert res["schema"] == "synthloop.mix-results/1" and len(res["runs"]) == len(RUNS)
    # HTML: self-contained, figures and overlays embedded as decodable PNGs, tables filled
    p = _Collect()
    p.feed(paths.report_html.read_text())
    assert not p.external
    assert len(p.imgs) >= 3 + 2  # AP50, AP, per-class figures + sample overlays
    sizes = []
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.load()
            sizes.append(im.size)
            assert im.width > 100 and im.height > 100
            # not a blank image: a figure has axes and lines, an overlay has content
            assert len(np.unique(np.asarray(im.convert("L")))) > 5
    html_text = paths.report_html.read_text()
    for r in RUNS:
        assert f">{r[0]}<" in html_text  # every run is in the table
    assert p.tables >= 3 and p.tds >= len(RUNS) * 8
    assert "CUDA out of memory" in html_text
    # the best run's and the synthetic-only run's sample overlays are both shown
    assert f"best run: {res['best_run']}" in html_text and "synthetic only: blend-r0-" in html_text
    md = paths.summary_md.read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ("-s0 |" in ln or "-s1 |" in ln)]
    assert len(rows) == len(RUNS)
    assert summary_markdown(collect_results(out)) == md


def test_mix_report_cli(tmp_path: Path) -> None:
    from synthloop.commands.mix import app

    out, _ = make_results_folder(tmp_path)
    r = CliRunner().invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and (out / "summary.md").exists()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not a mixing-experiment folder" in r.output and "Traceback" not in r.output
