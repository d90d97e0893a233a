"""Inference latency on this CPU: PyTorch vs ONNX FP32 vs ONNX INT8 (QDQ) in onnxruntime.

    python benchmarks/infer.py [--backbones resnet18 efficientnet_lite0] [--width 640 --height 480]
                               [--checkpoint RUN/checkpoints/best.pt] [--runs 20] [--warmup 3]
                               [--threads 1] [--out benchmarks/results/infer.json]

For each model (a DetectNet_v2 per ``--backbones``, random weights unless ``--checkpoint`` is given;
latency does not depend on the weights' values) it exports FP32 ONNX and INT8 QDQ ONNX (onnxruntime
static PTQ, uint8 activations / int8 per-channel weights, calibrated on up to 16 fruits-nuts photos
when present, else seeded noise), then times batch 1 at the fixed input size: the median over
``--runs`` runs after ``--warmup`` warm-up runs, network only (no decoding), ``--threads`` intra-op
threads for both torch and onnxruntime; the three run interleaved (one of each per round) so load
from other processes on a shared machine affects them alike. ``int8_over_fp32`` = INT8 median /
FP32 median (goal <= 0.5). The raw-output difference of INT8 vs FP32 on the calibration images is
reported too.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
FRUITS = REPO.parent / "shared" / "data" / "real" / "fruits-nuts" / "images"


def median_ms(fns: dict, runs: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per callable; the callables run interleaved (one of each per round), so
    load from other processes on a shared machine affects them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def calibration_inputs(width: int, height: int, n: int = 16) -> tuple[list[np.ndarray], str]:
    from synthloop.deploy.preprocess import load_input

    files = sorted(FRUITS.glob("*.jpg"))[:n] if FRUITS.is_dir() else []
    if files:
        return [load_input(f, width, height)[0] for f in files], f"{len(files)} fruits-nuts photos"
    rng = np.random.default_rng(0)
    return [rng.random((3, height, width), dtype=np.float32) for _ in range(n)], f"{n} noise images"


def bench_model(loaded, runs: int, warmup: int, threads: int, workdir: Path) -> dict:
    import torch

    from synthloop.deploy.export_onnx import export_model
    from synthloop.deploy.graph import DetectNetRaw
    from synthloop.deploy.ort_runtime import OrtBackend

    desc = loaded.desc
    xs, calib_src = calibration_inputs(desc.input_width, desc.input_height)
    fp32 = export_model(loaded.model, desc, workdir / "fp32.onnx", "fp32")
    int8 = export_model(loaded.model, desc, workdir / "int8.onnx", "int8", calibration=[x[None] for x in xs])
    raw = DetectNetRaw(loaded.model).eval()
    x = xs[0]
    xt = torch.from_numpy(x)[None]
    b32, b8 = OrtBackend(fp32, threads=threads), OrtBackend(int8, threads=threads)
    with torch.no_grad():
        ms = median_ms(
            {"torch": lambda: raw(xt), "fp32": lambda: b32.run(x), "int8": lambda: b8.run(x)}, runs, warmup
        )
    torch_ms, fp32_ms, int8_ms = ms["torch"], ms["fp32"], ms["int8"]
    diffs = {"cov": 0.0, "bbox": 0.0}
    for xi in xs:
        r32, r8 = b32.run(xi), b8.run(xi)
        for k in diffs:
            diffs[k] = max(diffs[k], float(np.abs(r32[k] - r8[k]).max()))
    return {
        "family": desc.family,
        "backbone": desc.backbone,
        "input_size": [desc.input_width, desc.input_height],
        "calibration": calib_src,
        "torch_ms": round(torch_ms, 3),
        "onnx_fp32_ms": round(fp32_ms, 3),
        "onnx_int8_ms": round(int8_ms, 3),
        "int8_over_fp32": round(int8_ms / fp32_ms, 4),
        "int8_vs_fp32_max_abs_diff": diffs,
        "onnx_fp32_bytes": fp32.stat().st_size,
        "onnx_int8_bytes": int8.stat().st_size,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "efficientnet_lite0"])
    ap.add_argument("--checkpoint", type=Path, default=None, help="benchmark this checkpoint instead")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "infer.json")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch

    from synthloop.training.checkpoints import LoadedModel, ModelDesc, build_from_desc, load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = []
    if args.checkpoint is not None:
        models.append(load_model(args.checkpoint, "detectnet_v2"))
    else:
        for bb in args.backbones:
            desc = ModelDesc(
                family="detectnet_v2",
                backbone=bb,
                class_names=["date", "fig", "hazelnut"],
                category_ids=[1, 2, 3],
                input_width=args.width,
                input_height=args.height,
            )
            models.append(LoadedModel(build_from_desc(desc), desc, "random", Path("-")))
    results = []
    for loaded in models:
        with tempfile.TemporaryDirectory(prefix="synthloop-bench-") as tmp:
            r = bench_model(loaded, args.runs, args.warmup, args.threads, Path(tmp))
        print(
            f"{r['backbone']} {r['input_size'][0]}x{r['input_size'][1]}: torch {r['torch_ms']:.1f} ms, "
            f"ONNX FP32 {r['onnx_fp32_ms']:.1f} ms, ONNX INT8 {r['onnx_int8_ms']:.1f} ms, "
            f"INT8/FP32 {r['int8_over_fp32']:.2f}"
        )
        results.append(r)
    report = {
        "benchmark": "infer",
        "batch": 1,
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": args.threads,
        "goal_int8_over_fp32": 0.5,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "results": results,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
