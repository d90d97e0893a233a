"""Loading checkpoints written while detectors still carried EfficientNet-Lite0's ImageNet classifier.

Earlier versions of the Lite0 detection backbone kept its 1280-channel conv head and ``classifier``
(``...body.head.*``, ``...body.classifier.*``), which the detection forward never used. They are
removed now (:func:`synthloop.training.backbones.build_backbone`). Checkpoints from before still
load: :func:`drop_legacy_classifier` filters their model state, and :func:`upgrade_optimizer_state`
renumbers a resumed run's optimizer state so every kept parameter gets its own moments back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from synthloop.training.backbones import EfficientNetLite0, FeatureBackbone, _conv_bn
from synthloop.training.errors import TrainingError

# key parts of the removed modules (DetectNet backbone.body.head.*, Mask R-CNN backbone.body.body.head.*)
LEGACY_CLASSIFIER_KEYS = (".body.head.", ".body.classifier.")
_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def is_legacy_classifier_key(key: str) -> bool:
    """Whether the state-dict ``key`` (or module name + ``"."``) belongs to the removed classifier,
    under any prefix (e.g. ``model.`` of a wrapper)."""
    dotted = "." + key
    return any(part in dotted for part in LEGACY_CLASSIFIER_KEYS)


def has_legacy_classifier(sd: Mapping[str, Any]) -> bool:
    return any(is_legacy_classifier_key(k) for k in sd)


def drop_legacy_classifier(sd: Mapping[str, Any], own_keys: Iterable[str]) -> dict[str, Any]:
    """``sd`` without the removed classifier's entries that the model (``own_keys``) lacks.

    Every other mismatch stays, for ``load_state_dict`` to report."""
    own = set(own_keys)
    return {k: v for k, v in sd.items() if k in own or not is_legacy_classifier_key(k)}


def upgrade_optimizer_state(
    opt_state: dict[str, Any], legacy_model_sd: Mapping[str, Any], model: nn.Module
) -> dict[str, Any]:
    """The optimizer ``state_dict`` of a run saved with the classifier, renumbered for ``model``.

    The optimizer holds ``[p for p in model.parameters() if p.requires_grad]`` in one group (see
    :func:`synthloop.training.loop.make_optimizer`), so the saved indices follow the old model's
    parameter order: the saved model state's key order (module registration order) without the
    buffers. The removed parameters were trainable unless they were batch-norm affine parameters
    under ``freeze_bn`` (then, like every batch norm's, they have ``requires_grad=False`` here too).
    Raises :class:`TrainingError` if the counts do not work out."""
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    bn_frozen = any(m.frozen_bn for m in model.modules() if isinstance(m, FeatureBackbone))
    old_names: list[str] = []
    for k in legacy_model_sd:
        if k in trainable:
            if trainable[k]:
                old_names.append(k)
        elif is_legacy_classifier_key(k) and not k.endswith(_BUFFER_SUFFIXES):
            is_bn_param = ".body.head.1." in "." + k
            if not (is_bn_param and bn_frozen):
                old_names.append(k)
    groups = opt_state.get("param_groups") or []
    saved = [i for g in groups for i in g["params"]]
    if len(groups) != 1 or len(saved) != len(old_names):
        raise TrainingError(
            f"cannot map the saved optimizer state ({len(saved)} parameters in {len(groups)} groups) onto "
            f"the model as it was saved ({len(old_names)} trainable parameters incl. the removed classifier)",
            where="resume",
        )
    new_index = {n: i for i, n in enumerate(n for n, t in trainable.items() if t)}
    state = {}
    for old_i, name in zip(saved, old_names, strict=True):
        if name in new_index and old_i in opt_state["state"]:
            state[new_index[name]] = opt_state["state"][old_i]
    group = dict(groups[0], params=list(range(len(new_index))))
    return {"state": state, "param_groups": [group]}


def attach_legacy_classifier(model: nn.Module) -> nn.Module:
    """Put the removed conv head + classifier back on every Lite0 body of ``model`` (in place), at
    their original ImageNet shapes, so that a saved layout naming them (a QAT checkpoint's quantizer
    state, a pruned checkpoint's layer shapes) can be restored exactly. They stay unused."""
    for m in model.modules():
        if isinstance(m, EfficientNetLite0):
            m.head = _conv_bn(320, 1280, 1)
            m.classifier = nn.Linear(1280, 1000)
    return model
