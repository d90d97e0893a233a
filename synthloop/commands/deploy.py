"""``synthloop prune | qat | export-model | infer``: deployment commands (thin layers over synthloop.deploy).

Mount (in synthloop/cli.py)::

    from synthloop.commands import deploy as deploy_cmds
    app.command("prune")(deploy_cmds.prune_cmd)
    app.command("qat")(deploy_cmds.qat_cmd)
    app.command("export-model")(deploy_cmds.export_model_cmd)
    app.command("infer")(deploy_cmds.infer_cmd)

(``app`` below holds the same four commands, for ``app.add_typer(deploy_cmds.app, name="deploy")``.)
User errors (:class:`synthloop.errors.SynthloopError`) print one line to stderr and exit 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from synthloop.cli_common import cli_errors
from synthloop.errors import SynthloopError

if TYPE_CHECKING:  # the module imports torch; the CLI loads it only when pruning
    from synthloop.deploy.prune import PruneReport

app = typer.Typer(help="Prune, quantize, export and run detectors.", no_args_is_help=True)


def _calibration_inputs(images: list[Path], count: int, desc: Any, seed: int = 0) -> list:
    """Network inputs for INT8 calibration: ``count`` images (seeded choice) from files/folders."""
    import numpy as np

    from synthloop.deploy.infer import list_images
    from synthloop.deploy.preprocess import load_input

    files = list_images(images)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.permutation(len(files))[: max(1, count)].tolist())
    xs = [load_input(files[i], desc.input_width, desc.input_height)[0] for i in pick]
    return [x[None] for x in xs] if desc.family == "detectnet_v2" else xs


@app.command("prune")
@cli_errors
def prune_cmd(
    model: Path = typer.Argument(..., help="training or pruned checkpoint (.pt)"),
    out: Path = typer.Option(..., "--out", "-o", help="pruned checkpoint to write"),
    threshold: float = typer.Option(
        0.1, "-pth", "--threshold", help="prune channels with normalized L1 < this"
    ),
    min_filters: int = typer.Option(
        16, "-nf", "--min-filters", help="keep at least this many channels per layer"
    ),
    granularity: int = typer.Option(
        8, "-pg", "--granularity", help="kept channel counts are multiples of this"
    ),
    normalizer: str = typer.Option("max", "--normalizer", help="'max' (TLT default) or 'l2'"),
    allocation: str = typer.Option(
        "threshold",
        "--allocation",
        help="'threshold' (TLT): keep channels scoring >= -pth; "
        "'uniform': remove the fraction -pth of every layer",
    ),
    calib: Path | None = typer.Option(
        None,
        "--calib",
        help="training images (dataset folder, COCO .json, ...): re-estimate batch-norm statistics "
        "and fold removed channels' means into biases",
    ),
    calib_images: int = typer.Option(256, "--calib-images", min=1, help="how many --calib images to use"),
    family: str | None = typer.Option(None, "--family", help="expect this model family"),
    target_ratio: float | None = typer.Option(
        None,
        "--target-ratio",
        help="search the smallest -pth that leaves at most this fraction of the parameters (ignores -pth)",
    ),
    exclude: list[str] = typer.Option(
        [],
        "--exclude",
        "-el",
        help="never prune the convs under this module name prefix, e.g. backbone.body.stem (repeat; "
        "TLT --excluded_layers)",
    ),
) -> None:
    """Channel pruning by L1 norm (TLT -pth/-nf/-pg); prints params and MACs before/after.

    Example: synthloop prune runs/fruits/checkpoints/best.pt --out pruned.pt -pth 0.3 -nf 16 -pg 8
    """
    from synthloop.deploy.prune import prune_checkpoint

    if normalizer not in ("max", "l2"):
        raise SynthloopError(f"--normalizer must be 'max' or 'l2', got {normalizer!r}")
    if allocation not in ("threshold", "uniform"):
        raise SynthloopError(f"--allocation must be 'threshold' or 'uniform', got {allocation!r}")
    images = None
    if calib is not None:
        from synthloop.deploy.recalibrate import calibration_images

        images = calibration_images(calib, calib_images)
    _, r = prune_checkpoint(
        model,
        out,
        family,
        threshold,
        min_filters,
        granularity,
        normalizer,
        target_ratio,
        allocation,
        images,
        exclude,
    )
    _print_pruned(r, out)


def _print_pruned(r: PruneReport, out: Path) -> None:
    """What ``prune`` did: layers, parameters and MACs before and after, the batch-norm
    re-estimation, and the file written."""
    print(f"pruned {len(r.layers)} layer groups at -pth {r.threshold:.4f}")
    print(f"params: {r.params_before:,} -> {r.params_after:,} (ratio {r.param_ratio:.3f})")
    print(f"MACs:   {r.macs_before:,} -> {r.macs_after:,} (ratio {r.macs_ratio:.3f})")
    if r.recalibrated_bn:
        n, layers = r.calibration_images, r.recalibrated_bn
        print(f"batch-norm statistics re-estimated on {n} images ({layers} layers)")
    print(f"wrote {out} (fine-tune it: synthloop.deploy.prune.load_pruned)")


@app.command("qat")
@cli_errors
def qat_cmd(
    model: Path = typer.Argument(..., help="training or pruned DetectNet_v2 checkpoint"),
    dataset: Path = typer.Argument(
        ..., help="fine-tuning / calibration data: synthloop folder, COCO .json, ..."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="QAT checkpoint to write (.pt)"),
    onnx: Path | None = typer.Option(None, "--onnx", help="also export the INT8 QDQ ONNX here"),
    steps: int = typer.Option(200, "--steps", help="fine-tuning steps"),
    lr: float = typer.Option(1e-4, "--lr", help="fine-tuning learning rate"),
    batch_size: int = typer.Option(4, "--batch-size", help="images per fine-tuning step"),
    calib_frames: int = typer.Option(32, "--calib-frames", help="frames to calibrate quantizer ranges"),
    seed: int = typer.Option(0, "--seed", help="seed of the frame sampling and order"),
    ptq: bool = typer.Option(
        False, "--ptq", help="calibrate only (post-training quantization), no fine-tuning"
    ),
) -> None:
    """INT8 quantization-aware fine-tuning (modelopt fake-quant), or --ptq calibration only.

    Example: synthloop qat runs/fruits/checkpoints/best.pt out/tabletop --out qat.pt --onnx qat.onnx
    """
    from synthloop.commands.export import load_source
    from synthloop.deploy.export_onnx import export_qat_onnx
    from synthloop.deploy.qat import QatReport, qat_finetune, save_qat
    from synthloop.training.checkpoints import load_model

    loaded = load_model(model, "detectnet_v2")
    ds = load_source(dataset)
    raw, report = qat_finetune(
        loaded.model,
        loaded.desc,
        ds,
        steps=0 if ptq else steps,
        lr=lr,
        batch_size=batch_size,
        calib_frames=calib_frames,
        seed=seed,
    )
    save_qat(out, raw, loaded.desc, report if not ptq else QatReport(0, lr, batch_size))
    if report.losses:
        print(
            f"loss: first {report.losses[0]:.4f}, last {report.losses[-1]:.4f} ({len(report.losses)} steps)"
        )
    print(f"wrote {out}")
    if onnx is not None:
        export_qat_onnx(raw, loaded.desc, onnx, source=str(model))
        print(f"wrote {onnx} (+ {onnx.with_suffix('.json').name})")


@app.command("export-model")
@cli_errors
def export_model_cmd(
    model: Path = typer.Argument(..., help="training, pruned or QAT checkpoint"),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write (sidecar <name>.json next to it)"),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8"),
    calib_images: list[Path] | None = typer.Option(
        None, "--calib-images", help="INT8 calibration images/folders"
    ),
    calib_count: int = typer.Option(32, "--calib-count", help="calibration images to use"),
    int8_flavor: str = typer.Option("ort", "--int8-flavor", help="'ort' (uint8 activations) or 'tensorrt'"),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version (>= 11)"),
    layout: str = typer.Option(
        "synthloop",
        "--layout",
        help="'synthloop' (cov logits + 5-D bbox, batch 1) or 'tao' (DetectNet_v2: TAO's "
        "output_cov/Sigmoid + output_bbox/BiasAdd, dynamic batch, DeepStream nvinfer config + labels.txt)",
    ),
    parity: Path | None = typer.Option(
        None, "--parity", help="dataset (COCO .json, folder) to compare with torch"
    ),
    engine: Path | None = typer.Option(
        None, "--engine", help="also build a TensorRT engine (or print trtexec)"
    ),
) -> None:
    """Export to ONNX (+ parity check vs PyTorch, + TensorRT engine where available).

    Example: synthloop export-model runs/fruits/checkpoints/best.pt --out ds/model.onnx --layout tao
    """
    _check_export_options(precision, int8_flavor, calib_method, layout, engine)
    options = _ExportOptions(precision, int8_flavor, calib_method, opset, layout)
    loaded, calib = _export_onnx(model, out, options, calib_images, calib_count)
    print(f"wrote {out} (+ {out.with_suffix('.json').name})")
    if layout == "tao":
        from synthloop.deploy.deepstream import CONFIG_NAME, LABELS_NAME

        print(f"wrote {out.parent / CONFIG_NAME} and {out.parent / LABELS_NAME} (DeepStream nvinfer)")
    if parity is not None:
        if loaded is None:
            raise SynthloopError("--parity needs a training or pruned checkpoint as MODEL")
        _print_parity(loaded, out, parity)
    if engine is not None:
        from synthloop.deploy.tensorrt_build import build_engine

        trt_precision = "int8" if precision == "int8" or loaded is None else "fp16"
        built = build_engine(out, engine, trt_precision, calibration=calib)
        if built is not None:
            print(f"wrote {built}")


def _check_export_options(
    precision: str, int8_flavor: str, calib_method: str, layout: str, engine: Path | None
) -> None:
    """One-line errors for export-model option values outside their choices or not combinable."""
    if precision not in ("fp32", "fp16", "int8"):
        raise SynthloopError(f"--precision must be fp32, fp16 or int8, got {precision!r}")
    if int8_flavor not in ("ort", "tensorrt"):
        raise SynthloopError(f"--int8-flavor must be 'ort' or 'tensorrt', got {int8_flavor!r}")
    if calib_method not in ("minmax", "entropy", "percentile"):
        raise SynthloopError(f"--calib-method must be minmax, entropy or percentile, got {calib_method!r}")
    if layout not in ("synthloop", "tao"):
        raise SynthloopError(f"--layout must be 'synthloop' or 'tao', got {layout!r}")
    if layout == "tao" and engine is not None:
        raise SynthloopError(
            "--engine with --layout tao is not supported (its dynamic batch needs an optimization "
            "profile); DeepStream's nvinfer builds the engine from the ONNX and the written config"
        )


@dataclass(frozen=True)
class _ExportOptions:
    """export-model's ONNX options (checked by :func:`_check_export_options`)."""

    precision: str
    int8_flavor: str
    calib_method: str
    opset: int
    layout: str


