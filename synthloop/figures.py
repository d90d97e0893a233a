"""The reports' matplotlib figures, as PNG bytes (Agg canvas, no pyplot state), and their HTML tags.

* Mixing experiment (``mix report``): :func:`metric_vs_fraction_png`, :func:`per_class_png`; input
  is the results dict of :func:`synthloop.experiments.report.collect_results`.
* Active loop (``active report``): :func:`round_histogram_png`; input is one histogram of
  :func:`synthloop.active.report.histogram`.
* Domain gap (``synthloop gap``): :func:`interval_bars_png` (KIDs with intervals),
  :func:`histogram_row_png` (real vs synthetic samples of several statistics).

Reports embed them with :func:`img_tag` as ``data:image/png;base64`` URIs (self-contained pages).
Real fractions print as ``%g`` (``0.25``, ``1``), as the experiment's run names write them.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
BASELINE_STYLE = {"synthetic_only": ("#ff7f0e", "--"), "real_only": ("#7f7f7f", ":")}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` tag that carries the PNG itself (no external file)."""
    return f'<img src="{data_uri(png)}" alt="{html.escape(alt)}">'


def metric_vs_fraction_png(results: dict[str, Any], metric: str) -> bytes:
    """``metric`` (``"AP"`` or ``"AP50"``) against the real fraction: per schedule the mean over
    seeds as a line with markers and the min..max range as a shaded band (plus error bars, so a
    single fraction stays visible); baselines as horizontal lines with their own band."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    fracs_all: set[float] = set()
    for i, (name, aggs) in enumerate(results["series"].items()):
        pts = [a for a in aggs if a[metric]["n"]]
        if not pts:
            continue
        col = SERIES_COLORS[i % len(SERIES_COLORS)]
        x = [a["real_fraction"] for a in pts]
        mean = [a[metric]["mean"] for a in pts]
        lo = [a[metric]["min"] for a in pts]
        hi = [a[metric]["max"] for a in pts]
        fracs_all.update(x)
        ax.fill_between(x, lo, hi, color=col, alpha=0.18, linewidth=0)
        ax.errorbar(
            x,
            mean,
            yerr=[
                [m - a for m, a in zip(mean, lo, strict=True)],
                [b - m for m, b in zip(mean, hi, strict=True)],
            ],
            color=col,
            marker="o",
            capsize=3,
            label=f"{name} (mean, min-max over seeds)",
        )
    for name, a in results["baselines"].items():
        s = a[metric]
        if not s["n"]:
            continue
        col, ls = BASELINE_STYLE.get(name, ("#000000", "-."))
        ax.axhline(s["mean"], color=col, linestyle=ls, linewidth=1.6, label=f"{name} baseline")
        if s["max"] > s["min"]:
            ax.axhspan(s["min"], s["max"], color=col, alpha=0.10, linewidth=0)
    ax.set_xlabel("real fraction")
    ax.set_ylabel(f"{metric} (COCO bbox)")
    ax.set_title(f"{metric} vs real fraction")
    if fracs_all:
        ax.set_xticks(sorted(fracs_all))
        ax.set_xticklabels([f"{f:g}" for f in sorted(fracs_all)])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # below the axes, so it never hides a band
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def per_class_png(results: dict[str, Any], metric: str = "AP50") -> bytes:
    """Grouped bars: one group per class, one bar per configuration (series x real fraction, then
    the baselines), bar = mean over seeds, error bar = min..max."""
    configs: list[tuple[str, dict[str, Any]]] = []
    for name, aggs in results["series"].items():
        configs += [(f"{name} r={a['real_fraction']:g}", a) for a in aggs]
    configs += [(f"{name}", a) for name, a in results["baselines"].items()]
    configs = [(lab, a) for lab, a in configs if any(s["n"] for s in a[f"per_class_{metric}"].values())]
    classes = list(results["classes"])
    fig = Figure(figsize=(max(6.4, 1.2 + 0.35 * len(classes) * max(1, len(configs))), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(configs))
    colors = matplotlib.colormaps["tab20"]
    for j, (label, a) in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for k, c in enumerate(classes):
            s = a[f"per_class_{metric}"].get(c, {"n": 0})
            if not s["n"]:
                continue
            xs.append(k - 0.4 + width * (j + 0.5))
            ys.append(s["mean"])
            lo.append(s["mean"] - s["min"])
            hi.append(s["max"] - s["mean"])
        ax.bar(xs, ys, width=width * 0.95, yerr=[lo, hi], capsize=2, color=colors(j % 20), label=label)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes)
    ax.set_ylabel(f"{metric} per class (COCO bbox)")
    ax.set_title(f"per-class {metric} (mean over seeds, min-max bars)")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    if configs:
        ax.legend(fontsize=7, ncol=2, loc="best")
    return _png(fig)


def round_histogram_png(hist: dict[str, Any], title: str = "") -> bytes:
    """Grouped bars of one parameter's sampled values: one group per bin (numeric: labelled by its
    left edge; categorical: by the category), one bar per round, bar = fraction of that round's
    values in the bin (each round with data sums to 1)."""
    rounds = list(hist["rounds"])
    numeric = hist["kind"] == "numeric"
    labels = [f"{e:.3g}" for e in hist.get("edges", [])[:-1]] if numeric else list(hist.get("categories", []))
    fig = Figure(figsize=(max(6.4, 0.5 * len(labels) * max(1, len(rounds)) / 2), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    if not rounds or not labels:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return _png(fig)
    width = 0.8 / len(rounds)
    colors = matplotlib.colormaps["tab10"]
    for j, r in enumerate(rounds):
        xs = [k - 0.4 + width * (j + 0.5) for k in range(len(labels))]
        n = hist["rounds"][r]["n"]
        ax.bar(
            xs,
            hist["rounds"][r]["fraction"],
            width=width * 0.95,
            color=colors(j % 10),
            label=f"round {r} (n={n})",
        )
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([lab[:12] for lab in labels], rotation=45 if len(labels) > 6 else 0, fontsize=8)
    ax.set_xlabel("bin (left edge)" if numeric else "value")
    ax.set_ylabel("fraction of the round's frames")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, len(rounds)), loc="best")
    return _png(fig)


REAL_COLOUR, SYNTH_COLOUR = "#d62728", "#1f77b4"


def interval_bars_png(items: Sequence[tuple[str, float, float, float]], ylabel: str) -> bytes:
    """Bars of (label, value, low, high): the value with its interval as an error bar."""
    fig = Figure(figsize=(1.6 + 1.2 * len(items), 3.0))
    ax = fig.add_subplot(1, 1, 1)
    vals = [v for _, v, _, _ in items]
    err = np.array([[v - lo for _, v, lo, _ in items], [hi - v for _, v, _, hi in items]])
    ax.bar(range(len(items)), vals, yerr=np.maximum(np.nan_to_num(err), 0), color=SYNTH_COLOUR, capsize=4)
    ax.set_xticks(range(len(items)), [n for n, _, _, _ in items], rotation=20)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel(ylabel)
    return _png(fig)


def histogram_row_png(title: str, samples: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> bytes:
    """One row of density histograms, one panel per (statistic, real values, synthetic values),
    drawn as step lines (real red, synthetic blue; one artist per side keeps the figure cheap).
    Statistics named ``*hue`` (turns) are shown in [-0.5, 0.5) so reds do not split at 0/1."""
    fig = Figure(figsize=(2.4 * len(samples), 2.1))
    axes = fig.subplots(1, len(samples), squeeze=False)[0]
    for ax, (name, r, s) in zip(axes, samples, strict=True):
        if name.endswith("hue"):
            r, s = (r + 0.5) % 1.0 - 0.5, (s + 0.5) % 1.0 - 0.5
        both = np.concatenate([r, s])
        both = both[np.isfinite(both)]
        if both.size:
            lo, hi = float(both.min()), float(both.max())
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 16)
            for v, c in ((s, SYNTH_COLOUR), (r, REAL_COLOUR)):
                v = v[np.isfinite(v)]
                if v.size:
                    ax.stairs(np.histogram(v, bins=bins, density=True)[0], bins, color=c, fill=False, lw=1.5)
        ax.set_title(f"{name} (real {r.size}, synth {s.size})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title} (red: real, blue: synthetic)", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.15, top=0.78, wspace=0.3)
    return _png(fig)
