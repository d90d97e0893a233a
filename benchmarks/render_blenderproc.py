"""The same scenes through BlenderProc and through synthloop, interleaved: the speed anchor.

    BLENDERPROC_PYTHON=/path/to/bp-venv/bin/python python benchmarks/render_blenderproc.py \\
        [--scenes 3] [--width 320] [--height 240] [--ref-spp 512] [--rounds 2] \\
        [--blenderproc 16,16lt,8ltoidn] [--max-bounces 4] [--view-transform Standard] \\
        [--synthloop legacy,standard] [--out benchmarks/results/render_blenderproc.json]

Optional tooling, never a dependency. ``BLENDERPROC_PYTHON`` names a Python 3.11 that has
BlenderProc, ``bpy`` 4.2 and pydantic: BlenderProc's "bpy module from pip" mode
(``USE_EXTERNAL_BPY_MODULE=1``, set here), which needs no Blender download. That mode is in
BlenderProc's repository after release 2.8.0 (``docs/tutorials/bpy_module.md``); install it
editable, because ``import blenderproc`` takes its own parent folder off ``sys.path`` (from
site-packages, that folder is site-packages itself):

    python3.11 -m venv bp && bp/bin/pip install bpy==4.2.23 pydantic <the packages bpy_module.md lists>
    bp/bin/pip install --no-deps -e BLENDERPROC_CHECKOUT

Without it, or without BlenderProc there, this prints why it skipped, writes ``{"skipped": reason}``
to ``--out`` and exits 0.

The scenes are those of ``benchmarks/render_quality.py`` (frames 0..N-1 of ``tabletop``, seed 0,
at ``--width`` x ``--height``; frame N warms each process up and is not counted).
``benchmarks/blenderproc_scene.py`` builds each scene's content with synthloop's own bpy helpers
(meshes, procedural materials, lights), so both tools shade the same scene, and does everything
else through BlenderProc's API (init, clean_up, world, camera, render settings, RGB + depth +
instance segmentation, COCO and depth writers).

Each round runs, one after the other, one BlenderProc process over all scenes per
``--blenderproc`` arm (:func:`parse_arm`: samples, light tree, denoiser, caustics; the first arm
is the baseline of the ratios) and one synthloop worker per ``--synthloop`` setting
(``render_quality.py``'s candidates). BlenderProc's reference run is cached under
``--cache``/blenderproc. Per annotated frame:
wall seconds and CPU seconds (BlenderProc: its process's ``time.process_time``; synthloop: the
worker's user + system time plus the driving process's). Ratios are taken within each round.
Quality (PSNR and SSIM, whole image and instance masks) is scored against each tool's own
``--ref-spp`` reference. The two tools render the same scene through the same view transform
(``--view-transform``, default ``Standard`` as synthloop's), but not pixel for pixel: BlenderProc
sets the camera from K with its own pixel-centre convention, so edges move by a fraction of a
pixel and one tool's frames are not scored against the other's reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render_quality import (
    CANDIDATES,
    DEFAULT_CACHE,
    add_scene_arguments,
    candidate_recipe,
    mean_scores,
    references,
    run_candidate,
    scene_specs,
    score,
)

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.geometry.camera import intrinsics
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.spec import SceneSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INNER = HERE / "blenderproc_scene.py"
DEFAULT_OUT = HERE / "results" / "render_blenderproc.json"
ENV = "BLENDERPROC_PYTHON"
CHECK = (
    "import importlib.util as u, sys; "
    "sys.exit(0 if u.find_spec('blenderproc') and u.find_spec('bpy') and u.find_spec('pydantic') else 3)"
)


def skip_reason() -> str | None:
    """Why BlenderProc cannot run here, or None."""
    py = os.environ.get(ENV)
    if not py:
        return f"{ENV} is not set (a Python 3.11 with BlenderProc and bpy 4.2; see this script's docstring)"
    if not Path(py).is_file():
        return f"{ENV}={py} is not a file"
    if subprocess.run([py, "-c", CHECK], capture_output=True).returncode != 0:
        return f"{ENV}={py} cannot import both blenderproc and bpy"
    return None


def export_scene(spec: SceneSpec) -> dict[str, Any]:
    """The scene for the BlenderProc side: the spec, K (3, 3) in pixels and the 4x4 world-from-camera
    pose in Blender's camera axes (x right, y up, looking along -z)."""
    cam = spec.camera
    pose = np.eye(4)
    pose[:3, :3] = np.asarray(cam.rotation_world_from_cam, dtype=np.float64)
    pose[:3, 3] = cam.location
    return {
        "spec": spec.to_json_dict(),
        "K": intrinsics(cam, spec.render.width, spec.render.height).tolist(),
        "cam_pose": pose.tolist(),
    }


