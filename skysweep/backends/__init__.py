"""Backends run rendered trials somewhere. One small protocol that works per job, two
implementations: ``local`` (a process per trial on this machine) and ``sky`` (SkyPilot
managed jobs).

Everything works on job handles (:class:`skysweep.trial.JobHandle`), one per attempt,
never on "the whole sweep": polling asks about these jobs, cancelling stops these jobs, so
one trial can be stopped early and a retry never confuses two attempts.

Only :mod:`skysweep.backends.sky` imports SkyPilot, and only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from skysweep.cost import Price
from skysweep.render import Placement, RenderedTrial
from skysweep.store import Store
from skysweep.task import TaskSpec
from skysweep.trial import Attempt, JobHandle

if TYPE_CHECKING:
    from skysweep.collect import BackendView


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start some trials of one sweep."""

    sweep_id: str
    store: Store
    task: TaskSpec
    trials: Sequence[RenderedTrial]
    attempts: Mapping[str, int] = field(default_factory=dict)
    """Trial id → the run attempt being launched (1 unless retried)."""
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Trial id → secret envs, resolved from the user's environment, held in memory only."""


@dataclass(frozen=True)
class Submission:
    """What the backend made of one trial: its job, or why there is none."""

    job: JobHandle | None
    tries: int = 1
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a backend says before anything is launched."""

    lines: list[str]
    """For the plan shown to the user."""
    prices: dict[str, Price | None] = field(default_factory=dict)
    """The price per hour of the backend's choice for each resource set, by
    :func:`skysweep.cost.resource_key` of the trials' swept resources; None where the backend
    could not price it."""


class Backend(Protocol):
    name: str
    runs_here: bool
    """Its jobs run on this machine, so a controller left running here (``up --detach``,
    Ctrl-C) sees them end and keeps the sweep going."""

    def placement(self, store: Store, sweep_id: str) -> Placement:
        """Where a job of this backend finds the sweep's folder of the store."""

    def plan(self, rendered: Sequence[RenderedTrial]) -> Plan:
        """Check that the trials can launch here, before anything is launched; lines for the
        plan shown to the user and the prices. Raises a :class:`~skysweep.errors.UsageError` (or
        ``BackendUnavailableError``) when they cannot."""

    def submit(self, request: LaunchRequest) -> dict[str, Submission]:
        """Start the trials; one submission per trial, with a job or the reason it has none."""

    def find(
        self, store: Store, sweep_id: str, attempt: Attempt
    ) -> JobHandle | Literal["unknown"] | None:
        """The job of an attempt whose driver stopped while submitting it (its record says
        ``submitting``): its handle if it started (running or ended), None if nothing
        started (it may be launched, as the same attempt), ``"unknown"`` if this backend
        cannot tell (it is never launched blindly)."""

    def poll(
        self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]
    ) -> dict[str, BackendView]:
        """What the backend knows of these trials' jobs that the store may not say yet."""

    def cancel(self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]) -> list[str]:
        """Stop these jobs and nothing else; returns the trial ids that were stopped."""

    def logs(
        self, store: Store, sweep_id: str, trial_id: str, job: JobHandle | None, follow: bool
    ) -> Iterator[str]:
        """One trial's log output."""

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds`` before the next look; a backend that knows when one of its
        jobs ends may wake the controller early."""


BACKENDS = ("local", "sky")


def get_backend(name: str) -> Backend:
    if name == "local":
        from skysweep.backends.local import LocalBackend

        return LocalBackend()
    if name == "sky":
        from skysweep.backends.sky import SkyBackend

        return SkyBackend()
    from skysweep.errors import UsageError

    raise UsageError(f"unknown backend {name!r}", hint="use 'local' or 'sky'")
