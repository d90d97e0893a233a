"""Evaluation: (Dataset, Detections) -> metrics (COCO via pycocotools, PASCAL VOC) and slices.

Modules: ``detections`` (the Detections type predictors return, COCO results), ``coco_metrics``,
``matching`` (greedy VOC matching), ``voc`` (AP, P/R, confusion), ``slices`` (per-object outcomes,
per-slice recall/AP), ``report`` (everything together, rich printing).
"""

from synthloop.evaluation.coco_metrics import coco_evaluate
from synthloop.evaluation.detections import (
    Detections,
    DetectionsError,
    EvaluationError,
    FrameDetections,
    load_detections,
    save_detections,
    to_coco_results,
)
from synthloop.evaluation.report import EvaluationReport, evaluate, print_report
from synthloop.evaluation.slices import SliceMetrics, SliceTable, compute_slices
from synthloop.evaluation.voc import ConfusionMatrix, confusion_matrix, voc_evaluate

__all__ = [
    "ConfusionMatrix",
    "Detections",
    "DetectionsError",
    "EvaluationError",
    "EvaluationReport",
    "FrameDetections",
    "SliceMetrics",
    "SliceTable",
    "coco_evaluate",
    "compute_slices",
    "confusion_matrix",
    "evaluate",
    "load_detections",
    "print_report",
    "save_detections",
    "to_coco_results",
    "voc_evaluate",
]
