"""Wall time of ``synthloop gap`` (features on the CPU) on N synthetic frames + real photos.

    python benchmarks/gap.py --dataset DIR [--frames 200] [--real PATH ...] [--threads 2]
        [--out benchmarks/results/gap.json]

``--dataset``: a synthloop dataset folder (e.g. ``synthloop generate`` output); its first
``--frames`` frames are used, cycled when it holds fewer (the cost per frame is what is timed).
``--real``: one or more real sides, each timed separately: a COCO json (labeled: statistics, crops,
per-class KID) or a folder of photos (unlabeled: image-level). Default: the fruits-nuts training
split (8 labeled photos) and the fruits-nuts image folder (14 photos, unlabeled; timing only, nothing
is steered by it). Each run includes loading the Lite0 weights, reading and measuring every image,
the features, the KIDs with 100 bootstrap resamples and the HTML report; the goal is < 120 s for 200
frames + 14 photos on a 2-core CPU. Prints one line per run and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import load_dataset
from synthloop.gap.run import gap_to_folder
from synthloop.importers.images import load_labeled_or_folder

REPO = Path(__file__).resolve().parents[1]
FRUITS = REPO.parent / "shared" / "data" / "real" / "fruits-nuts"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gap.json"
GOAL_S = 120.0


def frames_of(root: str, n: int):
    """The dataset at ``root`` with exactly ``n`` frames (its first n, cycled if it has fewer)."""
    ds = load_dataset(root)
    if not ds.frames:
        raise SystemExit(f"{root}: no frames")
    frames = [ds.frames[i % len(ds.frames)] for i in range(n)]
    frames = [dataclasses.replace(f, frame_id=f"{i:06d}") for i, f in enumerate(frames)]
    return dataclasses.replace(ds, frames=frames), len(ds.frames)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="synthloop dataset folder (synthetic side)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--real", nargs="+", default=[str(FRUITS / "train.json"), str(FRUITS / "images")])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    synth, distinct = frames_of(args.dataset, args.frames)
    runs = []
    for real_path in args.real:
        real, labeled = load_labeled_or_folder(real_path)
        with tempfile.TemporaryDirectory() as tmp:
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            report = gap_to_folder(synth, real, Path(tmp), labeled=labeled, quiet=True)
            wall = time.perf_counter() - t0
        run = {
            "real": real_path,
            "labeled": labeled,
            "synthetic_frames": len(synth.frames),
            "distinct_synthetic_frames": distinct,
            "synthetic_size": [synth.frames[0].width, synth.frames[0].height],
            "real_images": len(real.frames),
            "wall_s": round(wall, 2),
            "goal_s": GOAL_S,
            "met": wall < GOAL_S,
            "kid_image": report.kid_image.value if report.kid_image else None,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        runs.append(run)
        kind = "labeled" if labeled else "unlabeled"
        print(
            f"gap {len(synth.frames)} frames + {len(real.frames)} photos ({kind}): {wall:.1f} s "
            f"(goal < {GOAL_S:.0f} s)",
            file=sys.stderr,
        )
    atomic_write_json(
        args.out,
        {
            "command": "python benchmarks/gap.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "dataset": args.dataset,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
