"""Render speed against image quality: time per annotated frame, PSNR and SSIM vs a reference.

    nice -n 10 python benchmarks/render_quality.py [--scenes 4] [--width 320] [--height 240]
        [--ref-spp 512] [--rounds 2] [--candidates legacy,standard,...] [--threads 0]

For a fixed, seeded set of ``tabletop`` scenes (frames 0..N-1 of seed 0, at ``--width`` x
``--height``) it renders a high-sample reference per scene (``--ref-spp`` samples, otherwise the
earlier default's light paths: 4 bounces, indirect clamp 10, no denoising, no adaptive sampling;
cached on disk under ``benchmarks/.cache/render_quality/``, keyed by the scene content and the
reference settings) and then every candidate setting (:data:`CANDIDATES`, options over the
``legacy`` ones).

Each candidate renders the scenes through :func:`synthloop.generators.generate.generate_frames`
(sample -> render in one warm Blender worker -> exact id/depth pass -> annotate -> write), after
one warm-up frame that is not counted: ``seconds_per_frame`` is the mean ``frame_total`` of the
measured frames; ``cpu_seconds_per_frame`` the Blender worker's user + system CPU seconds plus
this process's over the same frames (little affected by other load on a shared machine).
``--rounds R`` repeats the whole candidate list R times in the same order
(A B C .. A B C ..), so load changes on a shared machine hit every candidate alike; the ratio of a
candidate's time to ``legacy``'s is taken per round, then averaged.

Quality (8-bit sRGB images, as the dataset stores them): PSNR (dB) and SSIM (scikit-image,
Gaussian-weighted, over the three channels) against the reference, over the whole image and
inside the object masks (instance id > 0: labeled objects and distractors). The selection rule for
the default: the cheapest candidate (CPU-time ratio to ``legacy``) whose four figures are all at
least ``legacy``'s.

Writes ``--out`` (JSON), a Markdown table next to it and a speed/quality frontier plot (PNG).
Full setting of the issue: ``--scenes 8 --width 640 --height 480 --ref-spp 1024``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.generators.blender_renderer import BlenderRenderer
from synthloop.generators.generate import generate_frames
from synthloop.scenes.recipe import Recipe, load_recipe
from synthloop.scenes.render_config import LEGACY, QUALITY_PRESETS, RenderConfig
from synthloop.scenes.sampler import sample_scene
from synthloop.scenes.spec import RenderSettings, SceneSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache" / "render_quality"
DEFAULT_OUT = ROOT / "docs" / "results" / "render_quality.json"
PSNR_IDENTICAL = 100.0  # dB
OIDN = {"denoise": True, "denoise_passes": "albedo_normal", "denoise_prefilter": "accurate"}

# name -> render options over LEGACY (the earlier default: 16 spp, no adaptive, no denoise)
CANDIDATES: dict[str, dict[str, Any]] = {
    "legacy": {},
    "spp8": {"samples": 8},
    "spp32": {"samples": 32},
    "persistent": {"persistent_data": True},
    "persistent_no_light_tree": {"persistent_data": True, "light_tree": False},
    "bounces2": {"max_bounces": 2, "persistent_data": True},
    "bounces2_fresh": {"max_bounces": 2},  # without persistent data
    "adaptive32_t0.05": {"samples": 32, "adaptive_sampling": True, "adaptive_threshold": 0.05},
    "adaptive16_t0.02": {"samples": 16, "adaptive_sampling": True, "adaptive_threshold": 0.02},
    "oidn1": {"samples": 1, **OIDN, "persistent_data": True},
    "oidn2": {"samples": 2, **OIDN, "persistent_data": True},
    "oidn4": {"samples": 4, **OIDN, "persistent_data": True},
    "oidn8": {"samples": 8, **OIDN, "persistent_data": True},
    "oidn16": {"samples": 16, **OIDN, "persistent_data": True},
    "oidn4_bounces2": {"samples": 4, **OIDN, "max_bounces": 2, "persistent_data": True},
    "oidn4_fast": {"samples": 4, **OIDN, "denoise_prefilter": "fast", "persistent_data": True},
    "oidn8_adaptive_t0.1": {
        "samples": 8,
        **OIDN,
        "adaptive_sampling": True,
        "adaptive_threshold": 0.1,
        "persistent_data": True,
    },
    "oidn8_fast": {"samples": 8, **OIDN, "denoise_prefilter": "fast", "persistent_data": True},
    "adaptive24_t0.05_min8": {
        "samples": 24,
        "adaptive_sampling": True,
        "adaptive_threshold": 0.05,
        "adaptive_min_samples": 8,
        "max_bounces": 2,
        "persistent_data": True,
    },
    "adaptive16_t0.01_min8_bounces2": {
        "samples": 16,
        "adaptive_sampling": True,
        "adaptive_threshold": 0.01,
        "adaptive_min_samples": 8,
        "max_bounces": 2,
        "persistent_data": True,
    },
    "preview": QUALITY_PRESETS["preview"],
    "standard": QUALITY_PRESETS["standard"],
    "denoised": QUALITY_PRESETS["denoised"],  # = oidn9_fast_bounces2
}
# OIDN (fast prefilter, 2 bounces) with part of the noisy render mixed back in (``denoise_mix``):
# oidnN_fast_mixM = N spp, denoised share M
for _spp in (4, 6, 8):
    for _mix in (0.5, 0.7):
        CANDIDATES[f"oidn{_spp}_fast_mix{_mix}"] = {
            "samples": _spp,
            **OIDN,
            "denoise_prefilter": "fast",
            "denoise_mix": _mix,
            "max_bounces": 2,
            "persistent_data": True,
        }


# OIDN (fast prefilter) at N spp with 2 bounces: oidnN_fast_bounces2
for _spp in (8, 9, 10, 12):
    CANDIDATES[f"oidn{_spp}_fast_bounces2"] = {
        "samples": _spp,
        **OIDN,
        "denoise_prefilter": "fast",
        "max_bounces": 2,
        "persistent_data": True,
    }
# OIDN (fast prefilter, 2 bounces) after adaptive sampling: the smooth table stops early, the
# textured objects take up to N spp: oidnN_fast_adaptive_tT_minM
for _spp, _t, _min in ((12, 0.05, 4), (12, 0.1, 4), (16, 0.1, 4)):
    CANDIDATES[f"oidn{_spp}_fast_adaptive_t{_t}_min{_min}"] = {
        "samples": _spp,
        **OIDN,
        "denoise_prefilter": "fast",
        "adaptive_sampling": True,
        "adaptive_threshold": _t,
        "adaptive_min_samples": _min,
        "max_bounces": 2,
        "persistent_data": True,
    }
# OIDN's guide passes and their prefilter (2 bounces): oidnN_<passes>_<prefilter>. ``none`` hands
# the guides to OIDN as they are, so it keeps all the texture the albedo pass holds.
for _spp in (6, 8):
    for _passes in ("albedo", "albedo_normal"):
        for _prefilter in ("none", "accurate"):
            CANDIDATES[f"oidn{_spp}_{_passes}_{_prefilter}"] = {
                "samples": _spp,
                **OIDN,
                "denoise_passes": _passes,
                "denoise_prefilter": _prefilter,
                "max_bounces": 2,
                "persistent_data": True,
            }


# ------------------------------------------------------------------ metrics (pure numpy)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images ``a``/``b`` (H, W, 3) over all pixels or the (H, W) ``mask``
    (identical pixels: :data:`PSNR_IDENTICAL`, a finite stand-in for infinity)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        d = d[mask]
    mse = float(np.mean(d**2)) if d.size else 0.0
    return PSNR_IDENTICAL if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of uint8 images (H, W, 3): the per-pixel SSIM map (Gaussian window, sigma 1.5,
    channels averaged) over all pixels or the (H, W) ``mask``."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(
        a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, full=True
    )
    smap = smap.mean(axis=2)
    return float(smap[mask].mean() if mask is not None else smap.mean())


def quality(img: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {
        "psnr": psnr(img, ref),
        "ssim": ssim(img, ref),
        "psnr_mask": psnr(img, ref, mask),
        "ssim_mask": ssim(img, ref, mask),
    }


def score(images: list[np.ndarray], refs: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, float]]:
    """:func:`quality` of each image (H, W, 3) against its reference (rgb, instance ids), the mask
    being the ids > 0."""
    return [quality(img, rgb, ids > 0) for img, (rgb, ids) in zip(images, refs, strict=True)]


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Each quality figure's mean over the scenes."""
    return {k: statistics.mean(s[k] for s in scores) for k in scores[0]}


