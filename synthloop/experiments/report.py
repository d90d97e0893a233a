"""Collect a mixing experiment's results into ``results.json``, ``summary.md`` and ``report.html``.

Input: an output folder of :func:`synthloop.experiments.runner.run_experiment` (``experiment.json``
+ ``runs/<name>/{DONE,eval.json,error.json,samples/}``). Metrics per run are the COCO box metrics
(pycocotools): ``AP`` (IoU .50:.95) and ``AP50``, per class too, and the VOC mAP; pycocotools'
"undefined" (-1) becomes None. Aggregates over seeds give mean, min and max per (series, real
fraction); the best run is the finished run with the highest AP50 (ties: higher AP, then name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.experiments.html import fmt_spread, fmt_value, render_report_html
from synthloop.experiments.matrix import BASELINES, MixExperimentError, fraction_label
from synthloop.experiments.runner import EXPERIMENT_FILE, EXPERIMENT_SCHEMA, read_json_or_none, run_dir

RESULTS_SCHEMA = "synthloop.mix-results/1"
METRICS = ("AP", "AP50")


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if x < 0 or math.isnan(x) else x


def run_metrics(eval_report: dict[str, Any], iou_type: str = "bbox") -> dict[str, Any]:
    """AP, AP50, VOC mAP and per-class AP / AP50 (class name -> value) of one evaluation report dict."""
    coco = eval_report.get("coco", {}).get(iou_type)
    out: dict[str, Any] = {"AP": None, "AP50": None, "per_class_AP": {}, "per_class_AP50": {}}
    if coco:
        out["AP"] = _num(coco["stats"].get("AP"))
        out["AP50"] = _num(coco["stats"].get("AP50"))
        for name, pc in coco.get("per_class", {}).items():
            out["per_class_AP"][name] = _num(pc.get("AP"))
            out["per_class_AP50"][name] = _num(pc.get("AP50"))
    out["voc_mAP"] = _num(eval_report.get("voc", {}).get("mAP"))
    return out


def spread(values: list[float | None]) -> dict[str, Any]:
    """``{"n", "mean", "min", "max"}`` of the non-None values (None stats when there are none)."""
    v = [x for x in values if x is not None]
    if not v:
        return {"n": 0, "mean": None, "min": None, "max": None}
    return {"n": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v)}


def _images_per_s(train: dict[str, Any]) -> float | None:
    """The run's training throughput (``images_per_s`` of :func:`synthloop.training.api.train_stats`)."""
    v = train.get("images_per_s")
    return float(v) if isinstance(v, int | float) else None


def collect_results(out_dir: str | Path) -> dict[str, Any]:
    """The results dict of ``out_dir`` (schema ``synthloop.mix-results/1``; see :func:`write_report`)."""
    out = Path(out_dir)
    plan = read_json_or_none(out / EXPERIMENT_FILE)
    if plan is None or plan.get("schema") != EXPERIMENT_SCHEMA:
        raise MixExperimentError(
            f"not a mixing-experiment folder (no readable {EXPERIMENT_FILE})", path=str(out / EXPERIMENT_FILE)
        )
    exp = plan["experiment"]
    rows = [_run_row(out, r) for r in plan["runs"]]
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row["per_class_AP50"] if c not in classes]
    done_rows = [r for r in rows if r["status"] == "done"]
    series = {
        s: [_aggregate(done_rows, classes, s, f) for f in _fractions(rows, s)] for s in exp["schedules"]
    }
    baselines = {
        b: _aggregate(done_rows, classes, b, _fractions(rows, b)[0]) for b in BASELINES if _fractions(rows, b)
    }
    best = max(
        done_rows,
        key=lambda r: (
            r["AP50"] if r["AP50"] is not None else -1.0,
            r["AP"] if r["AP"] is not None else -1.0,
        ),
        default=None,
    )
    return {
        "schema": RESULTS_SCHEMA,
        "name": plan.get("name", ""),
        "eval": exp["eval"],
        "classes": classes,
        "counts": {s: sum(1 for r in rows if r["status"] == s) for s in ("done", "failed", "pending")},
        "runs": rows,
        "series": series,
        "baselines": baselines,
        "best_run": best["name"] if best else None,
    }


