"""Driving a sweep from a command: start or resume it under its lease, hand it to a detached
controller, or follow it as a reader. The commands in ``cli/`` call these and print.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skysweep.backends import Backend, get_backend
from skysweep.controller import LEASE_LOST, Controller, Look, Policy
from skysweep.errors import UsageError
from skysweep.launch import Launcher
from skysweep.lease import Lease, LeaseHeldError
from skysweep.ledger import JobGroup, Ledger, SweepHeader, now
from skysweep.process import start_module
from skysweep.search import TrialSource, source_for
from skysweep.store import Store, open_store
from skysweep.task import TaskSpec
from skysweep.trial import TrialState

CONTROLLER_LOGS = Path("~/.skysweep/controllers").expanduser()
"""Where a detached controller writes what it does, one file per sweep."""

# What must match for a sweep to be resumed or retried with a task file: the trials it
# makes and what they run.
TASK_IDENTITY = ("run", "setup", "envs", "parameters", "sweeps", "resources", "github_repo_url")


def who() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def task_differences(stored: TaskSpec, given: TaskSpec) -> list[str]:
    before = stored.model_dump(mode="json", exclude_none=True)
    after = given.model_dump(mode="json", exclude_none=True)
    return [key for key in TASK_IDENTITY if before.get(key) != after.get(key)]


@dataclass
class Driving:
    """A sweep this process drives: its records, its lease and its controller."""

    ledger: Ledger
    lease: Lease
    controller: Controller
    skipped: list[str]
    """Trials that had been launched before this process took the sweep."""
    resumed: bool

    def run_to_end(self, on_look: Callable[[Look], None] | None = None) -> Look:
        """Drive the sweep until it is done, then give the lease back.

        A retry asked for while the sweep was ending is not lost: the lease is released
        first and the requests read after, so either this controller sees the request (and
        takes the lease again) or the retry that wrote it finds the lease free and drives.
        """
        watch = GroupWatch(self.ledger, self.controller.backend)

        def look_and_watch(look: Look) -> None:
            watch()
            if on_look is not None:
                on_look(look)

        while True:
            final = self.controller.run(on_look=look_and_watch)
            self.ledger.save_snapshot()
            self.lease.release()
            if not final.actions.done:
                return final
            self.ledger.refresh(records=False)
            waiting = any(
                self.ledger.relaunch_asked(t, r.state) for t, r in self.controller.results.items()
            )
            if not waiting:
                return final
            try:
                self.lease = Lease.acquire(self.ledger.store, self.ledger.sweep_id)
            except LeaseHeldError:
                return final  # the retry took the sweep over
            self.controller.lease = self.lease


class GroupWatch:
    """Stops the sweep when someone cancels its SkyPilot job group (``sky jobs cancel``):
    SkyPilot cancels its trials with it, and nothing may launch more. Asks SkyPilot at most
    every ``every`` seconds, and at once when a launch was refused for that reason."""

    def __init__(self, ledger: Ledger, backend: Backend, every: float = 30.0) -> None:
        self.ledger = ledger
        self.backend = backend
        self.every = every
        self._next = 0.0

    def __call__(self) -> None:
        import time

        backend = self.backend
        if backend.name != "sky":
            return  # no job group: nothing to watch, and no SkyPilot code to import
        from skysweep.backends.sky import SkyBackend

        if not isinstance(backend, SkyBackend) or backend.group is None:
            return
        if self.ledger.stop_requested:
            return
        if not backend.group_cancelled and time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every
        try:
            cancelled = backend.group_cancelled or backend.group_view().cancelled
        except Exception:
            return  # a look at the group is a courtesy: the next one tries again
        if cancelled:
            self.ledger.ask_stop(by="SkyPilot: the sweep's job group was cancelled")


def start(
    store: Store,
    header: SweepHeader,
    backend: Backend,
    task_dir: Path,
    parallel: int,
) -> Driving:
    ledger = Ledger.create(store, header)
    lease = Lease.acquire(store, header.sweep_id)
    return Driving(
        ledger, lease, _controller(ledger, backend, task_dir, parallel, lease), [], False
    )


def resume(
    ledger: Ledger,
    task: TaskSpec,
    task_file: Path,
    backend: Backend,
    parallel: int,
) -> Driving:
    """Take a sweep up again: what was never launched, or was lost, is launched; nothing that
    runs or ended is. Raises when another controller drives it."""
    store, sweep_id = ledger.store, ledger.sweep_id
    ledger.require_writable()
    if ledger.header.backend != backend.name:
        raise UsageError(
            f"sweep {sweep_id} runs on the {ledger.header.backend} backend",
            hint="resume it with the same backend ("
            + ("--local" if ledger.header.backend == "local" else "no --local")
            + ")",
        )
    differs = task_differences(ledger.header.task_spec(), task)
    if differs:
        raise UsageError(
            f"{task_file}: differs from the task sweep {sweep_id} was started with "
            f"({', '.join(differs)})",
            hint="resume with the task file the sweep was started with, or start a new "
            "sweep without --sweep-id",
        )
    lease = Lease.acquire(store, sweep_id)
    try:
        ledger.clear_stop()
        attach_group(ledger, backend)
        controller = _controller(ledger, backend, task_file.resolve().parent, parallel, lease)
        controller.observe()
        skipped = [t for t in ledger.trials if ledger.latest(t) is not None]
        # Not a trial lost while being submitted: its job may run (the backend could not
        # tell), so only the user relaunches it.
        relaunch = [
            t
            for t, r in controller.results.items()
            if r.state in (TrialState.lost, TrialState.submit_failed)
            and (attempt := ledger.latest(t)) is not None
            and not attempt.submitting
        ]
        ledger.ask_retry(relaunch, by=who())
        skipped = [
            t
            for t in skipped
            if t not in relaunch and controller.results[t].state is not TrialState.pending
        ]
    except BaseException:
        lease.release()
        raise
    return Driving(ledger, lease, controller, skipped, True)


def drive_retry(ledger: Ledger, backend: Backend, task_dir: Path, parallel: int) -> Driving | None:
    """Become the sweep's driver to carry out retries, unless a live controller already
    drives it (then it reads the requests itself: None)."""
    try:
        lease = Lease.acquire(ledger.store, ledger.sweep_id)
    except LeaseHeldError:
        return None
    ledger.clear_stop()
    attach_group(ledger, backend)
    return Driving(ledger, lease, _controller(ledger, backend, task_dir, parallel, lease), [], True)


def _controller(
    ledger: Ledger, backend: Backend, task_dir: Path, parallel: int, lease: Lease | None
) -> Controller:
    task = ledger.header.task_spec()
    source: TrialSource = source_for(task, ledger.sweep_id)
    return Controller(
        ledger,
        backend,
        source,
        Launcher(ledger, backend, task_dir=task_dir),
        policy=Policy(
            max_parallel=parallel,
            max_cost_usd=ledger.header.max_cost_usd,
            trial_cost_usd=ledger.header.trial_estimate_usd(),
        ),
        lease=lease,
    )


def watcher(ledger: Ledger, backend: Backend | None = None) -> Controller:
    """A controller that only observes: for status, results and wait."""
    return Controller(
        ledger,
        backend or get_backend(ledger.header.backend),
        None,
        None,
        policy=Policy(max_parallel=0),
        lease=None,
    )


# ---------------------------------------------------------------------------------------
# The sweep's controller as a SkyPilot job: a job group named after the sweep.

TASK_MOUNT = "~/.skysweep/task"
"""Where the controller job finds the task's folder (the trials' workdir)."""


def launch_controller_job(
    ledger: Ledger,
    backend: Backend,
    task_dir: Path,
    *,
    detached: bool,
    environ: dict[str, str] | None = None,
) -> JobGroup:
    """Launch the sweep's job group, whose task runs ``skysweep controller``, and record it;
    from now on the backend attaches every trial to it.

    Detached, the controller drives the sweep from the start. Otherwise it stands by while
    this process drives, and takes the sweep over if this process stops (its lease runs
    out or is handed back)."""
    from skysweep import controller_job
    from skysweep.backends.sky import SkyBackend
    from skysweep.render import secret_value

    assert isinstance(backend, SkyBackend)
    known = attach_group(ledger, backend)
    if known is not None and backend.group_view().live:
        return known  # a resumed sweep whose controller job still runs: it stays the group
    environ = dict(os.environ if environ is None else environ)
    store, sweep_id = ledger.store, ledger.sweep_id
    task = ledger.header.task_spec()
    secrets = controller_job.store_secrets(store.url, environ)
    for name in task.secret_names():  # the trials' {{secret.NAME}}, for its launches
        value = secret_value(name, environ)
        if value is not None:
            secrets[name] = value
    with controller_job.staged_package() as package:
        spec = controller_job.spec(
            task,
            sweep_id,
            store.url,
            getattr(store, "endpoint_url", None),
            package,
            task_dir=(str(task_dir), TASK_MOUNT),
        )
        job_id = backend.launch_group(spec, secrets)
    group = JobGroup(job_id=job_id, name=sweep_id, launched_at=now(), detached=detached)
    ledger.set_group(group)
    return group


def attach_group(ledger: Ledger, backend: Backend) -> JobGroup | None:
    """Point the backend at the sweep's job group, if it has one."""
    group = ledger.group() if ledger.header.backend == "sky" else None
    if group is not None and hasattr(backend, "group"):
        backend.group = group.job_id
    return group


