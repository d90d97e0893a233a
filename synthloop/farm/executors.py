"""Executors run a job's shards: local worker processes (default), Ray, or generated cluster files.

Every executor calls the same ``synthloop farm work JOB --shard i`` unit, so a job can be started
on a laptop, continued by Ray and finished by a Slurm array: its state is what is on disk.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from synthloop.atomic import atomic_write_json
from synthloop.farm.mps import mps_daemon
from synthloop.farm.plan import (
    PLAN_FILE,
    RECIPE_FILE,
    WORKER_ERROR_FILE,
    FarmError,
    Shard,
    load_plan,
    shard_dir,
)
from synthloop.generators.devices import check_device
from synthloop.progress import JobProgress


@dataclass
class RunSummary:
    shards_ok: list[int] = field(default_factory=list)
    shards_failed: dict[int, str] = field(default_factory=dict)
    frames_failed: int = 0


def record_worker_error(job: Path, shard: Shard, error: str | None) -> None:
    """Keep why a shard's worker failed in its folder (``farm status`` shows it); None clears it."""
    path = shard_dir(job, shard) / WORKER_ERROR_FILE
    if error is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_json(path, {"error": error})


def worker_command(
    job: Path, shard: int, threads: int, python: str = sys.executable, device: str | None = None
) -> list[str]:
    """``python -m synthloop.cli farm work JOB --shard i --threads T --quiet [--device D]``."""
    extra = ["--device", device] if device else []
    return [
        python,
        "-m",
        "synthloop.cli",
        "farm",
        "work",
        str(job),
        "--shard",
        str(shard),
        "--threads",
        str(threads),
        "--quiet",
        *extra,
    ]


