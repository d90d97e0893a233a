"""Mining: which parameter ranges does the detector fail on? Interpretable, with error bars.

Two views of one :class:`~synthloop.active.outcomes.OutcomeTable`:

(a) **Binned recall.** Every param is split into bins (numeric: ``n_bins`` quantile bins, or one bin
    per value when it has at most ``n_bins`` distinct values; categorical: one bin per value). Each
    bin gets its recall (detected / objects) and a Wilson score interval
    (:func:`wilson_interval`).
(b) **A shallow tree.** A decision tree (``max_depth`` 3, balanced classes) predicts failure from
    the features; its split thresholds on a numeric param cut that param into intervals, which
    usually locate a failure boundary more sharply than quantile bins. Grouped permutation
    importance (all one-hot columns of a param permuted together; ROC AUC drop on a held-out
    split) says how much each param matters; ``model="gbm"`` computes it with a shallow
    gradient-boosted model instead of the tree.

A candidate interval (bin, tree interval, or a run of adjacent ones merged) is a **weak region**
when it holds at least ``min_support`` objects, the upper end of its recall interval lies below
the overall recall, and its effect ``overall recall - recall inside`` is at least ``min_effect``.
The decision uses the Wilson interval at a Bonferroni-adjusted level (``1 - (1 - confidence) /
m`` for ``m`` candidate intervals tested; ``adjust="none"`` uses ``confidence`` as is), so
unrelated parameters do not show up by chance; every region also reports its plain 95 % interval.

Per param, overlapping weak candidates are reduced to the most significant one (largest ``z``,
the effect in units of the overall-recall standard error at the region's support). Regions are
ranked by ``excess_failures = support * (overall - recall inside)``: the misses that would go away
if the region were as easy as the average object.

Intervals are half-open ``[low, high)``; ``high_inclusive`` marks one that runs to the largest
observed value and ``at_min`` one that starts at the smallest (the derivation extends such a
region to the distribution's bound on that side). Categorical regions list their ``categories``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthloop.active.errors import ActiveError
from synthloop.active.outcomes import OutcomeTable
from synthloop.atomic import atomic_write_json
from synthloop.jsonio import read_json, reading, require_schema

WEAK_SCHEMA = "synthloop.weak_regions/1"


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: ``z`` with P(|Z| <= z) = ``confidence`` (0.95 -> 1.95996)."""
    from statistics import NormalDist

    if not 0.0 < confidence < 1.0:
        raise ActiveError(f"confidence must be in (0, 1), got {confidence!r}", where="confidence")
    return float(NormalDist().inv_cdf(0.5 + confidence / 2.0))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``.

    ``(c - h, c + h)`` with ``p = k / n``, ``d = 1 + z^2 / n``, ``c = (p + z^2 / (2 n)) / d`` and
    ``h = z sqrt(p (1 - p) / n + z^2 / (4 n^2)) / d``. ``n = 0`` gives ``(0, 1)``.
    """
    if n < 0 or k < 0 or k > n:
        raise ActiveError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = k / n
    d = 1.0 + z * z / n
    c = (p + z * z / (2.0 * n)) / d
    h = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


@dataclass
class WeakRegion:
    """A parameter range with lower recall than the whole set (see module docstring).

    ``param``: ``scene.<key>`` / ``attr.<key>`` / ``object.<x>``; ``kind``: numeric/categorical;
    ``low``/``high``/``high_inclusive`` (numeric) or ``categories``; ``support`` objects inside
    (``support_fraction`` of all); ``recall_inside``/``recall_outside``/``overall_recall``;
    ``ci_low``/``ci_high``: Wilson 95 % interval of ``recall_inside``; ``ci_adjusted``: the interval
    at ``confidence_adjusted`` used for the decision; ``effect``: overall - inside; ``effect_vs_outside``:
    outside - inside; ``z``; ``excess_failures``; ``importance``: the param's permutation
    importance (None when no model was fitted); ``source``: ``bins`` or ``tree``; ``weak``.
    """

    param: str
    kind: Literal["numeric", "categorical"]
    support: int
    support_fraction: float
    recall_inside: float
    recall_outside: float | None
    overall_recall: float
    ci_low: float
    ci_high: float
    ci_adjusted: tuple[float, float]
    confidence_adjusted: float
    effect: float
    effect_vs_outside: float | None
    z: float
    excess_failures: float
    source: str
    weak: bool
    low: float | None = None
    high: float | None = None
    high_inclusive: bool = False
    categories: list[str] | None = None
    importance: float | None = None
    failures_inside: int = 0
    at_min: bool = False

    @property
    def name(self) -> str:
        """The param without its ``scene.``/``attr.``/``object.`` prefix."""
        return self.param.split(".", 1)[1] if "." in self.param else self.param

    @property
    def level(self) -> str:
        """``scene``, ``attr`` or ``object`` (``scene`` for an unprefixed name)."""
        return self.param.split(".", 1)[0] if "." in self.param else "scene"

    def describe(self) -> str:
        if self.kind == "categorical":
            where = "{" + ", ".join(self.categories or []) + "}"
        else:
            where = f"[{self.low:.4g}, {self.high:.4g}{']' if self.high_inclusive else ')'}"
        return f"{self.param} in {where}"

    def contains(self, values: np.ndarray) -> np.ndarray:
        """(N,) bool: which of ``values`` (float array with NaN, or object array of str/None) lie inside."""
        if self.kind == "categorical":
            cats = set(self.categories or [])
            return np.array([v is not None and str(v) in cats for v in values], dtype=bool)
        assert self.low is not None and self.high is not None  # a numeric region has both ends
        x = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            upper = x <= self.high if self.high_inclusive else x < self.high
            return (x >= self.low) & upper & ~np.isnan(x)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci_adjusted"] = list(self.ci_adjusted)
        d["description"] = self.describe()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeakRegion:
        d = {k: v for k, v in d.items() if k != "description"}
        d["ci_adjusted"] = tuple(d.get("ci_adjusted", (0.0, 1.0)))
        return cls(**d)


@dataclass
class BinStat:
    """One bin of the binned-recall view (for reports): label, objects, detected, recall, 95 % CI."""

    param: str
    label: str
    support: int
    detected: int
    recall: float | None
    ci_low: float
    ci_high: float
    weak: bool = False


@dataclass
class MiningOptions:
    """Knobs of :func:`mine` (module docstring)."""

    n_bins: int = 5
    confidence: float = 0.95
    adjust: Literal["bonferroni", "none"] = "bonferroni"
    min_effect: float = 0.05
    min_support: int = 10
    max_depth: int = 3
    min_leaf_fraction: float = 0.02
    model: Literal["tree", "gbm"] = "tree"
    permutation_repeats: int = 5
    holdout_fraction: float = 0.3
    max_regions: int = 10
    seed: int = 0


@dataclass
class MiningResult:
    """Everything :func:`mine` found: ranked weak ``regions``, per-param ``bins``, ``importance``."""

    overall_recall: float
    num_objects: int
    outcome_counts: dict[str, int]
    regions: list[WeakRegion]
    bins: dict[str, list[BinStat]]
    importance: dict[str, float]
    tree_rules: str
    options: MiningOptions
    model_score: float | None = None
    candidates_tested: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": WEAK_SCHEMA,
            "overall_recall": self.overall_recall,
            "num_objects": self.num_objects,
            "outcome_counts": self.outcome_counts,
            "regions": [r.to_dict() for r in self.regions],
            "bins": {p: [asdict(b) for b in bs] for p, bs in self.bins.items()},
            "importance": self.importance,
            "tree_rules": self.tree_rules,
            "options": asdict(self.options),
            "model_score": self.model_score,
            "candidates_tested": self.candidates_tested,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | None = None) -> MiningResult:
        require_schema(d, WEAK_SCHEMA, "weak-regions file", ActiveError, path)
        with reading("weak-regions file", ActiveError, path):
            return cls(
                overall_recall=float(d["overall_recall"]) if d["overall_recall"] is not None else math.nan,
                num_objects=int(d["num_objects"]),
                outcome_counts=dict(d["outcome_counts"]),
                regions=[WeakRegion.from_dict(r) for r in d["regions"]],
                bins={p: [BinStat(**b) for b in bs] for p, bs in d.get("bins", {}).items()},
                importance={k: float(v) for k, v in d.get("importance", {}).items()},
                tree_rules=str(d.get("tree_rules", "")),
                options=MiningOptions(**d.get("options", {})),
                model_score=d.get("model_score"),
                candidates_tested=int(d.get("candidates_tested", 0)),
            )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, _finite(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> MiningResult:
        return cls.from_dict(read_json(path, ActiveError, "weak regions file"), path=str(path))


def _finite(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def load_weak_regions(path: str | Path) -> list[WeakRegion]:
    """The ranked regions of a saved :class:`MiningResult` (or of a plain JSON list of regions)."""
    d = read_json(path, ActiveError, "weak regions file")
    if isinstance(d, list):
        try:
            return [WeakRegion.from_dict(r) for r in d]
        except (TypeError, KeyError) as e:
            raise ActiveError(f"malformed weak region ({e})", path=str(path)) from e
    return MiningResult.from_dict(d, path=str(path)).regions


# ----------------------------------------------------------------------------- candidates
@dataclass
class _Cand:
    param: str
    kind: Literal["numeric", "categorical"]
    mask: np.ndarray
    source: str
    low: float | None = None
    high: float | None = None
    high_inclusive: bool = False
    categories: list[str] | None = None
    label: str = ""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _interval_cands(
    param: str, x: np.ndarray, edges: Sequence[float] | np.ndarray, source: str
) -> list[_Cand]:
    """Bins ``[e_i, e_{i+1})`` (last closed) over the non-NaN values of ``x``."""
    out = []
    n = len(edges) - 1
    for i in range(n):
        lo, hi = float(edges[i]), float(edges[i + 1])
        last = i == n - 1
        with np.errstate(invalid="ignore"):
            m = (x >= lo) & ((x <= hi) if last else (x < hi))
        label = f"[{_fmt(lo)}, {_fmt(hi)}{']' if last else ')'}"
        out.append(_Cand(param, "numeric", m, source, lo, hi, last, None, label))
    return out


def _bin_cands(table: OutcomeTable, param: str, n_bins: int) -> list[_Cand]:
    v = table.values[param]
    if table.kinds[param] == "categorical":
        cats = sorted({c for c in v if c is not None})
        return [_Cand(param, "categorical", v == c, "bins", categories=[c], label=c) for c in cats]
    x = v.astype(np.float64)
    present = x[~np.isnan(x)]
    uniq = np.unique(present)
    if len(uniq) <= n_bins:
        out = []
        for i, u in enumerate(uniq):
            last = i == len(uniq) - 1
            out.append(
                _Cand(param, "numeric", x == u, "bins", float(u), float(u), True, None, _fmt(float(u)))
            )
            if not last:  # a one-value bin is the interval [u, next) for merging purposes
                out[-1].high, out[-1].high_inclusive = float(uniq[i + 1]), False
        return out
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, n_bins + 1)))
    return _interval_cands(param, x, edges, "bins")


def _merge(cands: Sequence[_Cand]) -> _Cand:
    first, last = cands[0], cands[-1]
    mask = np.zeros_like(first.mask)
    for c in cands:
        mask |= c.mask
    if first.kind == "categorical":
        cats = sorted({k for c in cands for k in c.categories or []})
        return _Cand(
            first.param, "categorical", mask, first.source, categories=cats, label="{" + ", ".join(cats) + "}"
        )
    label = f"[{_fmt(first.low)}, {_fmt(last.high)}{']' if last.high_inclusive else ')'}"  # type: ignore[arg-type]
    return _Cand(
        first.param, "numeric", mask, first.source, first.low, last.high, last.high_inclusive, None, label
    )


# ----------------------------------------------------------------------------- model
def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of scores ``p`` (N,) for binary labels ``y`` (N,) (``sklearn.metrics.roc_auc_score``);
    accuracy at 0.5 when ``y`` has a single class, where AUC is undefined."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if y.all() or not y.any():
        return float(np.mean((p >= 0.5) == y))
    return float(roc_auc_score(y, p))


def _fit_models(
    table: OutcomeTable, y: np.ndarray, opts: MiningOptions, rng: np.random.Generator
) -> tuple[Any, dict[str, float], float | None, str]:
    """(decision tree, param -> permutation importance, held-out score, tree rules text)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier, export_text

    n, f = table.X.shape
    if f == 0 or n < 2 * opts.min_support or len(np.unique(y)) < 2:
        return None, {}, None, ""
    order = rng.permutation(n)
    n_test = int(round(opts.holdout_fraction * n)) if n >= 100 else 0
    test, train = (order[:n_test], order[n_test:]) if n_test else (order, order)
    if len(np.unique(y[train])) < 2:  # the holdout took every row of a rare class: no holdout
        test, train = order, order
    leaf = max(opts.min_support, int(math.ceil(opts.min_leaf_fraction * len(train))))
    seed = int(rng.integers(0, 2**31 - 1))
    tree = DecisionTreeClassifier(
        max_depth=opts.max_depth, min_samples_leaf=leaf, class_weight="balanced", random_state=seed
    )
    tree.fit(table.X[train], y[train])
    if opts.model == "gbm":
        model: Any = HistGradientBoostingClassifier(
            max_depth=opts.max_depth, max_iter=60, learning_rate=0.1, min_samples_leaf=leaf, random_state=seed
        )
        model.fit(table.X[train], y[train])
    else:
        model = tree
    Xt, yt = table.X[test], y[test]
    base = roc_auc(yt, model.predict_proba(Xt)[:, 1])
    importance: dict[str, float] = {}
    for param in table.params:
        cols = [j for j, p in enumerate(table.column_param) if p == param]
        drops = []
        for _ in range(opts.permutation_repeats):
            Xp = Xt.copy()
            Xp[:, cols] = Xt[rng.permutation(len(Xt))][:, cols]
            drops.append(base - roc_auc(yt, model.predict_proba(Xp)[:, 1]))
        importance[param] = float(np.mean(drops))
    rules = export_text(tree, feature_names=list(table.columns), show_weights=True)
    return tree, importance, base, rules


