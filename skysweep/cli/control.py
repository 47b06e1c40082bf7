"""The commands that change a sweep's course from any machine: stop it (down), drive it
(controller) and relaunch its failed trials (retry)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from skysweep.cli.common import (
    Output,
    StoreOpt,
    SweepArg,
    confirm_or_exit,
    err_console,
    group_backend,
    load_task,
    open_sweep,
)
from skysweep.cli.drive import Hints, drive
from skysweep.cli.follow import follow_with_progress, print_ranking, ranking_of
from skysweep.errors import UsageError


def down(sweep: SweepArg, store: StoreOpt = None) -> None:
    """Stop the sweep: its controller launches nothing more, and every job of this sweep that
    runs is cancelled, and nothing else. Safe to run twice."""
    import time

    from skysweep import lease
    from skysweep.session import watcher, who

    ref, ledger = open_sweep(sweep, store)
    group = None if ledger.legacy or ledger.header.backend != "sky" else ledger.group()
    group_cancelled = False
    in_group: list[str] = []
    if not ledger.legacy:
        ledger.ask_stop(by=who())
        if group is not None:
            before = watcher(ledger)
            before.observe()
            in_group = [t for t, r in before.results.items() if r.state.in_flight]
            # SkyPilot cancels the group's members with it (jobs of their own come next).
            group_cancelled = group_backend(group).cancel_group()
            if not group_cancelled:
                in_group = []
        # A controller that drives the sweep sees the request at its next look and stops.
        deadline = time.monotonic() + 15
        while lease.current(ref.store, ledger.sweep_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        ledger.refresh()
    controller = watcher(ledger)
    controller.observe()
    live = [t for t, r in controller.results.items() if r.state.in_flight]
    cancelled = sorted({*in_group, *(controller.cancel(live) if live else [])})
    if group is not None and group_cancelled:
        err_console().print(
            f"sweep {ledger.sweep_id}: cancelled its job group (SkyPilot job {group.job_id}): "
            "its controller and every trial attached to it",
            markup=False,
        )
    err_console().print(
        f"sweep {ledger.sweep_id}: cancelled {len(cancelled)} job(s)"
        + (f" ({', '.join(cancelled)})" if cancelled else "; nothing was running"),
        markup=False,
    )


def controller(
    sweep: SweepArg,
    store: StoreOpt = None,
    task_dir: Annotated[
        Path | None,
        typer.Option(
            "--task-dir",
            help="The task's folder (the trials' workdir). Default: the folder of the task "
            "file the sweep was started with, if it exists here, else the current folder.",
        ),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-parallel", min=1, help="At most N trials at once. Default: the sweep's."
        ),
    ] = None,
) -> None:
    """Drive a sweep until it is done, from any machine: what a watching `up` does after
    launching, with plain timestamped log lines instead of the terminal UI.

    It takes the sweep's lease, so it is safe to start anywhere: while another controller
    drives the sweep it stands by, and takes over when that one stops. It continues from
    the store after a restart and never launches a trial twice. On SkyPilot this is the task
    of the sweep's job group (`up --detach`); it exits 0 when the sweep is done or stopped.
    """
    import time

    from skysweep import __version__, session

    ref, ledger = open_sweep(sweep, store)
    ledger.require_writable()
    folder = task_dir
    if folder is None:
        recorded = Path(ledger.header.task_file).parent
        folder = recorded if recorded.is_dir() else Path.cwd()
    if not folder.is_dir():
        raise UsageError(
            f"--task-dir {folder}: no such folder",
            hint="give the folder of the sweep's task file (its trials' workdir)",
        )

    def log(line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{stamp} {line}", flush=True)

    log(f"controller for sweep {ref.url} (skysweep {__version__})")
    session.run_controller(
        ref.store, ref.sweep_id, folder.resolve(), log, max_parallel=max_parallel
    )


def retry(
    sweep: SweepArg,
    task_file: Annotated[
        Path | None,
        typer.Option(
            "--task-file",
            help="Where the task file is now (default: where it was at `up`). It must run "
            "what the sweep ran: to run an edited command, start a new sweep.",
        ),
    ] = None,
    store: StoreOpt = None,
    detach: Annotated[bool, typer.Option("--detach")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    include_pruned: Annotated[
        bool,
        typer.Option("--include-pruned", help="Relaunch the trials early stopping pruned, too."),
    ] = False,
) -> None:
    """Relaunch the failed, cancelled and lost trials of a sweep (never one that is running
    or done, nor one early stopping pruned unless --include-pruned). Works while the sweep
    runs: its controller relaunches them."""
    from skysweep import session
    from skysweep.backends import get_backend
    from skysweep.trial import RETRYABLE_STATES, TrialState

    err = err_console()
    ref, ledger = open_sweep(sweep, store)
    ledger.require_writable()
    header = ledger.header
    path = task_file or Path(header.task_file)
    if task_file is not None:
        given = load_task(task_file, None)
        differs = session.task_differences(header.task_spec(), given)
        if differs:
            raise UsageError(
                f"{task_file}: differs from the task sweep {ledger.sweep_id} ran "
                f"({', '.join(differs)}); retry reruns the sweep's own trials unchanged",
                hint=f"to run the edited task, start a new sweep: "
                f"{shlex.join(['skysweep', 'up', str(task_file)])}",
            )
    backend = get_backend(header.backend)
    controller = session.watcher(ledger, backend)
    controller.observe()
    again = RETRYABLE_STATES | ({TrialState.pruned} if include_pruned else set())
    failed = sorted(t for t, r in controller.results.items() if r.state in again)
    if not failed:
        pruned = sum(r.state is TrialState.pruned for r in controller.results.values())
        err.print(
            f"sweep {ledger.sweep_id}: no failed trial to retry."
            + (
                f" {pruned} pruned trial(s) left alone: add --include-pruned to rerun them."
                if pruned and not include_pruned
                else ""
            )
        )
        return
    confirm_or_exit(yes, f"Relaunch {len(failed)} failed trial(s)?")
    ledger.ask_retry(failed, by=session.who(), include_pruned=include_pruned)
    parallel = header.max_parallel or len(failed)
    hints = Hints(path, ref.store, ledger.sweep_id, header.backend, header.sweep_flags)
    driving = session.drive_retry(ledger, backend, path.resolve().parent, parallel)
    if driving is None:
        err.print(
            f"asked the controller of {ledger.sweep_id} to relaunch {len(failed)} trial(s)",
            markup=False,
        )
        if detach:
            return
        final = follow_with_progress(err, session.watcher(ledger, backend))
        ranking = ranking_of(ledger, final.results)
        print_ranking(ranking, Output.table)
        raise typer.Exit(0 if ranking.all_succeeded else 1)
    drive(
        err,
        driving,
        hints,
        path.resolve().parent,
        parallel,
        detach=detach,
        output=Output.table,
        relaunching=True,
    )
