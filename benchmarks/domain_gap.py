"""Domain gap: image statistics of a real COCO split next to those of a recipe's renders.

    python benchmarks/domain_gap.py [--real PATH/train.json] [--recipe tabletop] [--frames 12]
        [--size 320x240] [--seed 0] [--threads 1] [--render-dir DIR | --dataset DIR | --zbuffer]
        [--out benchmarks/results/domain_gap.json]

Synthetic side, one of:

* default: render ``--frames`` frames of ``--recipe`` with synthloop's generator (Blender, the
  recipe's engine and samples) at ``--size`` into ``--render-dir`` (a temporary folder when not
  given; an existing folder is resumed, so re-running is cheap);
* ``--dataset DIR``: read an existing synthloop dataset folder (e.g. ``synthloop generate`` output);
* ``--zbuffer``: no Blender at all: the numpy z-buffer of each SceneSpec gives masks and boxes
  (geometry statistics only; colour and background rows are left empty).

Statistics (per class unless noted), identical definitions on both sides (computed by
:mod:`synthloop.gap.stats`; ``synthloop gap`` adds KID in learned features and an HTML report):

* ``rel_size``: the visible box's long side / image width (so resolution does not matter);
  median and quartiles over objects.
* ``aspect``: the box's long side / short side (>= 1; objects lie at random yaw, so w/h would
  mix orientation with shape); median and quartiles.
* ``count``: objects of the class per image (images without the class count as 0); mean,
  quartiles, min, max. ``total`` is the same for all labeled objects.
* ``coverage`` (per image): union of the labeled masks / image area.
* ``touching_border``: fraction of labeled objects whose box comes within 0.5 % of the image
  width of an image edge (truncated objects).
* ``hsv``: colour of the pixels under the class's masks, pooled over objects. HSV of the sRGB
  values in [0, 1], hue in turns; hue mean/std are circular (std = sqrt(-2 ln R) / 2 pi) and
  weighted by saturation (the hue of grey pixels is noise); s and v plain mean/std.
* ``background`` (per image): mean HSV value and saturation of the pixels outside every labeled
  mask (unlabeled distractors, e.g. the gold foil, count as background on both sides).
* ``pose`` (classes with COCO-17 keypoints): elbow, knee, shoulder and hip angles and the torso's
  tilt in the image plane, in degrees, and the share of keypoints labelled
  (:mod:`synthloop.gap.pose`); with ``--zbuffer`` a recipe's pose prior is measured in seconds.

Real masks come from the COCO polygons/RLE (:func:`synthloop.importers.coco.load_coco`), synthetic
masks from the frame records. Only the real split given is read (use the training split: the
evaluation split must not steer a recipe). Prints a side-by-side table and writes JSON, with each
statistic's 1-Wasserstein distance between the two sides in real standard deviations
(:func:`synthloop.gap.stats.normalised_differences`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Dataset, Frame
from synthloop.errors import SynthloopError
from synthloop.gap.stats import (
    Measurements,
    gap_checks,
    measure_dataset,
    normalised_differences,
    summarize_measurements,
)
from synthloop.importers.coco import load_coco
from synthloop.scenes.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "data" / "real" / "fruits-nuts" / "train.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "domain_gap.json"


# ------------------------------------------------------------------------------ data sources
def load_real(path: str | Path) -> Dataset:
    """A real COCO split (masks from polygons/RLE)."""
    return load_coco(path)


def with_resolution(recipe: Recipe, size: tuple[int, int] | None) -> Recipe:
    """The recipe at another resolution (same camera geometry: fov is horizontal, sizes relative)."""
    if size is None:
        return recipe
    return recipe.model_copy(update={"resolution": (int(size[0]), int(size[1]))})


def render_dataset(recipe: Recipe, frames: int, seed: int, out: Path, threads: int) -> Dataset:
    """Render (or resume) frames 0..frames-1 into ``out`` with Blender and read the folder back."""
    from synthloop.generators.generate import default_renderer_factory, generate_frames

    res = generate_frames(
        recipe, seed, range(frames), out, renderer_factory=default_renderer_factory(threads), quiet=True
    )
    if res.failed:
        raise SynthloopError(
            f"{len(res.failed)} frame(s) failed to render: {sorted(res.failed)}", path=str(out)
        )
    return load_dataset(out)


def zbuffer_dataset(recipe: Recipe, frames: int, seed: int) -> Dataset:
    """Blender-free geometry: each SceneSpec's numpy z-buffer gives ids and depth, annotated as a
    render would be (frames have no image; use ``colour=False``)."""
    from synthloop.generators.generate import categories_of
    from synthloop.geometry.annotate import annotate_frame, zbuffer_scene
    from synthloop.scenes.sampler import sample_scene

    out: list[Frame] = []
    cats = None
    for i in range(frames):
        spec = sample_scene(recipe, seed, i)
        cats = cats or categories_of(spec)
        ids, depth = zbuffer_scene(spec, include_support=True)
        ann = annotate_frame(spec, ids, depth)
        out.append(
            Frame(
                frame_id=f"{i:06d}",
                image_path=Path("/nonexistent"),
                width=spec.render.width,
                height=spec.render.height,
                objects=ann.objects,
            )
        )
    return Dataset(categories=cats or [], frames=out, name=f"{recipe.name}-zbuffer")


# ------------------------------------------------------------------------------ report
def _fmt_dist(d: dict[str, Any], nd: int = 3) -> str:
    if not d or d.get("n", 0) == 0:
        return "-"
    return f"{d['median']:.{nd}f} [{d['q1']:.{nd}f}, {d['q3']:.{nd}f}]"


def _fmt_count(d: dict[str, Any]) -> str:
    if not d or d.get("n", 0) == 0:
        return "-"
    return f"{d['mean']:.2f} ({d['min']:.0f}-{d['max']:.0f})"


def _fmt_hsv(h: dict[str, float] | None) -> str:
    if not h:
        return "-"
    return (
        f"h {h['h_mean']:.3f}±{h['h_std']:.3f} s {h['s_mean']:.2f}±{h['s_std']:.2f} "
        f"v {h['v_mean']:.2f}±{h['v_std']:.2f}"
    )


def table_rows(real: dict[str, Any], synth: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(statistic, real, synthetic) rows of the side-by-side table."""
    rows: list[tuple[str, str, str]] = [("images", str(real["images"]), str(synth["images"]))]
    for name, rc in real["classes"].items():
        sc = synth["classes"].get(name, {})
        rows.append(
            (f"{name} rel_size med (q1, q3)", _fmt_dist(rc["rel_size"]), _fmt_dist(sc.get("rel_size", {})))
        )
        rows.append(
            (f"{name} aspect med (q1, q3)", _fmt_dist(rc["aspect"], 2), _fmt_dist(sc.get("aspect", {}), 2))
        )
        rows.append(
            (f"{name} per image mean (min-max)", _fmt_count(rc["count"]), _fmt_count(sc.get("count", {})))
        )
        rows.append((f"{name} HSV", _fmt_hsv(rc["hsv"]), _fmt_hsv(sc.get("hsv"))))
        for stat, d in (rc.get("pose") or {}).items():  # COCO-17 classes: 2-D joint angles (degrees)
            other = (sc.get("pose") or {}).get(stat, {})
            rows.append((f"{name} {stat} med (q1, q3)", _fmt_dist(d, 2), _fmt_dist(other, 2)))
    rows.append(("objects per image mean (min-max)", _fmt_count(real["total"]), _fmt_count(synth["total"])))
    rows.append(("coverage med (q1, q3)", _fmt_dist(real["coverage"]), _fmt_dist(synth["coverage"])))
    rows.append(
        ("objects touching the border", f"{real['touching_border']:.3f}", f"{synth['touching_border']:.3f}")
    )
    for key in ("value", "saturation"):
        r = real["background"][key] if real["background"] else {}
        s = synth["background"][key] if synth["background"] else {}
        rows.append((f"background {key} med (q1, q3)", _fmt_dist(r, 2), _fmt_dist(s, 2)))
    return rows


