"""Compact synthloop dataset folders to move them to a GPU machine: JPEG images (quality 93 unless
--quality), no depth, same records.

usage: compact.py OUT SRC [SRC...] [--first N] [--skip K] [--name NAME] [--no-instances] [--quality Q]

Each SRC is a dataset folder; OUT gets one folder per SRC (named after it, or NAME). With --skip K
and --first N only the records K .. K+N-1 (in frame order) are kept: one long render serves several
arms (frames 0-99 as round 0, frames 100-159 as added frames) without rendering twice.
"""

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out", type=Path)
ap.add_argument("src", type=Path, nargs="+")
ap.add_argument("--first", type=int, default=None)
ap.add_argument("--skip", type=int, default=0)
ap.add_argument("--name", default=None)
ap.add_argument("--no-instances", action="store_true")
ap.add_argument("--quality", type=int, default=93, choices=range(50, 101), metavar="50..100")
args = ap.parse_args()
for src in args.src:
    dst = args.out / (args.name or src.name)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "records").mkdir(exist_ok=True)
    for f in ("dataset.json", "recipe.yaml"):
        if (src / f).exists():
            shutil.copy(src / f, dst / f)
    records = sorted((src / "records").glob("*.json"))[args.skip :]
    records = records[: args.first] if args.first is not None else records
    for rp in records:
        rec = json.loads(rp.read_text())
        img = Path(rec["image"]).with_suffix(".jpg")
        Image.open(src / rec["image"]).convert("RGB").save(dst / img, quality=args.quality)
        rec["image"] = str(img)
        rec["depth"] = None
        if args.no_instances:
            rec["instance_map"] = None
        elif rec.get("instance_map"):
            (dst / rec["instance_map"]).parent.mkdir(exist_ok=True)
            shutil.copy(src / rec["instance_map"], dst / rec["instance_map"])
        (dst / "records" / rp.name).write_text(json.dumps(rec))
    print(dst, len(list((dst / "records").glob("*.json"))))
