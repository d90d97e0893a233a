"""Compact synthloop dataset folders for the GPU carry: JPEG q93 images, no depth, same records.
usage: compact.py OUT SRC [SRC...]   (each SRC a dataset folder; OUT gets one folder per SRC name)"""

import json
import shutil
import sys
from pathlib import Path

from PIL import Image

out = Path(sys.argv[1])
for src in map(Path, sys.argv[2:]):
    dst = out / src.name
    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "records").mkdir(exist_ok=True)
    for f in ("dataset.json", "recipe.yaml"):
        if (src / f).exists():
            shutil.copy(src / f, dst / f)
    if (src / "instances").exists():
        shutil.copytree(src / "instances", dst / "instances", dirs_exist_ok=True)
    for rp in sorted((src / "records").glob("*.json")):
        rec = json.loads(rp.read_text())
        img = Path(rec["image"]).with_suffix(".jpg")
        Image.open(src / rec["image"]).convert("RGB").save(dst / img, quality=93)
        rec["image"] = str(img)
        rec["depth"] = None
        (dst / "records" / rp.name).write_text(json.dumps(rec))
    print(dst, len(list((dst / "records").glob("*.json"))))
