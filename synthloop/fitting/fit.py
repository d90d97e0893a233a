"""``fit_recipe``: tune a recipe's distributions so that its renders come closer to real photos.

Steps: find the knobs (:mod:`synthloop.fitting.space`); collect the real side once (features,
statistics; :func:`synthloop.gap.compute.collect_side`); run the seeded, journaled search
(:mod:`synthloop.fitting.search`) in which each trial renders ``frames`` proxy frames
(:mod:`synthloop.fitting.proxy`, render seed ``seed``, the same frames for every trial: common
random numbers) and scores the gap (:mod:`synthloop.fitting.objective`); then *confirm*: the
search's best score is optimistic (it was selected on noise), so the original and the ``rerank``
best trials that beat it are rendered again with another seed (``seed + 1``), and the fitted
recipe is, of the candidates that beat the original on those fresh renders too, the one with the
lowest mean of its search and confirmation objectives (:func:`select_confirmed`); the original
is kept when none does.
Its gap is reported as before/after. The confirmation took part in the choice, so the reported
"after" is optimistic too, less so than the search's; an unbiased figure needs a third seed.

Only the data passed as ``real`` steers the fit: give the training split (or unlabeled photos),
never the split a model is evaluated on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError
from synthloop.fitting.objective import Components, ObjectiveWeights, components_of, objective
from synthloop.fitting.proxy import PROXY_SAMPLES, PROXY_SIZE, ProxyRenderer, proxy_recipe
from synthloop.fitting.search import Journal, SearchResult, Trial, run_search
from synthloop.fitting.space import (
    DEFAULT_KNOBS,
    Knob,
    build_recipe,
    find_knobs,
    start_params,
    with_dormant_arrangement,
)
from synthloop.gap.compute import GapOptions, SideData, collect_side, gap_of_sides, json_safe
from synthloop.generators.generate import RendererFactory, categories_of
from synthloop.scenes.recipe import Recipe, recipe_hash, recipe_to_dict, recipe_to_yaml, yaml_comment

Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FitSettings:
    """``budget`` trials (trial 0 = the original), ``seed`` (sampler and proxy renders), ``rerank``
    (best trials confirmed on fresh renders, >= 1: with none, confirmation always keeps the
    original; see the module docstring),
    ``frames`` per trial, proxy ``size``/``samples``, Cycles ``threads`` and render ``device``
    (``None``: the recipe's ``render.device``), ``knobs`` patterns,
    ``widths`` (also fit uniform widths), objective ``weights``, ``max_crops`` per class."""

    budget: int
    seed: int = 0
    frames: int = 12
    size: tuple[int, int] = PROXY_SIZE
    samples: int = PROXY_SAMPLES
    threads: int = 1
    device: str | None = None
    knobs: tuple[str, ...] = DEFAULT_KNOBS
    widths: bool = False
    weights: ObjectiveWeights = ObjectiveWeights()
    max_crops: int = 200
    confirm: bool = True
    rerank: int = 3


@dataclass
class FitOutcome:
    """The fitted recipe (full resolution), the search, the knobs and notes, the ``selected``
    trial (the search's best without confirmation), and the confirmed before/after components and
    objectives with one ``confirmed`` row per candidate (None / empty without confirmation)."""

    fitted: Recipe
    search: SearchResult
    knobs: list[Knob]
    notes: list[str]
    selected: Trial
    before: Components | None = None
    after: Components | None = None
    objective_after: float | None = None
    confirmed: list[dict[str, Any]] = field(default_factory=list)


def check_classes(recipe: Recipe, real: Dataset, real_name: str) -> None:
    """SynthloopError unless the real categories are the recipe's classes (by name, any order)."""
    want = {c.name for c in categories_of(recipe)}
    have = {c.name for c in real.categories}
    if want != have:
        missing = ", ".join(sorted(want - have)) or "-"
        extra = ", ".join(sorted(have - want)) or "-"
        raise SynthloopError(
            f"real classes do not match recipe '{recipe.name}': not in the real data: {missing}; "
            f"not in the recipe: {extra}",
            path=real_name,
        )


def _meta(
    recipe: Recipe, real_name: str, n_real: int, labeled: bool, s: FitSettings, knobs: list[Knob]
) -> dict:
    return {
        "recipe_hash": recipe_hash(recipe),
        "real": real_name,
        "real_images": n_real,
        "labeled": labeled,
        "seed": s.seed,
        "frames": s.frames,
        "size": list(s.size),
        "samples": s.samples,
        "knobs": [d.name for k in knobs for d in k.dims],
        "weights": [s.weights.image, s.weights.crops, s.weights.stats],
        "max_crops": s.max_crops,
    }


class _TrialScorer:
    """Renders a parameter set's proxy frames and scores their gap to the (fixed) real side."""

    def __init__(
        self,
        base: dict[str, Any],
        knobs: list[Knob],
        real: SideData,
        classes: list[str],
        labeled: bool,
        embed: Embedder,
        renderer: ProxyRenderer,
        settings: FitSettings,
    ):
        self.base, self.knobs, self.real, self.classes = base, knobs, real, classes
        self.labeled, self.embed, self.renderer, self.s = labeled, embed, renderer, settings
        self.options = GapOptions(working_width=settings.size[0], max_crops=settings.max_crops, n_boot=0)

    def score(self, params: dict[str, float], seed: int, out: Path) -> Components:
        recipe = build_recipe(self.base, self.knobs, params, source="fit trial")
        ds = self.renderer.render(recipe, seed, self.s.frames, out)
        rng = np.random.default_rng(self.s.seed)
        side = collect_side(
            ds, str(out), self.classes, labeled=True, embed=self.embed, options=self.options,
            width=self.s.size[0], rng=rng,
        )  # fmt: skip
        report = gap_of_sides(
            side, self.real, self.classes, labeled=self.labeled, options=self.options, rng=rng, notes=[]
        )
        return components_of(report)


def fitted_name(name: str) -> str:
    """The fitted recipe's name: ``NAME_fitted``, once (a fitted recipe fitted again keeps it)."""
    return name if name.endswith("_fitted") else f"{name}_fitted"


def fit_recipe(
    recipe: Recipe,
    real: Dataset,
    *,
    labeled: bool,
    settings: FitSettings,
    journal_dir: str | Path,
    embed: Embedder,
    real_name: str = "real",
    renderer_factory: RendererFactory | None = None,
    on_trial: Callable[[Trial, bool], None] | None = None,
) -> FitOutcome:
    """Fit ``recipe`` to ``real`` (see the module docstring); resumable from ``journal_dir``."""
    if not real.frames:
        raise SynthloopError("the real image set has no images", path=real_name)
    if labeled:
        check_classes(recipe, real, real_name)
    recipe = with_dormant_arrangement(recipe, settings.knobs)
    knobs, notes = find_knobs(recipe, settings.knobs, widths=settings.widths)
    if not knobs:
        raise SynthloopError(f"nothing to fit in recipe '{recipe.name}': " + "; ".join(notes))
    journal = Journal(journal_dir)
    journal.check_meta(_meta(recipe, real_name, len(real.frames), labeled, settings, knobs))
    classes = [c.name for c in categories_of(recipe)]
    options = GapOptions(working_width=settings.size[0], max_crops=settings.max_crops, n_boot=0)
    real_side = collect_side(
        real, real_name, classes, labeled=labeled, embed=embed, options=options, width=settings.size[0],
        rng=np.random.default_rng(settings.seed),
    )  # fmt: skip
    base = recipe_to_dict(proxy_recipe(recipe, settings.size, settings.samples))
    device = settings.device or recipe.render.device
    renderer = ProxyRenderer(renderer_factory, threads=settings.threads, device=device)
    scorer = _TrialScorer(base, knobs, real_side, classes, labeled, embed, renderer, settings)
    root = Path(journal_dir)
    try:
        search = run_search(
            knobs,
            lambda n, p: scorer.score(p, settings.seed, root / "trials" / f"{n:04d}"),
            budget=settings.budget,
            seed=settings.seed,
            journal=journal,
            weights=settings.weights,
            on_trial=on_trial,
        )
        conf = _confirm(search, knobs, scorer, root, settings) if settings.confirm else None
    finally:
        renderer.close()
    selected = conf.selected if conf else search.best
    full = {**recipe_to_dict(recipe), "name": fitted_name(recipe.name)}
    return FitOutcome(
        fitted=build_recipe(full, knobs, selected.params, source=f"{recipe.name} (fitted)"),
        search=search,
        knobs=knobs,
        notes=notes,
        selected=selected,
        before=conf.before if conf else None,
        after=conf.after if conf else None,
        objective_after=conf.objective_after if conf else None,
        confirmed=conf.confirmed if conf else [],
    )


def candidates_of(search: SearchResult, k: int) -> list[Trial]:
    """Up to ``k`` trials other than the original with a search objective below 1, best first."""
    better = [t for t in search.trials if t.number != 0 and t.objective < 1.0]
    return sorted(better, key=lambda t: (t.objective, t.number))[: max(k, 0)]


def select_confirmed(rows: list[dict[str, Any]]) -> int:
    """The trial number to keep among confirmation ``rows`` (``trial``, ``search`` and
    ``confirmed`` objectives): of the trials that also beat the original on the fresh renders
    (``confirmed`` < 1), the lowest mean of the two objectives; 0 (the original) if none does.
    Ties go to the lower trial number. Pure."""
    eligible = [r for r in rows if r["confirmed"] < 1.0]
    best = min(eligible, key=lambda r: ((r["search"] + r["confirmed"]) / 2.0, r["trial"]), default=None)
    return 0 if best is None else int(best["trial"])


@dataclass
class Confirmation:
    """What :func:`_confirm` found: the ``selected`` trial, the original's (``before``) and the
    selected trial's (``after``) components on the fresh renders, the latter's objective, and one
    row per candidate (``trial``, ``search`` and ``confirmed`` objectives)."""

    selected: Trial
    before: Components
    after: Components
    objective_after: float
    confirmed: list[dict[str, Any]]


def _confirm(
    search: SearchResult, knobs: list[Knob], scorer: _TrialScorer, root: Path, settings: FitSettings
) -> Confirmation:
    """Score the original and the candidates (:func:`candidates_of`) on fresh renders (seed + 1),
    select with :func:`select_confirmed`; cached in ``confirm.json`` keyed by the candidates."""
    cands = candidates_of(search, settings.rerank)
    key = [t.number for t in cands]
    path = root / "confirm.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("candidates") != key:
        seed = settings.seed + 1
        before = scorer.score(start_params(knobs), seed, root / "confirm" / "original")
        rows = []
        for t in cands:
            after = scorer.score(t.params, seed, root / "confirm" / f"trial_{t.number:04d}")
            conf = objective(after, before, settings.weights)
            rows.append({"trial": t.number, "search": t.objective, "confirmed": conf, "components": after})
        cached = {"candidates": key, "before": before, "rows": rows}
        atomic_write_json(path, json_safe(cached))
    rows = cached["rows"]
    chosen = select_confirmed(rows)
    row = next((r for r in rows if r["trial"] == chosen), None)
    return Confirmation(
        selected=next(t for t in search.trials if t.number == chosen),
        before=cached["before"],
        after=row["components"] if row else cached["before"],
        objective_after=row["confirmed"] if row else 1.0,
        confirmed=[{k: v for k, v in r.items() if k != "components"} for r in rows],
    )


def _fmt_components(c: Components | None) -> str:
    if not c:
        return "-"
    img, stats = c.get("kid_image"), c.get("stats")
    crops = ", ".join(f"{k} {v:.3f}" for k, v in (c.get("kid_crops") or {}).items() if v is not None)
    parts = [f"image KID {img:.4f}" if img is not None else "image KID -", f"crop KID {crops or '-'}"]
    if stats is not None:
        parts.append(f"mean statistic difference {stats:.3f}")
    return "; ".join(parts)


def fitted_header(outcome: FitOutcome, recipe_source: str, real_name: str, settings: FitSettings) -> str:
    """The comment block written above a fitted recipe (how it was fitted, before/after)."""
    s, search = settings, outcome.search
    lines = [
        f"Fitted by `synthloop recipes fit {recipe_source} --real {real_name} --budget {s.budget} "
        f"--seed {s.seed}` (frames {s.frames}, proxy {s.size[0]}x{s.size[1]}, {s.samples} samples).",
        f"Steered only by {real_name} (the training split / unlabeled photos; never the evaluation split).",
        f"Trials: {len(search.trials)}; best: trial {search.best.number} of the search "
        f"(search objective {search.best.objective:.3f}; 1.0 = the original recipe).",
        "Objective: mean of whole-image KID / original's, per-class crop KID / original's (mean over "
        "classes), mean normalised statistic difference / original's (Lite0 features; see "
        "synthloop/fitting/objective.py).",
    ]
    if outcome.before is not None:
        rows = "; ".join(
            f"trial {r['trial']} {r['search']:.3f} -> {r['confirmed']:.3f}" for r in outcome.confirmed
        )
        lines += [
            f"Confirmed on fresh proxy renders (seed {s.seed + 1}), search -> confirmation objective: "
            f"{rows or 'no trial beat the original'}.",
            f"Selected: trial {outcome.selected.number} (of those below 1.0 on both, the lowest mean; "
            f"trial 0 = the original): confirmation objective "
            f"{outcome.objective_after:.3f} (optimistic: it took part in the choice)",
            f"  before: {_fmt_components(outcome.before)}",
            f"  after:  {_fmt_components(outcome.after)}",
        ]
    lines.append("Fitted parameters: " + ", ".join(k.label for k in outcome.knobs))
    lines += [f"Note: {n}" for n in outcome.notes]
    return yaml_comment(lines)


def write_fitted(outcome: FitOutcome, out: str | Path, header: str) -> Path:
    """Write the fitted recipe (header + YAML) atomically; nothing is written on error."""
    text = header + recipe_to_yaml(outcome.fitted)
    return atomic_write_bytes(out, text.encode("utf-8"))
