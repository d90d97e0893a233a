"""Render-farm benchmark: throughput with 1 and 2 local workers, and one worker's RSS over a long run.

    python benchmarks/farm.py [--frames 24] [--long-frames 1000] [--out benchmarks/results/farm.json]

Throughput: the same job (recipe ``shapes`` at its small resolution unless --recipe) is planned
three times and run with ``run_local``: 1 worker x 1 Blender thread, 2 workers x 1 thread, and
1 worker x 2 threads (for reference). Frames/s are wall-clock over the whole job including worker
start-up. Target: 2 workers >= 1.8x one worker on 2 cores.

RSS: one Blender worker (restarts disabled) renders and annotates ``--long-frames`` frames; its
RSS is sampled after every frame. Growth = (RSS at the end - RSS after the warm-up frames) / RSS
after warm-up. Target <= 5 % over 1,000 frames.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json
from synthloop.farm.executors import run_local
from synthloop.farm.plan import plan_job
from synthloop.generators.blender_renderer import BlenderRenderer
from synthloop.geometry.annotate import annotate_frame
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.sampler import sample_scene


def throughput(recipe: str, frames: int, workers: int, threads: int, shards: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job"
        plan_job(recipe, frames, 0, shards, job)
        t0 = time.perf_counter()
        s = run_local(job, workers=workers, threads=threads, quiet=True)
        wall = time.perf_counter() - t0
        if s.shards_failed or s.frames_failed:
            raise SystemExit(f"job failed: {s}")
    return frames / wall


def rss_run(recipe_name: str, frames: int, warmup: int) -> dict:
    recipe = load_recipe(recipe_name)
    samples = []
    with BlenderRenderer(threads=1, restart_every=None, max_rss_growth=float("inf")) as r:
        t0 = time.perf_counter()
        for i in range(frames):
            spec = sample_scene(recipe, 123, i)
            fr = r.render(spec)
            annotate_frame(spec, fr.instance_ids, fr.depth)
            samples.append(r.rss_bytes)
            if (i + 1) % 100 == 0:
                print(
                    f"  rss frame {i + 1}: {r.rss_bytes / 2**20:.1f} MB ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    base = samples[warmup - 1]
    return {
        "frames": frames,
        "warmup_frames": warmup,
        "rss_after_warmup_mb": round(base / 2**20, 1),
        "rss_end_mb": round(samples[-1] / 2**20, 1),
        "rss_max_mb": round(max(samples) / 2**20, 1),
        "growth_fraction": round((samples[-1] - base) / base, 4),
        "target_growth": 0.05,
        "rss_every_100_mb": [round(s / 2**20, 1) for s in samples[99::100]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="shapes")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--long-frames", type=int, default=1000, help="0 skips the RSS run")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "farm.json"))
    args = ap.parse_args()

    fig: dict = {"recipe": args.recipe, "frames": args.frames, "cpu_count": os.cpu_count()}
    one = throughput(args.recipe, args.frames, workers=1, threads=1, shards=2)
    two = throughput(args.recipe, args.frames, workers=2, threads=1, shards=2)
    one_t2 = throughput(args.recipe, args.frames, workers=1, threads=2, shards=2)
    fig.update(
        {
            "fps_1_worker_1_thread": round(one, 3),
            "fps_2_workers_1_thread": round(two, 3),
            "fps_1_worker_2_threads": round(one_t2, 3),
            "speedup_2_workers": round(two / one, 3),
            "speedup_2_workers_vs_1_worker_2_threads": round(two / one_t2, 3),
            "target_speedup": 1.8,
        }
    )
    for k, v in fig.items():
        print(f"{k:40s} {v}", flush=True)
    if args.long_frames:
        fig["rss"] = rss_run(args.recipe, args.long_frames, args.warmup)
        for k, v in fig["rss"].items():
            print(f"rss.{k:36s} {v}")
    atomic_write_json(args.out, fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
