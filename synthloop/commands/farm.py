"""``synthloop farm``: plan, work, run, status, merge, jobfiles."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from synthloop.cli_common import fail, user_errors

app = typer.Typer(no_args_is_help=True, help="Sharded, resumable render jobs.")


@app.command()
def plan(
    recipe: str = typer.Option("tabletop", "--recipe", "-r", help="Bundled recipe name or YAML path."),
    frames: int = typer.Option(..., "--frames", "-n", min=1, max=10_000_000, help="Number of frames."),
    seed: int = typer.Option(
        0, "--seed", "-s", help="Job seed: frame k of (recipe, seed) is always the same."
    ),
    shards: int = typer.Option(1, "--shards", "-k", min=1, help="Number of shards (array tasks)."),
    out: Path = typer.Option(..., "--out", "-o", help="Job folder."),
    start: int = typer.Option(0, "--start", min=0, help="First frame index."),
    restart_every: int = typer.Option(200, "--restart-every", min=1, help="Restart Blender every M frames."),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | optix | auto (default: the recipe's render.device)."
    ),
) -> None:
    """Write a job manifest: recipe copy + hash, seed, frame ranges per shard, render device.

    Example: synthloop farm plan --recipe tabletop --frames 10000 --seed 0 --shards 64 --out job/
    """
    from synthloop.farm.plan import plan_job

    with user_errors():
        p = plan_job(
            recipe, frames, seed, shards, out, start=start, restart_every=restart_every, device=device
        )
    typer.echo(f"planned {p.frames} frames in {len(p.shards)} shards -> {out}")


@app.command()
def work(
    job: Path = typer.Argument(..., help="Job folder."),
    shard: int = typer.Option(..., "--shard", "-i", help="Shard index (Slurm/K8s array index)."),
    threads: int = typer.Option(0, "--threads", min=0, max=1024, help="Blender threads (0 = all cores)."),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | optix | auto (default: the plan's device)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
) -> None:
    """Render shard i, skipping complete frames (safe to run twice at once).

    Example: synthloop farm work job/ --shard 7
    """
    from synthloop.farm.worker import work_shard

    with user_errors():
        res = work_shard(job, shard, quiet=quiet, threads=threads, device=device)
    if res.failed:
        fail(f"shard {shard}: {len(res.failed)} frame(s) failed twice: {sorted(res.failed)}", code=1)


@app.command()
def run(
    job: Path = typer.Argument(..., help="Job folder (from `farm plan`)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Local worker processes."),
    executor: str = typer.Option("local", "--executor", "-e", help="local | ray"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: start a local one)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, max=1024, help="Blender threads per worker."
    ),
    gpus: int = typer.Option(
        0, "--gpus", min=0, help="One local worker per GPU (CUDA_VISIBLE_DEVICES each)."
    ),
    workers_per_gpu: int = typer.Option(
        1,
        "--workers-per-gpu",
        min=1,
        help="Workers sharing each GPU with --gpus. A worker also works on the CPU between renders, "
        "so one leaves a GPU mostly idle (one H200 on a 16-core node: 0.73 frames/s with 1, "
        "1.94 with 4; docs/results/render_quality.md).",
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | optix | auto (default: the plan's; cuda with --gpus)."
    ),
    mps: bool = typer.Option(
        False,
        "--mps",
        help="With --gpus: run the workers under a private CUDA MPS daemon, started for the run, so "
        "that their kernels share each GPU (8 workers on one H100: 1.27-1.30x the frames/s without it, "
        "2.90-2.94 against 2.25 on one node; "
        "docs/results/render_quality.md).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
) -> None:
    """Run all shards (local worker processes, or Ray tasks).

    Example: synthloop farm run job/ --workers 2
    """
    from synthloop.farm.executors import run_local, run_ray

    with user_errors():
        if executor == "local":
            s = run_local(
                job,
                workers=workers,
                threads=threads,
                quiet=quiet,
                gpus=gpus,
                device=device,
                workers_per_gpu=workers_per_gpu,
                mps=mps,
            )
        elif executor == "ray":
            s = run_ray(job, address=address, threads=threads or 1, quiet=quiet)
        else:
            fail(f"--executor: unknown executor {executor!r}; expected local or ray")
    if s.shards_failed or s.frames_failed:
        fail(
            f"{len(s.shards_failed)} shard(s) failed, {s.frames_failed} frame(s) failed; "
            f"see `synthloop farm status {job}`",
            code=1,
        )


@app.command()
def status(
    job: Path = typer.Argument(..., help="Job folder (from `farm plan`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Frames done per shard, failures, rate.

    Example: synthloop farm status job/
    """
    import json

    from synthloop.farm.merge import job_status

    with user_errors():
        plan_, st = job_status(job)
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in st]))
        return
    t = Table(title=f"{job}  ({plan_.recipe_name}, seed {plan_.seed}, {plan_.frames} frames)")
    for c in ("shard", "done", "planned", "failed", "s/frame", "worker error"):
        t.add_column(c, justify="right")
    for s in st:
        t.add_row(
            str(s.index),
            str(s.done),
            str(s.planned),
            ",".join(map(str, s.failed)) or "-",
            f"{s.seconds_per_frame:.2f}" if s.seconds_per_frame else "-",
            " ".join((s.worker_error or "-").split())[-80:],
        )
    done = sum(s.done for s in st)
    errors = sum(s.worker_error is not None for s in st)
    t.caption = f"{done}/{plan_.frames} frames complete" + (
        f"; {errors} shard(s) whose worker failed" if errors else ""
    )
    Console().print(t)


