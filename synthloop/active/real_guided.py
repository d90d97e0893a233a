"""Real-guided mining: a model's errors on real photos -> weak property regions -> recipe parameters.

1. **Describe** (:mod:`synthloop.active.describe`): every real ground-truth object and every
   detection of the labeled real split (and, optionally, the detections of the most uncertain
   unlabeled pool photos) by measured properties (``prop.size``, ``prop.hue``, ``prop.bg_texture``,
   ...; :mod:`synthloop.geometry.properties`) and its class (``object.category``).
2. **Mine** with the miner of ``active mine`` (:func:`~synthloop.active.mining.mine`), three tables:
   ``recall`` (GT objects; failure = not detected), ``precision`` (detections; failure = false
   positive) and ``pool`` (pool detections; failure = scored below ``score_thr``). Each gives weak
   property regions with Wilson intervals, Bonferroni-adjusted.
3. **Map** each weak property region back to recipe parameters through the render records:
   rendered objects carry their sampled parameters (``attr.*``, their frame's ``scene.*``) and the
   same measured properties. Missed objects are looked up among the rendered labeled objects;
   false positives among the rendered distractors (their group as ``object.category``: a
   false-positive look that the gold-foil distractors produce maps to more of them). The
   rendered objects whose property lies in the region are marked, and the same miner, run on the
   render table with "in the region" as the failure, finds the parameter intervals where the
   region's objects concentrate (where the share of objects in the region is significantly above
   its overall share): the scene parameters that produce that look.
   A region that starts at the smallest (ends at the largest) real value is open on that side
   among renders. A weak class (``object.category``) is kept as it is (the derivation renders
   more of that class). A region no rendered object falls into is a coverage hole: reported,
   nothing derived from it -- except high overlap with neighbours (``prop.overlap`` above the
   smallest real value: objects missed among touching neighbours, false positives on top of
   labeled objects), which the recipe's touching piles produce: when no pile parameter
   (``scene.pile_fraction``, ``scene.pile_size``, ``scene.contact_gap``, ``attr.in_pile``) came out
   of the renders, :func:`pile_lever` adds ``scene.pile_fraction in [0.5, 1]`` (more piles).
4. **Derive** (:func:`~synthloop.active.derive.derive`): the parameter regions re-weight the recipe
   (mixtures with the stated exploration share); unmappable ones are reported.

Only the labeled real split given as ``real`` (use the training split) and the unlabeled pool steer;
never pass the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthloop.active.derive import ARRANGEMENT_PARAMS, Derivation, derive, save_derivation
from synthloop.active.describe import (
    EXCLUDED_MEASURED,
    describe_pool,
    describe_real,
    describe_renders,
    pool_frames,
)
from synthloop.active.errors import ActiveError
from synthloop.active.mining import MiningOptions, MiningResult, WeakRegion, _finite, mine, wilson_interval
from synthloop.active.outcomes import outcome_table
from synthloop.active.select import list_pool_images
from synthloop.atomic import atomic_write_json
from synthloop.dataset.types import Dataset
from synthloop.evaluation.detections import Detections
from synthloop.geometry.properties import wrap_hue
from synthloop.importers import load_any
from synthloop.progress import JobProgress
from synthloop.scenes.recipe import Recipe
from synthloop.training import api as training_api

REAL_SCHEMA = "synthloop.real_mining/1"
PredictFn = Callable[[Path, Dataset], Detections]
"""``predict(checkpoint, dataset) -> Detections`` (labels = the dataset's category ids)."""


@dataclass
class RealMiningOptions:
    """Knobs of real-guided mining (module docstring).

    ``score_thr``: operating point (detections below it are ignored on the real split; on the pool
    they are the uncertain ones); ``min_iou``: matching IoU (None: the evaluation's default 0.5);
    ``mining``: options of the miner on the (small) real tables; ``mapping``: on the render table;
    ``params_per_region``: parameter regions kept per property region; ``pool_top``: most uncertain
    pool images described; ``pool_min_score``: pool detections below it are ignored;
    ``exclude``: params left out of both tables (e.g. ``prop.border``, ``attr.yaw_deg``).
    """

    score_thr: float = 0.5
    min_iou: float | None = None
    mining: MiningOptions = field(default_factory=lambda: MiningOptions(min_support=5, max_regions=5))
    mapping: MiningOptions = field(default_factory=lambda: MiningOptions(min_support=10, max_regions=10))
    params_per_region: int = 3
    pool_top: int = 10
    pool_min_score: float = 0.1
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, o in (("mining", self.mining), ("mapping", self.mapping)):
            if o.adjust not in ("bonferroni", "none"):
                raise ActiveError(f"adjust must be 'bonferroni' or 'none', got {o.adjust!r}", where=name)
        if not 0.0 <= self.score_thr <= 1.0 or not 0.0 <= self.pool_min_score <= 1.0:
            raise ActiveError("score thresholds must lie in [0, 1]", where="score_thr")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegionMapping:
    """One weak property region and the parameter regions it maps to.

    ``table``: ``recall``/``precision``/``pool``; ``in_region``: rendered objects inside the
    region (of ``num_renders``); ``params``: parameter regions (their ``recall_inside`` is the
    share of objects *outside* the property region, so ``1 - recall_inside`` is the share inside);
    ``note``: why nothing was mapped, if so.
    """

    table: str
    region: WeakRegion
    in_region: int
    num_renders: int
    params: list[WeakRegion]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "region": self.region.to_dict(),
            "in_region": self.in_region,
            "num_renders": self.num_renders,
            "share_in_region": self.in_region / self.num_renders if self.num_renders else None,
            "params": [
                {
                    "description": p.describe(),
                    "support": p.support,
                    "share_in_region_inside": 1.0 - p.recall_inside,
                    "share_in_region_overall": 1.0 - p.overall_recall,
                    "region": p.to_dict(),
                }
                for p in self.params
            ],
            "note": self.note,
        }


