"""Where a Mask R-CNN training step makes the host wait for the GPU (CUDA only).

    python benchmarks/sync_sites.py --spec SPEC.yaml [--iters 12] [--variant torchvision_nms] [--out J]

Runs ``synthloop.training.loop.train`` (the benchmark's one-phase setup from ``benchmarks/train.py``)
under ``torch.cuda.set_sync_debug_mode("warn")``: PyTorch then warns at every synchronizing call
(``.item()``, ``nonzero``, boolean-mask indexing, device-to-host copies, ...). Each warning is
attributed to the innermost frame in synthloop or torchvision (or ``<backward>`` when it comes from
the autograd engine with no Python frame) and counted. Sites whose count is a multiple of the
iteration count run every step; the rest are set-up. Prints the table and writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from synthloop.atomic import atomic_write_json
from synthloop.training.spec import load_spec

ROOTS = ("synthloop", "torchvision")


def site_of(stack: list[traceback.FrameSummary]) -> str:
    """``path:line (function)`` of the innermost synthloop / torchvision frame of ``stack``."""
    for fr in reversed(stack):
        parts = Path(fr.filename).parts
        for root in ROOTS:
            if root in parts:
                rel = "/".join(parts[parts.index(root) :])
                return f"{rel}:{fr.lineno} ({fr.name})"
    return "<backward or other>"


def census(spec, spec_path: Path, iters: int, variant: dict) -> collections.Counter:
    """Sync-warning counts per site over a ``iters``-step run of the benchmark's synthloop loop."""
    from benchmarks.train import synthloop_loop

    counts: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            counts[site_of(traceback.extract_stack()[:-1])] += 1

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores the filters and showwarning on exit
            warnings.simplefilter("always")
            warnings.showwarning = record
            synthloop_loop(spec, spec_path, iters, max(1, iters // 2), **variant)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--variant", default="", help="'', per_image_heads or torchvision_nms")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sync_sites.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("sync_sites.py counts host syncs on a CUDA device; none is available")
    spec_path = Path(args.spec).resolve()
    spec = load_spec(spec_path)
    variant = {"": {}, "per_image_heads": {"batched_heads": False}, "torchvision_nms": {"matrix_nms": False}}[
        args.variant
    ]
    counts = census(spec, spec_path, args.iters, variant)
    total = sum(counts.values())
    print(f"{total} synchronizing calls in {args.iters} steps ({total / args.iters:.1f} per step)")
    for site, n in counts.most_common():
        tag = "per step" if n % args.iters == 0 else "set-up/other"
        print(f"{n:7d}  {n / args.iters:6.1f}/step  {tag:12s}  {site}")
    atomic_write_json(
        args.out,
        {
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "variant": args.variant or "default",
            "iters": args.iters,
            "total": total,
            "sites": dict(counts.most_common()),
        },
    )


if __name__ == "__main__":
    main()
