"""Training runs, farm jobs and evaluation reports as the pages show them (plain dicts, JSON-able).

Metrics are read incrementally: :func:`read_metrics` returns the complete lines after a byte
offset and the offset to continue from, so a live page only ever receives new records.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from synthloop.farm.merge import job_status

MAX_CHUNK = 4 << 20  # bytes of metrics.jsonl read per poll
CURVE_KEYS = ("loss", "lr")  # train-record scalars the run chart draws; validation: every number


def read_metrics(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records of ``path`` (JSON lines) from byte ``offset`` and the offset after the last complete
    line (a half-written last line waits for the next poll; a malformed line is skipped)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if offset > size:  # truncated (a resumed run replays): start over
                offset = 0
            fh.seek(offset)
            data = fh.read(MAX_CHUNK)
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for line in data[: end + 1].splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out, offset + end + 1


def curve_points(records: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """``{series: [[step, value], ...]}``: train ``loss``/``lr`` and every numeric validation value
    (``val.<name>``), non-finite values dropped."""
    out: dict[str, list[list[float]]] = {}
    for r in records:
        step = r.get("step")
        if not isinstance(step, int | float):
            continue
        kind = r.get("kind", "train")
        if kind == "train":
            keys = [(k, k) for k in CURVE_KEYS]
        elif kind == "validation":
            keys = [(k, f"val.{k}") for k, v in r.items() if k not in ("step", "epoch") and _num(v)]
        else:
            continue
        for k, name in keys:
            v = r.get(k)
            if v is not None and _num(v):
                out.setdefault(name, []).append([float(step), float(v)])
    return out


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def job_snapshot(job: Path, now: float | None = None) -> dict[str, Any]:
    """A farm job's live status: totals, rate (frames/s over all shards), ETA (s), failures and
    one row per shard. Raises FarmError for an unreadable job."""
    plan, shards = job_status(job)
    done = sum(s.done for s in shards)
    failed = sorted(f for s in shards for f in s.failed)
    mtimes: list[float] = []
    for s in shards:
        rec = job / "shards" / f"{s.index:04d}" / "records"
        if rec.is_dir():
            mtimes.extend(p.stat().st_mtime for p in rec.glob("*.json"))
    rate = None
    if len(mtimes) >= 2 and max(mtimes) > min(mtimes):
        rate = (len(mtimes) - 1) / (max(mtimes) - min(mtimes))
    left = plan.frames - done
    return {
        "recipe": plan.recipe_name,
        "seed": plan.seed,
        "frames": plan.frames,
        "done": done,
        "failed": failed,
        "rate_fps": rate,
        "eta_s": (left / rate) if rate and left > 0 else (0.0 if left == 0 else None),
        "updated": now if now is not None else time.time(),
        "shards": [
            {
                "index": s.index,
                "done": s.done,
                "planned": s.planned,
                "failed": s.failed,
                "s_per_frame": s.seconds_per_frame,
                "state": "done"
                if s.complete
                else ("failed" if s.failed else "running" if s.done else "waiting"),
            }
            for s in shards
        ],
    }


def eval_reports(run: Path, root: Path) -> list[dict[str, Any]]:
    """Evaluation reports of a run: ``report.json`` folders inside it and a mix run's ``eval.json``
    beside it, each with its summary, COCO AP and worst-frame overlay files (relative to ROOT)."""
    found: list[dict[str, Any]] = []
    cands = [p for p in run.rglob("report.json") if "checkpoints" not in p.parts]
    if (run.parent / "eval.json").exists():
        cands.append(run.parent / "eval.json")
    for p in sorted(cands):
        try:
            rep = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            found.append({"path": p.relative_to(root).as_posix(), "error": f"cannot read ({e})"})
            continue
        if not isinstance(rep, dict) or rep.get("schema") != "synthloop.evaluation/1":
            continue
        overlays = []
        for sub in ("overlays", "worst"):
            d = p.parent / sub
            if d.is_dir():
                overlays += [q.relative_to(root).as_posix() for q in sorted(d.glob("*.png"))[:12]]
        found.append(
            {
                "path": p.relative_to(root).as_posix(),
                "summary": rep.get("summary", {}),
                "ap": coco_ap(rep),
                "overlays": overlays,
            }
        )
    return found


def coco_ap(report: dict[str, Any]) -> float | None:
    """COCO box AP@[.5:.95] of an evaluation report (None when absent)."""
    bbox = (report.get("coco") or {}).get("bbox") or {}
    ap = (bbox.get("stats") or {}).get("AP") if isinstance(bbox, dict) else None
    return float(ap) if ap is not None and _num(ap) else None
