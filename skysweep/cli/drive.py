"""Driving a sweep from the terminal, for `up` and `retry`: launch what the controller
decides, then follow it to its end, hand it over (--detach, Ctrl-C), and the commands to
paste for what comes next."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, NoReturn

import typer

from skysweep.cli.common import Output, group_backend
from skysweep.cli.follow import (
    follow_with_progress,
    print_ranking,
    ranking_of,
    sweep_cost,
)
from skysweep.errors import SkysweepError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from skysweep.cost import SweepCost
    from skysweep.ledger import Ledger
    from skysweep.rank import Ranking
    from skysweep.session import Driving
    from skysweep.store import Store


class Hints:
    """Commands to paste, exactly as they will work: real paths, quoted, with --store and
    --local when they are needed."""

    def __init__(
        self,
        task_file: Path,
        store: Store,
        sweep_id: str,
        backend: str,
        sweep_flags: list[str] | None = None,
        search_flags: list[str] | None = None,
    ) -> None:
        from skysweep.settings import store_for

        self.sweep_url = f"{store.url.rstrip('/')}/{sweep_id}"
        words = ["skysweep", "up", str(task_file), "--sweep-id", sweep_id]
        for flag in sweep_flags or []:  # the sweep was made with them: it is resumed with them
            words += ["--sweep", flag]
        words += search_flags or []
        if backend == "local":
            words.append("--local")
        if store_for(None).url != store.url:
            words += ["--store", store.url]
        self.resume = shlex.join(words)
        self.wait = shlex.join(["skysweep", "wait", self.sweep_url])
        self.down = shlex.join(["skysweep", "down", self.sweep_url])
        self.results = shlex.join(["skysweep", "results", self.sweep_url])


def drive(
    err: Console,
    driving: Driving,
    hints: Hints,
    task_dir: Path,
    parallel: int,
    *,
    detach: bool,
    output: Output,
    relaunching: bool = False,
) -> None:
    """Launch what the controller decides, then follow (or hand over) until the sweep ends."""
    from skysweep import session

    controller = driving.controller
    ledger = driving.ledger
    try:
        first = controller.step()
    except KeyboardInterrupt:
        _interrupted(err, driving, hints, task_dir, parallel)
    except BaseException:
        driving.lease.release()
        raise
    if driving.resumed and not relaunching:
        err.print(
            f"resumed: {len(first.launched)} trial(s) launched now; trials launched "
            "before were left alone."
        )
    if relaunching:
        err.print(f"relaunched {len(first.launched)} trial(s) of {ledger.sweep_id}")
    elif not driving.resumed and not first.actions.done and not controller.source_exhausted:
        err.print(f"launched the first {len(first.launched)}; the rest follow as trials end.")
    if detach:
        group = getattr(controller.backend, "group", None)
        if first.actions.done or not controller.backend.runs_here:
            ledger.save_snapshot()
            driving.lease.release()
        else:
            session.detach(driving, task_dir, parallel)
        if output is Output.json:
            print(
                json.dumps(
                    {
                        "sweep_id": ledger.sweep_id,
                        "store_url": hints.sweep_url,
                        "backend": controller.backend.name,
                        "trials": ledger.header.expected_trials or len(ledger.trials),
                        "launched": first.launched,
                        "skipped": driving.skipped,
                        "controller_job_id": group,
                    }
                )
            )
        if group is not None:
            err.print(
                f"submitted sweep [bold]{ledger.sweep_id}[/]; its controller, SkyPilot job "
                f"{group}, launches the rest; follow it with: {hints.wait}"
            )
        else:
            err.print(f"submitted sweep [bold]{ledger.sweep_id}[/]; follow it with: {hints.wait}")
        return
    try:
        if not first.actions.done:
            # What the end needs (the report's code, plotly.js) loads while the first trials
            # run rather than after the last one ends.
            from skysweep.html_report import preload

            preload()
        final = follow_with_progress(err, controller, first, driving)
    except KeyboardInterrupt:
        _interrupted(err, driving, hints, task_dir, parallel)
    driving.lease.release()
    if final.actions.done:
        _end_group(err, ledger)
    if final.actions.stop:
        err.print(f"stopped: {final.actions.stop}", markup=False)
    ranking = ranking_of(ledger, final.results)
    summary = sweep_cost(controller, ranking)
    if summary.budget_reached:
        # Not a failure: the sweep ends with the trials it has; the exit code is theirs.
        err.print("sweep ended by its budget", markup=False)
    print_ranking(ranking, output, summary=summary)
    err.print(
        f"results kept in {hints.sweep_url}; show them again with: {hints.results}",
        markup=False,
    )
    _write_up_report(err, ledger, ranking, summary)
    raise typer.Exit(0 if ranking.all_succeeded else 1)


def _end_group(err: Console, ledger: Ledger) -> None:
    """The sweep is done: its standing-by controller job has nothing left to take over."""
    if ledger.header.backend != "sky":
        return
    group = ledger.group()
    if group is None or group.detached:
        return
    try:
        group_backend(group).cancel_group()
    except SkysweepError as exc:
        err.print(
            f"note: the sweep's controller job {group.job_id} was not cancelled ({exc}); "
            "it ends by itself, finding the sweep done",
            markup=False,
        )


def _write_up_report(err: Console, ledger: Ledger, ranking: Ranking, summary: SweepCost) -> None:
    """The HTML report of a sweep `up` followed to its end; a report that cannot be written
    is a note, never a failed sweep."""
    from skysweep.html_report import Costs, up_report_path, write_report

    try:
        path = write_report(
            ledger, ranking, up_report_path(ledger.sweep_id), costs=Costs.of(ranking, summary)
        )
    except Exception as exc:
        err.print(f"note: no HTML report: {exc}", markup=False)
        return
    err.print(f"report: {path}", markup=False)


def _interrupted(
    err: Console, driving: Driving, hints: Hints, task_dir: Path, parallel: int
) -> NoReturn:
    """Ctrl-C: stop watching. Trials keep running; on this machine a controller in the
    background keeps the sweep going, elsewhere the lease is given back for a resume."""
    from skysweep import session

    handed = driving.controller.backend.runs_here
    group = getattr(driving.controller.backend, "group", None)
    if handed:
        session.detach(driving, task_dir, parallel)
    else:
        driving.lease.release()
    if handed:
        carries_on = " and a controller in the background launches the rest."
    elif group is not None:
        carries_on = f" and the sweep's controller job (SkyPilot job {group}) takes it over."
    else:
        carries_on = "."
    err.print(
        "\nstopped watching; the trials keep running"
        + carries_on
        + f"\n  watch:  {hints.wait}\n  cancel: {hints.down}"
        + ("" if handed or group is not None else f"\n  resume: {hints.resume}"),
        markup=False,
    )
    # Everything is recorded and handed over; a second Ctrl-C while Python shuts down must
    # not turn this into a traceback or another exit code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