def gpu_worker_env(worker: int, gpus: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of local worker ``worker`` of a ``gpus``-GPU run: ``CUDA_VISIBLE_DEVICES`` is
    GPU ``worker % gpus`` (or the ``worker % gpus``-th entry of an inherited
    ``CUDA_VISIBLE_DEVICES`` list), so each worker's Cycles sees exactly one GPU."""
    env = dict(os.environ if base is None else base)
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    pool = visible if len(visible) >= gpus else [str(i) for i in range(gpus)]
    env["CUDA_VISIBLE_DEVICES"] = pool[worker % gpus]
    return env


def gpu_device(plan_device: str, device: str | None) -> str:
    """The device of ``--gpus`` workers: ``device`` if given, else the plan's, where ``cpu``
    becomes ``cuda`` (asking for GPUs means rendering on them). ``cpu`` given explicitly is an
    error."""
    chosen = check_device(device or (plan_device if plan_device != "cpu" else "cuda"))
    if chosen == "cpu":
        raise FarmError("--gpus needs a GPU device (cuda, optix or auto), not cpu", where="--device")
    return chosen


def _pump(proc: subprocess.Popen, shard: int, q: queue.Queue) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        q.put((shard, line))
    q.put((shard, None))


def _local_layout(
    plan_device: str, workers: int, gpus: int, workers_per_gpu: int, device: str | None
) -> tuple[int, str | None]:
    """(worker count, device) of a local run: ``gpus * workers_per_gpu`` workers on a GPU
    device with ``gpus``, else ``workers`` on ``device`` (checked; None: the plan's)."""
    if gpus < 0:
        raise FarmError(f"--gpus must be >= 0, got {gpus}", where="--gpus")
    if workers_per_gpu < 1 or (workers_per_gpu > 1 and not gpus):
        raise FarmError(f"needs --gpus and a value >= 1, got {workers_per_gpu}", where="--workers-per-gpu")
    if gpus:
        return gpus * workers_per_gpu, gpu_device(plan_device, device)
    if device is not None:
        check_device(device)
    return workers, device


def _frames_done(job: Path, shard: Shard) -> int:
    """Frames of ``shard`` with a record already (complete before this run)."""
    records = shard_dir(job, shard) / "records"
    return len(list(records.glob("*.json"))) if records.exists() else 0


def _count_frame_event(line: str, shard: int, prog: JobProgress, summary: RunSummary) -> None:
    """Advance the progress by a worker's JSON ``frame`` event (skipped frames were counted at
    the start; failed ones are also counted in ``summary``); other lines are ignored."""
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return
    if isinstance(ev, dict) and ev.get("event") == "frame" and not ev.get("skipped"):
        prog.advance(shard=shard, frame=ev.get("frame"), failed=ev.get("failed", False))
        if ev.get("failed"):
            summary.frames_failed += 1


@dataclass
class _WorkerPool:
    """The worker processes of :func:`run_local`, one per running shard, each in a worker slot
    (its GPU with ``gpus``). Their stdout lines (frame events) arrive on ``events`` as
    ``(shard, line)``, then ``(shard, None)`` when the worker's stdout closes."""

    job: Path
    threads: int
    device: str | None
    workers: int
    gpus: int
    extra_env: dict[str, str]
    running: dict[int, subprocess.Popen] = field(default_factory=dict)
    slots: dict[int, int] = field(default_factory=dict)
    stderr_tails: dict[int, list[str]] = field(default_factory=dict)
    readers: dict[int, threading.Thread] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)

    def start(self, shard: int) -> None:
        """Start ``shard``'s worker in the lowest free slot."""
        slot = min(set(range(self.workers)) - set(self.slots.values()))
        env = gpu_worker_env(slot, self.gpus) if self.gpus else dict(os.environ)
        proc = subprocess.Popen(
            worker_command(self.job, shard, self.threads, device=self.device),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **self.extra_env, "PYTHONUNBUFFERED": "1"},
        )
        self.slots[shard] = slot
        self.running[shard] = proc
        tail = self.stderr_tails[shard] = []
        threading.Thread(target=_pump, args=(proc, shard, self.events), daemon=True).start()
        err = proc.stderr
        assert err is not None
        reader = threading.Thread(target=lambda: tail.extend(err.readlines()[-20:]), daemon=True)
        self.readers[shard] = reader
        reader.start()

    def finish(self, shard: int) -> tuple[int, str]:
        """Wait for ``shard``'s worker, whose stdout has closed; its exit code and the last lines
        of its stderr (complete: the reader is joined first)."""
        proc = self.running.pop(shard)
        self.slots.pop(shard, None)
        rc = proc.wait()
        self.readers.pop(shard).join(timeout=10)
        return rc, "".join(self.stderr_tails.pop(shard, []))


def run_local(
    job: str | Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    quiet: bool = False,
    shards: list[int] | None = None,
    retries: int = 1,
    gpus: int = 0,
    device: str | None = None,
    workers_per_gpu: int = 1,
    mps: bool = False,
) -> RunSummary:
    """Run shards with ``workers`` concurrent worker processes (one Blender process each).

    ``gpus`` > 0: ``workers_per_gpu`` workers per GPU (``workers`` is ignored), each seeing one
    GPU through ``CUDA_VISIBLE_DEVICES`` (:func:`gpu_worker_env`) and rendering on
    :func:`gpu_device`. A worker builds scenes, runs the id/depth pass's bookkeeping and annotates
    on the CPU between renders, so several workers per GPU keep it busier; ``mps`` runs them
    under a private CUDA MPS daemon (:func:`~synthloop.farm.mps.mps_daemon`), so that their
    kernels share the GPU instead of taking turns.
    Otherwise workers render on ``device`` (None: the plan's). ``threads`` per worker defaults
    to cores // workers. A worker process that dies (killed,
    out of memory) has its shard started again up to ``retries`` times; frames it completed are
    kept, so nothing is lost and nothing is rendered twice.
    """
    job = Path(job).resolve()
    plan = load_plan(job)
    todo = [s.index for s in plan.shards] if shards is None else list(shards)
    workers, device = _local_layout(plan.device, workers, gpus, workers_per_gpu, device)
    if mps and not gpus:
        raise FarmError("needs --gpus (MPS shares GPUs among their workers)", where="--mps")
    threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // max(1, workers))
    done_before = sum(_frames_done(job, s) for s in plan.shards if s.index in todo)
    total = sum(len(plan.shard(i).frames) for i in todo)
    summary = RunSummary()
    attempts = dict.fromkeys(todo, 0)
    pending = list(todo)
    daemon: AbstractContextManager[dict[str, str]] = mps_daemon() if mps else nullcontext({})
    with (
        daemon as mps_env,
        JobProgress(total, f"farm {job.name}", quiet=quiet, completed=done_before) as prog,
    ):
        pool = _WorkerPool(job, threads, device, workers, gpus, mps_env)
        while pending or pool.running:
            while pending and len(pool.running) < workers:
                s = pending.pop(0)
                attempts[s] += 1
                pool.start(s)
            shard, line = pool.events.get()
            if line is not None:
                _count_frame_event(line, shard, prog, summary)
                continue
            rc, stderr_tail = pool.finish(shard)
            if rc == 0:
                record_worker_error(job, plan.shard(shard), None)
                summary.shards_ok.append(shard)
            elif attempts[shard] <= retries:
                prog.log("worker_died", shard=shard, rc=rc, retry=True)
                pending.append(shard)
            else:
                summary.shards_failed[shard] = f"exit {rc}: " + stderr_tail[-800:]
                record_worker_error(job, plan.shard(shard), summary.shards_failed[shard])
                prog.log("worker_failed", shard=shard, rc=rc)
    return summary


