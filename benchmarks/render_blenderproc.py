"""The same scenes through BlenderProc's API: time per annotated frame and quality, for an anchor.

    python benchmarks/render_blenderproc.py [--scenes 4] [--width 320] [--height 240]
        [--ref-spp 512] [--spp 16] [--noise-threshold 0] [--denoiser none|INTEL] [--rounds 2]

Optional tooling, never a dependency: when the ``blenderproc`` package is not installed this
prints why it skipped, writes ``{"skipped": reason}`` to ``--out`` and exits 0. BlenderProc runs
its own Blender (downloaded on first use by ``blenderproc run``), so it cannot run offline.

What it does when BlenderProc is there: the scenes of ``benchmarks/render_quality.py`` (frames
0..N-1 of ``tabletop``, seed 0, at ``--width`` x ``--height``) are exported as plain data (meshes
as OBJ from :func:`synthloop.geometry.meshes.build_mesh`, Principled base colour / roughness /
metallic / specular, lights, world, camera K and pose); ``benchmarks/blenderproc_scene.py`` runs
inside ``blenderproc run`` and, per setting, keeps one BlenderProc process alive: per scene
``clean_up`` -> load -> render RGB with instance segmentation -> write COCO annotations, the
first scene a warm-up. Procedural patterns and bump are not rebuilt in BlenderProc, so its
images are scored against BlenderProc's own ``--ref-spp`` reference of the same scenes (PSNR and
SSIM, whole image and instance masks, as in ``render_quality.py``). "Best settings for equal
quality": sweep ``--spp`` / ``--noise-threshold`` / ``--denoiser`` until PSNR and SSIM reach those
of synthloop's ``legacy`` row, then compare ``seconds_per_frame`` with ``render_quality.json``
measured on the same machine in the same session.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render_quality import add_scene_arguments, quality, scene_specs

from synthloop.atomic import atomic_write_json
from synthloop.geometry.camera import intrinsics
from synthloop.geometry.meshes import build_mesh
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.spec import MaterialSpec, SceneSpec

HERE = Path(__file__).resolve().parent
INNER = HERE / "blenderproc_scene.py"
DEFAULT_OUT = HERE / "results" / "render_blenderproc.json"


def skip_reason() -> str | None:
    """Why BlenderProc cannot run here, or None."""
    if importlib.util.find_spec("blenderproc") is None:
        return "BlenderProc is not installed (pip install blenderproc; its first run downloads Blender)"
    if shutil.which("blenderproc") is None:
        return "the blenderproc command is not on PATH"
    return None


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def _material(m: MaterialSpec) -> dict:
    return {
        "color": list(m.base_color_rgb),
        "roughness": m.roughness,
        "metallic": m.metallic,
        "specular": m.specular,
    }


def export_scene(spec: SceneSpec, folder: Path) -> dict:
    """The scene as plain data for the BlenderProc side (meshes written as OBJ into ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    objects = []
    for o in spec.objects:
        mesh = build_mesh(o.shape)
        path = folder / f"obj_{spec.frame_index}_{o.instance_id}.obj"
        _write_obj(path, mesh.vertices, mesh.faces)
        objects.append(
            {
                "obj": str(path),
                "instance_id": o.instance_id,
                "category_id": o.category_id or 0,
                "location": list(o.location),
                "quat_wxyz": list(o.rotation_quat_wxyz),
                "material": _material(o.material),
            }
        )
    sx, sy = spec.support.size
    return {
        "frame_index": spec.frame_index,
        "seed": spec.seed,
        "width": spec.render.width,
        "height": spec.render.height,
        "K": intrinsics(spec.camera, spec.render.width, spec.render.height).tolist(),
        "cam_location": list(spec.camera.location),
        "cam_rotation": [list(r) for r in spec.camera.rotation_world_from_cam],  # Blender camera axes
        "clip": [spec.camera.clip_start, spec.camera.clip_end],
        "support": {"size": [sx, sy], "material": _material(spec.support.material)},
        "world": {"color": list(spec.world.color_rgb), "strength": spec.world.strength},
        "lights": [light.model_dump(mode="json") for light in spec.lights],
        "objects": objects,
    }


def run_setting(scenes_file: Path, out: Path, settings: dict) -> dict:
    """One ``blenderproc run`` process rendering every scene with ``settings``; its timings JSON."""
    cmd = ["blenderproc", "run", str(INNER), str(scenes_file), str(out), json.dumps(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise SystemExit(f"blenderproc run failed (exit {proc.returncode}):\n{tail}")
    return json.loads((out / "timings.json").read_text())


def _load_frames(folder: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    frames = []
    for i in range(n):
        with np.load(folder / f"frame_{i:06d}.npz") as z:
            frames.append((z["rgb"], z["ids"]))
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(ap)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--noise-threshold", type=float, default=0.0, help="0: adaptive sampling off")
    ap.add_argument("--denoiser", default="none", help="none | INTEL (OpenImageDenoise)")
    ap.add_argument("--max-bounces", type=int, default=4)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()

    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        atomic_write_json(Path(args.out), {"skipped": reason})
        return

    recipe = load_recipe(args.recipe).model_copy(update={"resolution": (args.width, args.height)})
    specs = scene_specs(recipe, args.seed, args.scenes + 1)  # the last one is the warm-up scene
    warm_up = specs.pop()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scenes = [export_scene(s, tmp / "meshes") for s in [warm_up, *specs]]
        scenes_file = tmp / "scenes.json"
        scenes_file.write_text(json.dumps(scenes))
        base = {"max_bounces": args.max_bounces}
        ref = run_setting(
            scenes_file, tmp / "ref", {**base, "spp": args.ref_spp, "noise_threshold": 0.0, "denoiser": None}
        )
        setting = {
            **base,
            "spp": args.spp,
            "noise_threshold": args.noise_threshold,
            "denoiser": None if args.denoiser.lower() == "none" else args.denoiser,
        }
        runs = [run_setting(scenes_file, tmp / f"run{r}", setting) for r in range(args.rounds)]
        refs = _load_frames(tmp / "ref", args.scenes + 1)[1:]
        imgs = _load_frames(tmp / "run0", args.scenes + 1)[1:]
    scores = [quality(img, rgb, ids > 0) for (img, _), (rgb, ids) in zip(imgs, refs, strict=True)]
    seconds = [s for run in runs for s in run["seconds_per_frame"][1:]]
    result = {
        "command": "python benchmarks/render_blenderproc.py " + " ".join(sys.argv[1:]),
        "blenderproc_version": runs[0].get("blenderproc_version"),
        "blender_version": runs[0].get("blender_version"),
        "setting": setting,
        "reference_spp": args.ref_spp,
        "reference_seconds_per_frame": statistics.mean(ref["seconds_per_frame"][1:]),
        "seconds_per_frame": statistics.mean(seconds),
        **{k: statistics.mean(s[k] for s in scores) for k in scores[0]},
        "per_scene": scores,
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_scene"}, indent=1))


if __name__ == "__main__":
    main()
