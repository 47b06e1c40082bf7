"""The commands that read a sweep and change nothing: status, results, report, wait, list
and logs."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skysweep.cli.common import (
    Format,
    Output,
    StoreOpt,
    SweepArg,
    err_console,
    group_backend,
    open_sweep,
    out_console,
)
from skysweep.cli.follow import (
    look,
    print_ranking,
    ranking_of,
    store_only_note,
    with_cost,
    with_progress,
)
from skysweep.errors import SkysweepError, UsageError

if TYPE_CHECKING:
    from skysweep.controller import Look
    from skysweep.ledger import Ledger
    from skysweep.rank import Ranking
    from skysweep.settings import SweepRef


def status(
    sweep: SweepArg,
    store: StoreOpt = None,
    output: Annotated[Output, typer.Option("--output")] = Output.table,
) -> None:
    """Show every trial's state, merging the backend's job states with the store."""
    from skysweep.report import ranking_json, ranking_table

    ref, ledger = open_sweep(sweep, store)
    ranking, summary = look(ledger)
    ranking, progress = with_progress(ledger, ranking)
    driver = _driver(ref, ledger, ranking, ended=summary.budget_reached)
    if output is Output.json:
        data = with_cost(ranking_json(ranking), summary)
        data["progress"] = {t: {"step": s, "value": v} for t, (s, v) in progress.items()}
        if driver is not None:
            data["controller"] = driver
        print(json.dumps(data, indent=2))
    else:
        header = ledger.header
        more = (header.expected_trials or 0) - len(ranking.trials)
        out_console().print(
            ranking_table(
                ranking,
                title=f"{ledger.sweep_id} ({header.backend}): {len(ranking.trials)} trials"
                + (f", {more} more to come" if more > 0 and not ledger.stop_requested else ""),
                jobs=True,
            )
        )
        for line in summary.lines():
            out_console().print(line, markup=False)
        if driver is not None:
            out_console().print(driver["summary"], markup=False)


def _driver(
    ref: SweepRef, ledger: Ledger, ranking: Ranking, *, ended: bool
) -> dict[str, Any] | None:
    """Who drives a sweep that is not over: the lease's holder, and on SkyPilot the state of
    the sweep's controller job; None once the sweep is over."""
    from skysweep import lease
    from skysweep.controller import left_to_decide
    from skysweep.trial import TrialState

    more = (ledger.header.expected_trials or 0) - len(ranking.trials)
    live = any(TrialState(t.result.state).in_flight for t in ranking.trials)
    if ledger.legacy or ledger.stop_requested or not (live or (more > 0 and not ended)):
        return None
    header = ledger.header
    needed = left_to_decide(
        all_launched=more <= 0, budget=header.max_cost_usd, stopping=header.early_terminate
    )
    holder = lease.current(ref.store, ledger.sweep_id)
    group = ledger.group() if ledger.header.backend == "sky" else None
    out: dict[str, Any] = {"driver": holder.describe() if holder else None}
    words = []
    if group is not None:
        state: str
        try:
            view = group_backend(group).group_view()
            state, detail = view.state, view.detail
        except SkysweepError as exc:
            state, detail = "unknown", str(exc)
        out.update(job_id=group.job_id, state=state, detail=detail)
        words.append(f"controller job: SkyPilot job {group.job_id} {state} ({detail})")
    take_over = shlex.join(["skysweep", "controller", ref.url]) if needed else None
    out["take_over"] = take_over
    if holder is not None:
        words.append(f"driven by {holder.describe()}")
    elif take_over is None:
        words.append("every trial is launched and nothing is left to decide: no driver needed")
    else:
        words.append(f"nobody drives the sweep now; take it over from any machine: {take_over}")
    out["summary"] = "; ".join(words)
    return out


def results(
    sweep: SweepArg,
    store: StoreOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    best: Annotated[bool, typer.Option("--best", help="Only the best trial.")] = False,
) -> None:
    """Print the ranked results (markdown suits $GITHUB_STEP_SUMMARY; json and csv scripts).

    Exit code 0 when every trial succeeded with the metric, 1 otherwise. With --best: 0 when
    a best trial was printed (other trials may have failed), 1 when no trial has the metric.
    """
    _, ledger = open_sweep(sweep, store)
    ranking, summary = look(ledger)
    print_ranking(ranking, format, best_only=best, summary=summary)
    raise typer.Exit(0 if (ranking.best is not None if best else ranking.all_succeeded) else 1)


def report(
    sweep: SweepArg,
    store: StoreOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML file to write. Default: SWEEP_ID.html here."),
    ] = None,
) -> None:
    """Write the sweep as one self-contained HTML page: the sortable ranked table, parallel
    coordinates, the metric against each parameter, learning curves, best so far, parameter
    importance and provenance. It loads nothing from the network (a CI artifact, offline).

    Prints the file's path. Exit code 0 when it is written, whatever the trials did.
    """
    from skysweep.html_report import Costs, default_report_path, write_report

    _, ledger = open_sweep(sweep, store)
    ranking, summary = look(ledger)
    path = out or default_report_path(ledger.sweep_id)
    print(write_report(ledger, ranking, path, costs=Costs.of(ranking, summary)))