@dataclass
class RealMining:
    """Everything real-guided mining found: per-table :class:`MiningResult` (None where the table
    was empty), the mappings, the pool images described, and the parameter regions to derive from."""

    results: dict[str, MiningResult | None]
    mappings: list[RegionMapping]
    pool_images: list[dict[str, Any]]
    options: RealMiningOptions

    @property
    def param_regions(self) -> list[WeakRegion]:
        """Parameter regions of every mapping, in mapping order, duplicates (same description) once."""
        out: dict[str, WeakRegion] = {}
        for m in self.mappings:
            for p in m.params:
                out.setdefault(p.describe(), p)
        return list(out.values())

    def summary(self) -> dict[str, Any]:
        """Flat numbers for a round's metrics: real recall and precision at ``score_thr``."""
        rec, prec = self.results.get("recall"), self.results.get("precision")
        return {
            "recall": None if rec is None else rec.overall_recall,
            "precision": None if prec is None else prec.overall_recall,
            "num_gt": 0 if rec is None else rec.num_objects,
            "num_dets": 0 if prec is None else prec.num_objects,
            "weak_regions": [f"{m.table}: {m.region.describe()}" for m in self.mappings],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REAL_SCHEMA,
            "summary": self.summary(),
            "results": {k: None if v is None else v.to_dict() for k, v in self.results.items()},
            "mappings": [m.to_dict() for m in self.mappings],
            "param_regions": [r.to_dict() for r in self.param_regions],
            "pool_images": self.pool_images,
            "options": self.options.to_dict(),
        }

    def as_mining_result(self) -> MiningResult:
        """The parameter regions as a :class:`MiningResult` (what ``active derive`` and the loop read);
        its recall numbers are the real split's."""
        rec = self.results.get("recall")
        return MiningResult(
            overall_recall=math.nan if rec is None else rec.overall_recall,
            num_objects=0 if rec is None else rec.num_objects,
            outcome_counts={} if rec is None else rec.outcome_counts,
            regions=self.param_regions,
            bins={},
            importance={},
            tree_rules="",
            options=self.options.mapping,
        )


def mine_rows(
    rows: Sequence[Mapping[str, Any]], options: MiningOptions, exclude: Sequence[str] = ()
) -> MiningResult | None:
    """The miner on described rows (``prop.*`` and ``object.category``; None without rows)."""
    if not rows:
        return None
    table = outcome_table(rows, exclude=(*EXCLUDED_MEASURED, *exclude))
    return mine(table, options)


