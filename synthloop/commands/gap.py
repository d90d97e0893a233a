"""``synthloop gap SYNTH REAL``: the domain gap of a synthetic dataset to real photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from synthloop.cli_common import cli_errors
from synthloop.errors import SynthloopError
from synthloop.importers.images import load_labeled_or_folder

if TYPE_CHECKING:
    from synthloop.gap.compute import GapReport


def summary_lines(report: GapReport) -> list[str]:
    """Human-readable lines: KIDs with intervals, coverage holes, the largest differences."""
    lines = []
    for name, k in [("image", report.kid_image)] + [(f"crops {c}", v) for c, v in report.kid_crops.items()]:
        if k is not None:
            lines.append(f"KID {name}: {k.value:.4f} [{k.low:.4f}, {k.high:.4f}] (n {k.n_x} vs {k.n_y})")
    for cls, h in report.holes.items():
        lines.append(f"holes {cls}: {h['n_holes']} of {h['n_real']} real crops")
    worst = sorted(report.differences.items(), key=lambda kv: -kv[1])[:6]
    lines.append("largest differences (W1 / real std): " + ", ".join(f"{k} {v:.2f}" for k, v in worst))
    return lines + [f"note: {n}" for n in report.notes]


@cli_errors
def gap_cmd(
    synth: Path = typer.Argument(..., help="Synthetic dataset: a synthloop dataset folder or a COCO json."),
    real: Path = typer.Argument(
        ..., help="Real photos: a COCO json (labeled: object statistics and crop KID) or a folder of images."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for gap.html and gap.json."),
    seed: int = typer.Option(0, "--seed", help="Seed of crop subsampling and the bootstrap."),
    width: int | None = typer.Option(
        None, "--working-width", min=16, help="Both sides are resized to this width (default: the smaller)."
    ),
    max_crops: int = typer.Option(200, "--max-crops", min=2, help="Crops embedded per class and side."),
    n_boot: int = typer.Option(100, "--bootstrap", min=10, help="Bootstrap resamples of each KID."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar."),
) -> None:
    """Measure the sim-to-real gap: object statistics, KID (Lite0 features) on whole images and
    per-class crops with bootstrap intervals, coverage holes; writes an HTML report and JSON.

    Example: synthloop gap out/tabletop ../real/fruits-nuts/train.json --out gap/tabletop
    """
    # torch and matplotlib load only for this command
    from synthloop.gap.compute import GapOptions
    from synthloop.gap.run import gap_to_folder

    synth_ds, synth_labeled = load_labeled_or_folder(synth)
    if not synth_labeled:
        raise SynthloopError(
            "SYNTH must be a labeled dataset (a synthloop folder or a COCO json)", path=str(synth)
        )
    real_ds, labeled = load_labeled_or_folder(real)
    options = GapOptions(working_width=width, max_crops=max_crops, n_boot=n_boot, seed=seed)
    report = gap_to_folder(
        synth_ds,
        real_ds,
        out,
        labeled=labeled,
        options=options,
        synth_name=str(synth),
        real_name=str(real),
        quiet=quiet,
    )
    if quiet:
        typer.echo(json.dumps({"event": "gap", **report.to_json()["kid"]}))
    else:
        for line in summary_lines(report):
            typer.echo(line)
        if out is not None:
            typer.echo(f"report: {out / 'gap.html'}")
