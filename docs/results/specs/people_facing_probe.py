"""Do rendered people teach a model which way a photographed person faces? A linear probe on
frozen ImageNet features, trained on renders, scored on photos.

usage: people_facing_probe.py REAL OUT.json NAME=RENDERS[,RENDERS...] [NAME=...] --command "..."
           [--crop person|upper] [--max-train 3000] [--resamples 1000] [--seed 0]

A keypoint model can tell a person's left from right only if it can tell a front from a back.
For every person with both shoulders labelled, the label is :mod:`synthloop.gap.pose`'s
``faces_camera`` (1 = shows the camera its front), read from the keypoints alone, in the renders
and the photos alike. Each person becomes a
224x224 crop (:func:`synthloop.gap.images.crop`: square, 15 % context; ``--crop upper`` keeps
the top half of the box, head and shoulders), embedded by ImageNet EfficientNet-Lite0
(:class:`synthloop.gap.features.LiteFeatures`, 1280 numbers). Per set of renders:

* ``renders_auc``: the probe's ROC AUC on the renders themselves, 5-fold cross-validated with the
  folds split by frame: whether the renders carry the cue at all.
* ``real_auc``: a probe trained on all of that set's people (at most ``--max-train``, a seeded
  draw) scored on every photographed person: whether the cue transfers. 0.5 = chance. Its 95 %
  interval resamples the photographed people (``--resamples``), the same draws for every set, so
  ``real_auc_minus_<first set>`` is paired.

``real_reference_auc``: a probe trained on photos, 5-fold cross-validated by image: how well
these features separate the photographed people when the probe has seen photos.

The probe: features standardised, logistic regression with C = 0.1 and balanced class weights,
fixed before any run. REAL is a COCO .json whose image paths resolve (e.g. the train split of
``people_pose_split.py``); RENDERS synthloop dataset folders. The photos here steer nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from synthloop.atomic import atomic_write_json
from synthloop.evaluation.bootstrap import quantile_interval
from synthloop.gap.features import LiteFeatures
from synthloop.gap.images import crop, load_rgb
from synthloop.gap.pose import pose_statistics
from synthloop.importers import load_any

CROP_PX = 224
PROBE_C = 0.1
FOLDS = 5


def people(paths: list[Path], mode: str, features: LiteFeatures, limit: int | None, seed: int) -> dict:
    """Crops' features (N, 1280), facing labels (N,) 0/1 and frame index (N,) of the datasets'
    persons with both shoulders labelled; at most ``limit`` of them (seeded draw)."""
    frames = [f for path in paths for f in load_any(path).frames]
    found = []
    for fi, frame in enumerate(frames):
        for o in frame.objects:
            if not o.keypoints:
                continue
            facing = pose_statistics(np.asarray(o.keypoints, float))["faces_camera"]
            if facing:
                found.append((fi, o.bbox, facing[0]))
    if limit is not None and len(found) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(found), limit, replace=False))
        found = [found[i] for i in keep]
    crops, cache = [], {}
    for fi, box, _ in found:
        if fi not in cache:
            cache = {fi: load_rgb(frames[fi])}  # found is in frame order: one image at a time
        x1, y1, x2, y2 = (float(v) for v in box)
        if mode == "upper":
            y2 = y1 + (y2 - y1) / 2.0
        crops.append(crop(cache[fi], (x1, y1, x2, y2), CROP_PX))
    return {
        "x": features.embed(crops),
        "y": np.array([f for _, _, f in found], dtype=np.int64),
        "group": np.array([fi for fi, _, _ in found], dtype=np.int64),
    }


def probe() -> Pipeline:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=PROBE_C, class_weight="balanced", max_iter=5000)
    )


def cv_auc(side: dict) -> float:
    """ROC AUC of out-of-fold probe scores, folds split by frame."""
    scores = np.zeros(len(side["y"]))
    for tr, te in GroupKFold(n_splits=FOLDS).split(side["x"], side["y"], side["group"]):
        scores[te] = probe().fit(side["x"][tr], side["y"][tr]).decision_function(side["x"][te])
    return float(roc_auc_score(side["y"], scores))


def resampled_auc(y: np.ndarray, scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """AUC of each resample (rows of ``draws``: indices); NaN where a draw holds one class."""
    out = np.full(len(draws), np.nan)
    for i, idx in enumerate(draws):
        if 0 < y[idx].sum() < len(idx):
            out[i] = roc_auc_score(y[idx], scores[idx])
    return out


def _interval(values: np.ndarray) -> list[float]:
    """The 95 % percentile interval of the finite resamples, rounded."""
    lo, hi = quantile_interval(values, np.isfinite(values), 0.025)
    return [round(float(lo), 3), round(float(hi), 3)] if lo is not None and hi is not None else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("renders", nargs="+", help="NAME=dataset folder[,folder...]")
    ap.add_argument("--command", required=True)
    ap.add_argument("--crop", choices=("person", "upper"), default="person")
    ap.add_argument("--max-train", type=int, default=3000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    features = LiteFeatures()
    real = people([args.real], args.crop, features, None, args.seed)
    draws = np.random.default_rng(args.seed).integers(0, len(real["y"]), (args.resamples, len(real["y"])))
    out: dict = {
        "command": args.command,
        "crop": args.crop,
        "probe": {"C": PROBE_C, "class_weight": "balanced", "features": "efficientnet_lite0 imagenet, 1280"},
        "real_people": int(len(real["y"])),
        "real_faces_camera": round(float(real["y"].mean()), 3),
        "real_reference_auc": round(cv_auc(real), 3),
        "sets": {},
    }
    first: np.ndarray | None = None
    for item in args.renders:
        name, _, path = item.partition("=")
        side = people(
            [Path(p) for p in path.split(",")],
            args.crop,
            features,
            args.max_train,
            args.seed,
        )
        scores = probe().fit(side["x"], side["y"]).decision_function(real["x"])
        boot = resampled_auc(real["y"], scores, draws)
        row = {
            "people": int(len(side["y"])),
            "faces_camera": round(float(side["y"].mean()), 3),
            "renders_auc": round(cv_auc(side), 3),
            "real_auc": round(float(roc_auc_score(real["y"], scores)), 3),
            "real_auc_95": _interval(boot),
        }
        if first is None:
            first, first_name = boot, name
        else:
            row[f"real_auc_minus_{first_name}_95"] = _interval(boot - first)
        out["sets"][name] = row
        print(name, json.dumps(row), flush=True)
    print("real", json.dumps({k: out[k] for k in ("real_people", "real_faces_camera", "real_reference_auc")}))
    atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
