"""Summarize the targeted-vs-random generation experiment from its evaluation reports.

    python docs/results/specs/active_experiment_summary.py EVALS --weak WEAK.json \
        --out docs/results/active_experiment

EVALS_DIR holds, per model, ``<model>_real_val.json`` (``synthloop evaluate`` on fruits-nuts val)
and ``<model>_test40.json`` (on 40 held-out frames of the original recipe, ``--min-iou 0.75``).
Models: ``m0`` (round 0: the 160 base frames), ``r1``/``r2`` (+40/+80 frames of the original
recipe), ``t1``/``t2`` (+40/+80 frames of the derived recipe); ``<model>_s1`` is the same run with
seed 1 (values are averaged over the seeds present). Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROUNDS = {"random": ["m0", "r1", "r2"], "targeted": ["m0", "t1", "t2"]}
ADDED = [0, 40, 80]


def slice_recall(report: dict, pred) -> tuple[float | None, int]:
    objs = [o for o in report["slices"]["objects"] if not o["ignored"] and pred(o)]
    if not objs:
        return None, 0
    return sum(o["matched"] for o in objs) / len(objs), len(objs)


def one_model(evals: Path, m: str) -> dict:
    """Metrics of one trained model: real val COCO AP/AP50 (+ hazelnut AP50), and on the synthetic
    test set (IoU 0.75) AP, recall on the weak slice (hazelnut) and overall recall."""
    real = json.loads((evals / f"{m}_real_val.json").read_text())
    out = {
        "real_val_AP": real["coco"]["bbox"]["stats"]["AP"],
        "real_val_AP50": real["coco"]["bbox"]["stats"]["AP50"],
        "real_val_AP50_hazelnut": real["coco"]["bbox"]["per_class"]["hazelnut"]["AP50"],
    }
    syn_p = evals / f"{m}_test40.json"
    if syn_p.exists():
        syn = json.loads(syn_p.read_text())
        out["synthetic_test_AP"] = syn["coco"]["bbox"]["stats"]["AP"]
        out["weak_slice_recall_iou75"], _ = slice_recall(syn, lambda o: o["category"] == "hazelnut")
        out["overall_recall_iou75"], _ = slice_recall(syn, lambda o: True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("evals", type=Path)
    ap.add_argument("--weak", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    weak = json.loads(a.weak.read_text())
    rows = []
    for arm, models in ROUNDS.items():
        for rnd, (m, added) in enumerate(zip(models, ADDED, strict=True)):
            seeds = [n for n in (m, f"{m}_s1") if (a.evals / f"{n}_real_val.json").exists()]
            if not seeds:
                continue
            per_seed = [one_model(a.evals, n) for n in seeds]
            row = {"arm": arm, "round": rnd, "model": m, "added_frames": added, "seeds": len(seeds)}
            for k in per_seed[0]:
                vals = [p[k] for p in per_seed if p.get(k) is not None]
                row[k] = sum(vals) / len(vals) if vals else None
                if len(vals) > 1:
                    row[k + "_per_seed"] = vals
            rows.append(row)
    by = {(r["arm"], r["round"]): r for r in rows}
    final_random = by.get(("random", 2))
    goal = None
    if final_random and ("targeted", 1) in by:
        t1 = by[("targeted", 1)]
        goal = {
            "random_final_AP50": final_random["real_val_AP50"],
            "targeted_half_frames_AP50": t1["real_val_AP50"],
            "met": t1["real_val_AP50"] >= final_random["real_val_AP50"],
        }
    out = {
        "weak_regions": [r.get("description") or r.get("param") for r in weak.get("regions", [])],
        "rows": rows,
        "goal_targeted_reaches_random_final_with_half_the_frames": goal,
    }
    a.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    cols = [
        "arm",
        "round",
        "added_frames",
        "seeds",
        "real_val_AP50",
        "real_val_AP",
        "real_val_AP50_hazelnut",
        "weak_slice_recall_iou75",
        "overall_recall_iou75",
        "synthetic_test_AP",
    ]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    lines += ["", f"goal (targeted +40 >= random +80 on real val AP50): {json.dumps(goal)}"]
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
