"""Size and CPU latency of pruned DetectNet_v2 checkpoints against the model they were cut from.

    python benchmarks/prune_latency.py BASE.pt PRUNED.pt [PRUNED2.pt ...] [--runs 30] [--warmup 3]
                                       [--threads 1] [--onnx] [--out benchmarks/results/prune_latency.json]

Per checkpoint: parameters the forward pass uses, MACs of one forward pass at the model's input
size (torch-pruning's counter), the checkpoint's file size, and the median latency of the raw
network (batch 1, no decoding) in PyTorch, and with ``--onnx`` in onnxruntime FP32 as well. All
models run interleaved (one call of each per round; :func:`infer.median_ms`), so load from other
processes on a shared machine affects them alike; ratios are against the first checkpoint, within
this one run. Inputs: a fruits-nuts photo at the model's input size when present, else noise.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from infer import calibration_inputs, median_ms

from synthloop.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="the base first, then pruned checkpoints")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--onnx", action="store_true", help="also time onnxruntime FP32 exports")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "prune_latency.json")
    args = ap.parse_args(argv)

    import torch

    from synthloop.deploy.graph import DetectNetRaw, count_used_params
    from synthloop.deploy.prune import _macs
    from synthloop.training.checkpoints import load_model

    torch.set_num_threads(args.threads)
    models = [load_model(path, "detectnet_v2") for path in args.checkpoints]
    size = (models[0].desc.input_width, models[0].desc.input_height)
    for path, m in zip(args.checkpoints, models, strict=True):
        if (m.desc.input_width, m.desc.input_height) != size:
            raise SystemExit(f"{path}: input size differs from the first checkpoint's {size}")
    xs, src = calibration_inputs(*size, n=1)
    x = xs[0]
    xt = torch.from_numpy(x)[None]
    rows, fns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, loaded) in enumerate(zip(args.checkpoints, models, strict=True)):
            raw = DetectNetRaw(loaded.model).eval()
            name = f"{i}:{path.name}"
            with torch.no_grad():
                params = count_used_params(raw, lambda r=raw: r(xt))
                macs = _macs(raw, xt)
            fns[f"{name}/torch"] = lambda r=raw: r(xt)
            if args.onnx:
                from synthloop.deploy.export_onnx import export_model
                from synthloop.deploy.ort_runtime import OrtBackend

                onnx = export_model(loaded.model, loaded.desc, Path(tmp) / f"m{i}.onnx", "fp32")
                ort = OrtBackend(onnx, threads=args.threads)
                fns[f"{name}/onnx_fp32"] = lambda b=ort: b.run(x)
            rows.append(
                {
                    "checkpoint": str(path),
                    "kind": loaded.kind,
                    "params": params,
                    "macs": macs,
                    "file_bytes": path.stat().st_size,
                }
            )
        with torch.no_grad():
            ms = median_ms(fns, args.runs, args.warmup)
    for i, row in enumerate(rows):
        name = f"{i}:{Path(row['checkpoint']).name}"
        row["torch_ms"] = round(ms[f"{name}/torch"], 3)
        if args.onnx:
            row["onnx_fp32_ms"] = round(ms[f"{name}/onnx_fp32"], 3)
    base = rows[0]
    for row in rows:
        row["param_ratio"] = round(row["params"] / base["params"], 4)
        row["macs_ratio"] = round(row["macs"] / base["macs"], 4)
        row["torch_ms_ratio"] = round(row["torch_ms"] / base["torch_ms"], 4)
        if args.onnx:
            row["onnx_fp32_ms_ratio"] = round(row["onnx_fp32_ms"] / base["onnx_fp32_ms"], 4)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
        },
        "input_size": list(size),
        "input": src,
        "runs": args.runs,
        "rows": rows,
    }
    for row in rows:
        extra = (
            f"  onnx {row['onnx_fp32_ms']:8.2f} ms ({row['onnx_fp32_ms_ratio']:.2f}x)" if args.onnx else ""
        )
        print(
            f"{Path(row['checkpoint']).name:24s} params {row['params']:>9,} ({row['param_ratio']:.3f}x)  "
            f"MACs {row['macs_ratio']:.3f}x  "
            f"torch {row['torch_ms']:8.2f} ms ({row['torch_ms_ratio']:.2f}x){extra}"
        )
    atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
