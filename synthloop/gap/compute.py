"""The domain gap between a synthetic dataset and a real image set: :func:`compute_gap`.

Inputs are two in-memory datasets (loading is the caller's job). The synthetic side is labeled;
the real side is labeled (COCO) or not (a folder of images: frames without objects). Per run:

1. Every image is read once and resized to the *working width* (default: the smaller of the two
   sides' median widths; see :mod:`synthloop.gap.images`).
2. Object statistics (:mod:`synthloop.gap.stats`) on both sides (labeled real only), and
   image-level statistics (``image_value``, ``image_saturation``: mean HSV value and saturation of
   the whole image) always.
3. Features (:class:`~synthloop.gap.features.LiteFeatures`): whole images resized to
   ``image_size``; per-class object crops (square, with context) resized to ``crop_size``;
   at most ``max_crops`` objects per class and side (a seeded choice).
4. KID with bootstrap intervals (:func:`~synthloop.gap.kid.kid`) on whole images and per class.
5. Coverage holes, per class: a real crop whose nearest synthetic crop (Euclidean, feature space)
   is farther than the 95th percentile of the synthetic crops' own nearest-neighbour distances.

Everything random comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError
from synthloop.gap.images import crop, load_rgb, resize, to_width
from synthloop.gap.kid import KidResult, kid, nearest
from synthloop.gap.stats import (
    Measurements,
    gap_checks,
    normalised_differences,
    normalised_w1,
    pose_category_ids,
    rgb_to_hsv,
    summarize,
    summarize_measurements,
)

HOLE_PERCENTILE = 95.0
Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GapOptions:
    """``working_width`` (pixels, None = automatic), ``image_size`` (w, h) and ``crop_size`` of the
    feature inputs, ``max_crops`` per class and side, ``n_boot`` bootstrap resamples, ``seed``."""

    working_width: int | None = None
    image_size: tuple[int, int] = (224, 168)
    crop_size: int = 64
    max_crops: int = 200
    n_boot: int = 100
    seed: int = 0
    gallery: int = 12


@dataclass
class SideData:
    """What one side contributes: measurements, image-level samples, features and crops."""

    name: str
    measurements: Measurements | None
    image_stats: dict[str, list[float]]
    image_features: np.ndarray
    crop_features: dict[str, np.ndarray]
    crops: dict[str, np.ndarray]  # class -> (n, s, s, 3) uint8
    crop_sources: dict[str, list[str]]  # class -> frame id of each crop


@dataclass
class GapReport:
    """The result: JSON-able ``summary`` (see :meth:`to_json`) plus the arrays the HTML report draws."""

    labeled: bool
    classes: list[str]
    synthetic: SideData
    real: SideData
    kid_image: KidResult | None
    kid_crops: dict[str, KidResult | None]
    differences: dict[str, float]
    holes: dict[str, dict[str, Any]]
    neighbours: dict[str, tuple[np.ndarray, np.ndarray]]  # class -> (dist (q, k), index (q, k))
    options: GapOptions
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Summaries, KIDs, normalised differences and holes (no arrays)."""
        out: dict[str, Any] = {
            "labeled": self.labeled,
            "classes": self.classes,
            "synthetic": {"source": self.synthetic.name, "images": len(self.synthetic.image_features)},
            "real": {"source": self.real.name, "images": len(self.real.image_features)},
            "options": {**self.options.__dict__, "image_size": list(self.options.image_size)},
            "kid": {
                "image": self.kid_image.to_dict() if self.kid_image else None,
                "crops": {k: (v.to_dict() if v else None) for k, v in self.kid_crops.items()},
            },
            "differences": self.differences,
            "holes": self.holes,
            "notes": self.notes,
        }
        for key, side in (("synthetic", self.synthetic), ("real", self.real)):
            out[key]["image_stats"] = {k: summarize(v) for k, v in side.image_stats.items()}
            if side.measurements is not None:
                out[key]["objects"] = summarize_measurements(side.measurements)
        if self.synthetic.measurements is not None and self.real.measurements is not None:
            out["checks"] = gap_checks(out["real"]["objects"], out["synthetic"]["objects"])
        return json_safe(out)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def working_width(*datasets: Dataset) -> int:
    """The smaller of the datasets' median image widths (pixels)."""
    widths = [int(np.median([f.width for f in ds.frames])) for ds in datasets if ds.frames]
    return min(widths)