def _open_ended(region: WeakRegion) -> WeakRegion:
    """The region, open towards -inf / +inf where it reaches the smallest / largest real value."""
    if region.kind != "numeric":
        return region
    low = -math.inf if region.at_min else region.low
    high = math.inf if region.high_inclusive else region.high
    return WeakRegion.from_dict({**region.to_dict(), "low": low, "high": high})


PILE_LEVER = (0.5, 1.0)
"""The pile fraction interval a high-overlap region asks for when the renders hold no pile."""


def pile_lever(region: WeakRegion) -> WeakRegion | None:
    """``scene.pile_fraction in [0.5, 1]`` for a region of high ``prop.overlap`` (one that leaves
    out the smallest real overlaps), else None. It carries the property region's real numbers
    (``source: "pile lever"``)."""
    if region.param != "prop.overlap" or region.kind != "numeric" or region.at_min:
        return None
    if region.low is None or not region.low > 0.0:
        return None
    lo, hi = PILE_LEVER
    changed = {
        "param": "scene.pile_fraction",
        "low": lo,
        "high": hi,
        "high_inclusive": True,
        "source": "pile lever",
    }
    return WeakRegion.from_dict({**region.to_dict(), **changed})


def map_region(
    region: WeakRegion,
    render_rows: Sequence[Mapping[str, Any]],
    options: MiningOptions,
    *,
    table: str = "recall",
    keep: int = 3,
    exclude: Sequence[str] = (),
) -> RegionMapping:
    """Parameter regions where the rendered objects of ``region`` concentrate (module docstring),
    with :func:`pile_lever` first for a high-overlap region that mapped to no pile parameter.

    Missed objects (``recall``, ``pool``) are looked up among the rendered labeled objects; false
    positives (``precision``) among the rendered distractors (rows of ``kind: "distractor"``), so a
    false-positive look maps to more of the distractor groups and scenes that produce it."""
    m = _map_through_renders(region, render_rows, options, table=table, keep=keep, exclude=exclude)
    lever = pile_lever(region)
    if lever is None or any(p.param in ARRANGEMENT_PARAMS for p in m.params):
        return m
    why = "high overlap with neighbours: more touching piles (arrangement.pile_fraction up)"
    params = [lever, *m.params][: max(0, keep)]
    return RegionMapping(
        m.table, m.region, m.in_region, m.num_renders, params, f"{m.note}; {why}" if m.note else why
    )


def _map_through_renders(
    region: WeakRegion,
    render_rows: Sequence[Mapping[str, Any]],
    options: MiningOptions,
    *,
    table: str,
    keep: int,
    exclude: Sequence[str],
) -> RegionMapping:
    """:func:`map_region` without the pile lever."""
    fp = table == "precision"
    population = [r for r in render_rows if (r.get("kind") == "distractor") == fp]
    n = len(population)
    if region.param in ("object.category", "attr.category"):
        if fp:
            why = "a class with low precision: the measured look of its false positives is the lead"
            return RegionMapping(table, region, 0, n, [], why)
        return RegionMapping(table, region, 0, n, [region], "a weak class: more of it per frame")
    if region.level != "prop":
        return RegionMapping(table, region, 0, n, [], f"{region.param} is not a measured property")
    what = "distractor" if fp else "labeled object"
    if not population:
        return RegionMapping(table, region, 0, 0, [], f"the renders hold no {what} to map the region through")
    name = region.name
    values = np.array(
        [np.nan if (v := (r.get("properties") or {}).get(name)) is None else float(v) for r in population]
        if region.kind == "numeric"
        else [(r.get("properties") or {}).get(name) for r in population],
        dtype=np.float64 if region.kind == "numeric" else object,
    )
    inside = _open_ended(region).contains(values)
    k = int(inside.sum())
    if k == 0:
        why = f"no rendered {what} falls in this region (a coverage hole: the recipe does not produce it)"
        return RegionMapping(table, region, 0, n, [], why)
    rows = [
        {
            "matched": not bool(hit),
            "category": r.get("category"),
            "attributes": _unwrapped(r.get("attributes") or {}),
            "scene_params": r.get("scene_params") or {},
        }
        for r, hit in zip(population, inside, strict=True)
    ]
    drop = ("object.category",) if fp else ()
    found = mine(outcome_table(rows, exclude=(*EXCLUDED_MEASURED, *drop, *exclude)), options)
    params = found.regions[: max(0, keep)]
    if fp:
        groups = lookalike_groups(region, render_rows, options)
        params = ([groups] if groups is not None else []) + params[: max(0, keep - 1)]
    note = "" if params else "no sampled parameter concentrates the region's rendered objects"
    return RegionMapping(table, region, k, n, params, note)