def run_ray(
    job: str | Path,
    *,
    address: str | None = None,
    threads: int = 1,
    quiet: bool = False,
    max_retries: int = 2,
    num_cpus: int | None = None,
) -> RunSummary:
    """Run every shard as a Ray task (``num_cpus=threads`` each), retried on worker loss.

    ``address``: a running cluster (``ray://host:10001`` or ``auto``); None starts a local Ray.
    The job folder must be on storage every node sees (NFS, a shared volume).
    """
    import ray

    job = Path(job).resolve()
    plan = load_plan(job)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )

    # a GPU plan: one GPU per task (Ray sets CUDA_VISIBLE_DEVICES)
    gpus_per_task = 0 if plan.device == "cpu" else 1

    @ray.remote(num_cpus=threads, num_gpus=gpus_per_task, max_retries=max_retries, retry_exceptions=False)
    def shard_task(job_path: str, shard: int, threads: int) -> dict:
        from synthloop.farm.worker import work_shard

        res = work_shard(job_path, shard, quiet=True, threads=threads)
        return {"shard": shard, "rendered": len(res.rendered), "failed": sorted(res.failed)}

    summary = RunSummary()
    try:
        refs = {shard_task.remote(str(job), s.index, threads): s.index for s in plan.shards}
        total = plan.frames
        with JobProgress(len(refs), f"ray {job.name} ({total} frames)", quiet=quiet, unit="shard") as prog:
            remaining = list(refs)
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1)
                ref = ready[0]
                shard = refs[ref]
                try:
                    out = ray.get(ref)
                    record_worker_error(job, plan.shard(shard), None)
                    summary.shards_ok.append(shard)
                    summary.frames_failed += len(out["failed"])
                    prog.advance(shard=shard, rendered=out["rendered"])
                except Exception as e:  # noqa: BLE001 - a Ray task re-raises whatever the shard raised
                    summary.shards_failed[shard] = f"{type(e).__name__}: {e}"[:800]
                    record_worker_error(job, plan.shard(shard), summary.shards_failed[shard])
                    prog.advance(shard=shard, failed=True)
    finally:
        if started_here:
            ray.shutdown()
    return summary


