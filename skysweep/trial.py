"""The one vocabulary every module shares: trials, their states, and their attempts' jobs.

A *trial* is one combination of parameter values. Each time it is launched is an *attempt*
(1, 2, ... : run attempts, counted by ``retry``); one attempt may take several *submit tries*
before the backend accepts it. Every attempt has its own job handle, so a later attempt never
overwrites what is needed to find, poll or cancel an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from skysweep.task import ParamValue


class TrialState(str, Enum):
    pending = "pending"
    """Known, never launched."""
    submitted = "submitted"
    """Handed to the backend; not running yet."""
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    submit_failed = "submit_failed"
    """The backend never accepted the job."""
    cancelled = "cancelled"
    lost = "lost"
    """Its job is gone without a record of how it ended (its process was killed)."""
    pruned = "pruned"
    """Stopped early by the sweep's stopping rule (``sweeps.early_terminate``); never
    relaunched unless asked (``retry --include-pruned``)."""

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def in_flight(self) -> bool:
        return self in (TrialState.submitted, TrialState.running)


FINAL_STATES = frozenset(
    {
        TrialState.succeeded,
        TrialState.failed,
        TrialState.submit_failed,
        TrialState.cancelled,
        TrialState.lost,
        TrialState.pruned,
    }
)
RETRYABLE_STATES = frozenset(
    {TrialState.failed, TrialState.submit_failed, TrialState.cancelled, TrialState.lost}
)


@dataclass(frozen=True)
class Trial:
    """One combination: the base parameters overlaid with one point of the search space."""

    index: int
    trial_id: str
    params: dict[str, ParamValue]
    resources: dict[str, Any] = field(default_factory=dict)
    """Resource keys swept like parameters (``resources.accelerators``), for this trial."""
    suggested_by: str = "grid"
    """Which method and sampler made it: ``grid``, or e.g. ``bayes:TPESampler``."""

    @property
    def number(self) -> int:
        """Its place in the order trials were made, from 0 (Optuna's trial number)."""
        return self.index


class JobHandle(BaseModel):
    """Enough to find one attempt's job again, from any process: the backend's job id and,
    for a local process, its host, pid and start time (pids are reused)."""

    backend: str
    job_id: str
    job_name: str | None = None
    infra: str | None = None
    locator: dict[str, Any] = Field(default_factory=dict)


class PruneRecord(BaseModel):
    """Why the sweep's stopping rule stopped an attempt (kept in its attempt record, written
    before its job is cancelled, so a resumed controller keeps the decision)."""

    rule: str
    """``median``, ``asha`` or ``hyperband``."""
    metric: str
    step: int
    """The last step the trial reported when it was judged."""
    value: float
    """Its value of ``metric`` at that step (its last reported value)."""
    reason: str
    """The numbers that decided it, in words: ``step 3: eval/loss 0.91 is worse than ...``."""
    at: str
    """When (ISO 8601, UTC)."""


class Attempt(BaseModel):
    """One launch of one trial, as recorded in the sweep's ledger."""

    trial_id: str
    number: int
    """Run attempt: 1 for the first launch, +1 for each retry."""
    submitted_at: str
    submit_tries: int = 1
    """How many requests the backend needed to accept (or finally refuse) this attempt."""
    job: JobHandle | None = None
    error: str | None = None
    """Why the backend refused the job, when it did."""
    submitting: bool = False
    """Written true before the job is submitted, false with the outcome: still true, the
    driver stopped in between (killed), and only the backend can tell whether a job started
    (:meth:`skysweep.backends.Backend.find`). True with an ``error``: it could not tell, so
    the trial is ``lost`` with that reason and is not relaunched unless asked."""
    pruned: PruneRecord | None = None
    """Set when the stopping rule stopped this attempt."""