def _tree_thresholds(tree: Any, table: OutcomeTable) -> dict[str, list[float]]:
    """Numeric param -> sorted split thresholds the tree uses on it."""
    out: dict[str, set[float]] = {}
    if tree is None:
        return {}
    t = tree.tree_
    for node in range(t.node_count):
        j = int(t.feature[node])
        if j < 0:
            continue
        param = table.column_param[j]
        if table.kinds[param] == "numeric":
            out.setdefault(param, set()).add(float(t.threshold[node]))
    return {p: sorted(v) for p, v in out.items()}


# ----------------------------------------------------------------------------- mining
@dataclass
class _RegionScorer:
    """Scores a candidate region: recall inside and outside against the ``overall`` recall,
    Wilson intervals at the nominal and the adjusted confidence, and whether it is weak."""

    detected: np.ndarray  # (N,) bool: each object detected
    overall: float
    opts: MiningOptions
    conf_adj: float
    importance: dict[str, float]
    pmin: dict[str, float]  # smallest value of each numeric parameter

    def __call__(self, c: _Cand) -> WeakRegion:
        detected, overall, opts = self.detected, self.overall, self.opts
        n = len(detected)
        k_in, n_in = int(detected[c.mask].sum()), int(c.mask.sum())
        out_mask = ~c.mask
        n_out = int(out_mask.sum())
        r_in = k_in / n_in if n_in else math.nan
        r_out = float(detected[out_mask].mean()) if n_out else None
        lo95, hi95 = wilson_interval(k_in, n_in, opts.confidence)
        adj = wilson_interval(k_in, n_in, self.conf_adj)
        effect = overall - r_in if n_in else 0.0
        se = math.sqrt(max(overall * (1.0 - overall), 1e-12) / n_in) if n_in else math.inf
        weak = n_in >= opts.min_support and adj[1] < overall and effect >= opts.min_effect
        return WeakRegion(
            param=c.param,
            kind=c.kind,
            support=n_in,
            support_fraction=n_in / n if n else 0.0,
            recall_inside=r_in,
            recall_outside=r_out,
            overall_recall=overall,
            ci_low=lo95,
            ci_high=hi95,
            ci_adjusted=adj,
            confidence_adjusted=self.conf_adj,
            effect=effect,
            effect_vs_outside=(r_out - r_in) if r_out is not None and n_in else None,
            z=effect / se if n_in else 0.0,
            excess_failures=n_in * effect if n_in else 0.0,
            source=c.source,
            weak=bool(weak),
            low=c.low,
            high=c.high,
            high_inclusive=c.high_inclusive,
            categories=c.categories,
            importance=self.importance.get(c.param),
            failures_inside=n_in - k_in,
            at_min=c.low is not None and c.param in self.pmin and c.low <= self.pmin[c.param],
        )