def slurm_script(
    job: str | Path,
    *,
    threads: int = 4,
    partition: str | None = None,
    time_limit: str = "24:00:00",
    mem: str = "8G",
    python: str = "python",
) -> str:
    """An ``sbatch --array`` script: array task i runs ``synthloop farm work JOB --shard i``.

    A plan whose ``device`` is not ``cpu`` requests one GPU per task (``--gres=gpu:1``; Slurm
    sets ``CUDA_VISIBLE_DEVICES`` to it)."""
    job = Path(job).resolve()
    plan = load_plan(job)
    n = len(plan.shards)
    directives = {
        "job-name": f"synthloop-{job.name}",
        "array": f"0-{n - 1}",
        "cpus-per-task": str(int(threads)),
        "mem": mem,
        "time": time_limit,
        "output": f"{job}/logs/slurm-%A_%a.out",
    }
    if plan.device != "cpu":
        directives["gres"] = "gpu:1"
    if partition:
        directives["partition"] = partition
    lines = ["#!/usr/bin/env bash"]
    lines += [f"#SBATCH --{k}={_directive_value(k, v)}" for k, v in directives.items()]
    lines.append("#SBATCH --requeue")
    q = shlex.quote
    lines += [
        "set -euo pipefail",
        f"mkdir -p {q(str(job / 'logs'))}",
        "# Re-running a task (requeue, preemption) skips frames already complete.",
        f'exec {q(python)} -m synthloop.cli farm work {q(str(job))} --shard "$SLURM_ARRAY_TASK_ID" '
        f"--threads {int(threads)} --quiet",
        "",
    ]
    return "\n".join(lines)


def _directive_value(key: str, value: str) -> str:
    """An ``#SBATCH`` value: the shell never runs these lines, but a line break in a value would
    start a new line of the script (a command) or a new directive."""
    if any(c in value for c in "\n\r\0") or not value:
        raise FarmError(f"unsafe value for #SBATCH --{key}: {value!r}", where=key)
    return value


def k8s_indexed_job(
    job: str | Path,
    *,
    image: str = "synthloop:latest",
    threads: int = 4,
    memory: str = "8Gi",
    parallelism: int = 8,
    pvc: str = "synthloop-data",
    mount_path: str = "/data",
    job_subpath: str | None = None,
) -> str:
    """A Kubernetes Indexed Job: pod with completion index i runs shard i.

    The job folder lives on the PersistentVolumeClaim ``pvc`` mounted at ``mount_path``;
    ``job_subpath`` is the job folder relative to it (default: the folder's name). A plan whose
    ``device`` is not ``cpu`` gives each pod one GPU (``nvidia.com/gpu: 1``; the device plugin
    sets ``CUDA_VISIBLE_DEVICES``).
    """
    import yaml

    job = Path(job)
    plan = load_plan(job)
    n = len(plan.shards)
    job_in_pod = f"{mount_path}/{job_subpath or job.name}"
    requests: dict[str, str] = {"cpu": str(threads), "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if plan.device != "cpu":
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = "1"
    name = re.sub(r"[^a-z0-9-]+", "-", f"synthloop-{job.name}".lower())[:63].strip("-")
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": min(parallelism, n),
            "backoffLimitPerIndex": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "worker",
                            "image": image,
                            "command": ["sh", "-c"],
                            "args": [
                                f"exec synthloop farm work {shlex.quote(job_in_pod)} "
                                f'--shard "$JOB_COMPLETION_INDEX" --threads {int(threads)} --quiet'
                            ],
                            "resources": {"requests": requests, "limits": limits},
                            "volumeMounts": [{"name": "data", "mountPath": mount_path}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}],
                }
            },
        },
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def write_job_file(job: str | os.PathLike, path: str | os.PathLike, text: str) -> Path:
    """Write a generated job file (sbatch script, Kubernetes YAML) atomically, refusing to replace
    the job's own files: ``JOB/job.yaml``, ``JOB/recipe.yaml`` or anything under ``JOB/shards/``
    (overwriting the manifest would break the job)."""
    from synthloop.atomic import atomic_write_bytes

    target = Path(path).resolve()
    root = Path(job).resolve()
    own = {root / PLAN_FILE, root / RECIPE_FILE}
    if target in own or root / "shards" in target.parents or target == root / "shards":
        raise FarmError(
            f"refusing to overwrite the job's own file {target.name!r}; write job files elsewhere",
            path=str(path),
        )
    if target.is_dir():
        raise FarmError("is a folder, not a file", path=str(path))
    return atomic_write_bytes(target, text.encode())
