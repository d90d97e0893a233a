"""Per-run summary of a people_pose_gpu.sh work folder: iterations, keypoint loss, real-val AP.

usage: people_pose_runs.py WORK OUT.json --command "how WORK was made"

For each RUN under WORK/runs/ (``<arm>_s<seed>``): the last logged step (iterations), the first
and last logged ``loss_keypoint`` (metrics.jsonl), the logged wall seconds of its last step, and
COCO AP / AP50 / AP75 of boxes and keypoints (OKS) on the real val split, from
WORK/eval/RUN/report.json. A run without a report is listed with ``real_val: null``.
"""

import argparse
import json
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("work", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--command", required=True)
args = ap.parse_args()


def train_rows(metrics: Path) -> list[dict]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"]


def real_val(report: Path) -> dict | None:
    if not report.is_file():
        return None
    coco = json.loads(report.read_text())["coco"]
    return {
        iou: {k: round(float(coco[iou]["stats"][k]), 4) for k in ("AP", "AP50", "AP75")}
        for iou in ("bbox", "keypoints")
        if iou in coco
    }


runs = {}
for run in sorted(p for p in (args.work / "runs").iterdir() if p.is_dir()):
    rows = train_rows(run / "metrics.jsonl")
    runs[run.name] = {
        "iterations": max((int(r["step"]) for r in rows), default=0),
        "logged_wall_s": round(float(rows[-1]["wall_s"]), 1) if rows else None,
        "first_logged_loss_keypoint": round(float(rows[0]["loss_keypoint"]), 3) if rows else None,
        "last_logged_loss_keypoint": round(float(rows[-1]["loss_keypoint"]), 3) if rows else None,
        "real_val": real_val(args.work / "eval" / run.name / "report.json"),
    }
args.out.write_text(json.dumps({"command": args.command, "runs": runs}, indent=1) + "\n")
print(json.dumps(runs, indent=1))
