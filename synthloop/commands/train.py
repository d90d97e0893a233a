"""``synthloop train SPEC --out RUN [--resume] [--quiet] [--gpus N]``: train a detector from a spec.

``--gpus N`` (N > 1) starts ``torchrun --standalone --nproc_per_node N`` on this same command; each
process then finds itself in the torchrun environment and trains one DDP replica (see
:mod:`synthloop.training.distributed`). Under an external torchrun or ``srun`` leave ``--gpus`` out.

Mount: ``app.command("train")(synthloop.commands.train.train_cmd)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from synthloop.cli_common import fail, os_error_line
from synthloop.errors import SynthloopError


def train_cmd(
    spec: Path = typer.Argument(..., help="experiment spec YAML"),
    out: Path = typer.Option(
        ..., "--out", "-o", help="run folder (checkpoints, metrics.jsonl, tensorboard/)"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from RUN/checkpoints/last.pt"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar; one JSON line per log step"),
    gpus: int = typer.Option(
        1,
        "--gpus",
        min=1,
        help="data-parallel processes started with torchrun, one per GPU (gloo processes for a CPU spec)",
    ),
) -> None:
    """Train the detector a spec describes into a run folder (resumable, also on another --gpus).

    Example: synthloop train specs/fruits.yaml --out runs/fruits --gpus 2
    """
    if gpus > 1 and "RANK" not in os.environ:
        raise typer.Exit(launch_torchrun(spec, out, gpus, resume=resume, quiet=quiet))
    try:
        from synthloop.training.loop import train
        from synthloop.training.spec import load_spec

        exp = load_spec(spec)
        last = train(exp, out, resume=resume, quiet=quiet, source=str(spec))
    except SynthloopError as e:
        for line in str(e).splitlines():
            sys.stderr.write(f"error: {' '.join(line.split())}\n")
        raise typer.Exit(2) from None
    except OSError as e:  # read-only run folder, full disk: one line, exit 1
        fail(os_error_line(e), code=1)
    if not quiet:
        typer.echo(f"last checkpoint: {last}")


def torchrun_command(spec: Path, out: Path, nproc: int, resume: bool, quiet: bool) -> list[str]:
    """The torchrun command line that runs this ``train`` in ``nproc`` processes on this host."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "synthloop.cli",
        "train",
        str(spec),
        "--out",
        str(out),
    ]
    return cmd + (["--resume"] if resume else []) + (["--quiet"] if quiet else [])


def launch_torchrun(spec: Path, out: Path, nproc: int, resume: bool, quiet: bool) -> int:
    """Run :func:`torchrun_command`; its exit status (2 for a training error in any rank)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(torchrun_command(spec, out, nproc, resume, quiet), env=env).returncode


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_cmd)
