"""What a sweep costs: prices, estimates, money spent and the budget. Pure: no I/O, no clock
(the caller passes ``now``).

Every figure is an estimate from the backend's catalog prices (SkyPilot's instance catalog):
the bill of a cloud may differ (disks, egress, minimum billing periods, price changes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

ESTIMATE_NOTE = "an estimate from catalog prices"
FREE_NOTE = "the local backend runs on this machine and costs nothing"


class Price(BaseModel):
    """What one trial's resources cost per hour, as the backend priced them."""

    model_config = ConfigDict(frozen=True)

    hourly_usd: float
    """Per node, for one hour."""
    nodes: int = 1
    spot: bool = False
    choice: str = ""
    """What was priced, in words: ``AWS m6i.large (us-east-1)``; ``local`` for the local
    backend."""

    @property
    def trial_hourly_usd(self) -> float:
        """One trial, all its nodes, for one hour."""
        return self.hourly_usd * self.nodes

    @property
    def free(self) -> bool:
        return self.hourly_usd == 0.0

    def describe(self) -> str:
        if self.free:
            return f"{self.choice or 'local'}: free ($0.00/h)"
        nodes = f" x {self.nodes} nodes" if self.nodes > 1 else ""
        spot = " spot" if self.spot else ""
        return f"{self.choice}{spot}: ${self.hourly_usd:.4g}/h{nodes}"


FREE = Price(hourly_usd=0.0, choice="local")


def resource_key(resources: Mapping[str, Any]) -> str:
    """The key of a trial's swept resource keys (``{}`` when none are swept), under which its
    price is kept: trials with the same key get the same price."""
    return json.dumps(dict(resources), sort_keys=True, default=str)


def trial_estimate(price: Price | None, minutes: float | None) -> float | None:
    """One trial's expected cost; None when its price or its expected length is unknown."""
    if price is None:
        return None
    if price.free:
        return 0.0
    if minutes is None:
        return None
    return price.trial_hourly_usd * minutes / 60.0


def sweep_estimate(prices: Iterable[Price | None], minutes: float | None) -> float | None:
    """Every trial's expected cost added up; None when any one is unknown (a partial sum
    would read as the whole)."""
    total = 0.0
    for price in prices:
        one = trial_estimate(price, minutes)
        if one is None:
            return None
        total += one
    return total


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as the job wrapper or SkyPilot wrote it; None when absent or unreadable
    (a time without a zone is UTC, which is what the wrapper writes)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def hours_run(started_at: str | None, finished_at: str | None, now: datetime) -> float | None:
    """How long a job ran (or has run, while it runs); None without a start time."""
    start = parse_time(started_at)
    if start is None:
        return None
    end = parse_time(finished_at) or now
    return max(0.0, (end - start).total_seconds() / 3600.0)


def spent(
    price: Price | None, started_at: str | None, finished_at: str | None, now: datetime
) -> float | None:
    """One trial's cost so far: price x running time x nodes; None when it cannot be known."""
    if price is None:
        return None
    if price.free:
        return 0.0
    hours = hours_run(started_at, finished_at, now)
    return None if hours is None else price.trial_hourly_usd * hours


@dataclass(frozen=True)
class TrialCost:
    """One trial as the budget sees it."""

    in_flight: bool
    launched: bool
    """It had a job (a submission the backend refused costs nothing)."""
    so_far: float | None
    """Its cost from its recorded start and end times (None: no times recorded)."""
    estimate: float | None


def spent_and_committed(trials: Iterable[TrialCost]) -> tuple[float, float]:
    """What the ended trials cost, and what the trials in flight are expected to cost in all
    (their estimate, or what they cost so far once they run past it). An ended trial without
    recorded times counts its estimate: it may have run."""
    spent_usd = committed_usd = 0.0
    for trial in trials:
        if trial.in_flight:
            committed_usd += max(trial.estimate or 0.0, trial.so_far or 0.0)
        elif trial.launched:
            spent_usd += trial.so_far if trial.so_far is not None else trial.estimate or 0.0
    return spent_usd, committed_usd


