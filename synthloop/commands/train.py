"""``synthloop train SPEC --out RUN [--resume] [--quiet]``: train a detector from an experiment spec.

Mount: ``app.command("train")(synthloop.commands.train.train_cmd)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from synthloop.errors import SynthloopError


def train_cmd(
    spec: Path = typer.Argument(..., help="experiment spec YAML"),
    out: Path = typer.Option(
        ..., "--out", "-o", help="run folder (checkpoints, metrics.jsonl, tensorboard/)"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from RUN/checkpoints/last.pt"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar; one JSON line per log step"),
) -> None:
    """Train the detector a spec describes into a run folder (resumable)."""
    try:
        from synthloop.training.loop import train
        from synthloop.training.spec import load_spec

        exp = load_spec(spec)
        last = train(exp, out, resume=resume, quiet=quiet, source=str(spec))
    except SynthloopError as e:
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        raise typer.Exit(2) from None
    if not quiet:
        typer.echo(f"last checkpoint: {last}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_cmd)