def _pick_objects(
    ds: Dataset, classes: list[str], max_crops: int, rng: np.random.Generator
) -> set[tuple[int, int]]:
    """(frame index, object index) of the objects whose crops are embedded: all, or a seeded
    choice of ``max_crops`` per class."""
    names = {c.id: c.name for c in ds.categories}
    per_class: dict[str, list[tuple[int, int]]] = {c: [] for c in classes}
    for fi, frame in enumerate(ds.frames):
        for oi, obj in enumerate(frame.objects):
            name = names.get(obj.category_id)
            x1, y1, x2, y2 = obj.bbox
            if name in per_class and not obj.iscrowd and x2 > x1 and y2 > y1:
                per_class[name].append((fi, oi))
    keep: set[tuple[int, int]] = set()
    for items in per_class.values():
        if len(items) > max_crops:
            items = [items[i] for i in sorted(rng.choice(len(items), max_crops, replace=False))]
        keep.update(items)
    return keep


def collect_side(
    ds: Dataset,
    name: str,
    classes: list[str],
    *,
    labeled: bool,
    embed: Embedder,
    options: GapOptions,
    width: int,
    rng: np.random.Generator,
    on_frame: Callable[[], None] | None = None,
) -> SideData:
    """Read every frame of ``ds`` once: measurements, image stats, whole-image and crop features."""
    names = {c.id: c.name for c in ds.categories if c.name in classes}
    meas = Measurements(classes=classes, colour=True) if labeled else None
    chosen = _pick_objects(ds, classes, options.max_crops, rng) if labeled else set()
    image_stats: dict[str, list[float]] = {"image_value": [], "image_saturation": []}
    whole: list[np.ndarray] = []
    crops: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    sources: dict[str, list[str]] = {c: [] for c in classes}
    pose_ids = pose_category_ids(ds)
    for fi, frame in enumerate(ds.frames):
        rgb = load_rgb(frame)
        if meas is not None:
            meas.add_frame(frame, names, rgb, pose_ids)
        small, scale = to_width(rgb, width)
        hsv = rgb_to_hsv(small)
        image_stats["image_value"].append(float(hsv[:, 2].mean()))
        image_stats["image_saturation"].append(float(hsv[:, 1].mean()))
        whole.append(resize(small, *options.image_size))
        for oi, obj in enumerate(frame.objects):
            if (fi, oi) not in chosen:
                continue
            cls = names[obj.category_id]
            box = tuple(float(v) * scale for v in obj.bbox)
            crops[cls].append(crop(small, box, options.crop_size))  # type: ignore[arg-type]
            sources[cls].append(frame.frame_id)
        if on_frame is not None:
            on_frame()
    empty = np.zeros((0, options.crop_size, options.crop_size, 3), dtype=np.uint8)
    crop_arr = {c: (np.stack(v) if v else empty) for c, v in crops.items()}
    return SideData(
        name=name,
        measurements=meas,
        image_stats=image_stats,
        image_features=embed(np.stack(whole)) if whole else np.zeros((0, 1)),
        crop_features={c: (embed(a) if len(a) else np.zeros((0, 0))) for c, a in crop_arr.items()},
        crops=crop_arr,
        crop_sources=sources,
    )


def common_classes(synth: Dataset, real: Dataset) -> tuple[list[str], list[str]]:
    """Class names present on both sides (synthetic order), and a note per name on one side only."""
    s_names = [c.name for c in synth.categories]
    r_names = {c.name for c in real.categories}
    common = [n for n in s_names if n in r_names]
    notes = [f"class '{n}' only in the synthetic data" for n in s_names if n not in r_names]
    notes += [f"class '{n}' only in the real data" for n in sorted(r_names - set(s_names))]
    return common, notes


