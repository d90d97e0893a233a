"""Per-class object statistics of a dataset (synthetic or real), identical definitions on both sides.

Per class unless noted:

* ``rel_size``: the visible box's long side / image width (resolution-free).
* ``aspect``: the box's long side / short side (>= 1; objects lie at random yaw, so w/h would mix
  orientation with shape).
* ``overlap``: the largest box IoU with another labeled object of the image (any class; see
  :func:`synthloop.geometry.properties.geometry_properties`): 0 for an object standing alone, > 0
  for touching or overlapping neighbours (piles).
* ``count``: objects of the class per image (images without the class count as 0); ``total``: the
  same for all labeled objects.
* ``coverage`` (per image): union of the labeled masks / image area.
* ``touching_border`` (truncation): fraction of labeled objects whose box comes within 0.5 % of the
  image width of an image edge.
* ``hsv``: colour of the pixels under the class's masks, pooled over objects. HSV of the sRGB values
  in [0, 1], hue in turns; hue mean/std circular (std = sqrt(-2 ln R) / 2 pi) and weighted by
  saturation (the hue of grey pixels is noise); s and v plain mean/std. Per object, the same mean
  hue/saturation/value feed the histograms (``hue``, ``saturation``, ``value``).
* ``background`` (per image): mean HSV value and saturation of the pixels outside every labeled
  mask (unlabeled distractors count as background on both sides).
* ``pose`` (classes with COCO-17 keypoints): joint angles in the image plane and the share of
  keypoints labelled, per person (:mod:`synthloop.gap.pose`).

Objects with zero area, crowd objects and unknown categories are skipped; objects without a mask
count for size/aspect/count but not for colour or coverage. :class:`Measurements` keeps every raw
sample (for histograms and distances); :func:`summarize_measurements` gives the summary dict that
``benchmarks/domain_gap.py`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthloop.bodies.coco import COCO17_KEYPOINTS
from synthloop.dataset.types import Dataset, Frame
from synthloop.gap.images import load_rgb
from synthloop.gap.pose import POSE_STATS, pose_statistics
from synthloop.geometry.masks import rle_to_mask
from synthloop.geometry.properties import geometry_properties

BORDER_MARGIN = 0.005  # a box within this fraction of the image width of an edge touches the border
OBJECT_STATS = ("rel_size", "aspect", "overlap", "hue", "saturation", "value")
IMAGE_STATS = ("total", "coverage", "background_value", "background_saturation")


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV (N, 3) float64 of sRGB pixels (N, 3) uint8: h in turns [0, 1), s and v in [0, 1]."""
    c = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    mx, mn = c.max(axis=1), c.min(axis=1)
    delta = mx - mn
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    safe = np.where(delta > 0, delta, 1.0)
    r, g, b = c[:, 0], c[:, 1], c[:, 2]
    h = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    h = np.where(delta > 0, h / 6.0, 0.0) % 1.0
    return np.stack([h, s, mx], axis=1)


def circular_mean_std(turns: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted circular mean in [0, 1) and circular std (turns) of angles given in turns."""
    a = 2.0 * math.pi * np.asarray(turns, dtype=np.float64)
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    if a.size == 0 or w.sum() <= 0:
        return float("nan"), float("nan")
    return _circular_from_sums(float((w * np.cos(a)).sum()), float((w * np.sin(a)).sum()), float(w.sum()))


def _circular_from_sums(cx: float, sy: float, wsum: float) -> tuple[float, float]:
    if wsum <= 0:
        return float("nan"), float("nan")
    cx, sy = cx / wsum, sy / wsum
    r = min(1.0, math.hypot(cx, sy))
    mean = (math.atan2(sy, cx) / (2.0 * math.pi)) % 1.0
    std = math.sqrt(-2.0 * math.log(r)) / (2.0 * math.pi) if r > 0 else float("inf")
    return mean, std


def summarize(values: Iterable[float]) -> dict[str, float | int]:
    """{n, mean, std, min, q1, median, q3, max} of a sample (NaNs for an empty one)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "min": nan, "q1": nan, "median": nan, "q3": nan, "max": nan}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "q1": float(q1),
        "median": float(med),
        "q3": float(q3),
        "max": float(v.max()),
    }


