"""The gap of several recipes to real photos on proxy renders (e.g. bundled vs fitted).

    python benchmarks/fit_gap.py --recipes tabletop docs/results/recipes/tabletop_fitted.yaml \
        [--real ../shared/data/real/fruits-nuts/train.json] [--frames 24] [--seed 2] \
        [--size 160x120] [--samples 4] [--work DIR] [--out benchmarks/results/fit_gap.json]

For each recipe: render ``--frames`` proxy frames (``synthloop.fitting.proxy``: the recipe at
``--size`` with ``--samples`` Cycles samples; resumed if ``--work``/<name> exists), then run
``synthloop gap`` against ``--real`` (Lite0 features, 1000 bootstrap resamples) and keep its
report (``--work``/<name>/gap/gap.html). Prints the KIDs with intervals and the mean normalised
statistic difference per recipe, and writes JSON. Use a render seed the fit did not use (the fit
renders with --seed S and confirms with S + 1), and only a training split as ``--real``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from synthloop.atomic import atomic_write_json
from synthloop.fitting.proxy import ProxyRenderer, proxy_recipe
from synthloop.gap.compute import GapOptions, json_safe
from synthloop.gap.features import LiteFeatures
from synthloop.gap.run import gap_to_folder
from synthloop.importers.images import load_labeled_or_folder
from synthloop.scenes.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "data" / "real" / "fruits-nuts" / "train.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fit_gap.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", required=True)
    ap.add_argument("--real", default=str(DEFAULT_REAL))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--size", default="160x120")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="Cycles and torch threads")
    ap.add_argument("--work", default="fit_gap_work")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    size = tuple(int(v) for v in args.size.lower().split("x"))
    real, labeled = load_labeled_or_folder(args.real)
    feats = LiteFeatures()
    renderer = ProxyRenderer(threads=args.threads)
    results = {}
    try:
        for spec in args.recipes:
            recipe = load_recipe(spec)
            work = Path(args.work) / Path(spec).stem
            ds = renderer.render(
                proxy_recipe(recipe, size, args.samples), args.seed, args.frames, work / "frames"
            )
            options = GapOptions(working_width=size[0], n_boot=1000, seed=args.seed)
            rep = gap_to_folder(
                ds, real, work / "gap", labeled=labeled, options=options, synth_name=spec,
                real_name=args.real, quiet=True, features=feats,
            )  # fmt: skip
            diffs = [v for v in rep.differences.values() if math.isfinite(v)]
            results[spec] = {
                "kid_image": rep.kid_image.to_dict() if rep.kid_image else None,
                "kid_crops": {c: (k.to_dict() if k else None) for c, k in rep.kid_crops.items()},
                "mean_statistic_difference": float(np.mean(diffs)) if diffs else None,
                "differences": rep.differences,
                "holes": {c: {k: v for k, v in h.items() if k != "indices"} for c, h in rep.holes.items()},
                "report": str(work / "gap" / "gap.html"),
            }
            k = rep.kid_image
            line = f"{spec}: image KID {k.value:.4f} [{k.low:.4f}, {k.high:.4f}]" if k else f"{spec}:"
            for c, kc in rep.kid_crops.items():
                if kc:
                    line += f"; {c} {kc.value:.2f} [{kc.low:.2f}, {kc.high:.2f}]"
            print(line + f"; stats {results[spec]['mean_statistic_difference']:.3f}", file=sys.stderr)
    finally:
        renderer.close()
    atomic_write_json(
        args.out,
        json_safe(
            {
                "command": "python benchmarks/fit_gap.py "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "real": args.real,
                "frames": args.frames,
                "seed": args.seed,
                "size": list(size),
                "samples": args.samples,
                "recipes": results,
            }
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
