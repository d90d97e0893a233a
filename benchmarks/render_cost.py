"""Where the CPU time of a frame's image render goes: the RGB pass with one part switched off.

    python benchmarks/render_cost.py [--recipe tabletop] [--quality denoised] [--scenes 3] \
        [--rounds 2] [--out benchmarks/results/render_cost.json]

For each scene of the recipe (frames 1..scenes of ``--seed``, at the recipe's resolution and the
``--quality`` preset) this process (``bpy`` in-process, one Blender session) builds the scene
and renders its RGB pass once per variant, in turn (variant A, B, C, ... then the next scene; the
whole set ``--rounds`` times), and records the process CPU seconds of each render
(``time.process_time``: every render thread). Variants:

* ``preset``: the quality preset as it is;
* ``no_denoise``: without OpenImageDenoise (what the denoiser costs);
* ``one_sample``: 1 sample, no denoiser (the per-frame cost that does not scale with samples:
  scene sync, BVH, one path per pixel);
* ``no_light_tree``, ``no_bounces`` (camera rays and direct light only): the light paths;
* ``no_bump``: every Bump node unlinked from its BSDF (what the bump maps' extra texture
  evaluations cost);
* ``plain_material``: every surface a default Principled BSDF (what shading the procedural
  materials costs over the plainest material).

The last two change the image: they are diagnostics, not settings. Prints a table of mean CPU
seconds per render and the ratio to ``preset`` (mean over scenes and rounds), and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy

from synthloop.atomic import atomic_write_json
from synthloop.generators.blender_scene import build_scene, configure_device, render_rgb_pass
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.render_config import QUALITY_PRESETS, RenderConfig
from synthloop.scenes.sampler import sample_scene
from synthloop.scenes.spec import SceneSpec

DEFAULT_OUT = Path(__file__).parent / "results" / "render_cost.json"


@contextmanager
def _no_bump() -> Iterator[None]:
    """Unlink every Bump node's output from the BSDF normals (the scene is rebuilt per variant)."""
    for mat in bpy.data.materials:
        tree = mat.node_tree
        for link in list(tree.links) if tree else []:
            if link.from_node.bl_idname == "ShaderNodeBump":
                tree.links.remove(link)
    yield


@contextmanager
def _plain_material() -> Iterator[None]:
    plain = bpy.data.materials.new("render_cost_plain")
    plain.use_nodes = True
    layer = bpy.context.scene.view_layers[0]
    layer.material_override = plain
    try:
        yield
    finally:
        layer.material_override = None
        bpy.data.materials.remove(plain)


# name -> (render option overrides, scene edit around the render)
VARIANTS: dict[str, tuple[dict, Callable[[], AbstractContextManager[None]]]] = {
    "preset": ({}, nullcontext),
    "no_denoise": ({"denoise": False}, nullcontext),
    "one_sample": ({"samples": 1, "denoise": False}, nullcontext),
    "no_light_tree": ({"light_tree": False}, nullcontext),
    "no_bounces": ({"max_bounces": 0}, nullcontext),
    "no_bump": ({}, _no_bump),
    "plain_material": ({}, _plain_material),
}


def render_cpu_seconds(spec: SceneSpec, workdir: Path, name: str) -> float:
    """Build ``spec`` with the variant's options and scene edit; CPU seconds of its RGB pass."""
    overrides, edit = VARIANTS[name]
    spec = spec.model_copy(update={"render": spec.render.model_copy(update=overrides)})
    build_scene(spec, workdir)
    configure_device("cpu")
    with edit():
        t0 = time.process_time()
        render_rgb_pass(spec, workdir / "rgb.png")
        return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="tabletop")
    ap.add_argument("--quality", default="denoised", choices=sorted(QUALITY_PRESETS))
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    recipe = recipe.model_copy(update={"render": RenderConfig.model_validate({"quality": args.quality})})
    specs = [sample_scene(recipe, args.seed, i) for i in range(1, args.scenes + 1)]
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for spec in specs:
                for name in VARIANTS:
                    seconds[name].append(render_cpu_seconds(spec, Path(tmp), name))
            print(f"round {rnd}: " + ", ".join(f"{n} {statistics.mean(v):.2f}" for n, v in seconds.items()))
    base = statistics.mean(seconds["preset"])
    rows = {
        n: {"cpu_s": round(statistics.mean(v), 3), "x_preset": round(statistics.mean(v) / base, 3)}
        for n, v in seconds.items()
    }
    print("| variant | CPU s per RGB render | x preset |\n|---|---:|---:|")
    for n, r in rows.items():
        print(f"| {n} | {r['cpu_s']:.2f} | {r['x_preset']:.3f} |")
    cmd = (
        f"python benchmarks/render_cost.py --recipe {args.recipe} --quality {args.quality}"
        f" --scenes {args.scenes} --rounds {args.rounds} --seed {args.seed}"
    )
    result = {
        "command": cmd,
        "resolution": [specs[0].render.width, specs[0].render.height],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "blender": bpy.app.version_string,
        "variants": rows,
        "cpu_seconds_each": {n: [round(x, 3) for x in v] for n, v in seconds.items()},
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
