"""One evaluation: COCO metrics + VOC AP + per-class precision/recall + confusion matrix + slices.

``evaluate(ds, dets)`` returns an :class:`EvaluationReport` (JSON-able, saved atomically);
``print_report`` renders it as rich tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthloop.atomic import atomic_write_json
from synthloop.dataset.types import Dataset
from synthloop.evaluation.coco_metrics import IOU_TYPES, coco_evaluate
from synthloop.evaluation.detections import EvaluationError, FrameDetections, check_detections
from synthloop.evaluation.matching import is_ignored
from synthloop.evaluation.slices import SliceTable, compute_slices
from synthloop.evaluation.voc import ConfusionMatrix, VocMode, confusion_matrix, voc_evaluate
from synthloop.jsonio import read_json, reading, require_schema

REPORT_SCHEMA = "synthloop.evaluation/1"


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate` measured. ``coco``: see :func:`coco_evaluate`; ``voc``: see
    :func:`voc_evaluate` (its per-class entries carry precision/recall at ``params["score_thr"]``);
    ``confusion``: :class:`ConfusionMatrix`; ``slices``: :class:`SliceTable`; ``summary``: counts."""

    summary: dict[str, Any]
    coco: dict[str, Any]
    voc: dict[str, Any]
    confusion: ConfusionMatrix
    slices: SliceTable
    params: dict[str, Any] = field(default_factory=dict)
    # synthloop.evaluation.bootstrap.bootstrap_coco's result, when asked for (evaluate --bootstrap)
    bootstrap: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema": REPORT_SCHEMA,
            "summary": self.summary,
            "params": self.params,
            "coco": self.coco,
            "voc": self.voc,
            "confusion": self.confusion.to_dict(),
            "slices": self.slices.to_dict(),
        }
        if self.bootstrap is not None:
            d["bootstrap"] = self.bootstrap
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> EvaluationReport:
        require_schema(d, REPORT_SCHEMA, "evaluation report", EvaluationError, path)
        with reading("evaluation report", EvaluationError, path):
            return cls(
                summary=dict(d["summary"]),
                coco=dict(d["coco"]),
                voc=dict(d["voc"]),
                confusion=ConfusionMatrix.from_dict(d["confusion"]),
                slices=SliceTable.from_dict(d["slices"], path=path),
                params=dict(d.get("params", {})),
                bootstrap=dict(d["bootstrap"]) if d.get("bootstrap") is not None else None,
            )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write canonical JSON atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> EvaluationReport:
        return cls.from_dict(read_json(path, EvaluationError, "evaluation report"), path=str(path))


