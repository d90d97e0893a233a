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
skins every person of a ``people`` frame, once: the pose cache is cleared first),
``body_mesh_seconds`` (building the person meshes of the sampled frames afterwards: what is left
once their poses are cached) and ``first_sample_seconds`` (includes loading the body model).

``--compare A B`` renders the two recipes interleaved (A, B, A, B, ...) in one warm Blender worker,
so that a background load slows both alike, and reports each recipe's per-stage means (scene
build in the worker and its mesh part, id/depth pass, RGB render, annotation, sample + write)
and the ratios B / A; ``--count CLASS=N`` fixes a class's count and measures only frames whose
scene holds exactly that many (placement may drop an object that does not fit). The people
target (a 640x480 frame with 4 persons <= 1.5x a tabletop frame at the same samples):

    python benchmarks/render.py --compare tabletop people --count person=4 --frames 4 \
        --out benchmarks/results/render_people_vs_tabletop.json
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
from synthloop.scenes.recipe import Recipe, load_recipe, recipe_from_dict, recipe_to_dict
from synthloop.scenes.sampler import sample_scene


def stage_timings(recipe, seed: int, frames: int | list[int]) -> dict[str, float]:
    """Seconds per frame of sampling (incl. posing bodies, each once: the pose cache is cleared
    first) and of rebuilding body meshes from the sampled specs (cache hits since the
    pose cache). ``frames``: a count (frames 1..frames after frame 0) or frame indices."""
    indices = list(range(1, frames + 1)) if isinstance(frames, int) else list(frames)
    clear_caches()
    t0 = time.perf_counter()
    specs = [sample_scene(recipe, seed, 0)]
    first = time.perf_counter() - t0
    clear_caches()
    t0 = time.perf_counter()
    specs += [sample_scene(recipe, seed, i) for i in indices]
    sample = (time.perf_counter() - t0) / max(len(indices), 1)
    t0 = time.perf_counter()
    bodies = [build_mesh(o.shape) for sp in specs[1:] for o in sp.objects if o.shape.kind == "body"]
    body = (time.perf_counter() - t0) / max(len(indices), 1)
    return {
        "first_sample_seconds": round(first, 3),
        "sample_seconds": round(sample, 4),
        "body_mesh_seconds": round(body, 4),
        "persons_per_frame": round(len(bodies) / max(len(indices), 1), 2),
    }


class _TrackingRenderer(BlenderRenderer):
    peak_worker_rss = 0

    def render(self, spec):  # type: ignore[override]
        fr = super().render(spec)
        _TrackingRenderer.peak_worker_rss = max(_TrackingRenderer.peak_worker_rss, self.rss_bytes or 0)
        return fr


class _SharedRenderer:
    """One warm worker for several generate calls (their ``close`` leaves it running)."""

    def __init__(self, renderer: BlenderRenderer):
        self.renderer = renderer

    def render(self, spec):  # type: ignore[no-untyped-def] - the Renderer protocol
        return self.renderer.render(spec)

    def close(self) -> None:
        pass


def with_counts(recipe: Recipe, counts: dict[str, int]) -> Recipe:
    """``recipe`` with the named classes' counts fixed (classes it lacks are ignored)."""
    d = recipe_to_dict(recipe)
    for cls in d["classes"]:
        if cls["name"] in counts:
            cls["count"] = counts[cls["name"]]
    return recipe_from_dict(d, source=f"{recipe.name} with counts {counts}")


STAGES = {  # per-frame figure -> timing key of generate_frames (see BlenderRenderer)
    "scene_build_seconds": "build",
    "scene_build_meshes_seconds": "build_meshes",
    "id_depth_pass_seconds": "render_ids_depth",
    "rgb_render_seconds": "render_rgb",
    "annotate_seconds": "annotate",
}


def clear_caches() -> None:
    """Forget posed bodies and built meshes (so a frame sampled before costs what a new one does)."""
    from synthloop.bodies.model import clear_pose_cache
    from synthloop.geometry.meshes import clear_mesh_cache

    clear_pose_cache()
    clear_mesh_cache()


def frames_with_counts(recipe: Recipe, seed: int, counts: dict[str, int], n: int) -> list[int]:
    """The first ``n`` frame indices whose sampled scene holds exactly ``counts[class]`` objects of
    each named class the recipe has (placement may drop an object that does not fit)."""
    names = {c.name for c in recipe.classes} & set(counts)
    out: list[int] = []
    i = 0
    while len(out) < n:
        if i > 50 * n:
            raise SystemExit(f"no {n} frames of {recipe.name} hold {counts}")
        objs = sample_scene(recipe, seed, i).objects
        if all(sum(o.name.startswith(f"{c}_") for o in objs) == counts[c] for c in names):
            out.append(i)
        i += 1
    return out


