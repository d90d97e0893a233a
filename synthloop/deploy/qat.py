"""INT8 quantization-aware training (QAT) and calibration-only PTQ for DetectNet_v2, with NVIDIA
TensorRT Model Optimizer (``nvidia-modelopt``, ``modelopt.torch.quantization``).

Why modelopt: its fake-quant modules (per-channel int8 weights, per-tensor int8 activations,
symmetric, calibrated by max) train on CPU and export through ``torch.onnx.export`` as
QuantizeLinear/DequantizeLinear pairs carrying the learned scales, which is exactly TensorRT's
explicit-quantization input. (For a CPU onnxruntime target the post-training path of
:func:`synthloop.deploy.export_onnx.quantize_int8` with uint8 activations is faster.)

Recipe (:func:`qat_finetune`):

1. fold batch norms into the convs (:func:`synthloop.deploy.graph.fold_batchnorm`: QAT then trains
   the deployed weights, and BN statistics cannot drift);
2. insert quantizers and calibrate their ranges on ``calib_frames`` frames (``mtq.quantize``);
3. fine-tune with the training package's data pipeline (:class:`~synthloop.training.data.DetectionDataset`,
   resize to the model input, its augmentation) and DetectNetV2's own loss, for ``steps`` Adam steps
   at a small learning rate, seeded (``seed`` drives the sampler and augmentation seeds).

:func:`ptq_calibrate` stops after step 2 (PTQ). :func:`save_qat` / :func:`load_qat` store the
quantized model as modelopt state + weights (``weights_only``-safe when modelopt's state is plain
data).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthloop.dataset.types import Dataset
from synthloop.deploy.errors import DeployError
from synthloop.deploy.graph import DetectNetRaw, fold_batchnorm, static_same_padding
from synthloop.training.checkpoint_io import read_checkpoint, save_checkpoint
from synthloop.training.checkpoints import ModelDesc, apply_layer_shapes, build_from_desc, layer_shapes
from synthloop.training.detectnet import total_loss
from synthloop.training.legacy import attach_legacy_classifier, has_legacy_classifier

QAT_FORMAT = "synthloop.qat/1"


@dataclass
class QatReport:
    """Losses of the fine-tuning steps (sum of DetectNet loss terms) and settings used."""

    steps: int
    lr: float
    batch_size: int
    losses: list[float] = field(default_factory=list)


def _require_detectnet(desc: ModelDesc) -> None:
    if desc.family != "detectnet_v2":
        raise DeployError(
            "QAT / modelopt PTQ are implemented for DetectNet_v2 (Mask R-CNN: export fp32)", where="family"
        )


def _quantize(raw: DetectNetRaw, batches: Sequence[torch.Tensor]) -> DetectNetRaw:
    """``raw`` with INT8 fake-quantizers calibrated on ``batches`` (modelopt converts in place)."""
    import modelopt.torch.quantization as mtq

    if not batches:
        raise DeployError("quantizer calibration needs at least one image", where="calibration")

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for b in batches:
                m(b)

    with warnings.catch_warnings():  # modelopt warns about parameter-free modules' device
        warnings.filterwarnings("ignore", message="Could not identify the device")
        quantized = mtq.quantize(raw, mtq.INT8_DEFAULT_CFG, forward_loop)
    if not isinstance(quantized, DetectNetRaw):
        raise DeployError(f"modelopt returned a {type(quantized).__name__}, not the DetectNet raw module")
    return quantized


def prepare_raw(model: nn.Module, desc: ModelDesc) -> DetectNetRaw:
    """A copy of ``model`` as :class:`DetectNetRaw` with batch norms folded and TF-"SAME" padding
    frozen for the input size (eval mode)."""
    _require_detectnet(desc)
    raw = DetectNetRaw(copy.deepcopy(model)).eval()
    example = torch.zeros(1, 3, desc.input_height, desc.input_width)
    fold_batchnorm(raw, example)
    static_same_padding(raw, example)
    return raw


def ptq_calibrate(model: nn.Module, desc: ModelDesc, calibration: Sequence[np.ndarray]) -> DetectNetRaw:
    """Post-training quantization: fake-quant DetectNet raw module calibrated on ``calibration``
    (network inputs (1, 3, H, W) or (3, H, W) float32 in [0, 1]); ``model`` is not modified."""
    raw = prepare_raw(model, desc)
    batches = [
        torch.from_numpy(np.asarray(c, np.float32)).reshape(1, 3, desc.input_height, desc.input_width)
        for c in calibration
    ]
    return _quantize(raw, batches)


def _label_map(desc: ModelDesc, ds: Dataset) -> dict[int, int]:
    """Dataset category id -> training label 1..C, by class name (by id where names do not match)."""
    by_name = {c.name: c.id for c in ds.categories}
    ids = {c.id for c in ds.categories}
    out: dict[int, int] = {}
    for i, (name, cid) in enumerate(zip(desc.class_names, desc.category_ids, strict=True)):
        if name in by_name:
            out[by_name[name]] = i + 1
        elif cid in ids:
            out[cid] = i + 1
        else:
            raise DeployError(
                f"dataset has no class {name!r} (nor category id {cid})", where="dataset.categories"
            )
    return out


def qat_finetune(
    model: nn.Module,
    desc: ModelDesc,
    dataset: Dataset,
    steps: int = 100,
    lr: float = 1e-4,
    batch_size: int = 4,
    calib_frames: int = 16,
    seed: int = 0,
    augment: Any | None = None,
) -> tuple[DetectNetRaw, QatReport]:
    """QAT recipe of the module docstring; returns the fake-quantized raw module (train -> eval mode)
    and the per-step losses. ``augment``: an ``AugmentConfig`` (default: the training package's
    defaults at the model input size)."""
    from synthloop.training.data import AugmentConfig, DetectionDataset, collate

    _require_detectnet(desc)
    if len(dataset.frames) == 0:
        raise DeployError("QAT dataset has no frames", where="dataset")
    label_map = _label_map(desc, dataset)
    aug = augment or AugmentConfig(output_width=desc.input_width, output_height=desc.input_height)
    aug = aug.model_copy(update={"output_width": desc.input_width, "output_height": desc.input_height})
    train_ds = DetectionDataset(dataset, aug, train=True, label_map=label_map, with_masks=False)
    calib_ds = DetectionDataset(dataset, aug, train=False, label_map=label_map, with_masks=False)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    raw = prepare_raw(model, desc)
    n_cal = min(calib_frames, len(calib_ds))
    calib = [calib_ds[int(i)][0][None] for i in rng.permutation(len(calib_ds))[:n_cal]]
    raw = _quantize(raw, calib)
    net = raw.net
    net.train()
    params = [p for p in raw.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    report = QatReport(steps=steps, lr=lr, batch_size=batch_size)
    for _ in range(steps):
        idx = rng.integers(0, len(train_ds), size=batch_size)
        seeds = rng.integers(0, 2**31 - 1, size=batch_size)
        images, targets = collate([train_ds[(int(i), int(s))] for i, s in zip(idx, seeds, strict=True)])
        cov, bbox = raw(torch.stack(images))
        losses = net.loss(cov, bbox, targets)
        loss = total_loss(losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        report.losses.append(float(loss.detach()))
    return raw.eval(), report


def save_qat(
    path: str | os.PathLike, raw: DetectNetRaw, desc: ModelDesc, report: QatReport | None = None
) -> Path:
    """Write the fake-quantized model: modelopt state (quantizer layout) + weights (incl. ranges)."""
    import modelopt.torch.opt as mto

    obj = {
        "format": QAT_FORMAT,
        "desc": desc.model_dump(mode="json"),
        "layer_shapes": layer_shapes(raw.net),
        "modelopt_state": mto.modelopt_state(raw),
        "model": raw.state_dict(),
        "report": None
        if report is None
        else {"steps": report.steps, "lr": report.lr, "losses": report.losses},
    }
    return save_checkpoint(path, obj)


def load_qat(path: str | os.PathLike) -> tuple[DetectNetRaw, ModelDesc]:
    """Rebuild the fake-quantized DetectNet raw module saved by :func:`save_qat` (read with
    ``weights_only=True``; modelopt's state is plain data) and its description."""
    import modelopt.torch.opt as mto

    p = Path(path)
    obj = read_checkpoint(p)
    if not isinstance(obj, dict) or obj.get("format") != QAT_FORMAT:
        raise DeployError(
            f"not a QAT checkpoint (format must be {QAT_FORMAT!r})", path=str(p), where="format"
        )
    desc = ModelDesc.model_validate(obj["desc"])
    sd = obj["model"]
    model = build_from_desc(desc)
    if has_legacy_classifier(sd):  # saved with the unused Lite0 classifier: its quantizers name it
        attach_legacy_classifier(model)
    raw = DetectNetRaw(model).eval()
    # the saved layers have TF-"SAME" padding frozen for the input size (asymmetric: ZeroPad2d + conv,
    # named ``<conv>.1``); padding depends on spatial sizes only, so freeze it before the widths change
    static_same_padding(raw, torch.zeros(1, 3, desc.input_height, desc.input_width))
    apply_layer_shapes(raw.net, obj["layer_shapes"])
    for name, m in list(raw.named_modules()):  # the saved model had its batch norms folded
        if isinstance(m, nn.BatchNorm2d) and f"{name}.running_mean" not in sd:
            parent, _, attr = name.rpartition(".")
            setattr(raw.get_submodule(parent), attr, nn.Identity())
        elif isinstance(m, nn.Conv2d) and m.bias is None and f"{name}.bias" in sd:
            m.bias = nn.Parameter(torch.empty(m.out_channels))
    raw = mto.restore_from_modelopt_state(raw, obj["modelopt_state"])
    raw.load_state_dict(sd)
    return raw.eval(), desc
