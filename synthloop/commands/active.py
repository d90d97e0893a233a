"""``synthloop active``: the active-learning loop and its parts.

Mount: ``app.add_typer(synthloop.commands.active.app, name="active")``.

Commands: ``run LOOP.yaml --out DIR``, ``report DIR``, ``compare DIR...``, ``mine SLICES.json --out
WEAK.json``, ``derive RECIPE WEAK.json --out DIR``, ``select POOL --checkpoint CKPT --budget N --out DIR``,
``mine-real MODEL --real TRAIN.json --renders DIR --out DIR``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synthloop.cli_common import user_errors

app = typer.Typer(
    no_args_is_help=True, help="Active learning: mine weak regions, derive recipes, run the loop."
)


@app.command()
def run(
    spec: Path = typer.Argument(..., help="Loop spec YAML (LoopSpec)."),
    out: Path = typer.Option(..., "--out", "-o", help="Loop folder (resumed if it exists)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
) -> None:
    """Render -> train -> evaluate -> mine -> derive, round by round; finished rounds are skipped.

    Example: synthloop active run loop.yaml --out active/
    """
    from synthloop.active.loop import run_loop

    with user_errors():
        run_loop(spec, out, log=None if quiet else typer.echo)
    paths = _write_report(out, 10, quiet)
    typer.echo(f"wrote {paths['html']}")


@app.command()
def report(
    loop_dir: Path = typer.Argument(..., help="Loop folder written by `synthloop active run`."),
    bins: int = typer.Option(10, "--bins", min=2, help="Histogram bins per numeric param."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
) -> None:
    """Per-round table + report.json/report.html (metrics, param histograms, weak slices before/after).

    Example: synthloop active report active/
    """
    paths = _write_report(loop_dir, bins, quiet)
    typer.echo(f"wrote {paths['json']} and {paths['html']}")


def _write_report(loop_dir: Path, bins: int, quiet: bool) -> dict[str, Path]:
    """Write the loop's report.json/report.html; print its per-round tables unless ``quiet``."""
    import json

    from synthloop.active.report import print_loop_report, write_report

    with user_errors():
        paths = write_report(loop_dir, bins)
    if not quiet:
        print_loop_report(json.loads(paths["json"].read_text()))
    return paths


@app.command()
def mine(
    slices: Path = typer.Argument(..., help="Slice table JSON, or an evaluation report JSON (its slices)."),
    out: Path = typer.Option(..., "--out", "-o", help="Weak-regions JSON to write."),
    n_bins: int = typer.Option(5, "--bins", min=2, help="bins per numeric scene parameter"),
    min_effect: float = typer.Option(
        0.05,
        "--min-effect",
        min=0.0,
        help="smallest recall drop below the overall recall that counts as weak",
    ),
    min_support: int = typer.Option(10, "--min-support", min=1, help="fewest objects a region needs"),
    confidence: float = typer.Option(0.95, "--confidence", help="Wilson interval confidence level"),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Param to leave out (repeat)."),
) -> None:
    """Weak regions of the scene params (binned recall with Wilson CIs + a shallow tree).

    Example: synthloop active mine active/round_000 --out mined.json
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from synthloop.active.errors import ActiveError
    from synthloop.active.mining import mine as mine_fn
    from synthloop.active.outcomes import outcome_table
    from synthloop.evaluation.slices import SliceTable

    with user_errors():
        try:
            data = json.loads(slices.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ActiveError(f"cannot read ({e})", path=str(slices)) from None
        if isinstance(data, dict) and "slices" in data and isinstance(data["slices"], dict):
            data = data["slices"]
        table = outcome_table(SliceTable.from_dict(data, path=str(slices)), exclude=exclude or ())
        res = mine_fn(
            table, n_bins=n_bins, min_effect=min_effect, min_support=min_support, confidence=confidence
        )
        res.save(out)
    t = Table(title=f"weak regions (overall recall {res.overall_recall:.3f}, {res.num_objects} objects)")
    for c in ("region", "support", "recall in", "95% CI", "effect", "importance"):
        t.add_column(c, justify="left" if c == "region" else "right")
    for r in res.regions:
        imp = "-" if r.importance is None else f"{r.importance:.3f}"
        t.add_row(
            r.describe(),
            str(r.support),
            f"{r.recall_inside:.3f}",
            f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
            f"{r.effect:.3f}",
            imp,
        )
    Console().print(t)
    if not res.regions:
        typer.echo(
            f"no weak region: recall {res.overall_recall:.3f} at the evaluation's IoU leaves too few misses; "
            "a stricter `synthloop evaluate --min-iou` (e.g. 0.75) or more frames can expose some"
        )
    typer.echo(f"wrote {out}")


@app.command()
def derive(
    recipe: str = typer.Argument(..., help="Bundled recipe name or YAML path."),
    weak: Path = typer.Argument(..., help="Weak-regions JSON (from `active mine`)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for recipe.yaml, recipe.diff, recipe.derivation.json."
    ),
    exploration: float = typer.Option(
        0.3, "--exploration", help="Probability kept on the original distribution."
    ),
    top: int | None = typer.Option(None, "--top", min=1, help="Use only the N best-ranked regions."),
    name: str | None = typer.Option(None, "--name", help="Derived recipe name (default <name>-derived)."),
) -> None:
    """Re-weight the recipe towards the weak regions (mixtures); report unmappable params.

    Example: synthloop active derive tabletop mined.json --out derived.yaml
    """
    from synthloop.active.derive import derive as derive_fn
    from synthloop.active.derive import save_derivation
    from synthloop.active.mining import load_weak_regions
    from synthloop.scenes.recipe import load_recipe

    with user_errors():
        rec = load_recipe(recipe)
        regions = load_weak_regions(weak)[:top]
        d = derive_fn(rec, regions, exploration, name=name)
        paths = save_derivation(d, rec, out)
    for c in d.changes:
        typer.echo(f"changed {c.path}  <- {', '.join(c.regions)}")
    for u in d.unmapped:
        typer.echo(f"unmapped {u.region}: {u.reason}")
    typer.echo(f"wrote {paths['recipe']} and {paths['diff']}")


def _predictor_fns(checkpoint: Path, backbone: str | None, backbone_weights: str | None, diversity: bool):
    """(predict, embed) from the training package (imported lazily). Embeddings come from the
    detector's own backbone unless ``backbone`` names another one; none without ``diversity``."""
    from synthloop.active.select import backbone_embedder, predictor_embedder
    from synthloop.training.api import load_predictor

    predictor = load_predictor(checkpoint)
    embed = None
    if diversity and backbone:
        from synthloop.training.backbones import build_backbone

        embed = backbone_embedder(build_backbone(backbone, backbone_weights))
    elif diversity:
        embed = predictor_embedder(predictor)
    return predictor.predict, embed