def _bin_stat(p: str, c: _Cand, r: WeakRegion) -> BinStat:
    recall = None if math.isnan(r.recall_inside) else r.recall_inside
    return BinStat(p, c.label, r.support, r.support - r.failures_inside, recall, r.ci_low, r.ci_high, r.weak)


def _param_regions(
    cand_lists: Sequence[list[_Cand]], categorical: bool, region: Callable[[_Cand], WeakRegion]
) -> list[WeakRegion]:
    """One parameter's weak regions: of each candidate list (bins, tree intervals), the weak
    categories merged, or each run of adjacent weak intervals merged (where the merged run is
    not weak, its strongest member); then the strongest non-overlapping ones."""
    weak_regions: list[WeakRegion] = []
    for cands in cand_lists:
        flags = [region(c).weak for c in cands]
        if categorical:
            chosen = [c for c, f in zip(cands, flags, strict=True) if f]
            if chosen:
                weak_regions.append(region(_merge(chosen)))
            continue
        run: list[_Cand] = []
        for c, f in [*zip(cands, flags, strict=True), (None, False)]:
            if f and c is not None:
                run.append(c)
                continue
            if run:
                r = region(_merge(run))
                weak_regions.append(r if r.weak else max((region(x) for x in run), key=lambda q: q.z))
                run = []
    kept: list[WeakRegion] = []
    for r in sorted((r for r in weak_regions if r.weak), key=lambda q: -q.z):
        if not any(_overlap(r, k) for k in kept):
            kept.append(r)
    return kept