def run_controller(
    store: Store,
    sweep_id: str,
    task_dir: Path,
    log: Callable[[str], None],
    *,
    max_parallel: int | None = None,
    standby_seconds: float = 15.0,
) -> Look | None:
    """``skysweep controller``: drive the sweep until it is done.

    While another process holds the sweep's lease (a watching ``up``, a controller that was
    restarted), stand by and take it over when it is handed back or runs out; a controller
    that loses the lease stands by again. Continues from the store: trials launched before
    are counted, never launched again. Returns the last look, or None when the sweep was
    stopped (``skysweep down``) while standing by.
    """
    import time

    ledger = Ledger.open(store, sweep_id)
    ledger.require_writable()
    backend = get_backend(ledger.header.backend)
    group = attach_group(ledger, backend)
    if group is not None:
        log(f"the sweep's job group is SkyPilot job {group.job_id} ({group.name})")
    parallel = max_parallel or ledger.header.max_parallel or 1
    waiting_for: str | None = None
    while True:
        ledger.refresh(records=False)
        if ledger.stop_requested:
            log("the sweep was stopped (skysweep down): nothing more to drive")
            return None
        try:
            lease = Lease.acquire(store, sweep_id)
        except LeaseHeldError as held:
            if waiting_for != held.holder.token:
                waiting_for = held.holder.token
                log(
                    f"standing by: {held.holder.describe()} drives the sweep; taking over "
                    "when it stops"
                )
            time.sleep(max(0.5, min(standby_seconds, held.holder.expires_at - time.time())))
            continue
        waiting_for = None
        log(f"driving the sweep ({who()}), at most {parallel} trial(s) at once")
        driving = Driving(
            ledger, lease, _controller(ledger, backend, task_dir, parallel, lease), [], True
        )
        driving.controller.observe()
        final = driving.run_to_end(on_look=_logger(log))
        for note in getattr(backend, "notes", []):
            log(f"note: {note}")
        if final.actions.stop == LEASE_LOST:
            log("another controller took the sweep over: standing by")
            continue
        log(f"controller: {final.actions.stop or 'sweep done'}")
        return final


