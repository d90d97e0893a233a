"""Compare experiment arms (models of several training seeds each) on a labeled real split.

    python benchmarks/arm_compare.py --data ../shared/data/real/fruits-nuts/val.json \
        --arm bundled='RES/bundled_s*/detections.json' --arm fitted='RES/fitted_s*/detections.json' \
        [--iou bbox|segm|keypoints] [--resamples 2000] [--seed 0] [--out docs/results/arms.json]

Each ``--arm NAME=GLOB`` names the ``detections.json`` files (synthloop.detections/1, as
``synthloop evaluate RUN --data VAL --out DIR`` writes them) of one arm's models. Prints, per arm,
the COCO AP50 and AP of every model (boxes by default; ``--iou segm`` masks, ``--iou keypoints``
OKS with COCO-17 sigmas), their mean and standard deviation over seeds, and the
percentile-bootstrap interval of the arm mean over resamples of the val images
(:func:`synthloop.evaluation.bootstrap.bootstrap_arms`); then each arm's paired difference to the
first arm, and its ratio to the first arm (B's AP as a share of A's, paired per resample).
Writes all of it as JSON. All figures are in AP units (0..1).
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json
from synthloop.evaluation.bootstrap import bootstrap_arms
from synthloop.evaluation.detections import load_detections
from synthloop.importers.coco import load_coco


def _arms(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``NAME=GLOB`` strings -> {arm: {run name: detections}}; runs named after their folder."""
    arms: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        files = sorted(glob.glob(pattern))
        if not sep or not files:
            raise SystemExit(f"--arm {spec!r}: expected NAME=GLOB matching detections files")
        arms[name] = {Path(f).parent.name: load_detections(Path(f)) for f in files}
    return arms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="labeled real split (COCO json)")
    ap.add_argument("--images", type=Path, default=None, help="its images folder (default: beside it)")
    ap.add_argument("--arm", action="append", required=True, help="NAME=GLOB of detections.json files")
    ap.add_argument("--iou", choices=("bbox", "segm", "keypoints"), default="bbox", help="what AP scores")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ds = load_coco(args.data, args.images)
    arms = _arms(args.arm)
    b = bootstrap_arms(ds, arms, resamples=args.resamples, seed=args.seed, iou_type=args.iou)
    per_model = {
        arm: {run: _full_stats(ds, {run: dets}, args.iou) for run, dets in runs.items()}
        for arm, runs in arms.items()
    }
    rows = []
    for arm, runs in per_model.items():
        ap50 = [r["AP50"] for r in runs.values()]
        apv = [r["AP"] for r in runs.values()]
        ci = b["runs"][arm]["AP50"]
        rows.append(
            {
                "arm": arm,
                "models": len(runs),
                "AP50_per_seed": ap50,
                "AP50_mean": statistics.fmean(ap50),
                "AP50_sd": statistics.stdev(ap50) if len(ap50) > 1 else 0.0,
                "AP50_mean_ci": [ci["lo"], ci["hi"]],
                "AP_mean": statistics.fmean(apv),
                "AP_mean_ci": [b["runs"][arm]["AP"]["lo"], b["runs"][arm]["AP"]["hi"]],
            }
        )
        print(
            f"{arm:>12}: AP50 {rows[-1]['AP50_mean']:.3f} ± {rows[-1]['AP50_sd']:.3f} (seeds "
            + ", ".join(f"{x:.3f}" for x in ap50)
            + f"), 95% CI of the mean [{ci['lo']:.3f}, {ci['hi']:.3f}]; AP {rows[-1]['AP_mean']:.3f}"
        )
    for key, d in b["differences"].items():
        s = d["AP50"]
        print(
            f"{key:>24}: AP50 {s['value']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}], "
            f"P(not above 0) {s['p_not_above_zero']:.3f}; AP {d['AP']['value']:+.3f}"
        )
    for key, r in b["ratios"].items():
        print(f"{key:>24}: " + "; ".join(_ratio_text(stat, r[stat]) for stat in ("AP", "AP50")))
    if args.out:
        atomic_write_json(
            args.out,
            {
                "data": str(args.data),
                "iou_type": args.iou,
                "arms": rows,
                "bootstrap": b,
                "per_model": per_model,
            },
        )
        print(f"wrote {args.out}")


def _ratio_text(stat: str, r: dict[str, Any]) -> str:
    """``AP ratio 0.39 [0.00, 2.10] (defined on 98% of resamples)``; ``-`` where undefined."""
    if r["value"] is None or r["lo"] is None:
        return f"{stat} ratio - (the first arm at 0)"
    return (
        f"{stat} ratio {r['value']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] "
        f"(defined on {r['defined_share']:.0%} of resamples)"
    )


def _full_stats(ds: Any, runs: dict[str, Any], iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP/AP50/AP75 (``iou_type``) of one model on the whole split (a 10-resample bootstrap's
    point value)."""
    b = bootstrap_arms(ds, {"m": runs}, resamples=10, seed=0, iou_type=iou_type)
    return {k: b["runs"]["m"][k]["value"] for k in ("AP", "AP50", "AP75")}


if __name__ == "__main__":
    main()
