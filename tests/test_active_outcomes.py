"""Outcomes from a real evaluation: detected / mislocalized / missed via compute_slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthloop.active.outcomes import outcome_table
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import FrameDetections
from synthloop.evaluation.slices import compute_slices


def test_outcomes_follow_the_evaluation_matching():
    objs = [
        ObjectAnnotation(1, (0.0, 0.0, 10.0, 10.0), 100.0, attributes={"scale": 1.0, "pattern": "wood"}),
        ObjectAnnotation(1, (20.0, 0.0, 30.0, 10.0), 100.0, attributes={"scale": 0.8, "pattern": "none"}),
        ObjectAnnotation(1, (40.0, 0.0, 50.0, 10.0), 100.0, attributes={"scale": 0.9, "pattern": "none"}),
        ObjectAnnotation(1, (60.0, 0.0, 70.0, 10.0), 100.0, iscrowd=True),
    ]
    frames = [
        Frame("a", Path("/nonexistent/a.png"), 80, 20, objs, scene_params={"light": 2.0, "kind": "x"}),
        Frame(
            "b",
            Path("/nonexistent/b.png"),
            80,
            20,
            [ObjectAnnotation(1, (0.0, 0.0, 8.0, 8.0), 64.0)],
            scene_params={"light": 3.0, "kind": "y"},
        ),
    ]
    ds = Dataset([Category(1, "thing")], frames)
    # frame a: exact hit on object 0; a box overlapping object 1 with IoU 5*10 / (150) = 1/3; nothing near 2
    dets = {
        "a": FrameDetections(
            "a", np.array([[0, 0, 10, 10], [25, 0, 35, 10]]), np.array([0.9, 0.8]), np.array([1, 1])
        ),
        "b": FrameDetections("b", np.array([[0, 0, 8, 8]]), np.array([0.7]), np.array([1])),
    }
    t = outcome_table(compute_slices(ds, dets))
    assert t.outcome.tolist() == ["detected", "mislocalized", "missed", "detected"]  # crowd object dropped
    assert t.failed.tolist() == [False, True, True, False]
    assert t.recall() == 0.5 and t.counts() == {"detected": 2, "mislocalized": 1, "missed": 1}
    # frame-level params repeat on every object of the frame; missing object params are NaN
    assert t.values["scene.light"].tolist() == [2.0, 2.0, 2.0, 3.0]
    assert np.isnan(t.values["attr.scale"][3])
    assert t.kinds["scene.kind"] == "categorical" and "scene.kind=y" in t.columns
    assert t.X[:, t.columns.index("scene.kind=y")].tolist() == [0.0, 0.0, 0.0, 1.0]
    # a looser localization threshold turns the mislocalized object into a miss
    assert outcome_table(compute_slices(ds, dets), loc_iou=0.4).outcome[1] == "missed"