@dataclass
class _PixelSums:
    """Running sums for the pooled HSV of one class (no pixels kept)."""

    n: int = 0
    hue_cos: float = 0.0
    hue_sin: float = 0.0
    hue_w: float = 0.0
    s: float = 0.0
    s2: float = 0.0
    v: float = 0.0
    v2: float = 0.0

    def add(self, hsv: np.ndarray) -> None:
        a = 2.0 * math.pi * hsv[:, 0]
        self.n += len(hsv)
        self.hue_cos += float((hsv[:, 1] * np.cos(a)).sum())
        self.hue_sin += float((hsv[:, 1] * np.sin(a)).sum())
        self.hue_w += float(hsv[:, 1].sum())
        self.s += float(hsv[:, 1].sum())
        self.s2 += float((hsv[:, 1] ** 2).sum())
        self.v += float(hsv[:, 2].sum())
        self.v2 += float((hsv[:, 2] ** 2).sum())

    def summary(self) -> dict[str, float] | None:
        if self.n == 0:
            return None
        hm, hs = _circular_from_sums(self.hue_cos, self.hue_sin, self.hue_w)
        sm, vm = self.s / self.n, self.v / self.n
        return {
            "h_mean": hm,
            "h_std": hs,
            "s_mean": sm,
            "s_std": math.sqrt(max(0.0, self.s2 / self.n - sm * sm)),
            "v_mean": vm,
            "v_std": math.sqrt(max(0.0, self.v2 / self.n - vm * vm)),
        }


@dataclass
class Measurements:
    """Raw samples of one dataset. ``objects[class][stat]``: one value per object (stats in
    :data:`OBJECT_STATS`); ``counts[class]``: objects per image; ``images[stat]``: one value per
    image (:data:`IMAGE_STATS`); ``touching``/``labeled``: objects touching the border / all."""

    classes: list[str]
    colour: bool
    objects: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    images: dict[str, list[float]] = field(default_factory=dict)
    touching: int = 0
    labeled: int = 0
    pixels: dict[str, _PixelSums] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.classes:
            self.objects.setdefault(name, {k: [] for k in OBJECT_STATS + POSE_STATS})
            self.counts.setdefault(name, [])
            self.pixels.setdefault(name, _PixelSums())
        for k in IMAGE_STATS:
            self.images.setdefault(k, [])

    @property
    def n_images(self) -> int:
        return len(self.images["total"])

    def add_frame(
        self,
        frame: Frame,
        names: dict[int, str],
        rgb: np.ndarray | None,
        pose_ids: frozenset[int] = frozenset(),
    ) -> None:
        """Measure one frame; ``rgb`` (H, W, 3) uint8 at the frame's size, or None (no colour).
        Objects of the categories ``pose_ids`` (COCO-17 keypoints) with keypoints add their pose
        statistics."""
        w, h = frame.width, frame.height
        union = np.zeros((h, w), dtype=bool)
        per_image = dict.fromkeys(self.classes, 0)
        kept = [
            o for o in frame.objects
            if not o.iscrowd and o.area > 0 and o.category_id in names
            and o.bbox[2] > o.bbox[0] and o.bbox[3] > o.bbox[1]
        ]  # fmt: skip
        boxes = np.array([o.bbox for o in kept], dtype=np.float64).reshape(-1, 4)
        overlap = geometry_properties(boxes, w, h)["overlap"]
        m_px = BORDER_MARGIN * w
        for obj, ov in zip(kept, overlap, strict=True):
            name = names[obj.category_id]
            x1, y1, x2, y2 = obj.bbox
            bw, bh = x2 - x1, y2 - y1
            per_image[name] += 1
            self.touching += int(x1 <= m_px or y1 <= m_px or x2 >= w - m_px or y2 >= h - m_px)
            self.labeled += 1
            rec = self.objects[name]
            rec["rel_size"].append(max(bw, bh) / w)
            rec["aspect"].append(max(bw, bh) / min(bw, bh))
            rec["overlap"].append(float(ov))
            if obj.category_id in pose_ids and obj.keypoints:
                for stat, values in pose_statistics(np.asarray(obj.keypoints)).items():
                    rec[stat].extend(values)
            if obj.mask is None:
                continue
            m = rle_to_mask(obj.mask)
            union |= m
            if rgb is not None and m.any():
                hsv = rgb_to_hsv(rgb[m])
                self.pixels[name].add(hsv)
                rec["hue"].append(circular_mean_std(hsv[:, 0], hsv[:, 1] + 1e-9)[0])
                rec["saturation"].append(float(hsv[:, 1].mean()))
                rec["value"].append(float(hsv[:, 2].mean()))
        for name, n in per_image.items():
            self.counts[name].append(n)
        self.images["total"].append(float(sum(per_image.values())))
        self.images["coverage"].append(float(union.mean()))
        if rgb is not None and (~union).any():
            bg = rgb_to_hsv(rgb[~union])
            self.images["background_value"].append(float(bg[:, 2].mean()))
            self.images["background_saturation"].append(float(bg[:, 1].mean()))


