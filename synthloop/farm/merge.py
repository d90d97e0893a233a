"""Job status and merging shards into one dataset folder."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import MANIFEST, RECORD_FILES, load_dataset, read_complete_record, read_manifest
from synthloop.dataset.staging import link_or_copy
from synthloop.exporters.coco import write_coco
from synthloop.exporters.kitti import write_kitti
from synthloop.farm.plan import WORKER_ERROR_FILE, FarmError, JobPlan, load_plan, shard_dir


@dataclass
class ShardStatus:
    index: int
    planned: int
    done: int
    failed: list[int] = field(default_factory=list)
    seconds_per_frame: float | None = None
    worker_error: str | None = None  # why the last worker process of this shard failed

    @property
    def complete(self) -> bool:
        return self.done == self.planned


def _frame_files(folder: Path, frames: set[int]) -> list[Path]:
    """``folder/<index>.json`` files of the given frame indices (stray names are ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.stem.isdigit() and int(p.stem) in frames)


def done_records(d: Path, frames: set[int]) -> list[Path]:
    """Records of complete frames of the shard folder ``d`` (a truncated record, or one whose
    image is gone, is not done: ``farm work`` renders that frame again)."""
    return [p for p in _frame_files(d / "records", frames) if read_complete_record(d, p) is not None]


def _worker_error(d: Path) -> str | None:
    path = d / WORKER_ERROR_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return "worker failed (its error file is unreadable)"


def job_status(job: str | Path) -> tuple[JobPlan, list[ShardStatus]]:
    """Frames done per shard (complete records on disk), failed frames, and the observed rate."""
    plan = load_plan(job)
    out = []
    for s in plan.shards:
        d = shard_dir(job, s)
        frames = set(s.frames)
        recs = done_records(d, frames)
        failed = [int(p.stem) for p in _frame_files(d / "failures", frames)]
        rate = None
        if len(recs) >= 2:
            times = sorted(r.stat().st_mtime for r in recs)
            rate = (times[-1] - times[0]) / (len(times) - 1)
        out.append(ShardStatus(s.index, len(s.frames), len(recs), failed, rate, _worker_error(d)))
    return plan, out


def merge_job(
    job: str | Path, out: str | Path, *, allow_partial: bool = False, coco: bool = False, kitti: bool = False
) -> Path:
    """Merge all shard folders into one dataset folder ``out`` (records copied byte for byte),
    with ``coco/annotations.json`` and ``kitti/`` when asked.

    Refuses an incomplete job unless ``allow_partial``. Writes everything (exports included)
    into a temp sibling folder and renames it at the end, so ``out`` is either absent or
    complete. Every file a record names must stay inside its shard folder.
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
            recs = done_records(d, set(s.frames))
            if not recs:
                continue
            m = read_manifest(d)
            if manifest is None:
                manifest = m
            elif m.get("categories") != manifest.get("categories"):
                raise FarmError("shards disagree on categories", path=str(d / MANIFEST))
            for rec_path in recs:
                rec = json.loads(rec_path.read_text(encoding="utf-8"))
                for key in RECORD_FILES:
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
        if coco or kitti:
            ds = load_dataset(tmp)
            if coco:
                write_coco(ds, tmp / "coco", copy_images=False)
            if kitti:
                write_kitti(ds, tmp / "kitti")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
