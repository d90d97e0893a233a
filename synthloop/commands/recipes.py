"""``synthloop recipes``: list, show and validate scene recipes.

Mount with ``app.add_typer(recipes.app, name="recipes")``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from synthloop.atomic import atomic_write_bytes
from synthloop.cli_common import user_errors
from synthloop.errors import SynthloopError
from synthloop.fitting.backgrounds import Backgrounds, with_backgrounds, write_backgrounds
from synthloop.importers.images import load_labeled_or_folder
from synthloop.progress import JobProgress
from synthloop.scenes.recipe import (
    load_recipe,
    recipe_dict_to_yaml,
    recipe_from_dict,
    recipe_hash,
    recipe_to_dict,
    recipe_to_yaml,
    yaml_comment,
)
from synthloop.scenes.registry import DEFAULT_RECIPE, list_bundled
from synthloop.scenes.sampler import sample_scene

if TYPE_CHECKING:  # the fit pulls in torch and optuna: imported by the command itself
    from synthloop.fitting.fit import FitOutcome

app = typer.Typer(
    help="Scene recipes: list the bundled ones, show or validate YAML files.", no_args_is_help=True
)


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
    with user_errors():
        rec = load_recipe(recipe)
        if sample is None:
            typer.echo(f"# recipe_hash: {recipe_hash(rec)}")
            typer.echo(recipe_to_yaml(rec), nl=False)
            return
        seed, frame = parse_seed_frame(sample)
        spec = sample_scene(rec, seed, frame)
        typer.echo(json.dumps(spec.to_json_dict(), indent=1))


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


_HELD_OUT = re.compile(r"(^|[^a-z])(val|valid|validation|test|eval)([^a-z]|$)")


def parse_size(text: str) -> tuple[int, int]:
    """``"160x120"`` -> (160, 120); SynthloopError otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 16 for p in parts):
        raise SynthloopError(f"expected WIDTHxHEIGHT (each >= 16), got '{text}'", where="--proxy-size")
    return int(parts[0]), int(parts[1])


def refuse_held_out(path: Path) -> None:
    """SynthloopError if ``path`` looks like an evaluation split (val/test): it must not steer a fit."""
    if _HELD_OUT.search(path.stem.lower()):
        raise SynthloopError(
            "looks like an evaluation split (val/test): only the training split or unlabeled photos may "
            "steer a fit",
            path=str(path),
        )


