"""A self-contained HTML report of a mixing experiment: inline CSS, figures and overlay images as
``data:image/png;base64`` URIs, no external asset, script or font.

Input is the results dict of :func:`synthloop.experiments.report.collect_results` and the
experiment's output folder (to read the runs' sample overlays).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from synthloop.experiments.matrix import SYNTHETIC_ONLY, fraction_label
from synthloop.figures import img_tag, metric_vs_fraction_png, per_class_png

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;
  max-width:1240px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right} th{background:#f0f0f0}
td.l,th.l{text-align:left} tr.failed td{background:#fde8e8} tr.pending td{color:#888}
tr.best td{background:#e8f6e8}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs img{max-width:600px;border:1px solid #eee}
.ov{display:flex;flex-wrap:wrap;gap:10px} .ov figure{margin:0} .ov img{width:600px;border:1px solid #ccc}
figcaption{font-size:12px;color:#555} .muted{color:#777;font-size:13px} code{font-size:12px}
"""


def fmt_value(x: float | None, nd: int = 3) -> str:
    """``x`` with ``nd`` decimals; ``-`` for a missing value."""
    return "-" if x is None else f"{x:.{nd}f}"


def fmt_spread(s: dict[str, Any], markup: bool = True) -> str:
    """An aggregate ``{n, mean, min, max}`` over seeds as ``mean [min, max]`` (``-`` when n = 0,
    the mean alone when n = 1); with ``markup`` the range is a muted HTML span."""
    if not s["n"]:
        return "-"
    if s["n"] == 1:
        return fmt_value(s["mean"])
    rng = f"[{fmt_value(s['min'])}, {fmt_value(s['max'])}]"
    return f"{fmt_value(s['mean'])} " + (f"<span class=muted>{rng}</span>" if markup else rng)


def _series_table(results: dict[str, Any], metric: str) -> str:
    fracs = sorted({a["real_fraction"] for s in results["series"].values() for a in s})
    rows = [
        "<tr><th class=l>series</th>" + "".join(f"<th>r={fraction_label(f)}</th>" for f in fracs) + "</tr>"
    ]
    for name, aggs in results["series"].items():
        by_f = {a["real_fraction"]: a for a in aggs}
        cells = "".join(f"<td>{fmt_spread(by_f[f][metric]) if f in by_f else ''}</td>" for f in fracs)
        rows.append(f"<tr><td class=l>{html.escape(name)}</td>{cells}</tr>")
    for name, a in results["baselines"].items():
        rows.append(
            f"<tr><td class=l>{html.escape(name)} (baseline)</td>"
            f"<td colspan={max(1, len(fracs))} style='text-align:center'>{fmt_spread(a[metric])}</td></tr>"
        )
    return f"<table><caption>{metric}: mean [min, max] over seeds</caption>{''.join(rows)}</table>"


def _runs_table(results: dict[str, Any]) -> str:
    classes = results["classes"]
    head = ["run", "schedule", "real fraction", "seed", "spec hash", "status", "AP", "AP50"]
    head += [f"AP50 {c}" for c in classes] + ["train img/s"]
    rows = [
        "<tr>"
        + "".join(
            f"<th class=l>{html.escape(h)}</th>" if i < 6 else f"<th>{html.escape(h)}</th>"
            for i, h in enumerate(head)
        )
        + "</tr>"
    ]
    for r in results["runs"]:
        cls = "best" if r["name"] == results["best_run"] else r["status"]
        status = r["status"] if not r["error"] else f"{r['status']}: {r['error']}"
        cells = [
            f"<td class=l>{html.escape(r['name'])}</td>",
            f"<td class=l>{html.escape(r['schedule'])}</td>",
            f"<td class=l>{fraction_label(r['real_fraction'])}</td>",
            f"<td class=l>{r['seed']}</td>",
            f"<td class=l><code title='{r['spec_hash']}'>{r['spec_hash'][:12]}</code></td>",
            f"<td class=l>{html.escape(status)}</td>",
            f"<td>{fmt_value(r['AP'])}</td>",
            f"<td>{fmt_value(r['AP50'])}</td>",
        ]
        cells += [f"<td>{fmt_value(r['per_class_AP50'].get(c))}</td>" for c in classes]
        cells.append(f"<td>{fmt_value(r['images_per_s'], 1)}</td>")
        rows.append(f"<tr class={cls}>{''.join(cells)}</tr>")
    return f"<table>{''.join(rows)}</table>"


def _overlays(results: dict[str, Any], out_dir: Path, max_images: int = 3) -> str:
    by_name = {r["name"]: r for r in results["runs"]}
    picks: list[tuple[str, str]] = []
    if results["best_run"]:
        picks.append(("best run", results["best_run"]))
    syn = next(
        (r for r in results["runs"] if r["status"] == "done" and [SYNTHETIC_ONLY, 0.0] in r["points"]), None
    )
    if syn is None:  # no baseline requested: the blend run without real data is synthetic-only too
        syn = next((r for r in results["runs"] if r["status"] == "done" and r["real_fraction"] == 0.0), None)
    if syn is not None and syn["name"] != results["best_run"]:
        picks.append(("synthetic only", syn["name"]))
    parts = []
    for title, name in picks:
        figs = []
        for rel in by_name[name]["samples"][:max_images]:
            p = out_dir / rel
            if p.is_file():
                cap = f"<figcaption>{html.escape(p.name)}</figcaption>"
                figs.append(f"<figure>{img_tag(p.read_bytes(), rel)}{cap}</figure>")
        if figs:
            parts.append(
                f"<h3>{html.escape(title)}: {html.escape(name)}</h3><div class=ov>{''.join(figs)}</div>"
            )
    if not parts:
        return "<p class=muted>no sample overlays</p>"
    legend = (
        "<p class=muted>green: matched detection; orange: false positive; red dashed: missed ground truth "
        f"(score &ge; {results['eval'].get('score_thr', 0.5)})</p>"
    )
    return legend + "".join(parts)


def render_report_html(results: dict[str, Any], out_dir: str | Path) -> str:
    """The whole report page as a string (see module docstring)."""
    out_dir = Path(out_dir)
    c = results["counts"]
    figs = [img_tag(metric_vs_fraction_png(results, m), f"{m} vs real fraction") for m in ("AP50", "AP")]
    body = [
        f"<h1>Mixing experiment: {html.escape(results['name'])}</h1>",
        f"<p class=muted>eval dataset <code>{html.escape(str(results['eval']['dataset']))}</code>; "
        f"runs: {c['done']} done, {c['failed']} failed, {c['pending']} pending; "
        f"best run (AP50): {html.escape(results['best_run'] or '-')}</p>",
        "<h2>Accuracy vs real fraction</h2>",
        f"<div class=figs>{''.join(figs)}</div>",
        _series_table(results, "AP50"),
        _series_table(results, "AP"),
        "<h2>Per-class AP50</h2>",
        f"<div class=figs>{img_tag(per_class_png(results, 'AP50'), 'per-class AP50')}</div>",
        "<h2>Runs</h2>",
        _runs_table(results),
        "<h2>Sample overlays</h2>",
        _overlays(results, out_dir),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(results['name'])} - synthloop mixing report</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
