"""Does a keypoint model tell a person's left from right? Per run, against a ground truth GT (a COCO
.json or a synthloop dataset folder, e.g. held-out renders).

usage: people_pose_sides.py GT OUT.json RUN=detections.json [RUN=detections.json ...]
           --command "how the detections were made" [--min-score 0.5]

For each run:

* ``keypoint_ap`` / ``keypoint_ap50``: COCO OKS AP of its detections as they are, and
  ``swapped_ap`` / ``swapped_ap50`` with every prediction's left and right labels exchanged
  (:func:`synthloop.bodies.coco.flip_index`). A model that knows the sides loses AP when they
  are swapped; one that does not loses little.
* ``shoulder_gap_px``: the median horizontal distance (pixels) between a prediction's left and
  right shoulder, over predictions scoring at least ``--min-score``, and ``shoulder_gap_rel``
  the median of that distance over the box's width (boxes are xyxy pixels); the ground truth's
  persons with both shoulders labelled give the same two medians (``ground_truth``). A model
  unsure which side is which puts both shoulders on the same spot, between the two.
* ``faces_camera``: the share of those predictions that show the camera their front
  (:mod:`synthloop.gap.pose`), next to the ground truth's share.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from synthloop.atomic import atomic_write_json
from synthloop.bodies.coco import COCO17_KEYPOINTS, flip_index
from synthloop.evaluation.coco_metrics import coco_evaluate
from synthloop.evaluation.detections import Detections, load_detections
from synthloop.gap.pose import pose_statistics
from synthloop.importers import load_any

LEFT, RIGHT = COCO17_KEYPOINTS.index("left_shoulder"), COCO17_KEYPOINTS.index("right_shoulder")


def _ap(ds, dets: Detections) -> tuple[float, float]:
    stats = coco_evaluate(ds, dets, iou_types=("keypoints",))["keypoints"]["stats"]
    return round(float(stats["AP"]), 4), round(float(stats["AP50"]), 4)


def _swapped(dets: Detections) -> Detections:
    flip = flip_index(COCO17_KEYPOINTS)
    return Detections.from_frames(
        dataclasses.replace(fd, keypoints=None if fd.keypoints is None else fd.keypoints[:, flip])
        for fd in dets.values()
    )


def _sides(people: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float | int | None]:
    """Median shoulder gap (pixels, and over the box width) and the share facing the camera, of
    ``(keypoints (17, 3), box xyxy (4,))`` pairs."""
    both = [(k, b) for k, b in people if k[LEFT, 2] > 0 and k[RIGHT, 2] > 0]
    facing = [f for k, _ in both for f in pose_statistics(k)["faces_camera"]]
    gap = [abs(float(k[LEFT, 0] - k[RIGHT, 0])) for k, _ in both]
    rel = [g / float(b[2] - b[0]) for g, (_, b) in zip(gap, both, strict=True) if b[2] > b[0]]
    return {
        "people": len(both),
        "shoulder_gap_px": round(float(np.median(gap)), 1) if gap else None,
        "shoulder_gap_rel": round(float(np.median(rel)), 3) if rel else None,
        "faces_camera": round(float(np.mean(facing)), 3) if facing else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gt", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("runs", nargs="+", help="NAME=detections.json")
    ap.add_argument("--command", required=True)
    ap.add_argument("--min-score", type=float, default=0.5)
    args = ap.parse_args()
    ds = load_any(args.gt)
    truth = [
        (np.asarray(o.keypoints, float), np.asarray(o.bbox))
        for f in ds.frames
        for o in f.objects
        if o.keypoints
    ]
    out = {"command": args.command, "min_score": args.min_score, "ground_truth": _sides(truth), "runs": {}}
    for item in args.runs:
        name, _, path = item.partition("=")
        dets = load_detections(path)
        kept = [  # every predicted keypoint counts as labelled (its third value is a score)
            (np.column_stack([np.asarray(k, float)[:, :2], np.full(len(k), 2.0)]), box)
            for fd in dets.values()
            if fd.keypoints is not None
            for k, box, s in zip(fd.keypoints, fd.boxes, fd.scores, strict=True)
            if s >= args.min_score
        ]
        ap_, ap50 = _ap(ds, dets)
        sw, sw50 = _ap(ds, _swapped(dets))
        row = {
            "keypoint_ap": ap_,
            "keypoint_ap50": ap50,
            "swapped_ap": sw,
            "swapped_ap50": sw50,
            **_sides(kept),
        }
        out["runs"][name] = row
        print(name, json.dumps(row))
    print("ground truth", json.dumps(out["ground_truth"]))
    atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