def cost(row: dict[str, Any]) -> float:
    """A row's cost relative to legacy: the CPU-time ratio (robust to other load on a shared
    machine) where measured, else the wall-time ratio."""
    return float(row.get("cpu_ratio", row["time_ratio"]))


def pick_default(rows: dict[str, dict[str, Any]], baseline: str = "legacy") -> str | None:
    """The cheapest row (:func:`cost`) whose PSNR and SSIM (whole image and masks) are all >= the
    baseline's."""
    keys = ("psnr", "ssim", "psnr_mask", "ssim_mask")
    base = rows[baseline]
    ok = [n for n, r in rows.items() if all(r[k] >= base[k] for k in keys)]
    return min(ok, key=lambda n: cost(rows[n])) if ok else None


# ------------------------------------------------------------------ rendering


def scene_specs(recipe: Recipe, seed: int, n: int) -> list[SceneSpec]:
    return [sample_scene(recipe, seed, i) for i in range(n)]


def reference_key(spec: SceneSpec, ref: RenderSettings) -> str:
    """Cache key: the scene without its render block and recipe hash, plus the reference settings."""
    d = spec.to_json_dict()
    d.pop("render")
    d.pop("recipe_hash")
    blob = json.dumps({"scene": d, "render": ref.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def references(
    specs: list[SceneSpec], ref_spp: int, cache: Path, threads: int, device: str = "cpu"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb uint8 (H, W, 3), instance ids (H, W)) of each scene's reference, rendered once."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    renderer: BlenderRenderer | None = None
    try:
        for spec in specs:
            ref = RenderSettings(
                width=spec.render.width, height=spec.render.height, **{**LEGACY, "samples": ref_spp}
            )
            path = cache / f"{reference_key(spec, ref)}.npz"
            if not path.is_file():
                renderer = renderer or BlenderRenderer(threads=threads, restart_every=None, device=device)
                t0 = time.perf_counter()
                fr = renderer.render(spec.model_copy(update={"render": ref}))
                print(f"reference frame {spec.frame_index}: {time.perf_counter() - t0:.1f} s", flush=True)
                cache.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                np.savez_compressed(tmp, rgb=fr.rgb, ids=fr.instance_ids)
                os.replace(tmp, path)
            with np.load(path) as z:
                out.append((z["rgb"], z["ids"]))
    finally:
        if renderer is not None:
            renderer.close()
    return out


def candidate_recipe(recipe: Recipe, options: dict[str, Any]) -> Recipe:
    render = RenderConfig.model_validate({"quality": "legacy", **LEGACY, **options})
    return recipe.model_copy(update={"render": render})


class CpuTrackingRenderer(BlenderRenderer):
    """A BlenderRenderer that notes, after each frame, the worker's and this process's CPU seconds
    so far (``marks``: (worker user+system, ``time.process_time()``))."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.marks: list[tuple[float, float]] = []

    def render(self, spec: SceneSpec):  # type: ignore[no-untyped-def]
        frame = super().render(spec)
        t = psutil.Process(self.worker_pid).cpu_times() if self.worker_pid else None
        self.marks.append((t.user + t.system if t else float("nan"), time.process_time()))
        return frame


def run_candidate(
    recipe: Recipe, seed: int, n: int, threads: int, workdir: Path, device: str = "cpu"
) -> tuple[list, list, list]:
    """Render frames [n] (warm-up, not counted) then 0..n-1 in one worker; (wall seconds per
    frame, CPU seconds per frame (worker + this process, from the end of one frame's render to the
    next), images)."""
    out = workdir / "ds"
    renderers: list[CpuTrackingRenderer] = []

    def factory() -> CpuTrackingRenderer:
        renderers.append(CpuTrackingRenderer(threads=threads, restart_every=None, device=device))
        return renderers[-1]

    res = generate_frames(recipe, seed, [n, *range(n)], out, renderer_factory=factory, quiet=True)
    if res.failed or len(renderers) != 1:
        raise SystemExit(f"frames failed: {res.failed} ({len(renderers)} workers)")
    seconds = [t["frame_total"] for t in res.timings[1:]]
    marks = renderers[0].marks
    cpu = [(w1 - w0) + (p1 - p0) for (w0, p0), (w1, p1) in zip(marks[:-1], marks[1:], strict=True)]
    images = []
    for i in range(n):
        path = next((out / "images").glob(f"{i:06d}.*"))
        with Image.open(path) as im:
            images.append(np.asarray(im.convert("RGB")))
    return seconds, cpu, images


# ------------------------------------------------------------------ report


def table(rows: dict[str, dict[str, Any]], default: str | None) -> str:
    lines = [
        "| setting | s/frame | x legacy | CPU s/frame | CPU x legacy | PSNR dB | SSIM | PSNR mask "
        "| SSIM mask | meets legacy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    base = rows["legacy"]
    keys = ("psnr", "ssim", "psnr_mask", "ssim_mask")
    for name, r in sorted(rows.items(), key=lambda kv: cost(kv[1])):
        meets = all(r[k] >= base[k] for k in keys)
        mark = " **(default)**" if name == default else ""
        cpu = f"{r['cpu_seconds_per_frame']:.2f} | {r['cpu_ratio']:.2f}" if "cpu_ratio" in r else "- | -"
        lines.append(
            f"| {name}{mark} | {r['seconds_per_frame']:.2f} | {r['time_ratio']:.2f} | {cpu} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['psnr_mask']:.2f} | {r['ssim_mask']:.4f} | "
            f"{'yes' if meets else 'no'} |"
        )
    return "\n".join(lines)


def plot(rows: dict[str, dict[str, Any]], default: str | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    panels = (
        ("psnr", "PSNR (dB), whole image"),
        ("ssim", "SSIM, whole image"),
        ("ssim_mask", "SSIM, object masks"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        pts = sorted((cost(r), r[key], n) for n, r in rows.items())
        front, best = [], -np.inf
        for t, q, _ in pts:
            if q > best:
                front.append((t, q))
                best = q
        ax.plot(*zip(*front, strict=True), "-", color="0.6", zorder=1, label="frontier")
        for t, q, n in pts:
            color = "tab:red" if n == default else ("tab:blue" if n != "legacy" else "black")
            ax.scatter(t, q, color=color, zorder=2)
            ax.annotate(n, (t, q), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(rows["legacy"][key], color="black", lw=0.8, ls=":", label="legacy (16 spp)")
        ax.set_xlabel("CPU (else wall) time per annotated frame / legacy")
        ax.set_ylabel(f"{label} vs reference")
        ax.legend(fontsize=7)
    fig.suptitle("tabletop: render speed vs quality (red: chosen default)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def add_scene_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags that fix the scene set and its reference (shared with render_blenderproc.py)."""
    ap.add_argument("--recipe", default="tabletop")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--ref-spp", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(ap)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | optix | auto")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument(
        "--replot", action="store_true", help="redraw the table and plot of --out, render nothing"
    )
    args = ap.parse_args()
    if args.replot:
        out = Path(args.out)
        result = json.loads(out.read_text())
        write_report(result, out)
        return
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown or "legacy" not in names:
        raise SystemExit(f"unknown candidates {unknown} (known: {', '.join(CANDIDATES)}); legacy is required")

    base = load_recipe(args.recipe)
    recipe = base.model_copy(update={"resolution": (args.width, args.height)})
    specs = scene_specs(recipe, args.seed, args.scenes)
    refs = references(specs, args.ref_spp, Path(args.cache), args.threads, args.device)

    seconds: dict[str, list[list[float]]] = {n: [] for n in names}
    cpu_seconds: dict[str, list[list[float]]] = {n: [] for n in names}
    scores: dict[str, list[dict[str, float]]] = {}
    for rnd in range(args.rounds):
        for name in names:
            with tempfile.TemporaryDirectory() as tmp:
                secs, cpu, images = run_candidate(
                    candidate_recipe(recipe, CANDIDATES[name]),
                    args.seed,
                    args.scenes,
                    args.threads,
                    Path(tmp),
                )
            seconds[name].append(secs)
            cpu_seconds[name].append(cpu)
            if rnd == 0:
                scores[name] = score(images, refs)
            print(
                f"round {rnd} {name}: {statistics.mean(secs):.2f} s/frame, CPU {statistics.mean(cpu):.2f} s",
                flush=True,
            )

    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        ratios = [
            statistics.mean(seconds[name][r]) / statistics.mean(seconds["legacy"][r])
            for r in range(args.rounds)
        ]
        cpu_ratios = [
            statistics.mean(cpu_seconds[name][r]) / statistics.mean(cpu_seconds["legacy"][r])
            for r in range(args.rounds)
        ]
        rows[name] = {
            "options": CANDIDATES[name],
            "seconds_per_frame": statistics.mean(s for run in seconds[name] for s in run),
            "seconds_per_round": [statistics.mean(run) for run in seconds[name]],
            "time_ratio": statistics.mean(ratios),
            "time_ratio_per_round": ratios,
            "cpu_seconds_per_frame": statistics.mean(s for run in cpu_seconds[name] for s in run),
            "cpu_ratio": statistics.mean(cpu_ratios),
            "cpu_ratio_per_round": cpu_ratios,
            **mean_scores(scores[name]),
            "per_scene": scores[name],
        }
    default = pick_default(rows)
    command = "python benchmarks/render_quality.py " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "recipe": args.recipe,
        "scenes": args.scenes,
        "resolution": [args.width, args.height],
        "reference_spp": args.ref_spp,
        "rounds": args.rounds,
        "threads": args.threads,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "selection_rule": "cheapest setting with PSNR, SSIM, PSNR mask and SSIM mask all >= legacy",
        "cheapest_meeting_legacy": default,
        "rows": rows,
    }
    out = Path(args.out)
    atomic_write_json(out, result)
    write_report(result, out)


def write_report(result: dict[str, Any], out: Path) -> None:
    """The Markdown table (``OUT.table.md``) and frontier plot (``OUT_frontier.png``) of a result."""
    rows, default = result["rows"], result["cheapest_meeting_legacy"]
    md = f"`{result['command']}`\n\n{table(rows, default)}\n"
    atomic_write_bytes(out.with_suffix(".table.md"), md.encode())
    plot(rows, default, out.with_name(out.stem + "_frontier.png"))
    print(table(rows, default))
    print(f"cheapest setting meeting legacy on all four figures: {default}")


if __name__ == "__main__":
    main()
