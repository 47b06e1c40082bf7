"""Following a sweep and showing where it stands: the progress bar, the ranking with its
progress and cost notes, and one reader's look at a sweep."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from skysweep.cli.common import Format, Output, err_console, out_console
from skysweep.errors import SkysweepError

if TYPE_CHECKING:
    from rich.console import Console

    from skysweep.controller import Controller, Look
    from skysweep.cost import SweepCost
    from skysweep.ledger import Ledger
    from skysweep.rank import Ranking
    from skysweep.session import Driving


def follow_with_progress(
    err: Console,
    controller: Controller,
    first: Look | None = None,
    driving: Driving | None = None,
) -> Look:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from skysweep.controller import Look
    from skysweep.report import state_counts_of
    from skysweep.trial import TrialState

    total = controller.ledger.header.expected_trials or len(controller.ledger.trials)
    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    bar = progress.add_task("", total=total)
    counts: dict[str, int] = {}
    states: dict[str, str] = {}

    def on_look(look: Look) -> None:
        for trial_id in look.changed:
            result = look.results[trial_id]
            previous = states.get(trial_id)
            if previous is not None:
                counts[previous] -= 1
            states[trial_id] = str(result.state)
            counts[str(result.state)] = counts.get(str(result.state), 0) + 1
        done = sum(n for state, n in counts.items() if TrialState(state).final)
        progress.update(
            bar,
            total=max(total, len(look.results)),
            completed=done,
            description=state_counts_of(counts, " "),
        )

    with progress:
        if first is not None:
            on_look(Look(first.results, set(first.results), first.actions, first.launched))
            if first.actions.done or first.actions.stop:
                return first
        if driving is not None:
            return driving.run_to_end(on_look=on_look)
        return controller.run(on_look=on_look)


def ranking_of(ledger: Any, results: Any) -> Ranking:
    from skysweep.collect import with_costs
    from skysweep.rank import rank

    ordered = with_costs(sorted(results.values(), key=lambda r: r.index), ledger)
    ranking = rank(ledger.sweep_id, ordered, ledger.header.metric, ledger.header.lower_is_better)
    if not ranking.pruned:
        return ranking
    # How long an unstopped trial runs, for the steps saved: the rule's max_steps, else what
    # the best trial ran (one read).
    from dataclasses import replace

    from skysweep.history import full_steps

    rule = ledger.header.early_terminate
    steps = rule.max_steps if rule is not None else None
    if steps is None and ranking.best is not None:
        steps = full_steps(ledger.store, ledger.sweep_id, ranking.best.result.trial_id)
    return replace(ranking, full_steps=steps)


def print_ranking(
    ranking: Ranking,
    output: Output | Format,
    best_only: bool = False,
    summary: SweepCost | None = None,
) -> None:
    from skysweep.report import ranking_json, render_ranking

    if output.value == "json" and summary is not None and not best_only:
        print(json.dumps(with_cost(ranking_json(ranking), summary), indent=2))
        return
    cost = summary.lines() if summary is not None and not best_only else []
    rendered = render_ranking(ranking, output.value, best_only=best_only, cost=cost)
    if isinstance(rendered, str):
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    else:
        console = out_console()
        console.print(rendered)
        # Before the best trial's line, which stays last for scripts that read it.
        for line in summary.lines() if summary is not None else []:
            console.print(line, markup=False)
        best = ranking.best
        if best is not None and not best_only:
            from skysweep.task import parameter_text

            params = ", ".join(f"{k}={parameter_text(v)}" for k, v in best.result.params.items())
            # markup=False: a parameter value such as "[bold]" is shown, not obeyed.
            console.print(
                f"best: trial {best.result.trial_id} with {ranking.metric} = "
                f"{best.value:.6g} ({params or 'no parameters'})",
                markup=False,
            )


def store_only_note(exc: Exception) -> None:
    message = exc.message if isinstance(exc, SkysweepError) else str(exc)
    err_console().print(f"note: {message}; showing what the store says", markup=False)


def look(ledger: Ledger) -> tuple[Ranking, SweepCost]:
    """One look at a sweep, as a reader: what the store and the backend say, ranked, and
    what it cost."""
    from skysweep.session import watcher

    controller = watcher(ledger)
    controller.on_unavailable = store_only_note
    controller.observe()
    ranking = ranking_of(ledger, controller.results)
    return ranking, sweep_cost(controller, ranking)


def with_progress(ledger: Ledger, ranking: Ranking) -> tuple[Ranking, dict[str, tuple[int, float]]]:
    """Each running trial's latest step and value (of the stopping rule's metric, else the
    sweep's), read from its history.jsonl, and the ranking with it in their notes."""
    from dataclasses import replace

    from skysweep.history import HistoryReader

    rule = ledger.header.early_terminate
    metric = (rule.metric if rule is not None else None) or ledger.header.metric
    reader = HistoryReader(ledger.store, ledger.sweep_id, metric)
    progress: dict[str, tuple[int, float]] = {}
    trials = []
    for trial in ranking.trials:
        result = trial.result
        if result.state == "running":
            reader.read(result.trial_id, result.attempt)
            latest = reader.latest(result.trial_id)
            if latest is not None:
                progress[result.trial_id] = latest
                trial = replace(trial, reason=f"step {latest[0]}: {metric} {latest[1]:.6g}")
        trials.append(trial)
    return replace(ranking, trials=trials), progress


def sweep_cost(controller: Controller, ranking: Ranking) -> SweepCost:
    from skysweep import cost

    ledger = controller.ledger
    header = ledger.header
    left = (header.expected_trials or 0) - len(ledger.trials)
    used = sum(controller.spending()) if header.max_cost_usd is not None else 0.0
    return cost.sweep_cost(
        ((t.result.job_id is not None, t.result.cost_usd) for t in ranking.trials),
        free=header.backend == "local",
        max_cost_usd=header.max_cost_usd,
        used_usd=used,
        budget_reached=left > 0 and not ledger.stop_requested and controller.budget_reached(),
        not_launched=max(0, left),
    )


def with_cost(data: dict[str, Any], summary: SweepCost) -> dict[str, Any]:
    return {**data, "cost": summary.json()}