def _export_onnx(
    model: Path, out: Path, o: _ExportOptions, calib_images: list[Path] | None, calib_count: int
) -> tuple[Any, Any]:
    """Write ``out`` from the checkpoint ``model``: a QAT checkpoint through its fake-quant graph,
    any other through the export at ``o.precision``. Returns (the loaded model, or None for a QAT
    checkpoint; the INT8 calibration inputs, or None)."""
    from synthloop.deploy.export_onnx import export_model, export_qat_onnx
    from synthloop.deploy.qat import QAT_FORMAT
    from synthloop.training.checkpoint_io import read_checkpoint

    if read_checkpoint(model).get("format") == QAT_FORMAT:
        from synthloop.deploy.qat import load_qat

        if o.layout != "synthloop":
            raise SynthloopError("--layout tao takes a training or pruned checkpoint, not a QAT one")
        raw, desc = load_qat(model)
        export_qat_onnx(raw, desc, out, o.opset, source=str(model))
        return None, None
    from synthloop.training.checkpoints import load_model

    loaded = load_model(model)
    calib = None
    if o.precision == "int8":
        if not calib_images:
            raise SynthloopError("--precision int8 needs --calib-images (or use the qat command)")
        calib = _calibration_inputs(calib_images, calib_count, loaded.desc)
    export_model(
        loaded.model,
        loaded.desc,
        out,
        o.precision,
        calib,
        o.int8_flavor,
        o.calib_method,
        o.opset,
        source=str(model),
        layout=o.layout,
    )
    return loaded, calib


