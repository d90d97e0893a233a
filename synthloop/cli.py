"""synthloop's command line: each command is a thin layer over one function of the packages.

User errors (:class:`~synthloop.errors.SynthloopError`) print one line naming the file and the
field, and exit with code 2 — no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

# albumentations asks PyPI for its latest version at import: a stalled request and a warning on
# offline render/GPU nodes. The command line never needs that check (an explicit setting wins).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from synthloop import __version__
from synthloop.cli_common import fail, user_errors
from synthloop.commands import active as active_cmd
from synthloop.commands import dataset as dataset_cmd
from synthloop.commands import deploy as deploy_cmd
from synthloop.commands import export as export_cmd
from synthloop.commands import farm as farm_cmd
from synthloop.commands import geometry as geometry_cmd
from synthloop.commands import mix as mix_cmd
from synthloop.commands import recipes as recipes_cmd
from synthloop.commands import spec as spec_cmd
from synthloop.commands.evaluate import evaluate_cmd
from synthloop.commands.gap import gap_cmd
from synthloop.commands.train import train_cmd
from synthloop.commands.ui import ui_cmd

app = typer.Typer(
    name="synthloop",
    help="Procedural 3D scenes -> Blender renders -> exact annotations -> models, and back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(recipes_cmd.app, name="recipes", help="List, show and validate scene recipes.")
app.add_typer(
    export_cmd.app, name="export", help="Export a dataset to COCO / KITTI / TAO / depth / semantic maps."
)
app.add_typer(dataset_cmd.app, name="dataset", help="Inspect, show, merge and split datasets.")
app.add_typer(spec_cmd.app, name="spec", help="Convert experiment specs from other tools (TAO).")
app.command("train")(train_cmd)
app.command("evaluate")(evaluate_cmd)
app.command("gap")(gap_cmd)
app.add_typer(mix_cmd.app, name="mix", help="Mixing-ratio experiments: run the matrix, write the report.")
app.command("prune")(deploy_cmd.prune_cmd)
app.command("qat")(deploy_cmd.qat_cmd)
app.command("export-model")(deploy_cmd.export_model_cmd)
app.command("infer")(deploy_cmd.infer_cmd)
app.add_typer(geometry_cmd.app, name="geometry", help="Meshes and Blender-free scene previews.")
app.add_typer(
    active_cmd.app, name="active", help="Active learning: mine weak regions, derive recipes, run the loop."
)
app.command("ui")(ui_cmd)
app.add_typer(
    farm_cmd.app, name="farm", help="Sharded, resumable render jobs (local, Ray, Slurm, Kubernetes)."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synthloop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Procedural 3D scenes -> Blender renders -> exact annotations -> models, and back."""


@app.command()
def generate(
    recipe: str = typer.Option(
        "tabletop", "--recipe", "-r", help="Bundled recipe name or path to a YAML file."
    ),
    frames: int = typer.Option(8, "--frames", "-n", min=1, max=10_000_000, help="Number of frames."),
    seed: int = typer.Option(
        0, "--seed", "-s", help="Job seed: frame k of (recipe, seed) is always the same."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset folder (resumable)."),
    start: int = typer.Option(0, "--start", min=0, help="First frame index."),
    threads: int = typer.Option(
        0, "--threads", min=0, max=1024, help="Blender render threads (0 = all cores)."
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | optix | auto (default: the recipe's render.device)."
    ),
    coco: bool = typer.Option(True, "--coco/--no-coco", help="Also write OUT/coco/annotations.json."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar."),
) -> None:
    """Render a labeled dataset from a recipe (resumable: re-run to continue).

    Example: synthloop generate --recipe tabletop --frames 8 --seed 0 --out out/tabletop
    """
    from synthloop.generators.generate import default_renderer_factory, generate_dataset
    from synthloop.scenes.recipe import load_recipe

    with user_errors():
        rec = load_recipe(recipe)  # validate before anything is written
        result = generate_dataset(
            rec,
            seed,
            frames,
            out,
            start=start,
            renderer_factory=default_renderer_factory(threads, device or rec.render.device),
            quiet=quiet,
        )
        if result.failed:
            fail(
                f"{out}: {len(result.failed)} frame(s) failed after retry: {sorted(result.failed)} "
                f"(errors in {out}/failures/; re-run to retry)",
                code=1,
            )
        if coco:
            from synthloop.dataset.folder import load_dataset
            from synthloop.exporters.coco import write_coco

            write_coco(load_dataset(out), out / "coco", copy_images=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