def _logger(log: Callable[[str], None]) -> Callable[[Look], None]:
    def on_look(look: Look) -> None:
        for trial_id in sorted(look.changed):
            result = look.results.get(trial_id)
            if result is not None and result.finished:
                log(f"{trial_id} {result.state}")
        for prune in look.pruned:
            log(f"stopped {prune.trial_id}: {prune.reason}")
        if look.launched:
            log(f"launched {', '.join(look.launched)}")

    return on_look


# ---------------------------------------------------------------------------------------
# A detached controller: the same loop, in a process of its own.


def detach(driving: Driving, task_dir: Path, parallel: int) -> int:
    """Hand the sweep to a controller process of its own session, which carries on until the
    sweep is done; the lease goes with it. Returns its pid."""
    store = driving.ledger.store
    folder = CONTROLLER_LOGS
    folder.mkdir(parents=True, exist_ok=True)
    work = {
        "store_url": store.url,
        "endpoint_url": getattr(store, "endpoint_url", None),
        "sweep_id": driving.ledger.sweep_id,
        "generation": driving.lease.generation,
        "token": driving.lease.holder.token,
        "task_dir": str(task_dir),
        "max_parallel": parallel,
    }
    with (folder / f"{driving.ledger.sweep_id}.log").open("ab") as log:
        process = start_module("skysweep.session", work, log)
    driving.lease.hand_over(process.pid)
    return process.pid


def _run_detached(payload: dict[str, Any]) -> int:
    import time

    store = open_store(payload["store_url"], endpoint_url=payload.get("endpoint_url"))
    sweep_id = str(payload["sweep_id"])
    lease = Lease.resume(store, sweep_id, int(payload["generation"]), str(payload["token"]))
    ledger = Ledger.open(store, sweep_id)
    backend = get_backend(ledger.header.backend)
    driving = Driving(
        ledger,
        lease,
        _controller(
            ledger,
            backend,
            Path(str(payload["task_dir"])),
            int(payload["max_parallel"]),
            lease,
        ),
        [],
        True,
    )

    def log(look: Look) -> None:
        if look.launched:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            print(f"{stamp} launched {', '.join(look.launched)}", flush=True)

    try:
        final = driving.run_to_end(on_look=log)
    finally:
        driving.lease.release()
    print(f"controller: {final.actions.stop or 'sweep done'}", flush=True)
    return 0


def main() -> int:
    payload = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    return _run_detached(payload)


if __name__ == "__main__":
    raise SystemExit(main())