def wait(
    sweep: SweepArg,
    store: StoreOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Give up after SECONDS (exit 3).")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Look at most every SECONDS.")
    ] = 5.0,
) -> None:
    """Return when every trial has finished. Progress on stderr.

    Exit codes: 0 all trials succeeded and the best has the metric; 1 some trials failed or
    lack the metric; 3 timeout; 2 usage error.
    """
    import time

    from skysweep.controller import Backoff
    from skysweep.errors import WaitTimeoutError
    from skysweep.report import state_counts
    from skysweep.session import watcher

    ref, ledger = open_sweep(sweep, store)
    err = err_console()
    controller = watcher(ledger)
    told: list[bool] = []

    def note_once(exc: Exception) -> None:
        if not told:
            store_only_note(exc)
            told.append(True)

    controller.on_unavailable = note_once
    last = [""]

    def on_look(look: Look) -> None:
        line = state_counts(ranking_of(ledger, look.results))
        if line != last[0]:
            err.print(f"{ledger.sweep_id}: {line}", markup=False)
            last[0] = line

    deadline = None if timeout is None else time.monotonic() + timeout
    final = controller.run(
        on_look=on_look,
        backoff=Backoff(low=min(interval, 0.5), high=interval),
        deadline=deadline,
    )
    ranking = ranking_of(ledger, final.results)
    if not final.actions.done:
        unfinished = sum(not t.result.finished for t in ranking.trials) + max(
            0, (ledger.header.expected_trials or 0) - len(ranking.trials)
        )
        total = max(len(ranking.trials), ledger.header.expected_trials or 0)
        raise WaitTimeoutError(
            f"sweep {ledger.sweep_id}: {unfinished} of {total} trials "
            f"still unfinished after {timeout:g} s",
            hint=f"wait again, or see: skysweep status {ref.url}",
        )
    best = ranking.best
    err.print(
        f"finished: best trial {best.result.trial_id} ({ranking.metric} = {best.value:.6g})"
        if best
        else "finished: no trial has the metric",
        markup=False,
    )
    raise typer.Exit(0 if ranking.all_succeeded else 1)


def list_sweeps(
    store: StoreOpt = None,
    output: Annotated[Output, typer.Option("--output")] = Output.table,
) -> None:
    """List the sweeps in a store, newest first."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from skysweep.errors import StoreError
    from skysweep.ledger import HEADER
    from skysweep.settings import store_for

    the_store = store_for(store)

    def read(sweep_id: str) -> dict[str, Any] | None:
        data = None
        try:
            data = the_store.get(f"{sweep_id}/{HEADER}")
            header = json.loads(data) if data else None
        except (StoreError, ValueError):
            return None
        if not isinstance(header, dict) or "sweep_id" not in header:
            return None
        trials = header.get("expected_trials") or len(header.get("trials", []))
        return {
            "sweep_id": header["sweep_id"],
            "name": header.get("name", ""),
            "created_at": header.get("created_at", ""),
            "backend": header.get("backend", ""),
            "trials": trials,
            "store_url": f"{the_store.url}/{header['sweep_id']}",
        }

    with ThreadPoolExecutor(16) as pool:
        found = [m for m in pool.map(read, the_store.children("")) if m is not None]
    found.sort(key=lambda m: str(m["created_at"]), reverse=True)
    if output is Output.json:
        print(json.dumps(found, indent=2))
        return
    table = Table(title=f"sweeps in {the_store.url}", title_justify="left")
    table.add_column("sweep", no_wrap=True)
    for column in ("name", "created", "backend", "trials"):
        table.add_column(column, no_wrap=column != "name")
    for m in found:
        created = str(m["created_at"]).replace("T", " ")[:16]
        table.add_row(m["sweep_id"], m["name"], created, m["backend"], str(m["trials"]))
    out_console().print(table)


def logs(
    sweep: SweepArg,
    trial: Annotated[str, typer.Argument(help="The trial id (see `skysweep status`).")],
    store: StoreOpt = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow")] = True,
) -> None:
    """Stream one trial's logs."""
    from skysweep.backends import get_backend

    ref, ledger = open_sweep(sweep, store)
    if trial not in ledger.trials:
        raise UsageError(
            f"sweep {ledger.sweep_id} has no trial {trial!r}",
            hint=f"see the trial ids with: skysweep status {ref.url}",
        )
    attempt = ledger.latest(trial)
    backend = get_backend(ledger.header.backend)
    for chunk in backend.logs(
        ref.store, ledger.sweep_id, trial, attempt.job if attempt else None, follow
    ):
        sys.stdout.write(chunk)
        sys.stdout.flush()