def evaluate(
    ds: Dataset,
    dets: Mapping[str, FrameDetections],
    *,
    voc_mode: VocMode = "integrate",
    min_iou: float | Mapping[int | str, float] | None = None,
    score_thr: float = 0.5,
    iou_types: Sequence[str] = IOU_TYPES,
    confusion_iou: float = 0.5,
    slice_options: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Evaluate ``dets`` against ``ds``.

    ``voc_mode``/``min_iou`` (float or dict class name/id -> IoU, default 0.5) drive VOC AP, the
    per-class P/R and the slices; ``score_thr`` is the operating point for per-class
    precision/recall and the confusion matrix (slice recall uses all detections unless
    ``slice_options["score_thr"]`` says otherwise). ``slice_options`` go to :func:`compute_slices`.
    """
    check_detections(ds, dets)
    opts = dict(slice_options or {})
    coco = coco_evaluate(ds, dets, iou_types=iou_types)
    voc = voc_evaluate(ds, dets, mode=voc_mode, min_iou=min_iou, score_thr=score_thr)
    cm = confusion_matrix(ds, dets, iou=confusion_iou, score_thr=score_thr)
    slices = compute_slices(ds, dets, min_iou=min_iou, voc_mode=voc_mode, **opts)
    summary = {
        "dataset": ds.name,
        "num_frames": len(ds.frames),
        "num_gt": sum(1 for f in ds.frames for o in f.objects if not is_ignored(o)),
        "num_ignored_gt": sum(1 for f in ds.frames for o in f.objects if is_ignored(o)),
        "num_detections": sum(len(fd) for fd in dets.values()),
        "frames_with_detections": sum(1 for f in ds.frames if f.frame_id in dets),
    }
    params = {
        "voc_mode": voc_mode,
        "min_iou": slices.min_iou,
        "score_thr": float(score_thr),
        "iou_types": list(iou_types),
        "confusion_iou": float(confusion_iou),
        "slice_options": {k: v for k, v in opts.items() if k != "binnings"},
    }
    return EvaluationReport(summary, coco, voc, cm, slices, params)


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if x < 0 else f"{x:.{nd}f}"
    return str(x)


def report_tables(report: EvaluationReport, max_slices_per_group: int | None = None) -> list[Any]:
    """The rich Tables of :func:`print_report` (COCO, VOC per class, confusion, slices)."""
    from rich.table import Table

    tables: list[Any] = []
    types = [t for t in IOU_TYPES if t in report.coco]
    if types:
        t = Table(title="COCO (pycocotools)")
        t.add_column("metric")
        for it in types:
            t.add_column(it, justify="right")
        names: list[str] = []
        for it in types:
            names += [n for n in report.coco[it]["stats"] if n not in names]
        for n in names:
            t.add_row(n, *(_f(report.coco[it]["stats"].get(n)) for it in types))
        tables.append(t)
    for it, why in report.coco.get("skipped", {}).items():
        tables.append(f"[dim]COCO {it}: {why}[/dim]")
    voc = report.voc
    t = Table(title=f"VOC AP ({voc['mode']}), P/R at score >= {voc['score_thr']:g}; mAP {_f(voc['mAP'])}")
    for c in ("class", "min IoU", "GT", "dets", "AP", "TP", "FP", "precision", "recall"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for name, r in voc["per_class"].items():
        t.add_row(
            name,
            f"{r['min_iou']:g}",
            str(r["num_gt"]),
            str(r["num_dets"]),
            _f(r["ap"]),
            str(r["tp"]),
            str(r["fp"]),
            _f(r["precision"]),
            _f(r["recall"]),
        )
    tables.append(t)
    cm = report.confusion
    t = Table(title=f"Confusion (rows GT, columns predicted; IoU {cm.iou:g}, score >= {cm.score_thr:g})")
    t.add_column("GT \\ pred")
    for lab in cm.labels:
        t.add_column(lab, justify="right")
    for lab, row in zip(cm.labels, cm.matrix.tolist(), strict=True):
        t.add_row(lab, *(str(v) for v in row))
    tables.append(t)
    t = Table(title=f"Slices (recall, VOC AP {report.slices.voc_mode})")
    for c in ("group", "bin", "GT", "matched", "recall", "AP", "dets"):
        t.add_column(c, justify="left" if c in ("group", "bin") else "right")
    for g in report.slices.groups():
        rows = list(report.slices.by_group(g).values())
        for s in rows[:max_slices_per_group] if max_slices_per_group else rows:
            t.add_row(g, s.label, str(s.num_gt), str(s.num_matched), _f(s.recall), _f(s.ap), str(s.num_dets))
    tables.append(t)
    return tables


def print_report(
    report: EvaluationReport, console: Any = None, max_slices_per_group: int | None = None
) -> None:
    """Print the report's tables on ``console`` (a ``rich.console.Console``; a new one by default)."""
    from rich.console import Console

    console = console if console is not None else Console()
    s = report.summary
    console.print(
        f"[bold]{s.get('dataset') or 'dataset'}[/bold]: {s['num_frames']} frames, {s['num_gt']} objects"
        f" ({s['num_ignored_gt']} ignored), {s['num_detections']} detections"
    )
    for t in report_tables(report, max_slices_per_group):
        console.print(t)
