"""Per-object outcomes -> a feature table the miner can read.

Input: the per-object rows of a :class:`~synthloop.evaluation.slices.SliceTable` (``objects``), one
dict per GT object with ``matched``, ``best_iou``, ``ignored``, ``scene_params`` (the frame's sampled
scene params), ``attributes`` (the object's sampled params and derived attributes), ``area``,
``occlusion``, ``truncation`` and ``category``.

Outcome of a (non-ignored) GT object:

* ``detected``: matched by a detection (at the evaluation's IoU threshold, 0.5 by default, and score
  threshold);
* ``mislocalized``: not matched, but some same-class detection overlaps it with IoU >= ``loc_iou``
  (0.1 by default) -- a detection in the right place with a box not good enough to count;
* ``missed``: nothing overlaps it.

A row may state its own ``outcome`` instead (real-error mining: ``false_positive`` for a detection
that matches nothing, ``uncertain`` for a low-scored detection on an unlabeled photo).
A failure is anything not ``detected``.

Parameter names: ``scene.<key>`` for frame-level params (``Frame.scene_params``), ``attr.<key>`` for
per-object params (``ObjectAnnotation.attributes``: the object's sampled ``scale``, ``hue``, ...),
and ``object.area`` (visible pixels), ``object.occlusion``, ``object.truncation`` (fractions) and
``object.category`` (class name) for what the evaluation measured, and ``prop.<name>`` for the
image-measured properties of :mod:`synthloop.geometry.properties` (a row's ``properties``).
Numeric params become one float column each (NaN where missing); categorical ones (strings,
bools, or mixed values) are one-hot encoded into ``<param>=<value>`` columns (all zero where
missing). Constant params and categorical params with more than ``max_categories`` values carry
no usable signal and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from synthloop.active.errors import ActiveError

OUTCOMES = ("detected", "mislocalized", "missed")
DEFAULT_LOC_IOU = 0.1
DEFAULT_MAX_CATEGORIES = 20
ParamKind = Literal["numeric", "categorical"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def classify_outcome(row: Mapping[str, Any], loc_iou: float = DEFAULT_LOC_IOU) -> str:
    """``detected`` / ``mislocalized`` / ``missed`` of one SliceTable object row, or the row's own
    ``outcome`` when it states one (module docstring)."""
    if row.get("outcome"):
        return str(row["outcome"])
    if row.get("matched"):
        return "detected"
    best = row.get("best_iou")
    if best is not None and float(best) >= loc_iou:
        return "mislocalized"
    return "missed"


@dataclass
class OutcomeTable:
    """Objects x features.

    ``outcome``: (N,) str array of :data:`OUTCOMES`; ``values``: param name -> (N,) array (float64
    with NaN for numeric params, object array of str/None for categorical ones); ``kinds``: param ->
    ``"numeric"``/``"categorical"``; ``X``: (N, F) float64 feature matrix; ``columns``: F column
    names; ``column_param``: the param each column encodes; ``frame_ids``, ``categories``: (N,) per
    object.
    """

    outcome: np.ndarray
    values: dict[str, np.ndarray]
    kinds: dict[str, ParamKind]
    X: np.ndarray
    columns: list[str]
    column_param: list[str]
    frame_ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    @property
    def failed(self) -> np.ndarray:
        """(N,) bool: not detected."""
        return self.outcome != "detected"

    @property
    def detected(self) -> np.ndarray:
        return self.outcome == "detected"

    @property
    def params(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        return len(self.outcome)

    def recall(self) -> float:
        """Fraction detected (NaN when the table is empty)."""
        return float(self.detected.mean()) if len(self) else math.nan

    def counts(self) -> dict[str, int]:
        """Objects per outcome: every one of :data:`OUTCOMES`, then any other outcome present."""
        extra = sorted(set(self.outcome.tolist()) - set(OUTCOMES))
        return {o: int((self.outcome == o).sum()) for o in (*OUTCOMES, *extra)}


def _rows_of(source: Any) -> list[Mapping[str, Any]]:
    objects = getattr(source, "objects", source)
    if isinstance(objects, Mapping):
        objects = objects.get("objects", [])
    if not isinstance(objects, Sequence | Iterable):
        raise ActiveError(f"expected a SliceTable or a list of object rows, got {type(source).__name__}")
    return list(objects)


def _raw_params(row: Mapping[str, Any], include_measured: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (row.get("scene_params") or {}).items():
        out[f"scene.{k}"] = v
    for k, v in (row.get("attributes") or {}).items():
        if k != "difficult":
            out[f"attr.{k}"] = v
    for k, v in (row.get("properties") or {}).items():
        out[f"prop.{k}"] = v
    if include_measured:
        out["object.area"] = row.get("area")
        out["object.occlusion"] = row.get("occlusion")
        out["object.truncation"] = row.get("truncation")
        out["object.category"] = row.get("category")
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | bool | int | float | np.generic)


def outcome_table(
    source: Any,
    *,
    loc_iou: float = DEFAULT_LOC_IOU,
    include_measured: bool = True,
    exclude: Iterable[str] = (),
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> OutcomeTable:
    """Build the feature table from a SliceTable (or its ``objects`` rows, or its dict form).

    Ignored (crowd/difficult) objects are dropped. ``exclude``: param names (``scene.x``,
    ``attr.y``, ``object.area``) to leave out. Raises :class:`ActiveError` on rows without
    ``matched``.
    """
    rows = _rows_of(source)
    excluded = set(exclude)
    kept: list[Mapping[str, Any]] = []
    raws: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "matched" not in row:
            raise ActiveError("object row has no 'matched' field", where=f"objects[{i}]")
        if row.get("ignored"):
            continue
        kept.append(row)
        raws.append(_raw_params(row, include_measured))
    names = sorted({k for r in raws for k in r} - excluded)
    values: dict[str, np.ndarray] = {}
    kinds: dict[str, ParamKind] = {}
    columns: list[str] = []
    column_param: list[str] = []
    blocks: list[np.ndarray] = []
    for name in names:
        col = [r.get(name) for r in raws]
        if not all(_scalar(v) for v in col):
            continue
        present = [v for v in col if not _missing(v)]
        if not present:
            continue
        if all(_is_number(v) for v in present):
            x = np.array([math.nan if v is None or _missing(v) else float(v) for v in col], dtype=np.float64)
            if np.nanmin(x) == np.nanmax(x):
                continue
            values[name], kinds[name] = x, "numeric"
            blocks.append(x[:, None])
            columns.append(name)
            column_param.append(name)
        else:
            s = np.array([None if _missing(v) else str(v) for v in col], dtype=object)
            cats = sorted({v for v in s if v is not None})
            if len(cats) < 2 or len(cats) > max_categories:
                continue
            values[name], kinds[name] = s, "categorical"
            onehot = np.stack([(s == c).astype(np.float64) for c in cats], axis=1)
            blocks.append(onehot)
            columns += [f"{name}={c}" for c in cats]
            column_param += [name] * len(cats)
    n = len(kept)
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    outcome = np.array([classify_outcome(r, loc_iou) for r in kept], dtype=object)
    return OutcomeTable(
        outcome=outcome.astype(str) if n else np.zeros(0, dtype=str),
        values=values,
        kinds=kinds,
        X=X,
        columns=columns,
        column_param=column_param,
        frame_ids=[str(r.get("frame_id", "")) for r in kept],
        categories=[str(r.get("category", "")) for r in kept],
    )
