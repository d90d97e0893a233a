"""Loop report: per-round metrics, the shifting parameter distributions, weak slices before/after.

:func:`build_report` reads a loop folder (finished rounds only) and returns a JSON-able dict:

* ``rounds``: each round's ``metrics.json`` (val/real metrics, frames, recipe, weak regions);
* ``histograms``: for every param that was weak in some round or changed by a derivation, the
  distribution of its sampled values per round (``fraction`` per bin; shared ``edges`` over all
  rounds for numeric params, ``categories`` otherwise) -- how the rendered data moved;
* ``weak_slices``: each round's weak regions with their recall on the val set in that round and
  in every later round (``recall_by_round``), so a fixed weakness shows up as a rising recall.

:func:`write_report` saves ``report.json`` and a self-contained ``report.html`` (tables and the
matplotlib bar charts of :mod:`synthloop.figures`, embedded as PNG data URIs);
:func:`print_loop_report` prints a rich table per round.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.active.errors import ActiveError
from synthloop.active.loop import DONE
from synthloop.active.mining import MiningResult
from synthloop.active.outcomes import outcome_table
from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.figures import img_tag, round_histogram_png

REPORT_SCHEMA = "synthloop.loop_report/1"


def finished_rounds(out_dir: str | Path) -> list[Path]:
    """``round_NNN`` folders with a DONE marker, in round order."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ActiveError("loop folder not found", path=str(out))
    return sorted(d for d in out.glob("round_*") if (d / DONE).exists())


def _values(rdir: Path, param: str) -> list[Any]:
    p = rdir / "params.json"
    if not p.exists():
        return []
    level, _, name = param.partition(".")
    data = json.loads(p.read_text())
    return [v for v in data.get(level, {}).get(name, []) if v is not None]


def histogram(values_by_round: dict[int, list[Any]], bins: int = 10) -> dict[str, Any]:
    """Shared-edge histogram of each round's values: numeric -> ``edges`` (bins + 1) and per-round
    ``fraction`` (sums to 1 per round with data); otherwise ``categories`` and fractions."""
    allv = [v for vs in values_by_round.values() for v in vs]
    numeric = bool(allv) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in allv)
    out: dict[str, Any] = {"kind": "numeric" if numeric else "categorical", "rounds": {}}
    if numeric:
        lo, hi = float(min(allv)), float(max(allv))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        out["edges"] = [float(e) for e in edges]
        for k, vs in values_by_round.items():
            c, _ = np.histogram(np.asarray(vs, dtype=np.float64), bins=edges)
            out["rounds"][str(k)] = {"n": len(vs), "fraction": [float(x) / max(1, len(vs)) for x in c]}
    else:
        cats = sorted({str(v) for v in allv})
        out["categories"] = cats
        for k, vs in values_by_round.items():
            s = [str(v) for v in vs]
            out["rounds"][str(k)] = {"n": len(s), "fraction": [s.count(c) / max(1, len(s)) for c in cats]}
    return out


def build_report(out_dir: str | Path, bins: int = 10) -> dict[str, Any]:
    """The report dict of a loop folder (module docstring)."""
    rounds = finished_rounds(out_dir)
    if not rounds:
        raise ActiveError("no finished round yet (no round_*/DONE)", path=str(out_dir))
    metrics = [json.loads((r / "metrics.json").read_text()) for r in rounds]
    mined = {
        m["round"]: MiningResult.load(r / "weak_regions.json") for r, m in zip(rounds, metrics, strict=True)
    }
    params: list[str] = []
    for res in mined.values():
        params += [reg.param for reg in res.regions if reg.level in ("scene", "attr")]
    for r in rounds:
        d = r / "recipe.derivation.json"
        if d.exists():
            for c in json.loads(d.read_text())["changes"]:
                params += c["params"]
    params = list(dict.fromkeys(params))
    hists = {
        p: histogram({m["round"]: _values(r, p) for r, m in zip(rounds, metrics, strict=True)}, bins)
        for p in params
    }
    tables = {}
    for r, m in zip(rounds, metrics, strict=True):
        sl = r / "val_slices.json"
        if sl.exists():
            from synthloop.evaluation.slices import SliceTable

            tables[m["round"]] = outcome_table(SliceTable.load(sl))
    weak_slices = []
    for k, res in mined.items():
        for reg in res.regions:
            by_round: dict[str, Any] = {}
            for j, t in tables.items():
                if j < k or reg.param not in t.values:
                    continue
                inside = reg.contains(t.values[reg.param])
                by_round[str(j)] = {
                    "support": int(inside.sum()),
                    "recall": float(t.detected[inside].mean()) if inside.any() else None,
                    "overall": t.recall(),
                }
            weak_slices.append(
                {"round": k, "region": reg.describe(), "param": reg.param, "recall_by_round": by_round}
            )
    return {
        "schema": REPORT_SCHEMA,
        "loop": str(Path(out_dir).resolve()),
        "rounds": metrics,
        "histograms": hists,
        "weak_slices": weak_slices,
    }


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _row(m: dict[str, Any]) -> list[str]:
    val, real, rt = m.get("val") or {}, m.get("real") or {}, m.get("real_train") or {}
    top = (m.get("weak_regions") or ["-"])[0]
    if rt.get("weak_regions"):  # real-guided: the real property region, then what it mapped to
        top = f"{rt['weak_regions'][0]} -> {top}"
    return [
        str(m["round"]),
        m.get("arm", ""),
        m.get("recipe", ""),
        f"{m.get('frames_round')}/{m.get('frames_total')}",
        _f(val.get("recall")),
        _f(val.get("voc_mAP")),
        _f(real.get("coco_AP")),
        _f(real.get("coco_AP50")),
        f"{_f(rt.get('recall'))}/{_f(rt.get('precision'))}" if rt else "-",
        str(len(m.get("weak_regions", []))),
        top,
    ]