def mine(table: OutcomeTable, options: MiningOptions | None = None, **overrides: Any) -> MiningResult:
    """Weak regions of ``table`` (module docstring). ``overrides`` set :class:`MiningOptions` fields."""
    opts = options or MiningOptions()
    if overrides:
        opts = MiningOptions(**{**asdict(opts), **overrides})
    if opts.n_bins < 2:
        raise ActiveError(f"n_bins must be >= 2, got {opts.n_bins}", where="n_bins")
    n = len(table)
    detected = table.detected
    y = table.failed.astype(int)
    overall = float(detected.mean()) if n else math.nan
    rng = np.random.default_rng(opts.seed)
    tree, importance, score, rules = _fit_models(table, y, opts, rng)
    thresholds = _tree_thresholds(tree, table)

    per_param: dict[str, list[_Cand]] = {p: _bin_cands(table, p, opts.n_bins) for p in table.params}
    tree_cands: dict[str, list[_Cand]] = {}
    for p, ts in thresholds.items():
        x = table.values[p].astype(np.float64)
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        edges = [lo, *[t for t in ts if lo < t < hi], hi]
        tree_cands[p] = _interval_cands(p, x, edges, "tree")
    m = sum(len(c) for c in per_param.values()) + sum(len(c) for c in tree_cands.values())
    conf_adj = 1.0 - (1.0 - opts.confidence) / max(1, m) if opts.adjust == "bonferroni" else opts.confidence
    if opts.adjust not in ("bonferroni", "none"):
        raise ActiveError(f"adjust must be 'bonferroni' or 'none', got {opts.adjust!r}", where="adjust")

    pmin = {p: float(np.nanmin(v)) for p, v in table.values.items() if table.kinds[p] == "numeric"}
    region = _RegionScorer(detected, overall, opts, conf_adj, importance, pmin)
    bins: dict[str, list[BinStat]] = {}
    found: list[WeakRegion] = []
    for p in table.params:
        bins[p] = [_bin_stat(p, c, region(c)) for c in per_param[p]]
        cand_lists = (per_param[p], tree_cands.get(p, []))
        found.extend(_param_regions(cand_lists, table.kinds[p] == "categorical", region))
    found.sort(key=lambda r: (-r.excess_failures, -r.z, r.param))
    return MiningResult(
        overall_recall=overall,
        num_objects=n,
        outcome_counts=table.counts(),
        regions=found[: opts.max_regions],
        bins=bins,
        importance=dict(sorted(importance.items(), key=lambda kv: -kv[1])),
        tree_rules=rules,
        options=opts,
        model_score=score,
        candidates_tested=m,
    )


def _overlap(a: WeakRegion, b: WeakRegion) -> bool:
    if a.kind == "categorical":
        return bool(set(a.categories or []) & set(b.categories or []))
    return a.low < b.high and b.low < a.high  # type: ignore[operator]


def mine_slices(slices: Any, options: MiningOptions | None = None, **kwargs: Any) -> MiningResult:
    """:func:`mine` on a SliceTable (or its rows); ``kwargs`` go to ``outcome_table`` / the options."""
    from synthloop.active.outcomes import outcome_table

    table_keys = {"loc_iou", "include_measured", "exclude", "max_categories"}
    t_kwargs = {k: v for k, v in kwargs.items() if k in table_keys}
    o_kwargs = {k: v for k, v in kwargs.items() if k not in table_keys}
    return mine(outcome_table(slices, **t_kwargs), options, **o_kwargs)


__all__ = [
    "BinStat",
    "MiningOptions",
    "MiningResult",
    "WeakRegion",
    "load_weak_regions",
    "mine",
    "mine_slices",
    "wilson_interval",
    "z_value",
]
