"""A dataset's frame index: per-object and per-frame numbers as numpy arrays, and its filter.

Built once per dataset version (see :mod:`synthloop.ui.datasets`) and cached on disk as ``.npz``;
filtering 10,000 frames is a few vectorised comparisons.

Conventions: object ``side`` is ``sqrt(area)`` in pixels (area = visible pixel count, or COCO's
area for imported data); ``occlusion`` and ``truncation`` are fractions in [0, 1], NaN when
unknown (real photos). Frame ``params`` are the scene parameters of each frame flattened to
numbers (:func:`flatten_params`), NaN where a frame lacks one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.atomic import atomic_write_with


@dataclass
class FrameIndex:
    """Arrays over ``n`` frames and ``m`` objects.

    ``frame_ids`` (n,) str; ``width``/``height`` (n,) int32 pixels; ``obj_frame`` (m,) int32 index
    of each object's frame; ``obj_cat`` (m,) int32 category id; ``obj_side`` (m,) float32 px;
    ``obj_occ``/``obj_trunc`` (m,) float32 in [0, 1] or NaN; ``param_names`` (p,) str;
    ``params`` (n, p) float32, NaN = missing."""

    frame_ids: np.ndarray
    width: np.ndarray
    height: np.ndarray
    obj_frame: np.ndarray
    obj_cat: np.ndarray
    obj_side: np.ndarray
    obj_occ: np.ndarray
    obj_trunc: np.ndarray
    param_names: np.ndarray
    params: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_ids)

    def save(self, path: Path) -> None:
        arrays = {k: getattr(self, k) for k in self.__dataclass_fields__}
        atomic_write_with(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, path: Path) -> FrameIndex:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__})

    def param_ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) of each parameter over the frames that have it."""
        out = {}
        for j, name in enumerate(self.param_names):
            col = self.params[:, j]
            ok = col[np.isfinite(col)]
            if len(ok):
                out[str(name)] = (float(ok.min()), float(ok.max()))
        return out


def flatten_params(record: Mapping[str, Any]) -> dict[str, float]:
    """A frame record's scene parameters as ``{name: float}``.

    ``scene.<k>`` for each numeric or boolean ``scene_params`` value (strings are left out),
    ``camera.focal_length_mm`` when recorded, ``frame.objects`` (labelled objects) and
    ``frame.distractors`` (their count) when present."""
    out: dict[str, float] = {}
    for k, v in (record.get("scene_params") or {}).items():
        if isinstance(v, bool | int | float) and math.isfinite(float(v)):
            out[f"scene.{k}"] = float(v)
    cam = record.get("camera")
    if isinstance(cam, Mapping) and isinstance(cam.get("focal_length_mm"), int | float):
        out["camera.focal_length_mm"] = float(cam["focal_length_mm"])
    if isinstance(record.get("objects"), list):
        out["frame.objects"] = float(len(record["objects"]))
    if isinstance(record.get("distractors"), list):
        out["frame.distractors"] = float(len(record["distractors"]))
    return out


@dataclass
class IndexBuilder:
    """Accumulates frames (one :meth:`add` each) into a :class:`FrameIndex`."""

    frame_ids: list[str] = field(default_factory=list)
    width: list[int] = field(default_factory=list)
    height: list[int] = field(default_factory=list)
    objs: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    params: list[dict[str, float]] = field(default_factory=list)

    def add(
        self,
        frame_id: str,
        width: int,
        height: int,
        objects: Iterable[tuple[int, float, float | None, float | None]],
        params: dict[str, float],
    ) -> None:
        """``objects``: (category_id, area px, occlusion or None, truncation or None) each."""
        i = len(self.frame_ids)
        self.frame_ids.append(frame_id)
        self.width.append(int(width))
        self.height.append(int(height))
        nan = float("nan")
        for cat, area, occ, trunc in objects:
            side = math.sqrt(max(float(area), 0.0))
            self.objs.append(
                (
                    i,
                    int(cat),
                    side,
                    nan if occ is None else float(occ),
                    nan if trunc is None else float(trunc),
                )
            )
        self.params.append(params)

    def build(self) -> FrameIndex:
        names = sorted({k for p in self.params for k in p})
        col = {k: j for j, k in enumerate(names)}
        mat = np.full((len(self.frame_ids), len(names)), np.nan, np.float32)
        for i, p in enumerate(self.params):
            for k, v in p.items():
                mat[i, col[k]] = v
        o = np.array(self.objs, np.float64).reshape(-1, 5)
        return FrameIndex(
            frame_ids=np.array(self.frame_ids, dtype=str),
            width=np.array(self.width, np.int32),
            height=np.array(self.height, np.int32),
            obj_frame=o[:, 0].astype(np.int32),
            obj_cat=o[:, 1].astype(np.int32),
            obj_side=o[:, 2].astype(np.float32),
            obj_occ=o[:, 3].astype(np.float32),
            obj_trunc=o[:, 4].astype(np.float32),
            param_names=np.array(names, dtype=str),
            params=mat,
        )


Range = tuple[float | None, float | None]


@dataclass(frozen=True)
class FrameFilter:
    """What a grid shows. Object conditions (``classes``, ``side`` px, ``occlusion``,
    ``truncation``) select frames holding at least one object meeting all of them; ``params``
    ranges (inclusive; None = open end) must all hold for the frame itself."""

    classes: tuple[int, ...] = ()
    side: Range = (None, None)
    occlusion: Range = (None, None)
    truncation: Range = (None, None)
    params: tuple[tuple[str, float | None, float | None], ...] = ()

    def is_empty(self) -> bool:
        return (
            not self.classes
            and not self.params
            and all(r == (None, None) for r in (self.side, self.occlusion, self.truncation))
        )


def _in_range(x: np.ndarray, r: Range) -> np.ndarray:
    ok = np.ones(len(x), bool)
    if r[0] is not None:
        ok &= x >= r[0]
    if r[1] is not None:
        ok &= x <= r[1]
    return ok


def filter_frames(index: FrameIndex, flt: FrameFilter) -> np.ndarray:
    """Indices (int64, ascending) of the frames of ``index`` that pass ``flt``.

    A parameter name the index lacks matches no frame; NaN values fail any bound."""
    n = len(index)
    keep = np.ones(n, bool)
    obj_conds = bool(flt.classes) or any(r != (None, None) for r in (flt.side, flt.occlusion, flt.truncation))
    if obj_conds:
        ok = np.ones(len(index.obj_frame), bool)
        if flt.classes:
            ok &= np.isin(index.obj_cat, np.asarray(flt.classes, np.int32))
        ok &= _in_range(index.obj_side, flt.side)
        ok &= _in_range(index.obj_occ, flt.occlusion)
        ok &= _in_range(index.obj_trunc, flt.truncation)
        has = np.zeros(n, bool)
        has[index.obj_frame[ok]] = True
        keep &= has
    names = {str(k): j for j, k in enumerate(index.param_names)}
    for name, lo, hi in flt.params:
        if name not in names:
            return np.zeros(0, np.int64)
        keep &= _in_range(index.params[:, names[name]], (lo, hi))
    return np.flatnonzero(keep)