HEADERS = [
    "round",
    "arm",
    "recipe",
    "frames (round/total)",
    "val recall",
    "val mAP",
    "real AP",
    "real AP50",
    "real train R/P",
    "weak",
    "top weak region",
]


def print_loop_report(report: dict[str, Any], console: Any = None) -> None:
    """Rich tables: one row per round, then weak slices before/after."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"active loop {report['loop']}")
    for h in HEADERS:
        t.add_column(h, justify="left" if h in ("arm", "recipe", "top weak region") else "right")
    for m in report["rounds"]:
        t.add_row(*_row(m))
    console.print(t)
    if report["weak_slices"]:
        rounds = [str(m["round"]) for m in report["rounds"]]
        w = Table(title="weak slices: recall inside, per round (val)")
        w.add_column("found in")
        w.add_column("region")
        for k in rounds:
            w.add_column(f"r{k}", justify="right")
        for ws in report["weak_slices"]:
            cells = [_f((ws["recall_by_round"].get(k) or {}).get("recall")) for k in rounds]
            w.add_row(str(ws["round"]), ws["region"], *cells)
        console.print(w)


def report_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the report."""
    e = html.escape
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _row(m)) + "</tr>" for m in report["rounds"])
    head = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    rounds = [str(m["round"]) for m in report["rounds"]]
    ws_rows = "".join(
        f"<tr><td>{ws['round']}</td><td>{e(ws['region'])}</td>"
        + "".join(f"<td>{_f((ws['recall_by_round'].get(k) or {}).get('recall'))}</td>" for k in rounds)
        + "</tr>"
        for ws in report["weak_slices"]
    )
    ws_head = "<th>found in</th><th>region</th>" + "".join(f"<th>r{k}</th>" for k in rounds)
    hists = "".join(
        f"<h3>{e(p)}</h3>{img_tag(round_histogram_png(h, p), p)}" for p, h in report["histograms"].items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>synthloop active loop</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Active loop</h1><p>{e(report["loop"])}</p>
<h2>Rounds</h2><table><tr>{head}</tr>{rows}</table>
<h2>Weak slices: recall inside, per round (synthetic val)</h2><table><tr>{ws_head}</tr>{ws_rows}</table>
<h2>Sampled parameter distributions per round</h2>{hists or "<p>(none)</p>"}
</body></html>
"""


def write_report(out_dir: str | Path, bins: int = 10) -> dict[str, Path]:
    """Build the report and write ``report.json`` and ``report.html`` into the loop folder."""
    rep = build_report(out_dir, bins)
    out = Path(out_dir)
    paths = {"json": out / "report.json", "html": out / "report.html"}
    atomic_write_json(paths["json"], rep)
    atomic_write_bytes(paths["html"], report_html(rep).encode("utf-8"))
    return paths


def compare_loops(loop_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per (loop, finished round): arm, frames so far, val and real metrics -- the
    active-vs-random comparison when the loops differ only in ``arm``."""
    rows = []
    for d in loop_dirs:
        for r in finished_rounds(d):
            m = json.loads((r / "metrics.json").read_text())
            val, real = m.get("val") or {}, m.get("real") or {}
            rows.append(
                {
                    "loop": str(d),
                    "arm": m.get("arm"),
                    "round": m["round"],
                    "frames_total": m.get("frames_total"),
                    "val_recall": val.get("recall"),
                    "val_mAP": val.get("voc_mAP"),
                    "real_AP": real.get("coco_AP"),
                    "real_AP50": real.get("coco_AP50"),
                    "real_recall": real.get("recall"),
                }
            )
    return rows


def print_comparison(rows: list[dict[str, Any]], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="active loop comparison")
    cols = [
        "loop",
        "arm",
        "round",
        "frames_total",
        "val_recall",
        "val_mAP",
        "real_AP",
        "real_AP50",
        "real_recall",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("loop", "arm") else "right")
    for r in rows:
        t.add_row(*(_f(r[c]) for c in cols))
    console.print(t)
