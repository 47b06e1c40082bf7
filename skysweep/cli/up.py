"""`skysweep up`: expand the sweep, show the plan, launch the first trials and drive it (see
``drive``), in a SkyPilot job group when something is left to decide later."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skysweep.cli.common import (
    EarlyTerminateOpt,
    MaxTrialsOpt,
    MethodOpt,
    Output,
    ParamOverride,
    SearchOpt,
    SeedOpt,
    StoreOpt,
    SweepOverride,
    TaskArg,
    confirm_or_exit,
    err_console,
    load_task,
    search_overrides,
)
from skysweep.cli.drive import Hints, drive
from skysweep.cli.plan import (
    show_controller_cost,
    show_estimate,
    show_plan,
    show_space,
    show_stopping,
    unpriced_controller,
)
from skysweep.errors import SkysweepError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from skysweep.backends import Backend
    from skysweep.session import Driving
    from skysweep.task import TaskSpec

SWEEP_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def up(
    task_file: TaskArg,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Run every trial as a subprocess on this machine (no cloud account)."
        ),
    ] = False,
    store: StoreOpt = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-parallel",
            min=1,
            help="At most N trials at once. Default: sweeps.max_parallel, "
            "else (local) cores / requested cpus.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; launch nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Launch the first trials and exit; the rest are launched by the sweep's "
            "controller (on SkyPilot a job of its own, locally a background process). "
            "Follow later with `skysweep wait`.",
        ),
    ] = False,
    output: Annotated[
        Output, typer.Option("--output", help="table for people, json for scripts (on stdout).")
    ] = Output.table,
    sweep_id: Annotated[
        str | None,
        typer.Option(
            "--sweep-id",
            help="Resume this sweep: launch only its trials that were never launched or were lost.",
        ),
    ] = None,
    spread: Annotated[
        bool,
        typer.Option(
            "--spread", help="Assign trials round-robin across resources.infra providers."
        ),
    ] = False,
    sweep: SweepOverride = None,
    expected_minutes: Annotated[
        float | None,
        typer.Option(
            "--expected-minutes",
            min=0,
            help="How long one trial runs, for the cost estimate and the budget. "
            "Default: minutes_requested in the task file, else unknown.",
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            min=0,
            help="Budget in USD: launch trials only while spent + expected stays within it. "
            "Default: sweeps.budget.max_cost_usd.",
        ),
    ] = None,
    method: MethodOpt = None,
    max_trials: MaxTrialsOpt = None,
    seed: SeedOpt = None,
    search: SearchOpt = None,
    param: ParamOverride = None,
    early_terminate: EarlyTerminateOpt = None,
) -> None:
    """Expand the sweep, launch every trial, follow them and print the ranking.

    Unless --detach, it ends by writing the HTML report (see `skysweep report`) to
    ~/.skysweep/reports/SWEEP_ID.html and printing that path.
    """
    from skysweep import session
    from skysweep.backends import get_backend
    from skysweep.expand import expand, grid_size
    from skysweep.launch import default_parallelism, new_sweep_id, render_sweep
    from skysweep.ledger import SweepHeader
    from skysweep.render import missing_secrets
    from skysweep.search import source_for, space_of
    from skysweep.settings import store_for
    from skysweep.store import S3Store

    err = err_console()
    overrides = search_overrides(method, max_trials, seed, search, early_terminate)
    task = load_task(task_file, sweep, overrides, param)
    space = space_of(task)
    expected = grid_size(task) if space is None or space.max_trials is None else space.max_trials
    backend = get_backend("local" if local else "sky")
    missing = missing_secrets(task, dict(os.environ))
    if missing:
        raise UsageError(
            f"{task_file}: the task refers to secret(s) not set in your environment: "
            + ", ".join(missing),
            hint="export "
            + " ".join(f"{m.lstrip('_')}=..." for m in missing)
            + " first; secrets are read at launch and never written to disk",
        )
    if sweep_id is not None and not SWEEP_ID.match(sweep_id):
        raise UsageError(
            f"--sweep-id {sweep_id!r} is not a sweep id",
            hint="use lowercase letters, digits, '.', '_' and '-', starting with a "
            "letter or digit (at most 100), e.g. the id `up` printed",
        )
    from skysweep import cost

    the_store = store_for(store)
    if isinstance(the_store, S3Store) and not dry_run:
        the_store.connect_in_background()
    parallel = (
        max_parallel
        or (task.sweeps.max_parallel if task.sweeps else None)
        or (default_parallelism(task, expected) if local else expected)
    )
    budget = max_cost or (
        task.sweeps.budget.max_cost_usd if task.sweeps and task.sweeps.budget else None
    )
    # A SkyPilot sweep with something left to decide once its first trials are out is put
    # in a job group whose controller job drives it from the cloud (at once after --detach,
    # else when this machine stops watching); one that launches every trial now has nothing
    # to decide there, so it neither waits for nor pays for a controller instance. An API
    # server without job groups gets a detached sweep submitted whole instead.
    decides_later = _left_to_decide(task, parallel, expected, budget)
    groups = not local and decides_later and _job_groups()
    if detach and not local and not groups and parallel < expected:
        raise UsageError(
            f"--detach cannot hold {expected} SkyPilot trials to --max-parallel {parallel}: "
            "nobody would be watching to launch the rest",
            hint="drop --detach so `up` launches as trials end, or raise --max-parallel to "
            f"{expected}",
        )
    the_id = sweep_id or new_sweep_id(task.name)
    task_dir = task_file.resolve().parent
    # A sampled sweep's first suggestions stand for it (its seed, or else its id, fixes them).
    shown = expand(task) if space is None else source_for(task, the_id).next(min(parallel, 8), {})
    preview = render_sweep(
        task,
        shown,
        sweep_id=the_id,
        backend=backend,
        store=the_store,
        task_dir=task_dir,
        spread=spread,
    )
    show_plan(err, task, expected, backend.name, the_store.url, the_id, parallel, preview)
    if space is not None:
        show_space(err, space, parallel, shown if dry_run else [])
    show_stopping(err, task)
    plan = backend.plan(preview)
    for line in plan.lines:
        err.print(line, markup=False)
    if not local:
        _show_controller(
            err, task, the_id, parallel, detach=detach, groups=groups, needed=decides_later
        )
    minutes = cost.expected_minutes(expected_minutes, task.minutes_requested)
    estimate = show_estimate(err, plan, preview, minutes, budget)
    estimate |= (
        _controller_cost(err, backend, task, expected, parallel, minutes)
        if groups
        else unpriced_controller()
    )
    hints = Hints(task_file, the_store, the_id, backend.name, sweep, overrides.flags())
    if dry_run:
        if output is Output.json:
            print(
                json.dumps(
                    {
                        "sweep_id": the_id,
                        "store_url": hints.sweep_url,
                        "trials": expected,
                        "launched": [],
                        "dry_run": True,
                        **estimate,
                    }
                )
            )
        err.print("dry run: nothing launched.")
        return
    confirm_or_exit(yes, f"Launch {expected} trial(s)?")

    from skysweep.ledger import Ledger

    header = SweepHeader.new(
        sweep_id=the_id,
        task=task,
        task_file=task_file.resolve(),
        backend=backend.name,
        store_url=the_store.url,
        max_parallel=parallel,
        expected_trials=expected,
        spread=spread,
        sweep_flags=sweep or [],
        max_cost_usd=budget,
        expected_minutes=minutes,
        prices={k: p for k, p in plan.prices.items() if p is not None},
    )
    if sweep_id is not None and Ledger.exists(the_store, the_id):
        ledger = Ledger.open(the_store, the_id)
        if max_parallel is None:
            parallel = ledger.header.max_parallel or parallel
        driving = session.resume(ledger, task, task_file, backend, parallel)
        # Resumed with the cap it was made with, which may leave trials for later.
        groups = not local and _left_to_decide(task, parallel, expected, budget) and _job_groups()
    else:
        driving = session.start(the_store, header, backend, task_dir, parallel)
    if groups:
        _launch_group(
            err, driving, task_dir, hints, detach=detach, parallel=parallel, expected=expected
        )
    drive(err, driving, hints, task_dir, parallel, detach=detach, output=output)


def _left_to_decide(task: TaskSpec, parallel: int, expected: int, budget: float | None) -> bool:
    from skysweep.controller import left_to_decide

    return left_to_decide(
        all_launched=parallel >= expected,
        budget=budget,
        stopping=task.sweeps.early_terminate if task.sweeps else None,
    )


def _job_groups() -> bool:
    """Whether the SkyPilot API server can hold a sweep in a job group (asked once)."""
    from skysweep.backends.sky import api_server

    return api_server().groups


def _show_controller(
    err: Console,
    task: TaskSpec,
    sweep_id: str,
    parallel: int,
    *,
    detach: bool,
    groups: bool,
    needed: bool,
) -> None:
    from skysweep import controller_job
    from skysweep.backends.sky import JOB_GROUP_API_VERSION, JOB_GROUP_RELEASE

    if not needed:
        err.print(
            "controller: none; every trial launches now and nothing is left to decide "
            "(a cap below the trial count, a budget or early stopping would run one in the "
            "cloud)",
            markup=False,
        )
        return
    if not groups:
        err.print(
            "this SkyPilot API server cannot attach jobs to a job group (SkyPilot "
            f"{JOB_GROUP_RELEASE}, API version {JOB_GROUP_API_VERSION}): trials are jobs of "
            "their own"
            + (
                "; --detach submits every trial now and no controller runs in the cloud"
                if detach
                else ""
            ),
            markup=False,
        )
        return
    where = json.dumps(controller_job.resources(task), sort_keys=True)
    if detach:
        err.print(
            f"controller: a SkyPilot job group named {sweep_id} runs `skysweep controller` "
            f"on {where}; it launches the trials into the group, at most {parallel} at once",
            markup=False,
        )
    else:
        err.print(
            f"controller: the trials join a SkyPilot job group named {sweep_id}; its "
            f"controller job stands by on {where} and takes the sweep over if this machine "
            "stops watching",
            markup=False,
        )


def _controller_cost(
    err: Console,
    backend: Backend,
    task: TaskSpec,
    expected: int,
    parallel: int,
    minutes: float | None,
) -> dict[str, Any]:
    """The controller job's price and expected cost, printed under the trials' estimate."""
    from skysweep import controller_job
    from skysweep.backends.sky import SkyBackend

    assert isinstance(backend, SkyBackend)
    try:
        price = backend.price(controller_job.resources(task))
    except Exception as exc:  # a price is a courtesy: the launch does not need it
        err.print(f"  controller job: no price ({exc})", markup=False)
        return unpriced_controller()
    return show_controller_cost(err, price, expected, parallel, minutes)


def _launch_group(
    err: Console,
    driving: Driving,
    task_dir: Path,
    hints: Hints,
    *,
    detach: bool,
    parallel: int,
    expected: int,
) -> None:
    """Launch the sweep's job group, whose controller job stands by while this process
    drives and takes over when it stops (at once after `--detach`'s first launches).
    Without it a watched sweep's trials still run, as jobs of their own; a detached sweep
    that leaves trials for later cannot do without it."""
    from skysweep import session

    try:
        group = session.launch_controller_job(
            driving.ledger, driving.controller.backend, task_dir, detached=detach
        )
    except SkysweepError as exc:
        if detach and parallel < expected:
            driving.lease.release()
            from skysweep.errors import BackendError

            raise BackendError(
                f"the sweep's controller job was not launched, so no trial was: {exc}",
                hint=f"try again with: {hints.resume} --detach (or drop --detach)",
            ) from exc
        err.print(f"note: no job group for the sweep: {exc}", markup=False)
        return
    err.print(
        f"job group: SkyPilot job {group.job_id} ({group.name}); its controller "
        + ("launches the rest" if detach else "stands by"),
        markup=False,
    )
