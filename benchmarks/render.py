"""Render benchmark: seconds per annotated frame vs raw Cycles render time, and peak RSS.

    python benchmarks/render.py [--recipe tabletop] [--frames 4] [--out benchmarks/results/render.json]

For each frame of the recipe (default ``tabletop`` at its 640x480, Cycles 16 spp) it measures the
whole pipeline (sample -> build the scene in the long-lived Blender worker -> image render + the
exact id/depth data pass -> read EXR/PNG -> annotate -> write files + record) and, inside the
worker, the time of the image render alone (``bpy.ops.render.render`` of the RGB pass: what a
plain Blender render of the same scene costs). Their ratio is the annotation overhead
(target <= 1.15). Peak RSS is the maximum of the
Blender worker's RSS and this process's. The first frame (Blender start, kernel load) is reported
separately and excluded from the steady-state figures.

Per-stage figures outside the renderer: ``sample_seconds`` (sample_scene per frame, which poses and
skins every person of a ``people`` frame), ``body_mesh_seconds`` (rebuilding the posed person meshes
of a frame, as the Blender worker does) and ``first_sample_seconds`` (includes loading the body
model). Compare recipes at the same samples, e.g. the people target (<= 1.5x tabletop):

    python benchmarks/render.py --recipe people --out benchmarks/results/render_people.json
    python benchmarks/render.py --recipe tabletop
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json
from synthloop.generators.blender_renderer import BlenderRenderer
from synthloop.generators.generate import generate_frames
from synthloop.geometry.meshes import build_mesh
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.sampler import sample_scene


def stage_timings(recipe, seed: int, frames: int) -> dict[str, float]:
    """Seconds per frame of sampling (incl. posing bodies) and of rebuilding body meshes."""
    t0 = time.perf_counter()
    specs = [sample_scene(recipe, seed, 0)]
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    specs += [sample_scene(recipe, seed, i) for i in range(1, frames + 1)]
    sample = (time.perf_counter() - t0) / max(frames, 1)
    t0 = time.perf_counter()
    bodies = [build_mesh(o.shape) for sp in specs[1:] for o in sp.objects if o.shape.kind == "body"]
    body = (time.perf_counter() - t0) / max(frames, 1)
    return {
        "first_sample_seconds": round(first, 3),
        "sample_seconds": round(sample, 4),
        "body_mesh_seconds": round(body, 4),
        "persons_per_frame": round(len(bodies) / max(frames, 1), 2),
    }


class _TrackingRenderer(BlenderRenderer):
    peak_worker_rss = 0

    def render(self, spec):  # type: ignore[override]
        fr = super().render(spec)
        _TrackingRenderer.peak_worker_rss = max(_TrackingRenderer.peak_worker_rss, self.rss_bytes or 0)
        return fr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="tabletop")
    ap.add_argument("--frames", type=int, default=4, help="frames after the warm-up frame")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "render.json"))
    args = ap.parse_args()

    recipe = load_recipe(args.recipe)
    stages = stage_timings(recipe, args.seed, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = generate_frames(
            recipe,
            args.seed,
            range(args.frames + 1),
            Path(tmp) / "ds",
            renderer_factory=lambda: _TrackingRenderer(threads=args.threads),
            quiet=True,
        )
        wall = time.perf_counter() - t0
    if res.failed:
        raise SystemExit(f"frames failed: {res.failed}")
    steady = res.timings[1:]
    per_frame = [t["frame_total"] for t in steady]
    raw = [t["render_rgb"] for t in steady]
    data_pass = [t.get("render_ids_depth", 0.0) for t in steady]
    ratio = sum(per_frame) / sum(raw)
    peak_rss = max(
        _TrackingRenderer.peak_worker_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    figures = {
        "recipe": args.recipe,
        "resolution": [recipe.resolution[0], recipe.resolution[1]],
        "frames_measured": len(steady),
        "first_frame_seconds": round(res.timings[0]["frame_total"], 3),
        "seconds_per_annotated_frame": round(statistics.mean(per_frame), 3),
        "raw_cycles_render_seconds": round(statistics.mean(raw), 3),
        "ratio_annotated_over_raw": round(ratio, 4),
        "target_ratio": 1.15,
        "id_depth_pass_seconds": round(statistics.mean(data_pass), 3),
        "annotate_seconds": round(statistics.mean(t.get("annotate", 0.0) for t in steady), 4),
        **stages,
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "peak_worker_rss_mb": round(_TrackingRenderer.peak_worker_rss / 2**20, 1),
        "wall_seconds": round(wall, 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for k, v in figures.items():
        print(f"{k:32s} {v}")
    atomic_write_json(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