@app.command()
def merge(
    job: Path = typer.Argument(..., help="Job folder (from `farm plan`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Merged dataset folder."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Merge the frames done so far."),
    coco: bool = typer.Option(True, "--coco/--no-coco", help="Also write OUT/coco/annotations.json."),
    kitti: bool = typer.Option(False, "--kitti/--no-kitti", help="Also write OUT/kitti/."),
) -> None:
    """Merge shards into one dataset (+ COCO/KITTI); refuses an incomplete job unless --allow-partial.

    Example: synthloop farm merge job/ --out out/big --kitti
    """
    from synthloop.farm.merge import merge_job

    with user_errors():
        merge_job(job, out, allow_partial=allow_partial, coco=coco, kitti=kitti)
    typer.echo(f"merged -> {out}")


@app.command()
def jobfiles(
    job: Path = typer.Argument(..., help="Job folder (from `farm plan`)."),
    slurm: Path | None = typer.Option(None, "--slurm", help="Write an sbatch --array script here."),
    k8s: Path | None = typer.Option(None, "--k8s", help="Write a Kubernetes Indexed Job YAML here."),
    threads: int = typer.Option(4, "--threads", min=1, max=1024, help="Blender threads per task."),
    image: str = typer.Option("synthloop:latest", "--image", help="Container image (Kubernetes)."),
    pvc: str = typer.Option(
        "synthloop-data", "--pvc", help="PersistentVolumeClaim holding the job (Kubernetes)."
    ),
) -> None:
    """Generate Slurm-array / Kubernetes-indexed-job files calling `farm work` with the array index.

    Example: synthloop farm jobfiles job/ --slurm job.sbatch --k8s job-k8s.yaml
    """
    from synthloop.farm.executors import k8s_indexed_job, slurm_script, write_job_file

    with user_errors():
        if slurm:
            write_job_file(job, slurm, slurm_script(job, threads=threads))
            typer.echo(f"wrote {slurm}")
        if k8s:
            write_job_file(job, k8s, k8s_indexed_job(job, image=image, threads=threads, pvc=pvc))
            typer.echo(f"wrote {k8s}")
    if not slurm and not k8s:
        fail("give --slurm PATH and/or --k8s PATH")
