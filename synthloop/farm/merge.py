"""Job status and merging shards into one dataset folder."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import MANIFEST
from synthloop.dataset.staging import link_or_copy
from synthloop.farm.plan import FarmError, JobPlan, load_plan, shard_dir


@dataclass
class ShardStatus:
    index: int
    planned: int
    done: int
    failed: list[int] = field(default_factory=list)
    seconds_per_frame: float | None = None

    @property
    def complete(self) -> bool:
        return self.done == self.planned


def job_status(job: str | Path) -> tuple[JobPlan, list[ShardStatus]]:
    """Frames done per shard (records on disk), failed frames, and the observed rate."""
    plan = load_plan(job)
    out = []
    for s in plan.shards:
        d = shard_dir(job, s)
        recs = sorted((d / "records").glob("*.json")) if (d / "records").exists() else []
        recs = [r for r in recs if int(r.stem) in s.frames]
        failed = (
            sorted(int(p.stem) for p in (d / "failures").glob("*.json")) if (d / "failures").exists() else []
        )
        rate = None
        if len(recs) >= 2:
            times = sorted(r.stat().st_mtime for r in recs)
            rate = (times[-1] - times[0]) / (len(times) - 1)
        out.append(ShardStatus(s.index, len(s.frames), len(recs), failed, rate))
    return plan, out


def merge_job(job: str | Path, out: str | Path, *, allow_partial: bool = False) -> Path:
    """Merge all shard folders into one dataset folder ``out`` (records copied byte for byte).

    Refuses an incomplete job unless ``allow_partial``. Writes into a temp sibling folder and
    renames it at the end, so ``out`` is either absent or complete.
    """
    job = Path(job)
    out = Path(out)
    plan, status = job_status(job)
    missing = [(s.index, s.planned - s.done) for s in status if not s.complete]
    if missing and not allow_partial:
        desc = ", ".join(f"shard {i}: {n} missing" for i, n in missing)
        raise FarmError(f"job incomplete ({desc}); finish it or pass --allow-partial", path=str(job))
    if out.exists():
        raise FarmError("output folder exists; choose a new one", path=str(out))
    tmp = out.parent / f".tmp-merge-{out.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        manifest = None
        frames = 0
        for s in plan.shards:
            d = shard_dir(job, s)
            if not (d / MANIFEST).exists():
                continue
            m = json.loads((d / MANIFEST).read_text())
            if manifest is None:
                manifest = m
            elif m["categories"] != manifest["categories"]:
                raise FarmError("shards disagree on categories", path=str(d / MANIFEST))
            for rec_path in sorted((d / "records").glob("*.json")):
                if int(rec_path.stem) not in s.frames:
                    continue
                rec = json.loads(rec_path.read_text())
                for key in ("image", "instance_map", "depth"):
                    if rec.get(key):
                        link_or_copy(d / rec[key], tmp / rec[key])
                (tmp / "records").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(rec_path, tmp / "records" / rec_path.name)
                frames += 1
        if manifest is None:
            raise FarmError("no shard has any frame yet", path=str(job))
        info = dict(manifest.get("info", {}))
        info.update(
            {"complete": not missing, "frames": frames, "job": str(job.resolve()), "shards": len(plan.shards)}
        )
        manifest["info"] = info
        atomic_write_json(tmp / MANIFEST, manifest)
        shutil.copyfile(job / "recipe.yaml", tmp / "recipe.yaml")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