def summarize_measurements(m: Measurements) -> dict[str, Any]:
    """``{"images", "classes": {name: {rel_size, aspect, overlap, count, hsv, pose}}, "total",
    "coverage", "touching_border", "background"}`` with :func:`summarize` dicts (``hsv``/``background``
    None without colour; ``pose`` None for a class without COCO-17 keypoints)."""
    classes = {
        name: {
            "rel_size": summarize(m.objects[name]["rel_size"]),
            "aspect": summarize(m.objects[name]["aspect"]),
            "overlap": summarize(m.objects[name]["overlap"]),
            "count": summarize(m.counts[name]),
            "hsv": m.pixels[name].summary() if m.colour else None,
            "pose": {stat: summarize(m.objects[name][stat]) for stat in POSE_STATS}
            if m.objects[name]["keypoints_labelled"]
            else None,
        }
        for name in m.classes
    }
    return {
        "images": m.n_images,
        "classes": classes,
        "total": summarize(m.images["total"]),
        "coverage": summarize(m.images["coverage"]),
        "touching_border": m.touching / max(1, m.labeled),
        "background": {
            "value": summarize(m.images["background_value"]),
            "saturation": summarize(m.images["background_saturation"]),
        }
        if m.colour
        else None,
    }


def measure_dataset(ds: Dataset, *, colour: bool = True, classes: list[str] | None = None) -> Measurements:
    """Measure every frame of ``ds`` (``colour`` reads the images, see :func:`load_rgb`)."""
    names = {c.id: c.name for c in ds.categories}
    m = Measurements(classes=classes or list(names.values()), colour=colour)
    names = {k: v for k, v in names.items() if v in m.classes}
    pose_ids = pose_category_ids(ds)
    for frame in ds.frames:
        m.add_frame(frame, names, load_rgb(frame) if colour else None, pose_ids)
    return m


def pose_category_ids(ds: Dataset) -> frozenset[int]:
    """Ids of ``ds``'s categories whose keypoints are COCO-17: their objects get pose statistics."""
    return frozenset(c.id for c in ds.categories if tuple(c.keypoints) == COCO17_KEYPOINTS)


