"""``synthloop mix ...``: mixing-ratio experiments (real fraction x schedule x seed + baselines).

Mount: ``app.add_typer(synthloop.commands.mix.app, name="mix")``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synthloop.commands.export import cli_errors

app = typer.Typer(help="Synthetic/real mixing experiments: plan, run, report.", no_args_is_help=True)


@app.command("plan")
@cli_errors
def plan_cmd(experiment: Path = typer.Argument(..., help="mixing experiment YAML")) -> None:
    """List the runs the experiment expands to (equal specs merged), without training.

    Example: synthloop mix plan experiments/mix.yaml
    """
    from rich.console import Console
    from rich.table import Table

    from synthloop.experiments.matrix import expand, fraction_label, load_experiment

    loaded = load_experiment(experiment)
    runs = expand(loaded)
    t = Table(title=f"{loaded.name}: {len(runs)} runs")
    for c in ("run", "schedule", "real fraction", "seed", "spec hash", "stands for"):
        t.add_column(c)
    for r in runs:
        pts = ", ".join(f"{s} r={fraction_label(f)}" for s, f in r.points)
        t.add_row(r.name, r.schedule, fraction_label(r.real_fraction), str(r.seed), r.spec_hash[:12], pts)
    Console().print(t)


@app.command("run")
@cli_errors
def run_cmd(
    experiment: Path = typer.Argument(..., help="mixing experiment YAML"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (resumable: re-run to continue)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="JSON lines instead of a progress bar"),
    report: bool = typer.Option(True, "--report/--no-report", help="write report.html etc. at the end"),
) -> None:
    """Train and evaluate every run (finished runs are skipped), then write the report.

    Example: synthloop mix run experiments/mix.yaml --out mix/
    """
    from synthloop.experiments.report import write_report
    from synthloop.experiments.runner import run_experiment

    outcomes = run_experiment(experiment, out, quiet=quiet)
    failed = [o for o in outcomes if o.status == "failed"]
    n = {s: sum(o.status == s for o in outcomes) for s in ("done", "evaluated", "skipped")}
    print(
        f"{len(outcomes)} runs: {n['done']} trained, {n['evaluated']} re-evaluated,"
        f" {n['skipped']} already done, {len(failed)} failed"
    )
    for o in failed:
        print(f"  failed {o.name}: {o.error} (see {out}/runs/{o.name}/error.json)")
    if report:
        paths = write_report(out)
        print(f"wrote {paths.report_html}, {paths.results_json.name}, {paths.summary_md.name}")
    if failed:
        raise typer.Exit(1)


@app.command("report")
@cli_errors
def report_cmd(out: Path = typer.Argument(..., help="output folder of 'synthloop mix run'")) -> None:
    """Write report.html (self-contained), results.json and summary.md from a run folder.

    Example: synthloop mix report mix/
    """
    from synthloop.experiments.report import write_report

    paths = write_report(out)
    print(f"wrote {paths.report_html}, {paths.results_json.name}, {paths.summary_md.name}")