def _run_row(out: Path, r: dict[str, Any]) -> dict[str, Any]:
    """One planned run's row: its plan fields, and its status and metrics from its folder (``done``
    only with a DONE marker of the same spec hash and a readable eval.json)."""
    rd = run_dir(out, r["name"])
    done = read_json_or_none(rd / "DONE")
    err = read_json_or_none(rd / "error.json")
    row: dict[str, Any] = {
        k: r[k] for k in ("name", "series", "schedule", "real_fraction", "seed", "spec_hash")
    }
    row["points"] = [list(p) for p in r["points"]]
    row.update(
        {
            "status": "pending",
            "AP": None,
            "AP50": None,
            "voc_mAP": None,
            "per_class_AP": {},
            "per_class_AP50": {},
            "images_per_s": None,
            "train": {},
            "error": None,
            "samples": [],
        }
    )
    if done is not None and done.get("spec_hash") == r["spec_hash"]:
        ev = read_json_or_none(rd / "eval.json")
        if ev is None:
            row["status"] = "failed"
            row["error"] = "DONE without a readable eval.json"
        else:
            row["status"] = "done"
            row.update(run_metrics(ev, "bbox"))
            row["train"] = dict(done.get("train") or {})
            row["images_per_s"] = _images_per_s(row["train"])
            row["samples"] = sorted(str(p.relative_to(out)) for p in (rd / "samples").glob("*.png"))
    elif err is not None and err.get("spec_hash") == r["spec_hash"]:
        row["status"] = "failed"
        row["error"] = f"{err.get('type')}: {err.get('message')}"
    return row


def _fractions(rows: list[dict[str, Any]], series: str) -> list[float]:
    """The real fractions at which ``series`` has planned points, ascending."""
    return sorted({p[1] for r in rows for p in r["points"] if p[0] == series})


def _aggregate(
    done_rows: list[dict[str, Any]], classes: list[str], series: str, frac: float
) -> dict[str, Any]:
    """Mean and spread over the finished runs at point (``series``, ``frac``) of every metric."""
    members = [r for r in done_rows if [series, frac] in r["points"]]
    agg: dict[str, Any] = {"real_fraction": frac, "runs": [r["name"] for r in members]}
    for m in METRICS:
        agg[m] = spread([r[m] for r in members])
    agg["per_class_AP50"] = {c: spread([r["per_class_AP50"].get(c) for r in members]) for c in classes}
    return agg


# ---------------------------------------------------------------- Markdown
def summary_markdown(results: dict[str, Any]) -> str:
    """Markdown: per-series table (mean [min, max] over seeds) and a table of every run."""
    lines = [f"# Mixing experiment: {results['name']}", ""]
    c = results["counts"]
    lines += [
        f"Eval dataset: `{results['eval']['dataset']}`. Runs: {c['done']} done, {c['failed']} failed, "
        f"{c['pending']} pending. Best run (AP50): {results['best_run'] or '-'}.",
        "",
    ]
    for metric in METRICS:
        lines += [f"## {metric} vs real fraction (mean [min, max] over seeds)", ""]
        fracs = sorted({a["real_fraction"] for s in results["series"].values() for a in s})
        lines.append("| series | " + " | ".join(f"r={fraction_label(f)}" for f in fracs) + " |")
        lines.append("|---|" + "---:|" * len(fracs))
        for name, aggs in results["series"].items():
            by_f = {a["real_fraction"]: a for a in aggs}
            cells = [fmt_spread(by_f[f][metric], markup=False) if f in by_f else "" for f in fracs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name, a in results["baselines"].items():
            lines.append(
                f"| {name} (baseline) | "
                + " | ".join([fmt_spread(a[metric], markup=False)] * len(fracs))
                + " |"
            )
        lines.append("")
    classes = results["classes"]
    lines += ["## Runs", ""]
    head = ["run", "schedule", "real fraction", "seed", "spec hash", "status", "AP", "AP50"]
    head += [f"AP50 {c}" for c in classes] + ["train img/s"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in results["runs"]:
        cells = [
            r["name"],
            r["schedule"],
            fraction_label(r["real_fraction"]),
            str(r["seed"]),
            r["spec_hash"][:12],
            r["status"] if not r["error"] else f"{r['status']}: {r['error']}".replace("|", "/"),
            fmt_value(r["AP"]),
            fmt_value(r["AP50"]),
        ]
        cells += [fmt_value(r["per_class_AP50"].get(c)) for c in classes]
        cells.append(fmt_value(r["images_per_s"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- everything
@dataclass
class ReportPaths:
    results_json: Path
    summary_md: Path
    report_html: Path


def write_report(out_dir: str | Path) -> ReportPaths:
    """Write ``results.json``, ``summary.md`` and a self-contained ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    results = collect_results(out)
    rj = atomic_write_json(out / "results.json", results)
    md = atomic_write_bytes(out / "summary.md", summary_markdown(results).encode())
    html = atomic_write_bytes(out / "report.html", render_report_html(results, out).encode())
    return ReportPaths(rj, md, html)
