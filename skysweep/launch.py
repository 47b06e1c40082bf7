"""Stage 4, launch: trials become jobs, each launch an attempt recorded in the ledger.

The controller decides which trials to launch; this module renders them, fills their
secrets in memory, writes what a job reads from the store (``params.json``), moves a
previous attempt's files aside, submits through the backend and records each attempt, with
its job handle or the reason it has none.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from skysweep.backends import Backend, LaunchRequest
from skysweep.errors import BackendUnavailableError
from skysweep.ledger import Ledger, now
from skysweep.render import RenderedTrial, render, resolve_secrets
from skysweep.store import Store, join
from skysweep.task import TaskSpec
from skysweep.trial import Attempt, Trial


def new_sweep_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "sweep"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{slug}-{stamp}-{secrets.token_hex(2)}"


def render_sweep(
    task: TaskSpec,
    trials: Sequence[Trial],
    *,
    sweep_id: str,
    backend: Backend,
    store: Store,
    task_dir: Path,
    spread: bool = False,
) -> list[RenderedTrial]:
    return render(
        task,
        list(trials),
        sweep_id=sweep_id,
        placement=backend.placement(store, sweep_id),
        task_dir=task_dir,
        spread=spread,
    )


class Launcher:
    """Launches trials of one sweep as new attempts."""

    def __init__(
        self,
        ledger: Ledger,
        backend: Backend,
        *,
        task_dir: Path,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        self.task = ledger.header.task_spec()
        self.task_dir = task_dir
        self.environ = dict(os.environ if environ is None else environ)

    def render(self, trials: Sequence[Trial]) -> list[RenderedTrial]:
        return render_sweep(
            self.task,
            trials,
            sweep_id=self.ledger.sweep_id,
            backend=self.backend,
            store=self.ledger.store,
            task_dir=self.task_dir,
            spread=self.ledger.header.spread,
        )

    def launch(self, trials: Sequence[Trial], *, new: Sequence[Trial] = ()) -> list[Attempt]:
        """Launch ``trials`` (``new`` among them: trials not recorded yet, whose records
        are written with the launch's intents)."""
        if not trials:
            return []
        store, sweep_id = self.ledger.store, self.ledger.sweep_id
        rendered = self.render(trials)
        numbers: dict[str, int] = {}
        for trial in trials:
            previous = self.ledger.latest(trial.trial_id)
            if previous is not None and interrupted(previous):
                # Its driver stopped while submitting it and the backend found nothing
                # started: this is still that attempt.
                numbers[trial.trial_id] = previous.number
                continue
            numbers[trial.trial_id] = previous.number + 1 if previous else 1
            if previous is not None:
                archive_attempt(store, sweep_id, trial.trial_id, previous.number)
        # The intent, written before any job starts (and after the previous attempt's files
        # were moved aside, so what a backend finds later is this attempt's): a driver
        # killed between a job's start and its record leaves "being submitted", which the
        # next controller asks the backend about instead of launching the trial again. New
        # trials' records and what the jobs read (params.json) go in the same round.
        self.ledger.add(
            trials=new,
            attempts=[
                Attempt(
                    trial_id=trial.trial_id,
                    number=numbers[trial.trial_id],
                    submitted_at=now(),
                    submit_tries=0,
                    submitting=True,
                )
                for trial in trials
            ],
            files=[
                (
                    join(sweep_id, "trials", r.trial.trial_id, "params.json"),
                    json.dumps(r.trial.params, sort_keys=True).encode(),
                )
                for r in rendered
            ],
        )
        secret_values = {r.trial.trial_id: resolve_secrets(r, self.environ) for r in rendered}
        request = LaunchRequest(
            sweep_id=sweep_id,
            store=store,
            task=self.task,
            trials=rendered,
            attempts=numbers,
            secrets=secret_values,
        )
        try:
            submissions = self.backend.submit(request)
        except BackendUnavailableError as exc:
            # The backend was not reached, so nothing started: say so in the records, and a
            # resume launches these trials again rather than asking about them.
            self.ledger.add_attempts(
                [
                    Attempt(
                        trial_id=trial.trial_id,
                        number=numbers[trial.trial_id],
                        submitted_at=now(),
                        error=f"the backend was not reachable: {exc}",
                    )
                    for trial in trials
                ]
            )
            raise
        submitted = now()
        attempts = [
            Attempt(
                trial_id=trial.trial_id,
                number=numbers[trial.trial_id],
                submitted_at=submitted,
                submit_tries=submissions[trial.trial_id].tries,
                job=submissions[trial.trial_id].job,
                error=submissions[trial.trial_id].error,
            )
            for trial in trials
        ]
        self.ledger.add_attempts(attempts)
        return attempts


def interrupted(attempt: Attempt) -> bool:
    """Its driver stopped while submitting it, and no backend has said yet that it cannot
    tell whether its job started (that makes it lost). Launched again only once the backend
    found that nothing started: then as the same attempt."""
    return attempt.submitting and attempt.job is None and attempt.error is None


def archive_attempt(store: Store, sweep_id: str, trial_id: str, attempt: int) -> None:
    """Move an ended attempt's files aside so the next starts clean; nothing is deleted
    before it is copied."""
    base = join(sweep_id, "trials", trial_id)
    target = join(base, "attempts", str(attempt))
    for info in store.list(base):
        relative = info.key[len(base) + 1 :] if info.key.startswith(base + "/") else None
        if relative is None or relative.startswith("attempts/") or relative == "params.json":
            continue
        data = store.get(info.key)
        if data is not None:
            store.put(join(target, relative), data)
            store.delete(info.key)
    finished = join(sweep_id, "finished", f"{trial_id}.json")
    data = store.get(finished)
    if data is not None:
        store.put(join(target, "finished.json"), data)
        store.delete(finished)


def default_parallelism(task: TaskSpec, trial_count: int) -> int:
    cores = os.cpu_count() or 1
    per_trial = max(task.resources.requested_cpus(), 1.0)
    return max(1, min(trial_count, int(cores // per_trial) or 1))
