"""The optimiser loop of a recipe fit: seeded Optuna TPE, resumable from a journal.

:func:`run_search` asks for parameters, evaluates them with an injected ``evaluate(number,
params) -> components`` (renders + gap in a real fit; any cheap function in tests) and tells the
objective back. Trial 0 is always the original recipe (:func:`~synthloop.fitting.space.start_params`):
its components are the baseline that normalises the objective (:mod:`synthloop.fitting.objective`).

The journal (``trials.jsonl`` in the journal folder, one JSON object per line, appended and
flushed) records each trial's parameters *before* it is evaluated (``ask``) and its components and
objective after (``tell``). A resumed search replays every told trial into the sampler without
evaluating it again, and re-asks an asked-but-untold trial with the same parameters (so a render
folder keyed by the trial number continues where it stopped). ``meta.json`` holds what the journal
belongs to (recipe hash, real data, seed, knobs, proxy settings); resuming with other settings is
refused. Determinism: an uninterrupted search is reproducible from its seed (given the same
evaluations); a resumed one continues from a fresh sampler state fed with the told trials, so its
later trials may differ from an uninterrupted run's. The journal records what was actually run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from synthloop.atomic import atomic_write_json
from synthloop.errors import SynthloopError
from synthloop.fitting.objective import Components, ObjectiveWeights, objective
from synthloop.fitting.space import Knob, start_params

Evaluate = Callable[[int, dict[str, float]], Components]
JOURNAL = "trials.jsonl"
META = "meta.json"


@dataclass
class Trial:
    """One evaluated trial: ``number`` (0 = the original recipe), ``params``, ``components`` and
    ``objective`` (1.0 = as good as the original; lower is better)."""

    number: int
    params: dict[str, float]
    components: Components
    objective: float


@dataclass
class SearchResult:
    trials: list[Trial]
    evaluated: list[int] = field(default_factory=list)  # numbers evaluated by this call (not replayed)

    @property
    def baseline(self) -> Trial:
        return self.trials[0]

    @property
    def best(self) -> Trial:
        return min(self.trials, key=lambda t: (t.objective, t.number))


class Journal:
    """Append-only JSON lines in ``folder/trials.jsonl``; a torn last line (killed mid-write) is ignored."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL

    def check_meta(self, meta: dict[str, Any]) -> None:
        """Write ``meta.json``, or refuse (SynthloopError) if the folder holds another fit's journal."""
        path = self.folder / META
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise SynthloopError(f"cannot read the journal's meta.json: {err}", path=str(path)) from None
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            if diff:
                raise SynthloopError(
                    f"this journal belongs to another fit (differs in: {', '.join(diff)}); "
                    "use another --journal folder",
                    path=str(self.folder),
                )
            return
        atomic_write_json(path, meta)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        try:
            lines = self.path.read_text().splitlines()
        except OSError as err:
            raise SynthloopError(f"cannot read the journal: {err.strerror}", path=str(self.path)) from None
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a kill
        return out

    def append(self, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _distributions(knobs: list[Knob]) -> dict[str, optuna.distributions.BaseDistribution]:
    return {
        d.name: optuna.distributions.FloatDistribution(d.low, d.high)
        for k in knobs
        for d in k.dims
        if d.high > d.low
    }


def replay(journal: Journal) -> tuple[dict[int, Trial], dict[int, dict[str, float]]]:
    """(told trials by number, asked-but-untold parameters by number) from the journal."""
    told: dict[int, Trial] = {}
    asked: dict[int, dict[str, float]] = {}
    for rec in journal.records():
        n = int(rec["number"])
        if rec.get("event") == "ask":
            asked[n] = {k: float(v) for k, v in rec["params"].items()}
        elif rec.get("event") == "tell":
            told[n] = Trial(
                n, {k: float(v) for k, v in rec["params"].items()}, rec["components"], rec["objective"]
            )
    return told, {n: p for n, p in asked.items() if n not in told}


def run_search(
    knobs: list[Knob],
    evaluate: Evaluate,
    *,
    budget: int,
    seed: int,
    journal: Journal,
    weights: ObjectiveWeights = ObjectiveWeights(),
    on_trial: Callable[[Trial, bool], None] | None = None,
) -> SearchResult:
    """Run (or resume) a search of ``budget`` trials in total, trial 0 being the original recipe.
    ``on_trial(trial, replayed)`` is called for every trial, replayed ones included."""
    if budget < 1:
        raise SynthloopError("--budget must be at least 1 (trial 0 is the original recipe)")
    dists = _distributions(knobs)
    sampler = optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=max(2, min(10, budget // 3))
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    told, pending = replay(journal)
    trials: dict[int, Trial] = {}
    for n in sorted(told):
        t = told[n]
        if n >= budget:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params={k: v for k, v in t.params.items() if k in dists},
                distributions={k: dists[k] for k in t.params if k in dists},
                value=t.objective if math.isfinite(t.objective) else None,
                state=optuna.trial.TrialState.COMPLETE
                if math.isfinite(t.objective)
                else optuna.trial.TrialState.FAIL,
            )
        )
        trials[n] = t
        if on_trial is not None:
            on_trial(t, True)
    result = SearchResult(trials=[])
    baseline = trials[0].components if 0 in trials else None
    for n in range(budget):
        if n in trials:
            continue
        ot: optuna.trial.Trial | None = None
        if n == 0:
            params = start_params(knobs)
        elif n in pending:
            params = pending[n]
        else:
            ot = study.ask(dists)
            params = {**start_params(knobs), **{k: float(v) for k, v in ot.params.items()}}
        journal.append({"event": "ask", "number": n, "params": params})
        comps = evaluate(n, params)
        if n == 0:
            baseline = comps
        value = objective(comps, baseline or comps, weights)
        journal.append(
            {"event": "tell", "number": n, "params": params, "components": comps, "objective": value}
        )
        t = Trial(n, params, comps, value)
        trials[n] = t
        result.evaluated.append(n)
        _tell(study, ot, params, dists, value)
        if on_trial is not None:
            on_trial(t, False)
    result.trials = [trials[n] for n in sorted(trials)]
    return result


def _tell(
    study: optuna.Study,
    asked: optuna.trial.Trial | None,
    params: dict[str, float],
    dists: dict[str, optuna.distributions.BaseDistribution],
    value: float,
) -> None:
    ok = math.isfinite(value)
    if asked is not None:
        study.tell(asked, value if ok else None, state=None if ok else optuna.trial.TrialState.FAIL)
        return
    study.add_trial(
        optuna.trial.create_trial(
            params={k: v for k, v in params.items() if k in dists},
            distributions={k: dists[k] for k in params if k in dists},
            value=value if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
        )
    )
