"""``synthloop evaluate``: score a trained model (or a detections file) against a dataset.

Forms::

    synthloop evaluate RUN_OR_CHECKPOINT --data DATASET [--out DIR]   # predict, then evaluate
    synthloop evaluate DATASET --detections DETECTIONS.json [--out DIR]
    synthloop evaluate DATASET DETECTIONS.json [--out REPORT.json]     # the original form

``--out DIR`` receives ``report.json``, ``detections.json`` and ``overlays/`` (the worst frames:
matched detections green, missed ground truth red dashed, false positives orange). An ``--out``
ending in ``.json`` writes only the report there, as before.

Mount: ``app.command("evaluate")(synthloop.commands.evaluate.evaluate_cmd)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from synthloop.commands.export import SKIP, cli_errors, load_source
from synthloop.errors import SynthloopError

if TYPE_CHECKING:
    from synthloop.dataset.types import Dataset
    from synthloop.evaluation.detections import Detections, FrameDetections
    from synthloop.evaluation.report import EvaluationReport


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


def _predict(ckpt: Path, ds: Dataset, batch_size: int, why: str = "") -> Detections:
    """Detections of model ``ckpt`` on every frame of ``ds``, saying so first: a checkpoint (training
    or pruned) through the training Predictor, an exported ONNX / TensorRT model through its backend."""
    print(f"predicting {len(ds.frames)} frames with {ckpt}{why}")
    if ckpt.suffix.lower() in (".onnx", ".engine", ".plan"):
        from synthloop.deploy.infer import open_backend
        from synthloop.deploy.infer import predict_dataset as backend_predict

        return backend_predict(open_backend(ckpt), ds)
    from synthloop.training.api import predict_dataset

    return predict_dataset(ckpt, ds, batch_size=batch_size)


def _bootstrap(
    iou_type: str,
    ds: Dataset,
    main: Path,
    dets: Mapping[str, FrameDetections],
    others: list[Path],
    resamples: int,
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """Bootstrap intervals for ``dets`` (named after ``main``) and paired differences of ``others``
    (detections JSON files, or runs/checkpoints predicted on ``ds``) against it; printed too."""
    from synthloop.evaluation.bootstrap import bootstrap_coco, format_bootstrap
    from synthloop.evaluation.detections import load_detections

    runs = {main.name: dets}
    for other in others:
        if other.suffix.lower() == ".json":
            runs[other.name] = load_detections(other)
        else:
            from synthloop.training.api import resolve_checkpoint

            ckpt = resolve_checkpoint(other, prefer="best")
            runs[other.name] = _predict(ckpt, ds, batch_size, " (--compare)")
    if len(runs) != 1 + len(others):
        raise SynthloopError("--compare: give models with distinct file names")
    b = bootstrap_coco(ds, runs, resamples=resamples, seed=seed, iou_type=iou_type)
    print(format_bootstrap(b))
    return b


@cli_errors
def evaluate_cmd(
    target: Path = typer.Argument(
        ..., help="run folder or checkpoint (with --data); or the ground-truth dataset (with detections)"
    ),
    detections_arg: Path | None = typer.Argument(
        None, help="detections JSON (the original two-argument form)"
    ),
    data: Path | None = typer.Option(
        None, "--data", help="ground truth to predict on: synthloop folder, COCO .json, KITTI folder"
    ),
    detections: Path | None = typer.Option(
        None, "--detections", help="evaluate this detections JSON (synthloop.detections/1) on TARGET"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="output folder (report.json, detections.json, overlays/); *.json: the report only"
    ),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="images per predictor call"),
    worst: int = typer.Option(8, "--worst", min=0, help="overlays of the N worst frames (0: none)"),
    worst_by: str = typer.Option("f1", "--worst-by", help="rank frames by per-frame 'f1' or 'missed' count"),
    voc_mode: str = typer.Option(
        "integrate", "--voc-mode", help="VOC AP: 'integrate' (2010+) or 'sample' (11-pt)"
    ),
    min_iou: list[str] | None = typer.Option(
        None, "--min-iou", help="IoU for all classes, or CLASS=IOU (repeat)"
    ),
    score_thr: float = typer.Option(0.5, "--score-thr", help="operating point for P/R, confusion, overlays"),
    max_bins: int | None = typer.Option(None, "--max-bins", help="print at most N bins per slice group"),
    bootstrap: int = typer.Option(
        0, "--bootstrap", min=0, help="N resamples of the val images: intervals of COCO AP/AP50/AP75 (0: off)"
    ),
    compare: list[Path] | None = typer.Option(
        None,
        "--compare",
        help="with --bootstrap: another model (run, checkpoint) or detections JSON on the same data; "
        "paired intervals of the differences (repeat)",
    ),
    bootstrap_iou: str = typer.Option(
        "bbox", "--bootstrap-iou", help="bootstrap the 'bbox', 'segm' or 'keypoints' (OKS, COCO-17) AP"
    ),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="do not print the tables"),
    skip_invalid: bool = SKIP,
) -> None:
    """COCO (pycocotools), VOC AP, per-class P/R, confusion matrix, slices and worst-frame overlays.

    Example: synthloop evaluate runs/fruits --data data/fruits-nuts/val.json --out eval/fruits
    """
    from synthloop.evaluation.report import evaluate, print_report

    _check_choices(voc_mode, worst_by, bootstrap_iou, bool(compare), bootstrap)
    if detections is not None and detections_arg is not None:
        raise SynthloopError("give the detections file once: as the second argument or as --detections")
    dets_file = detections if detections is not None else detections_arg
    ds, dets = _ground_truth_and_detections(target, dets_file, data, skip_invalid, batch_size)
    iou = _parse_min_iou(min_iou)
    report = evaluate(ds, dets, voc_mode=voc_mode, min_iou=iou, score_thr=score_thr)
    if not quiet:
        print_report(report, max_slices_per_group=max_bins)
    if bootstrap:
        source = target if dets_file is None else dets_file
        report.bootstrap = _bootstrap(
            bootstrap_iou, ds, source, dets, compare or [], bootstrap, seed, batch_size
        )
    if out is not None:
        overlays = _Overlays(worst, worst_by, score_thr, iou)
        _write_outputs(out, report, ds, dets, predicted=dets_file is None, overlays=overlays)


def _check_choices(voc_mode: str, worst_by: str, bootstrap_iou: str, compare: bool, bootstrap: int) -> None:
    """One-line errors for option values outside their choices, and --compare without --bootstrap."""
    if voc_mode not in ("integrate", "sample"):
        raise SynthloopError(f"--voc-mode must be 'integrate' or 'sample', got {voc_mode!r}")
    if worst_by not in ("f1", "missed"):
        raise SynthloopError(f"--worst-by must be 'f1' or 'missed', got {worst_by!r}")
    if bootstrap_iou not in ("bbox", "segm", "keypoints"):
        raise SynthloopError(f"--bootstrap-iou must be 'bbox', 'segm' or 'keypoints', got {bootstrap_iou!r}")
    if compare and not bootstrap:
        raise SynthloopError("--compare needs --bootstrap N (the paired intervals are what it reports)")


def _ground_truth_and_detections(
    target: Path, dets_file: Path | None, data: Path | None, skip_invalid: bool, batch_size: int
) -> tuple[Dataset, Detections]:
    """(dataset, detections): TARGET is the dataset when a detections file is given; otherwise
    TARGET is a run or checkpoint (its best checkpoint) that predicts on ``data``."""
    from synthloop.evaluation.detections import load_detections

    if dets_file is not None:
        if data is not None:
            raise SynthloopError("with a detections file, TARGET is the dataset: drop --data")
        return load_source(target, skip_invalid), load_detections(dets_file)
    if data is None:
        raise SynthloopError(
            "--data DATASET is required to evaluate a run or checkpoint (or pass --detections FILE)",
            path=str(target),
        )
    from synthloop.training.api import resolve_checkpoint

    ckpt = resolve_checkpoint(target, prefer="best")
    ds = load_source(data, skip_invalid)
    return ds, _predict(ckpt, ds, batch_size)


@dataclass(frozen=True)
class _Overlays:
    """Which worst-frame overlays to draw: ``worst`` frames (0: none) ranked ``by`` f1 or missed,
    at the operating point ``score_thr`` and the per-class IoU ``min_iou``."""

    worst: int
    by: str
    score_thr: float
    min_iou: float | dict[str, float] | None


def _write_outputs(
    out: Path,
    report: EvaluationReport,
    ds: Dataset,
    dets: Detections,
    *,
    predicted: bool,
    overlays: _Overlays,
) -> None:
    """``out``/report.json (or the report alone when ``out`` is a .json path), the predicted
    detections.json, and the worst frames' overlays under ``out``/overlays."""
    from synthloop.evaluation.frame_outcomes import write_outcome_overlays

    if out.suffix.lower() == ".json":
        report.save(out)
        print(f"wrote {out}")
        return
    report.save(out / "report.json")
    if predicted:
        dets.save(out / "detections.json")
    written: list[tuple[Path, Any]] = []
    if overlays.worst:
        written = write_outcome_overlays(
            ds,
            dets,
            out / "overlays",
            worst=overlays.worst,
            by=overlays.by,
            score_thr=overlays.score_thr,
            min_iou=overlays.min_iou,
        )
    print(
        f"wrote {out}/report.json" + (", detections.json" if predicted else "") + f", {len(written)} overlays"
    )