def compute_gap(
    synth: Dataset,
    real: Dataset,
    embed: Embedder,
    *,
    labeled: bool,
    options: GapOptions = GapOptions(),
    synth_name: str = "synthetic",
    real_name: str = "real",
    on_frame: Callable[[], None] | None = None,
) -> GapReport:
    """The gap of ``synth`` (labeled synthloop frames) to ``real`` (``labeled``: COCO objects are
    used; otherwise image-level statistics and whole-image KID only). ``embed``: (N, H, W, 3) uint8
    -> (N, D) features (e.g. ``LiteFeatures().embed``). ``on_frame`` is called after each frame."""
    if not synth.frames:
        raise SynthloopError("the synthetic dataset has no frames", path=synth_name)
    if not real.frames:
        raise SynthloopError("the real image set has no images", path=real_name)
    if labeled:
        classes, notes = common_classes(synth, real)
        if not classes:
            raise SynthloopError(
                f"no class in common: synthetic {[c.name for c in synth.categories]}, "
                f"real {[c.name for c in real.categories]}",
                path=real_name,
            )
    else:
        classes, notes = (
            [c.name for c in synth.categories],
            ["real images are unlabeled: image-level gap only"],
        )
    width = options.working_width or working_width(synth, real)
    rng = np.random.default_rng(options.seed)
    # crops and object statistics on both sides only when the real side has them
    side = partial(
        collect_side, labeled=labeled, embed=embed, options=options, width=width, rng=rng, on_frame=on_frame
    )
    s_side = side(synth, synth_name, classes)
    r_side = side(real, real_name, classes)
    return gap_of_sides(
        s_side,
        r_side,
        classes,
        labeled=labeled,
        options=options,
        rng=rng,
        notes=notes + [f"working width {width} px"],
    )


def gap_of_sides(
    s_side: SideData,
    r_side: SideData,
    classes: list[str],
    *,
    labeled: bool,
    options: GapOptions,
    rng: np.random.Generator,
    notes: list[str],
) -> GapReport:
    """The gap of two collected sides (:func:`collect_side`; e.g. a real side collected once and
    reused for many synthetic sides, as a recipe fit does)."""
    notes = list(notes)
    kid_image = kid(s_side.image_features, r_side.image_features, rng, n_boot=options.n_boot)
    if kid_image is None:
        notes.append("whole-image KID needs at least 2 images per side")
    kid_crops: dict[str, KidResult | None] = {}
    holes: dict[str, dict[str, Any]] = {}
    neighbours: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if labeled:
        for cls in classes:
            sf, rf = s_side.crop_features[cls], r_side.crop_features[cls]
            kid_crops[cls] = kid(sf, rf, rng, n_boot=options.n_boot)
            if len(sf) >= 2 and len(rf) >= 1:
                neighbours[cls] = nearest(rf, sf, k=3)
                holes[cls] = coverage_holes(sf, neighbours[cls][0][:, 0])
    differences = dict(
        normalised_differences(r_side.measurements, s_side.measurements)
        if labeled and r_side.measurements is not None and s_side.measurements is not None
        else {}
    )
    for key in ("image_value", "image_saturation"):
        differences[key] = normalised_w1(r_side.image_stats[key], s_side.image_stats[key])
    return GapReport(
        labeled=labeled,
        classes=classes,
        synthetic=s_side,
        real=r_side,
        kid_image=kid_image,
        kid_crops=kid_crops,
        differences=differences,
        holes=holes,
        neighbours=neighbours,
        options=options,
        notes=notes,
    )


def coverage_holes(synth_features: np.ndarray, real_nn: np.ndarray) -> dict[str, Any]:
    """Holes of one class: real crops whose nearest-synthetic distance ``real_nn`` (q,) exceeds the
    :data:`HOLE_PERCENTILE` percentile of the synthetic crops' nearest-neighbour distances."""
    own, _ = nearest(synth_features, synth_features, exclude_self=True)
    threshold = float(np.percentile(own[:, 0], HOLE_PERCENTILE))
    idx = [int(i) for i in np.flatnonzero(real_nn > threshold)]
    return {
        "threshold": threshold,
        "n_real": int(len(real_nn)),
        "n_holes": len(idx),
        "fraction": len(idx) / max(1, len(real_nn)),
        "indices": idx,
        "real_nn_median": float(np.median(real_nn)) if len(real_nn) else float("nan"),
        "synthetic_nn_median": float(np.median(own[:, 0])),
    }
