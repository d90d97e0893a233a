"""Split COCO person-keypoint photos by image (seeded) into train.json / val.json for the pose arms.

usage: people_pose_split.py SRC_JSON OUT_DIR [--val-fraction 0.3] [--seed 0]

SRC_JSON: ../shared/data/real/coco-person/person_keypoints.json. Images are drawn for val with
``synthloop.dataset.split.split_dataset`` among the images that carry at least one person with
labelled keypoints (so val always scores keypoints); the other images (with or without
keypoints) are train. Both are written as COCO json with the images hard-linked under OUT_DIR.
"""

import argparse
from dataclasses import replace
from pathlib import Path

from synthloop.dataset.split import split_dataset
from synthloop.exporters.coco import write_coco
from synthloop.importers.coco import load_coco

ap = argparse.ArgumentParser()
ap.add_argument("src", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--val-fraction", type=float, default=0.3)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

ds = load_coco(args.src)
with_kp = replace(ds, frames=[f for f in ds.frames if any(o.num_keypoints > 0 for o in f.objects)])
val, _ = split_dataset(with_kp, fraction=args.val_fraction, seed=args.seed)
val_ids = {f.frame_id for f in val.frames}
train = replace(ds, frames=[f for f in ds.frames if f.frame_id not in val_ids], name="coco-person-train")
val = replace(val, name="coco-person-val")
for name, part in (("train", train), ("val", val)):
    path = write_coco(part, args.out / name)
    n_kp = sum(o.num_keypoints > 0 for f in part.frames for o in f.objects)
    print(f"{name}: {len(part.frames)} images, {n_kp} persons with keypoints -> {path}")
