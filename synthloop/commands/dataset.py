"""``synthloop dataset ...``: stats, overlays, merge, split.

Mount: ``app.add_typer(synthloop.commands.dataset.app, name="dataset")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from synthloop.commands.export import SKIP, VERIFY, cli_errors, load_source

app = typer.Typer(help="Inspect and combine datasets.", no_args_is_help=True)

DIR = typer.Argument(..., help="synthloop folder, COCO .json, KITTI folder or BlenderProc output")


@app.command("stats")
@cli_errors
def stats_cmd(
    src: Path = DIR,
    as_json: bool = typer.Option(False, "--json", help="print the stats as JSON"),
    skip_invalid: bool = SKIP,
) -> None:
    """Per-class counts, box-size and occlusion histograms.

    Example: synthloop dataset stats out/tabletop
    """
    from rich.console import Console

    from synthloop.dataset.stats import dataset_stats, stats_tables

    stats = dataset_stats(load_source(src, skip_invalid))
    if as_json:
        print(json.dumps(stats, indent=1))
        return
    console = Console()
    for t in stats_tables(stats):
        console.print(t)


@app.command("show")
@cli_errors
def show_cmd(
    src: Path = DIR,
    out: Path = typer.Option(..., "--out", help="folder for the overlay PNGs"),
    limit: int | None = typer.Option(None, "--limit", help="at most N frames"),
    frame: list[str] | None = typer.Option(None, "--frame", help="frame id (repeatable)"),
    skip_invalid: bool = SKIP,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
) -> None:
    """Draw boxes, masks, keypoints and labels onto the images.

    Example: synthloop dataset show out/tabletop --out overlays/
    """
    from synthloop.overlays import select_frames, write_annotation_overlays
    from synthloop.progress import JobProgress

    ds = load_source(src, skip_invalid)
    total = len(select_frames(ds, frame or None, limit))  # an unknown frame id fails before the bar
    with JobProgress(total, "overlays", quiet=quiet) as prog:
        paths = write_annotation_overlays(ds, out, frames=frame or None, limit=limit, on_frame=prog.advance)
    if quiet:
        print(json.dumps({"out": str(out), "overlays": len(paths)}))
    else:
        print(f"wrote {len(paths)} overlays to {out}")


@app.command("merge")
@cli_errors
def merge_cmd(
    sources: list[Path] = typer.Argument(..., help="datasets to merge (any supported format)"),
    out: Path = typer.Option(..., "--out", help="new synthloop dataset folder"),
    skip_invalid: bool = SKIP,
    verify: bool = VERIFY,
) -> None:
    """Merge datasets (categories unified by name, frame ids prefixed) into a synthloop folder.

    Example: synthloop dataset merge out/a out/b --out out/ab
    """
    from synthloop.dataset.merge import merge_datasets, write_dataset_folder

    ds = merge_datasets([load_source(s, skip_invalid, verify) for s in sources])
    write_dataset_folder(ds, out)
    print(f"wrote {out} ({len(ds.frames)} frames, {len(ds.categories)} categories)")


@app.command("split")
@cli_errors
def split_cmd(
    src: Path = DIR,
    out_subset: Path = typer.Option(..., "--out-subset", help="synthloop folder for the subset"),
    out_rest: Path = typer.Option(..., "--out-rest", help="synthloop folder for the rest"),
    fraction: float | None = typer.Option(None, help="subset fraction of frames"),
    count: int | None = typer.Option(None, help="subset frame count"),
    seed: int = typer.Option(0, help="random seed"),
) -> None:
    """Deterministic random split into two synthloop folders.

    Example: synthloop dataset split out/tabletop --fraction 0.25 --out-subset out/held --out-rest out/train
    """
    from synthloop.dataset.merge import write_dataset_folder
    from synthloop.dataset.split import split_dataset

    subset, rest = split_dataset(load_source(src), fraction=fraction, count=count, seed=seed)
    write_dataset_folder(subset, out_subset)
    write_dataset_folder(rest, out_rest)
    print(f"subset {len(subset)} frames -> {out_subset}; rest {len(rest)} frames -> {out_rest}")