def gap_checks(
    real: dict[str, Any], synth: dict[str, Any], size_tol: float = 0.2, count_tol: float = 0.25
) -> dict[str, Any]:
    """Pass/fail per class: |synth/real - 1| of the median rel_size (<= ``size_tol``) and of the
    mean count (<= ``count_tol``); also the mean total objects per image (``count_tol``)."""

    def ratio(a: float, b: float) -> float:
        return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")

    out: dict[str, Any] = {}
    for name, rc in real["classes"].items():
        sc = synth["classes"].get(name)
        if sc is None:
            continue
        size_ratio = ratio(sc["rel_size"]["median"], rc["rel_size"]["median"])
        count_ratio = ratio(sc["count"]["mean"], rc["count"]["mean"])
        out[name] = {
            "rel_size_median_ratio": size_ratio,
            "rel_size_ok": bool(abs(size_ratio - 1) <= size_tol),
            "count_mean_ratio": count_ratio,
            "count_ok": bool(abs(count_ratio - 1) <= count_tol),
        }
    t = ratio(synth["total"]["mean"], real["total"]["mean"])
    out["total"] = {"count_mean_ratio": t, "count_ok": bool(abs(t - 1) <= count_tol)}
    return out


def statistic_samples(m: Measurements) -> dict[str, np.ndarray]:
    """Flat ``{"<class>/<stat>" | "<stat>": values}`` of every raw sample (histograms, distances).
    Per-class stats: :data:`OBJECT_STATS`, ``count`` and, for a class with pose samples,
    :data:`~synthloop.gap.pose.POSE_STATS`; image stats: :data:`IMAGE_STATS`."""
    out: dict[str, np.ndarray] = {}
    for name in m.classes:
        posed = bool(m.objects[name]["keypoints_labelled"])
        for stat in OBJECT_STATS + (POSE_STATS if posed else ()):
            if stat in ("hue", "saturation", "value") and not m.colour:
                continue
            out[f"{name}/{stat}"] = np.asarray(m.objects[name][stat], dtype=np.float64)
        out[f"{name}/count"] = np.asarray(m.counts[name], dtype=np.float64)
    for stat in IMAGE_STATS:
        if stat.startswith("background") and not m.colour:
            continue
        out[stat] = np.asarray(m.images[stat], dtype=np.float64)
    return out


def normalised_differences(real: Measurements, synth: Measurements) -> dict[str, float]:
    """Per statistic of :func:`statistic_samples`: the 1-Wasserstein distance between the real and
    synthetic samples divided by the real sample's spread (its std, floored at 5 % of its mean
    absolute value and at 1e-3), so 1.0 means "off by one real standard deviation". Hue is
    compared on the circle (differences wrapped to [-0.5, 0.5] turns, via quantiles). Statistics
    empty on either side are left out. Pure function of the samples."""
    rs, ss = statistic_samples(real), statistic_samples(synth)
    out: dict[str, float] = {}
    for key, r in rs.items():
        s = ss.get(key)
        if s is None or r.size == 0 or s.size == 0:
            continue
        out[key] = normalised_w1(r, s, circular=key.endswith("/hue"))
    return out


def normalised_w1(
    real: np.ndarray | Sequence[float], synth: np.ndarray | Sequence[float], *, circular: bool = False
) -> float:
    """1-Wasserstein distance of two non-empty 1-D samples / the real sample's spread (std, floored
    at 5 % of its mean absolute value and at 1e-3)."""
    r, s = np.asarray(real, dtype=np.float64), np.asarray(synth, dtype=np.float64)
    scale = max(float(r.std()), 0.05 * float(np.abs(r).mean()), 1e-3)
    return _w1(r, s, circular=circular) / scale


def _w1(a: np.ndarray, b: np.ndarray, *, circular: bool = False, n: int = 101) -> float:
    """1-Wasserstein distance of two 1-D samples via matched quantiles (``circular``: turns,
    differences wrapped, the samples first rotated to be centred on ``a``'s circular mean)."""
    if circular:
        centre = circular_mean_std(a)[0]
        a = (a - centre + 0.5) % 1.0 - 0.5
        b = (b - centre + 0.5) % 1.0 - 0.5
    q = np.linspace(0.0, 1.0, n)
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())