def print_table(rows: list[tuple[str, str, str]], real_name: str, synth_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="domain gap")
    table.add_column("statistic")
    table.add_column(f"real: {real_name}")
    table.add_column(f"synthetic: {synth_name}")
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def synthetic_side(args: argparse.Namespace) -> tuple[Measurements, str]:
    """The synthetic side's raw measurements and its name (a dataset folder, a render of the
    recipe, or its z-buffer annotations without colour)."""
    if args.dataset:
        return measure_dataset(load_dataset(args.dataset)), str(args.dataset)
    recipe = with_resolution(load_recipe(args.recipe), args.size)
    name = f"{args.recipe} ({recipe.resolution[0]}x{recipe.resolution[1]}, seed {args.seed})"
    if args.zbuffer:
        return measure_dataset(
            zbuffer_dataset(recipe, args.frames, args.seed), colour=False
        ), name + " z-buffer"
    if args.render_dir:
        ds = render_dataset(recipe, args.frames, args.seed, Path(args.render_dir), args.threads)
        return measure_dataset(ds), name
    with tempfile.TemporaryDirectory() as tmp:
        return measure_dataset(
            render_dataset(recipe, args.frames, args.seed, Path(tmp) / "ds", args.threads)
        ), name


def run(args: argparse.Namespace) -> dict[str, Any]:
    real_m = measure_dataset(load_real(args.real))
    synth_m, synth_name = synthetic_side(args)
    real, synth = summarize_measurements(real_m), summarize_measurements(synth_m)
    rows = table_rows(real, synth)
    if not args.quiet:
        print_table(rows, Path(args.real).name, synth_name)
    result = {
        "real": {"source": str(args.real), **real},
        "synthetic": {"source": synth_name, **synth},
        "checks": gap_checks(real, synth),
        "differences": normalised_differences(real_m, synth_m),
    }
    if not args.quiet:
        for name, c in result["checks"].items():
            print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()})
        print("W1 / real std:", ", ".join(f"{k} {v:.2f}" for k, v in result["differences"].items()))
    atomic_write_json(args.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(DEFAULT_REAL), help="real COCO json (training split)")
    ap.add_argument("--recipe", default="tabletop")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=_size, default=(320, 240), help="render size WxH (default 320x240)")
    ap.add_argument("--threads", type=int, default=1, help="Cycles threads")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--render-dir", help="render into (or resume) this dataset folder")
    src.add_argument("--dataset", help="read this existing synthloop dataset folder instead of rendering")
    src.add_argument(
        "--zbuffer", action="store_true", help="no Blender: geometry statistics from the z-buffer"
    )
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        run(args)
    except SynthloopError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