@app.command("fit")
def fit_cmd(
    recipe: str = typer.Argument(..., help="bundled recipe name or YAML path"),
    real: Path = typer.Option(
        ...,
        "--real",
        help="Real photos that steer the fit: the TRAINING split's COCO json, or a folder of unlabeled "
        "photos. Never the validation/test split (names with val/test are refused).",
    ),
    budget: int = typer.Option(..., "--budget", min=1, help="Trials in total (trial 0 = the original)."),
    out: Path = typer.Option(..., "--out", "-o", help="Fitted recipe YAML (written atomically at the end)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler and of the proxy renders."),
    journal: Path | None = typer.Option(
        None, "--journal", help="Journal folder (default: OUT.journal); re-run to resume a killed fit."
    ),
    frames: int = typer.Option(12, "--frames", min=2, help="Proxy frames per trial."),
    proxy_size: str = typer.Option("160x120", "--proxy-size", help="Proxy render size WIDTHxHEIGHT."),
    samples: int = typer.Option(4, "--samples", min=1, help="Cycles samples of the proxy renders."),
    threads: int = typer.Option(1, "--threads", min=0, help="Blender render threads (0 = all cores)."),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | optix | auto (default: the recipe's render.device)."
    ),
    knobs: list[str] = typer.Option(
        None,
        "--knob",
        help="Parameter pattern to fit, e.g. classes[*].count or classes[hazelnut].material.roughness "
        "(repeatable; default: camera, lights, "
        "world, table and class materials, counts, scales, distractor counts).",
    ),
    widths: bool = typer.Option(False, "--widths", help="Also fit the widths of uniform ranges."),
    rerank: int = typer.Option(
        3, "--rerank", min=1, help="Best trials rendered again (seed + 1) to choose the fitted one."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar."),
) -> None:
    """Fit a recipe's distributions (camera, lights, materials, counts, distractors) so that cheap
    proxy renders come closer to real photos: whole-image and per-class crop KID in Lite0 features
    and the object statistics of `synthloop gap`. Seeded Optuna TPE; resumable from its journal.
    Only the real TRAINING split (or unlabeled photos) may steer the fit, never the validation split.

    Example: synthloop recipes fit tabletop --real real/train.json --budget 60 --out fitted.yaml
    """
    # torch (features) and optuna load only for this command
    from synthloop.fitting.fit import FitSettings, check_classes, fit_recipe, fitted_header, write_fitted
    from synthloop.fitting.space import DEFAULT_KNOBS
    from synthloop.gap.features import LiteFeatures

    with user_errors():
        rec = load_recipe(recipe)
        refuse_held_out(real)
        real_ds, labeled = load_labeled_or_folder(real)
        if labeled:
            check_classes(rec, real_ds, str(real))  # before the progress bar: a one-line error
        embed = LiteFeatures().embed
        settings = FitSettings(
            budget=budget, seed=seed, frames=frames, size=parse_size(proxy_size), samples=samples,
            threads=threads, device=device, knobs=tuple(knobs or DEFAULT_KNOBS), widths=widths,
            rerank=rerank,
        )  # fmt: skip
        jdir = journal or Path(str(out) + ".journal")
        with JobProgress(budget, "fit", quiet=quiet, unit="trial") as prog:

            def report(trial, replayed: bool) -> None:
                prog.advance(trial=trial.number, objective=round(trial.objective, 4), replayed=replayed)

            outcome = fit_recipe(
                rec, real_ds, labeled=labeled, settings=settings, journal_dir=jdir,
                embed=embed, real_name=str(real), on_trial=report,
            )  # fmt: skip
        write_fitted(outcome, out, fitted_header(outcome, recipe, str(real), settings))
    for note in outcome.notes:
        typer.echo(f"note: {note}", err=True)
    summary = _fit_summary(outcome, out)
    typer.echo(json.dumps(summary, default=str) if quiet else json.dumps(summary, indent=1, default=str))


def _fit_summary(outcome: FitOutcome, out: Path) -> dict[str, Any]:
    """What ``recipes fit`` prints at the end: the search, the trial chosen and its figures."""
    best = outcome.search.best
    return {
        "out": str(out),
        "trials": len(outcome.search.trials),
        "evaluated_now": len(outcome.search.evaluated),
        "best_trial": best.number,
        "search_objective": best.objective,
        "selected_trial": outcome.selected.number,
        "confirmed": outcome.confirmed,
        "confirmed_objective": outcome.objective_after,
        "before": outcome.before,
        "after": outcome.after,
    }


@app.command("backgrounds")
def backgrounds_cmd(
    recipe: str = typer.Argument(..., help="bundled recipe name or YAML path"),
    real: Path = typer.Option(
        ...,
        "--real",
        help="Labeled real photos (the TRAINING split's COCO json) whose tables become the support's "
        "textures. Never the validation/test split (names with val/test are refused).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Recipe YAML to write; the textures go to OUT's name + '_textures/' beside it.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the hole filling and of the size estimate."),
    relight: bool = typer.Option(
        False,
        "--relight",
        help="Relight each copied pixel to the light at its hole and copy from the table only (no "
        "cut pieces of unlabeled things): cleaner textures on tables lit unevenly.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar."),
) -> None:
    """Give a recipe the target domain's tables: remove the labeled objects of real photos (their
    holes filled with the photo's own pixels), keep the centre squares as support textures at the
    photographed scale (from the real boxes and the recipe's class sizes), and write the recipe.

    Example: synthloop recipes backgrounds tabletop --real real/train.json --out tabletop_bg.yaml
    """
    with user_errors():
        rec = load_recipe(recipe)
        refuse_held_out(real)
        real_ds, labeled = load_labeled_or_folder(real)
        if not labeled:
            raise SynthloopError(
                "needs labeled photos (a COCO json): their objects are removed", path=str(real)
            )
        folder = out.parent / f"{out.stem}_textures"

        def check(staged: Path, made: Backgrounds) -> None:  # the recipe is valid before any write
            staged_data = with_backgrounds(recipe_to_dict(rec), staged.name, made.image_scale)
            recipe_from_dict(staged_data, source=str(out), base_dir=out.parent)

        with JobProgress(len(real_ds.frames), "backgrounds", quiet=quiet, unit="photo") as prog:
            made = write_backgrounds(
                real_ds, rec, folder, np.random.default_rng(seed), prog.advance, relight=relight, check=check
            )
        data = with_backgrounds(recipe_to_dict(rec), folder.name, made.image_scale)
        header = yaml_comment([
            f"Support textures from `synthloop recipes backgrounds {recipe} --real {real} --seed {seed}"
            f"{' --relight' if relight else ''}`:",
            f"{len(made.paths)} photos with their labeled objects removed ({made.filled_fraction:.1%} of "
            f"their pixels filled from the same photo); {made.metres_per_pixel * 1000:.3f} mm per photo "
            f"pixel, image_scale {made.image_scale:.3f} per metre.",
        ])  # fmt: skip
        atomic_write_bytes(out, (header + recipe_dict_to_yaml(data)).encode("utf-8"))
    summary = {"out": str(out), "textures": str(folder), "images": len(made.paths)}
    typer.echo(
        json.dumps({**summary, "image_scale": made.image_scale, "metres_per_pixel": made.metres_per_pixel})
    )