@app.command("select")
def select_cmd(
    pool: Path = typer.Argument(..., help="Folder of unlabeled images, or a .txt list of paths."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Detector checkpoint."),
    budget: int = typer.Option(..., "--budget", "-n", min=1, help="how many images to select"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for selection.json and selection.txt."),
    weight: float = typer.Option(0.5, "--weight", help="1 = uncertainty only, 0 = diversity only."),
    backbone: str | None = typer.Option(
        None, "--backbone", help="Embed with this backbone instead of the detector's own."
    ),
    backbone_weights: str | None = typer.Option(
        None,
        "--backbone-weights",
        help="weights file for --backbone (default: the backbone's own default weights)",
    ),
    diversity: bool = typer.Option(
        True, "--diversity/--no-diversity", help="k-center diversity on embeddings."
    ),
) -> None:
    """Rank unlabeled real images by uncertainty (entropy, margin, flip disagreement) and diversity.

    Example: synthloop active select pool/ -c runs/fruits/checkpoints/best.pt --budget 20 --out picked/
    """
    from synthloop.active.select import select_pool

    with user_errors():
        predict, embed = _predictor_fns(checkpoint, backbone, backbone_weights, diversity)
        sel = select_pool(pool, predict, embed, budget, out, weight=weight)
    typer.echo(f"selected {len(sel.entries)} of {sel.pool_size} images -> {out / 'selection.txt'}")


@app.command()
def compare(
    loop_dirs: list[Path] = typer.Argument(..., help="Loop folders (e.g. an active and a random arm)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the rows as JSON here."),
) -> None:
    """Per-round metrics of several loops side by side (active vs random arm).

    Example: synthloop active compare active/ random/
    """
    from synthloop.active.report import compare_loops, print_comparison
    from synthloop.atomic import atomic_write_json

    with user_errors():
        rows = compare_loops(list(loop_dirs))
        if out is not None:
            atomic_write_json(out, rows)
    print_comparison(rows)


@app.command("mine-real")
def mine_real_cmd(
    model: Path = typer.Argument(..., help="Detector checkpoint (round 0's model)."),
    real: Path = typer.Option(
        ..., "--real", help="Labeled real TRAIN split (COCO json); never the val split."
    ),
    renders: list[Path] = typer.Option(
        ..., "--renders", help="Render folder(s) the model was trained on (repeat for shards)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for real_mining.json, weak_regions.json, ..."),
    recipe: str | None = typer.Option(None, "--recipe", help="Recipe to derive from (bundled name or YAML)."),
    pool: Path | None = typer.Option(None, "--pool", help="Folder of unlabeled real photos (uncertainty)."),
    exploration: float = typer.Option(0.3, "--exploration", help="Share kept on the original distribution."),
    score_thr: float = typer.Option(0.5, "--score-thr", help="Operating point for recall/precision."),
    min_support: int = typer.Option(5, "--min-support", min=1, help="Objects a real weak region needs."),
    adjust: str = typer.Option(
        "bonferroni",
        "--adjust",
        help="bonferroni, or none (a few labeled photos: less strict, more false leads).",
    ),
    pool_top: int = typer.Option(10, "--pool-top", min=1, help="Most uncertain pool photos described."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar."),
) -> None:
    """Mine a model's errors on real photos by measured properties; map them to recipe parameters.

    Example: synthloop active mine-real r0/best.pt --real data/train.json --renders out/tabletop -o mined/
    """
    import json

    from synthloop.active.mining import MiningOptions
    from synthloop.active.real_guided import RealMiningOptions, mine_real
    from synthloop.scenes.recipe import load_recipe

    with user_errors():
        rec = load_recipe(recipe) if recipe else None
        opts = RealMiningOptions(
            score_thr=score_thr,
            mining=MiningOptions(min_support=min_support, max_regions=5, adjust=adjust),
            pool_top=pool_top,
        )
        paths = mine_real(
            model,
            real,
            renders,
            out,
            recipe=rec,
            pool=pool,
            exploration=exploration,
            options=opts,
            progress="json" if quiet else "bar",
        )
    result = json.loads(paths["real_mining"].read_text())
    if quiet:
        typer.echo(json.dumps({"event": "summary", **result["summary"], "out": str(out)}))
        return
    s = result["summary"]
    typer.echo(
        f"real recall {s['recall']}, precision {s['precision']} "
        f"({s['num_gt']} objects, {s['num_dets']} detections)"
    )
    for m in result["mappings"]:
        params = ", ".join(p["description"] for p in m["params"]) or m["note"]
        typer.echo(f"{m['table']}: {m['region']['description']} ({m['in_region']} renders) -> {params}")
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