def run_setting(scenes_file: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """One BlenderProc process rendering every scene with ``settings``; its timings JSON."""
    env = {**os.environ, "USE_EXTERNAL_BPY_MODULE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [os.environ[ENV], str(INNER), str(scenes_file), str(out), json.dumps(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"BlenderProc failed (exit {proc.returncode}):\n{tail}")
    return json.loads((out / "timings.json").read_text())


def load_frames(folder: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb uint8 (H, W, 3), instance ids (H, W)) of frames 0..n-1 written by the inner script."""
    frames = []
    for i in range(n):
        with np.load(folder / f"frame_{i:06d}.npz") as z:
            frames.append((z["rgb"], z["ids"]))
    return frames


def reference(
    scenes_file: Path, setting: dict[str, Any], cache: Path, n: int
) -> tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray]]]:
    """BlenderProc's reference run (timings, frames 1..n) of the scenes at ``setting``, rendered
    once and cached under ``cache`` by the scenes and the setting."""
    blob = json.dumps({"scenes": json.loads(scenes_file.read_text()), "setting": setting}, sort_keys=True)
    folder = cache / hashlib.sha256(blob.encode()).hexdigest()[:20]
    if not (folder / "timings.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run_setting(scenes_file, tmp, setting)
        for extra in tmp.iterdir():  # keep the frames and timings only
            if extra.is_dir():
                shutil.rmtree(extra)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return json.loads((folder / "timings.json").read_text()), load_frames(folder, n + 1)[1:]


def parse_arm(token: str) -> dict[str, Any]:
    """A BlenderProc arm from its name: ``<spp>`` then any of ``lt`` (light tree on; BlenderProc
    turns it off), ``oidn`` (its INTEL denoiser), ``c`` (caustics on, Blender's default), e.g.
    ``16``, ``16lt``, ``8oidn``."""
    rest = token.lstrip("0123456789")
    spp = token[: len(token) - len(rest)]
    flags = {"lt": False, "oidn": False, "c": False}
    while rest:
        flag = next((f for f in ("oidn", "lt", "c") if rest.startswith(f)), None)
        if flag is None or not spp:
            raise SystemExit(f"bad BlenderProc arm {token!r}: <spp>[lt][oidn][c], e.g. 16lt")
        flags[flag] = True
        rest = rest[len(flag) :]
    return {
        "spp": int(spp),
        "noise_threshold": 0.0,
        "denoiser": "INTEL" if flags["oidn"] else None,
        "light_tree": flags["lt"],
        "caustics": flags["c"],
    }


def summarize(rounds: list[dict[str, dict[str, list[float]]]], baseline: str) -> dict[str, Any]:
    """Per arm: mean wall / CPU seconds per frame and, per round, their ratio to ``baseline``'s."""
    rows: dict[str, Any] = {}
    for name in rounds[0]:
        wall = [statistics.mean(r[name]["wall"]) for r in rounds]
        cpu = [statistics.mean(r[name]["cpu"]) for r in rounds]
        base_wall = [statistics.mean(r[baseline]["wall"]) for r in rounds]
        base_cpu = [statistics.mean(r[baseline]["cpu"]) for r in rounds]
        rows[name] = {
            "seconds_per_frame": statistics.mean(wall),
            "cpu_seconds_per_frame": statistics.mean(cpu),
            "wall_x_baseline_per_round": [a / b for a, b in zip(wall, base_wall, strict=True)],
            "cpu_x_baseline_per_round": [a / b for a, b in zip(cpu, base_cpu, strict=True)],
        }
        for key in ("wall", "cpu"):
            rows[name][f"{key}_x_baseline"] = statistics.mean(rows[name][f"{key}_x_baseline_per_round"])
    return rows


def table(rows: dict[str, dict[str, Any]], baseline: str) -> str:
    lines = [
        f"| arm | s/frame | CPU s/frame | CPU x {baseline} (rounds) "
        "| PSNR dB | SSIM | PSNR mask | SSIM mask |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: kv[1]["cpu_x_baseline"]):
        per = ", ".join(f"{x:.2f}" for x in r["cpu_x_baseline_per_round"])
        lines.append(
            f"| {name} | {r['seconds_per_frame']:.2f} | {r['cpu_seconds_per_frame']:.2f} | "
            f"**{r['cpu_x_baseline']:.2f}** ({per}) | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['psnr_mask']:.2f} | {r['ssim_mask']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(ap)
    ap.add_argument("--blenderproc", default="16", help="arms (see parse_arm); the first is the baseline")
    ap.add_argument("--max-bounces", type=int, default=4)
    ap.add_argument("--view-transform", default="Standard", help="synthloop's is Standard")
    ap.add_argument("--threads", type=int, default=0, help="render threads of both tools (0: all)")
    ap.add_argument("--synthloop", default="legacy,standard", help="render_quality.py candidates")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="synthloop's reference cache")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()

    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        atomic_write_json(Path(args.out), {"skipped": reason})
        return
    names = [n for n in args.synthloop.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown synthloop candidates {unknown} (known: {', '.join(CANDIDATES)})")
    base = {"max_bounces": args.max_bounces, "threads": args.threads, "view_transform": args.view_transform}
    arms = {f"blenderproc_{t}": {**base, **parse_arm(t)} for t in args.blenderproc.split(",") if t}
    baseline = next(iter(arms))

    recipe = load_recipe(args.recipe).model_copy(update={"resolution": (args.width, args.height)})
    specs = scene_specs(recipe, args.seed, args.scenes + 1)  # the last one is the warm-up scene
    n = args.scenes
    ours_ref = references(specs[:n], args.ref_spp, Path(args.cache), args.threads)
    rounds: list[dict[str, dict[str, list[float]]]] = []
    scores: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scenes_file = tmp / "scenes.json"
        scenes_file.write_text(json.dumps([export_scene(s) for s in [specs[n], *specs[:n]]]))
        ref_setting = {**arms[baseline], "spp": args.ref_spp, "denoiser": None}
        bp_ref_t, bp_ref = reference(scenes_file, ref_setting, Path(args.cache) / "blenderproc", n)
        for rnd in range(args.rounds):
            row: dict[str, dict[str, list[float]]] = {}
            for arm, setting in arms.items():
                bp = run_setting(scenes_file, tmp / f"{arm}_{rnd}", setting)
                row[arm] = {"wall": bp["seconds_per_frame"][1:], "cpu": bp["cpu_seconds_per_frame"][1:]}
                if rnd == 0:
                    imgs = [img for img, _ in load_frames(tmp / f"{arm}_0", n + 1)[1:]]
                    scores[arm] = score(imgs, bp_ref)
            for name in names:
                with tempfile.TemporaryDirectory() as work:
                    secs, cpu, images = run_candidate(
                        candidate_recipe(recipe, CANDIDATES[name]), args.seed, n, args.threads, Path(work)
                    )
                row[name] = {"wall": secs, "cpu": cpu}
                if rnd == 0:
                    scores[name] = score(images, ours_ref)
            rounds.append(row)
            print(
                f"round {rnd}: "
                + ", ".join(f"{k} {statistics.mean(v['cpu']):.2f} CPU s/frame" for k, v in row.items()),
                flush=True,
            )
    rows = summarize(rounds, baseline)
    for name, r in rows.items():
        r.update(mean_scores(scores[name]))
        r["per_scene"] = scores[name]
    result = {
        "command": "python benchmarks/render_blenderproc.py " + " ".join(sys.argv[1:]),
        "blenderproc_version": bp_ref_t.get("blenderproc_version"),
        "blender_version": bp_ref_t.get("blender_version"),
        "baseline": baseline,
        "blenderproc_settings": arms,
        "synthloop_settings": {name: CANDIDATES[name] for name in names},
        "reference_spp": args.ref_spp,
        "blenderproc_reference_seconds_per_frame": statistics.mean(bp_ref_t["seconds_per_frame"][1:]),
        "rows": rows,
        "rounds": rounds,
    }
    out = Path(args.out)
    atomic_write_json(out, result)
    md = table(rows, baseline)
    atomic_write_bytes(out.with_suffix(".table.md"), (md + "\n").encode())
    print(md)


if __name__ == "__main__":
    main()
