"""``synthloop evaluate``: score detections against a dataset.

Mount: ``app.command("evaluate")(synthloop.commands.evaluate.evaluate_cmd)``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synthloop.commands.export import SKIP, cli_errors, load_source
from synthloop.errors import SynthloopError


def _parse_min_iou(values: list[str] | None) -> float | dict[str, float] | None:
    """``["0.6"]`` -> 0.6; ``["date=0.7", "fig=0.5"]`` -> {"date": 0.7, "fig": 0.5}."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        try:
            return float(values[0])
        except ValueError:
            raise SynthloopError(f"--min-iou {values[0]!r} is not a number or CLASS=IOU") from None
    out: dict[str, float] = {}
    for v in values:
        name, sep, iou = v.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(iou)
        except ValueError:
            raise SynthloopError(f"--min-iou {v!r} must be CLASS=IOU") from None
    return out


@cli_errors
def evaluate_cmd(
    dataset: Path = typer.Argument(..., help="ground truth: synthloop folder, COCO .json, KITTI folder, ..."),
    detections: Path = typer.Argument(..., help="detections JSON (synthloop.detections/1)"),
    out: Path | None = typer.Option(None, "--out", help="write the report JSON here (atomically)"),
    voc_mode: str = typer.Option(
        "integrate", "--voc-mode", help="VOC AP: 'integrate' (2010+) or 'sample' (11-pt)"
    ),
    min_iou: list[str] | None = typer.Option(
        None, "--min-iou", help="IoU for all classes, or CLASS=IOU (repeat)"
    ),
    score_thr: float = typer.Option(0.5, "--score-thr", help="operating point for P/R and confusion"),
    max_bins: int | None = typer.Option(None, "--max-bins", help="print at most N bins per slice group"),
    quiet: bool = typer.Option(False, "--quiet", help="do not print the tables"),
    skip_invalid: bool = SKIP,
) -> None:
    """COCO (pycocotools), VOC AP, per-class P/R, confusion matrix and slices."""
    from synthloop.evaluation.detections import load_detections
    from synthloop.evaluation.report import evaluate, print_report

    if voc_mode not in ("integrate", "sample"):
        raise SynthloopError(f"--voc-mode must be 'integrate' or 'sample', got {voc_mode!r}")
    ds = load_source(dataset, skip_invalid)
    dets = load_detections(detections)
    report = evaluate(ds, dets, voc_mode=voc_mode, min_iou=_parse_min_iou(min_iou), score_thr=score_thr)  # type: ignore[arg-type]
    if not quiet:
        print_report(report, max_slices_per_group=max_bins)
    if out is not None:
        report.save(out)
        print(f"wrote {out}")