def expected_minutes(flag: float | None, minutes_requested: int | None) -> float | None:
    """How long a trial is expected to run: ``--expected-minutes``, else Transformer Lab's
    ``minutes_requested``, else unknown (never a guess)."""
    return flag if flag is not None else minutes_requested


def budget_room(
    max_cost_usd: float | None,
    spent_usd: float,
    committed_usd: float,
    trial_usd: float | None,
    wanted: int,
) -> int:
    """How many of ``wanted`` new trials may launch within the budget.

    ``spent_usd``: what ended trials cost; ``committed_usd``: what the running ones are
    expected to cost in all; ``trial_usd``: one new trial's estimate. A trial launches only
    while spent + committed + its own estimate stay within the budget. No budget: all of them.
    """
    if max_cost_usd is None or wanted <= 0:
        return max(0, wanted)
    if trial_usd is None:
        return 0  # refused before launch: a budget needs an estimate
    left = max_cost_usd - spent_usd - committed_usd
    if trial_usd <= 0:
        return wanted if left >= -_EPSILON else 0
    # A tolerance: 5 x 0.048 must fit in 0.24 whatever the float rounding says.
    fits = math.floor((left + _EPSILON) / trial_usd)
    return max(0, min(wanted, fits))


_EPSILON = 1e-9


def usd(value: float | None) -> str:
    """Money for people: ``$0.576``, ``$12.34``; ``unknown`` for None."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0.00"
    if abs(value) < 1:
        return f"${value:.3g}" if abs(value) >= 0.001 else f"${value:.2g}"
    return f"${value:,.2f}"


@dataclass(frozen=True)
class SweepCost:
    """A sweep's cost as ``status`` and ``results`` show it."""

    total_usd: float | None
    """What its trials cost so far, added up; None when no trial's cost is known."""
    unknown: int
    """Trials that ran or run whose cost is unknown (no price, or no recorded start)."""
    free: bool
    """Every price is the local backend's: nothing to pay."""
    max_cost_usd: float | None = None
    used_usd: float = 0.0
    """Spent plus committed to the trials in flight: what the budget is held against."""
    budget_reached: bool = False
    not_launched: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "total_usd": self.total_usd,
            "unknown_trials": self.unknown,
            "note": FREE_NOTE if self.free else ESTIMATE_NOTE,
            "max_cost_usd": self.max_cost_usd,
            "budget_reached": self.budget_reached,
            "not_launched": self.not_launched,
        }

    def lines(self) -> list[str]:
        if self.free:
            out = [f"cost: $0.00 ({FREE_NOTE})"]
        else:
            unknown = f"; {self.unknown} trial(s) of unknown cost" if self.unknown else ""
            out = [f"cost so far: {usd(self.total_usd)} ({ESTIMATE_NOTE}){unknown}"]
        if self.budget_reached and self.max_cost_usd is not None:
            out.append(
                f"budget reached: {usd(self.used_usd)} of {usd(self.max_cost_usd)} spent or "
                f"committed; {self.not_launched} trial(s) not launched"
            )
        elif self.max_cost_usd is not None:
            out.append(
                f"budget: {usd(self.used_usd)} of {usd(self.max_cost_usd)} spent or committed"
            )
        return out


def sweep_cost(
    costs: Iterable[tuple[bool, float | None]],
    *,
    free: bool,
    max_cost_usd: float | None = None,
    used_usd: float = 0.0,
    budget_reached: bool = False,
    not_launched: int = 0,
) -> SweepCost:
    """Add up ``(launched, cost so far)`` per trial."""
    total: float | None = None
    unknown = 0
    for launched, cost in costs:
        if cost is not None:
            total = (total or 0.0) + cost
        elif launched:
            unknown += 1
    return SweepCost(
        0.0 if free else total,
        0 if free else unknown,
        free,
        max_cost_usd,
        used_usd,
        budget_reached,
        not_launched,
    )