def _print_parity(loaded: Any, onnx_path: Path, data: Path) -> None:
    """Print the parity report of the exported ONNX against the PyTorch model on ``data``."""
    from synthloop.commands.export import load_source
    from synthloop.deploy.infer import TorchBackend
    from synthloop.deploy.ort_runtime import OrtBackend
    from synthloop.deploy.parity import parity_report

    rep = parity_report(TorchBackend(loaded), OrtBackend(onnx_path), load_source(data))
    print(json.dumps(rep, indent=1, sort_keys=True))


@app.command("infer")
@cli_errors
def infer_cmd(
    model: Path = typer.Argument(..., help="checkpoint, .onnx or TensorRT .engine (with its sidecar .json)"),
    images: list[Path] = typer.Argument(..., help="image files or folders"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder: <image>.json + <image>.png overlays"),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, onnxruntime or tensorrt"),
    score_thr: float = typer.Option(0.5, "--score-thr", help="drop detections scored below this"),
) -> None:
    """Detect objects; JSON per image + overlays (boxes, masks, skeletons, labels) like detectnet-console.

    Example: synthloop infer model.onnx photos/ --out detections/ --score-thr 0.4
    """
    from synthloop.deploy.infer import run_inference

    res = run_inference(model, images, out, backend, score_thr)
    for stem, n in res.counts.items():
        print(f"{stem}: {n} detections")
    print(f"wrote {len(res.json_files)} JSON + {len(res.overlays)} overlays to {out}")
