"""``synthloop recipes``: list, show and validate scene recipes.

Mount with ``app.add_typer(recipes.app, name="recipes")``.
"""

from __future__ import annotations

import json
import sys

import typer

from synthloop.errors import SynthloopError
from synthloop.scenes.recipe import load_recipe, recipe_hash, recipe_to_yaml
from synthloop.scenes.registry import DEFAULT_RECIPE, list_bundled
from synthloop.scenes.sampler import sample_scene

app = typer.Typer(
    help="Scene recipes: list the bundled ones, show or validate YAML files.", no_args_is_help=True
)


def _fail(err: SynthloopError) -> typer.Exit:
    typer.echo(str(err), err=True)
    return typer.Exit(code=2)


def parse_seed_frame(text: str) -> tuple[int, int]:
    """``"SEED:FRAME"`` -> (seed, frame), both integers >= 0; SynthloopError otherwise."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SynthloopError(f"expected SEED:FRAME (two integers >= 0), got '{text}'", where="--sample")
    return int(parts[0]), int(parts[1])


@app.command("list")
def list_cmd() -> None:
    """Print the bundled recipe names (the default is marked).

    Example: synthloop recipes list
    """
    for name in list_bundled():
        mark = "  (default)" if name == DEFAULT_RECIPE else ""
        typer.echo(f"{name}{mark}")


@app.command("show")
def show_cmd(
    recipe: str = typer.Argument(..., help="bundled recipe name or YAML path"),
    sample: str | None = typer.Option(None, "--sample", help="SEED:FRAME: print that frame's SceneSpec JSON"),
) -> None:
    """Print the validated recipe as YAML (with its hash), or one sampled SceneSpec as JSON.

    Example: synthloop recipes show tabletop --sample 0:3
    """
    try:
        rec = load_recipe(recipe)
        if sample is None:
            typer.echo(f"# recipe_hash: {recipe_hash(rec)}")
            typer.echo(recipe_to_yaml(rec), nl=False)
            return
        seed, frame = parse_seed_frame(sample)
        spec = sample_scene(rec, seed, frame)
        typer.echo(json.dumps(spec.to_json_dict(), indent=1))
    except SynthloopError as err:
        raise _fail(err) from None


@app.command("validate")
def validate_cmd(paths: list[str] = typer.Argument(..., help="recipe YAML paths or bundled names")) -> None:
    """One line per recipe: ``PATH: ok (hash)`` or the error. Exit 2 if any is invalid.

    Example: synthloop recipes validate my_recipe.yaml other.yaml
    """
    bad = 0
    for path in paths:
        try:
            rec = load_recipe(path)
        except SynthloopError as err:
            bad += 1
            typer.echo(str(err), err=True)
            continue
        typer.echo(f"{path}: ok ({recipe_hash(rec)[:12]})")
    sys.stdout.flush()
    if bad:
        raise typer.Exit(code=2)
