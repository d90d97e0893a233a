"""The gap report on disk: ``gap.html`` (self-contained: figures inlined as PNG, no CDN) and
``gap.json`` beside it (:meth:`~synthloop.gap.compute.GapReport.to_json`), both written atomically.

Figures: KID per comparison with its bootstrap interval; real vs synthetic histograms of every
statistic; per class a gallery of real crops beside their three nearest synthetic crops (feature
space); and the real crops with no close synthetic neighbour (coverage holes).
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.figures import histogram_row_png, img_tag, interval_bars_png
from synthloop.gap.compute import GapReport
from synthloop.gap.stats import statistic_samples


def _array_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def kid_figure(report: GapReport) -> bytes | None:
    """Bars of the KIDs (whole image, then per class) with bootstrap intervals; PNG bytes."""
    raw = [("image", report.kid_image)] + [(f"crops: {c}", k) for c, k in report.kid_crops.items()]
    items = [(n, k.value, k.low, k.high) for n, k in raw if k is not None]
    return interval_bars_png(items, "KID (unbiased MMD²)") if items else None


def mosaic(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Rows of equal-size (s, s, 3) uint8 tiles -> one uint8 image (white gaps; a wider gap after
    each row's first tile, the real crop)."""
    s = rows[0][0].shape[0]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (s + pad) + pad, ncol * (s + pad) + 3 * pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            x = pad + j * (s + pad) + (2 * pad if j > 0 else 0)
            y = pad + i * (s + pad)
            out[y : y + s, x : x + s] = tile
    return out


def _neighbour_rows(report: GapReport, cls: str, real_idx: list[int]) -> list[list[np.ndarray]]:
    _, idx = report.neighbours[cls]
    rc, sc = report.real.crops[cls], report.synthetic.crops[cls]
    return [[rc[i]] + [sc[j] for j in idx[i]] for i in real_idx]


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.4f}"


def render_html(report: GapReport) -> str:
    """The self-contained HTML text of ``report``."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>synthloop gap</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}img{max-width:100%}</style></head><body>",
        f"<h1>Domain gap: {html.escape(report.synthetic.name)} vs {html.escape(report.real.name)}</h1>",
        f"<p>{len(report.synthetic.image_features)} synthetic images, {len(report.real.image_features)} real "
        f"images; {'labeled' if report.labeled else 'unlabeled'} real side. "
        f"{html.escape('; '.join(report.notes))}</p>",
        "<h2>KID (Lite0 features; 95 % bootstrap interval)</h2>",
    ]
    kid_rows = []
    for name, k in [("image", report.kid_image)] + [(f"crops: {c}", v) for c, v in report.kid_crops.items()]:
        if k is not None:
            kid_rows.append((name, _fmt(k.value), f"[{_fmt(k.low)}, {_fmt(k.high)}]", str(k.n_x), str(k.n_y)))
    parts.append(_table(kid_rows, ("features", "KID", "interval", "synthetic n", "real n")))
    fig = kid_figure(report)
    if fig:
        parts.append(img_tag(fig, "KID"))
    parts.append("<h2>Statistics: normalised differences (W1 / real std)</h2>")
    parts.append(
        _table([(k, f"{v:.3f}") for k, v in report.differences.items()], ("statistic", "difference"))
    )
    parts.append("<h2>Histograms (red: real, blue: synthetic)</h2>")
    rows = [
        (k, np.asarray(report.real.image_stats[k]), np.asarray(report.synthetic.image_stats[k]))
        for k in report.real.image_stats
    ]
    if report.real.measurements is not None and report.synthetic.measurements is not None:
        rs = statistic_samples(report.real.measurements)
        ss = statistic_samples(report.synthetic.measurements)
        image_keys = [k for k in rs if "/" not in k]
        rows = [(k, rs[k], ss[k]) for k in image_keys] + rows
        parts.append(img_tag(histogram_row_png("per image", rows), "per-image histograms"))
        for cls in report.classes:
            keys = [k for k in rs if k.startswith(f"{cls}/")]
            row = [(k.split("/", 1)[1], rs[k], ss.get(k, np.empty(0))) for k in keys]
            parts.append(img_tag(histogram_row_png(cls, row), f"{cls} histograms"))
    else:
        parts.append(img_tag(histogram_row_png("per image", rows), "per-image histograms"))
    for cls in report.classes:
        if cls not in report.neighbours:
            continue
        n = len(report.real.crops[cls])
        shown = list(range(min(n, report.options.gallery)))
        parts.append(f"<h2>{html.escape(cls)}: real crops (left) and their 3 nearest synthetic crops</h2>")
        parts.append(img_tag(_array_png(mosaic(_neighbour_rows(report, cls, shown))), f"{cls} gallery"))
        h = report.holes[cls]
        parts.append(
            f"<h3>{html.escape(cls)}: coverage holes — {h['n_holes']} of {h['n_real']} real crops have no "
            f"synthetic neighbour within {h['threshold']:.2f} (the 95th percentile of synthetic-to-synthetic "
            f"nearest-neighbour distances)</h3>"
        )
        holes = h["indices"][: report.options.gallery]
        if holes:
            parts.append(img_tag(_array_png(mosaic(_neighbour_rows(report, cls, holes))), f"{cls} holes"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: GapReport, out: str | Path) -> tuple[Path, Path]:
    """Write ``gap.json`` then ``gap.html`` into folder ``out`` (atomic); returns both paths."""
    out = Path(out)
    js = atomic_write_json(out / "gap.json", report.to_json())
    page = atomic_write_bytes(out / "gap.html", render_html(report).encode("utf-8"))
    return js, page