def _unwrapped(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The sampled attributes with ``hue`` in the measured property's range [-0.25, 0.75), so a red
    region is one interval on both sides (the derivation shifts it back onto the recipe's range)."""
    h = attributes.get("hue")
    if isinstance(h, int | float) and not isinstance(h, bool) and math.isfinite(h):
        return {**attributes, "hue": wrap_hue(h)}
    return dict(attributes)


def lookalike_groups(
    region: WeakRegion, render_rows: Sequence[Mapping[str, Any]], options: MiningOptions
) -> WeakRegion | None:
    """An ``object.category`` region of the distractor groups over-represented in a false-positive
    ``region``: among all rendered objects (labeled and distractors), a group is chosen when it has
    at least ``options.min_support`` rendered and the lower end of the Wilson interval (at
    ``options.confidence``) of its share inside the region exceeds the share of all rendered
    objects inside it. None if no group is. Its ``recall_inside`` is the share *outside* the
    region (as for every mapped region)."""
    vals = np.array(
        [
            np.nan if (v := (r.get("properties") or {}).get(region.name)) is None else float(v)
            for r in render_rows
        ]
    )
    hit = _open_ended(region).contains(vals)
    g = np.array([str(r.get("category")) for r in render_rows], dtype=object)
    dis = np.array([r.get("kind") == "distractor" for r in render_rows], dtype=bool)
    base = float(hit.mean()) if len(hit) else 0.0
    chosen = []
    for name in sorted(set(g[dis].tolist())):
        m = dis & (g == name)
        n, k = int(m.sum()), int(hit[m].sum())
        if n >= options.min_support and wilson_interval(k, n, options.confidence)[0] > base:
            chosen.append(name)
    if not chosen:
        return None
    m = dis & np.isin(g, chosen)
    n, k = int(m.sum()), int(hit[m].sum())
    out_share = float(hit[~m].mean()) if (~m).any() else None
    lo, hi = wilson_interval(n - k, n, options.confidence)
    return WeakRegion(
        param="object.category",
        kind="categorical",
        support=n,
        support_fraction=n / len(g),
        recall_inside=(n - k) / n,
        recall_outside=None if out_share is None else 1.0 - out_share,
        overall_recall=1.0 - base,
        ci_low=lo,
        ci_high=hi,
        ci_adjusted=(lo, hi),
        confidence_adjusted=options.confidence,
        effect=k / n - base,
        effect_vs_outside=None if out_share is None else k / n - out_share,
        z=0.0,
        excess_failures=float(k - n * base),
        source="distractor groups",
        weak=True,
        categories=chosen,
    )


def mine_real_errors(
    real: Dataset,
    real_dets: Detections,
    renders: Dataset | None,
    *,
    pool: tuple[Sequence[Any], Detections] | None = None,
    options: RealMiningOptions | None = None,
    render_rows: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[RealMining, dict[str, list[dict[str, Any]]]]:
    """Describe, mine and map (module docstring). ``pool``: (pool frames, their detections);
    ``render_rows``: precomputed :func:`describe_renders` rows (else computed from ``renders``).
    Returns the result and the described rows (``real_gt``, ``real_det``, ``pool``, ``renders``)."""
    opts = options or RealMiningOptions()
    gt_rows, det_rows = describe_real(real, real_dets, score_thr=opts.score_thr, min_iou=opts.min_iou)
    pool_rows: list[dict[str, Any]] = []
    pool_images: list[dict[str, Any]] = []
    if pool is not None:
        frames, pdets = pool
        names = {c.id: c.name for c in real.categories}
        pool_rows, pool_images = describe_pool(
            frames,
            pdets,
            top=opts.pool_top,
            min_score=opts.pool_min_score,
            score_thr=opts.score_thr,
            category_names=names,
        )
    if render_rows is None and renders is None:
        raise ActiveError("need the renders (or their described rows) to map regions through")
    rrows = list(render_rows) if render_rows is not None else describe_renders(renders)  # type: ignore[arg-type]
    if not rrows:
        raise ActiveError("the render folder has no visible labeled object to map regions through")
    results = {
        "recall": mine_rows(gt_rows, opts.mining, opts.exclude),
        "precision": mine_rows(det_rows, opts.mining, opts.exclude),
        "pool": mine_rows(pool_rows, opts.mining, opts.exclude),
    }
    mappings = [
        map_region(r, rrows, opts.mapping, table=t, keep=opts.params_per_region, exclude=opts.exclude)
        for t, res in results.items()
        if res is not None
        for r in res.regions
    ]
    rows = {"real_gt": gt_rows, "real_det": det_rows, "pool": pool_rows, "renders": [dict(r) for r in rrows]}
    return RealMining(results, mappings, pool_images, opts), rows


def derive_from_real(
    recipe: Recipe, mining: RealMining, exploration: float = 0.3, *, name: str | None = None
) -> Derivation:
    """:func:`~synthloop.active.derive.derive` on the mapped parameter regions."""
    return derive(recipe, mining.param_regions, exploration, name=name or f"{recipe.name}-real")


def check_classes(real: Dataset, renders: Dataset, real_path: str, renders_path: str) -> None:
    """ActiveError naming the real classes the renders lack (their errors could not be mapped)."""
    rendered = {c.name for c in renders.categories}
    missing = sorted(c.name for c in real.categories if c.name not in rendered)
    if missing:
        raise ActiveError(
            f"real classes {missing} are not among the rendered classes {sorted(rendered)}",
            path=real_path,
            where=renders_path,
        )


def mine_real(
    checkpoint: str | Path,
    real_path: str | Path,
    renders_path: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    recipe: Recipe | None = None,
    pool: str | Path | None = None,
    exploration: float = 0.3,
    options: RealMiningOptions | None = None,
    predict: PredictFn = training_api.predict_dataset,
    render_rows: Sequence[Mapping[str, Any]] | None = None,
    progress: Literal["off", "bar", "json"] = "off",
) -> dict[str, Path]:
    """Predict on the real split (and pool), mine, map through the render folder(s) ``renders_path``,
    and derive ``recipe`` when given; writes
    into ``out_dir`` (atomically): ``real_mining.json`` (tables' regions, mappings, summary),
    ``weak_regions.json`` (the parameter regions: ``active derive`` reads it), ``objects.json``
    (every described row) and, with a recipe, ``recipe.yaml`` / ``recipe.diff`` /
    ``recipe.derivation.json``. ``progress``: a rich bar (``bar``) or JSON lines (``json``) while
    the renders are described. Returns the written paths."""
    real = load_any(real_path)
    folders = [renders_path] if isinstance(renders_path, str | Path) else list(renders_path)
    if not folders:
        raise ActiveError("no render folder given", where="renders")
    renders = [load_any(p) for p in folders]
    for ds, p in zip(renders, folders, strict=True):
        check_classes(real, ds, str(real_path), str(p))
    if not real.frames:
        raise ActiveError("the real split has no images", path=str(real_path))
    ckpt = Path(checkpoint)
    pool_arg = None
    if pool is not None:
        frames = pool_frames(list_pool_images(pool))
        pool_ds = Dataset(categories=real.categories, frames=frames, name="pool")
        pool_arg = (frames, predict(ckpt, pool_ds))
    real_dets = predict(ckpt, real)
    if render_rows is None and progress == "off":
        render_rows = [r for ds in renders for r in describe_renders(ds)]
    elif render_rows is None:
        total = sum(len(ds.frames) for ds in renders)
        with JobProgress(total, "describe renders", quiet=progress == "json") as bar:
            render_rows = [r for ds in renders for r in describe_renders(ds, on_frame=bar.advance)]
    result, rows = mine_real_errors(
        real, real_dets, None, pool=pool_arg, options=options, render_rows=render_rows
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "real_mining": atomic_write_json(out / "real_mining.json", _finite(result.to_dict())),
        "weak_regions": result.as_mining_result().save(out / "weak_regions.json"),
        "objects": atomic_write_json(out / "objects.json", _finite(rows)),
    }
    if recipe is not None:
        d = derive_from_real(recipe, result, exploration)
        paths.update(save_derivation(d, recipe, out, stem="recipe"))
    return paths