def compare(names: list[str], counts: dict[str, int], seed: int, frames: int, threads: int) -> dict:
    """Render ``frames`` (+1 warm-up) frames of each recipe, interleaved, in one worker (it must
    not restart: a restart is reported as ``worker_starts``). Per recipe:
    the mean seconds per frame of the whole pipeline (sample, build, both renders, annotate, write:
    the wall time of a one-frame generate call) and of each stage; ratios of the second recipe's
    figures over the first's."""
    recipes = [with_counts(load_recipe(n), counts) for n in names]
    indices = [frames_with_counts(r, seed, counts, frames + 1) for r in recipes]
    walls: dict[str, list[float]] = {n: [] for n in names}
    timings: dict[str, list[dict]] = {n: [] for n in names}
    real = _TrackingRenderer(threads=threads)
    shared = _SharedRenderer(real)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(frames + 1):
                # warm-up in reverse order: the worker's RSS baseline (its leak guard restarts it
                # past +25 %) then includes the body model, as in a people job
                order = list(zip(names, recipes, indices, strict=True))
                for name, recipe, idx in order[::-1] if i == 0 else order:
                    clear_caches()  # frames_with_counts sampled this frame: pose it again
                    t0 = time.perf_counter()
                    res = generate_frames(
                        recipe, seed, [idx[i]], Path(tmp) / name, renderer_factory=lambda: shared, quiet=True
                    )
                    if res.failed:
                        raise SystemExit(f"{name} frame {i} failed: {res.failed}")
                    if i:  # frame 0 warms the worker (Blender start, kernels, the body model)
                        walls[name].append(time.perf_counter() - t0)
                        timings[name].append(res.timings[0])
                        print(name, i, round(walls[name][-1], 3), res.timings[0], flush=True)
    finally:
        real.close()
    out: dict = {"recipes": {}}
    for name, recipe, idx in zip(names, recipes, indices, strict=True):
        r = recipe.render
        fig = {
            "frame_seconds": round(statistics.mean(walls[name]), 3),
            "frame_seconds_each": [round(w, 3) for w in walls[name]],
            **{k: round(statistics.mean(t.get(v, 0.0) for t in timings[name]), 4) for k, v in STAGES.items()},
            "sample_and_write_seconds": round(
                statistics.mean(
                    w - t["total"] - t.get("annotate", 0.0)
                    for w, t in zip(walls[name], timings[name], strict=True)
                ),
                4,
            ),
            "samples": r.samples,
            "max_bounces": r.max_bounces,
            "resolution": list(recipe.resolution),
            "frame_indices": idx[1:],
            **stage_timings(recipe, seed, idx[1:]),
        }
        out["recipes"][name] = fig
    out["worker_starts"] = real.worker_starts
    a, b = (out["recipes"][n] for n in names)
    out["ratios"] = {
        k: round(b[k] / a[k], 3) if a[k] else None
        for k in ("frame_seconds", "rgb_render_seconds", "scene_build_seconds", "annotate_seconds")
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="tabletop")
    ap.add_argument("--frames", type=int, default=4, help="frames after the warm-up frame")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "render.json"))
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two recipes, rendered interleaved")
    ap.add_argument("--count", action="append", default=[], metavar="CLASS=N", help="fix a class's count")
    args = ap.parse_args()
    if args.compare:
        counts = {k: int(v) for k, v in (c.split("=", 1) for c in args.count)}
        t0 = time.perf_counter()
        figures = compare(list(args.compare), counts, args.seed, args.frames, args.threads)
        figures.update(
            command="python benchmarks/render.py " + " ".join(sys.argv[1:]),
            counts=counts,
            frames_per_recipe=args.frames,
            wall_seconds=round(time.perf_counter() - t0, 1),
            cpu_count=os.cpu_count(),
            machine=platform.machine(),
            peak_worker_rss_mb=round(_TrackingRenderer.peak_worker_rss / 2**20, 1),
        )
        for name, fig in figures["recipes"].items():
            print(name, fig)
        print("ratios", figures["ratios"])
        atomic_write_json(args.out, figures)
        print(f"wrote {args.out}")
        return

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
