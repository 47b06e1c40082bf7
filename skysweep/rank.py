"""Stage 6, rank: order the trials by the sweep metric. Pure: no I/O.

Only succeeded trials with a finite numeric metric are ranked; every other trial is listed
after them with the reason: first the trials early stopping pruned, furthest and best first,
with their last reported value and step (never above a finished trial), then the rest in
trial order. Ties keep trial order, so the same results always rank the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from skysweep.collect import TrialResult, metric_value


@dataclass(frozen=True)
class RankedTrial:
    result: TrialResult
    rank: int | None
    value: float | None
    reason: str | None
    """Why the trial is not ranked."""
    step: int | None = None
    """A pruned trial's last reported step (its ``value`` is its value there)."""


@dataclass(frozen=True)
class BestSoFar:
    """The metric of the best trial against the number of finished trials.

    Trials count in the order they finished: by ``finished_at``, then by trial number (the
    wrapper's clock has whole seconds); a finished trial without a time (lost, cancelled
    before it started) counts after those with one. Every finished trial counts, failed ones
    too: they spent the budget, they just did not improve on the best.
    """

    values: list[float | None]
    """``values[k - 1]``: the best value among the first ``k`` finished trials; None while
    none of them has the metric."""
    order: dict[str, int]
    """Each finished trial's place in finish order, from 1."""

    def after(self, finished: int) -> float | None:
        """The best value once ``finished`` trials have finished (the last one known beyond)."""
        if finished < 1 or not self.values:
            return None
        return self.values[min(finished, len(self.values)) - 1]

    def of(self, trial_id: str) -> float | None:
        """The best value at the moment this trial finished; None if it has not."""
        place = self.order.get(trial_id)
        return None if place is None else self.values[place - 1]


def best_so_far(trials: Iterable[RankedTrial], lower_is_better: bool) -> BestSoFar:
    finished = sorted(
        (t for t in trials if t.result.finished),
        key=lambda t: (
            t.result.finished_at is None,
            t.result.finished_at or "",
            t.result.index,
        ),
    )
    values: list[float | None] = []
    best: float | None = None
    for trial in finished:
        value = trial.value if trial.rank is not None else None
        if value is not None and (
            best is None or (value < best if lower_is_better else value > best)
        ):
            best = value
        values.append(best)
    order = {t.result.trial_id: place for place, t in enumerate(finished, start=1)}
    return BestSoFar(values, order)


@dataclass(frozen=True)
class Ranking:
    sweep_id: str
    metric: str
    lower_is_better: bool
    trials: list[RankedTrial]
    curve: BestSoFar | None = field(default=None, repr=False, compare=False)
    """The best-so-far curve; computed from ``trials`` when not given (a ranking cut down to
    its best trial keeps the whole sweep's)."""
    full_steps: int | None = None
    """The steps a trial runs when nothing stops it (known when some trial was pruned)."""

    @property
    def pruned(self) -> list[RankedTrial]:
        return [t for t in self.trials if t.result.state == "pruned"]

    def steps_saved(self) -> tuple[int, int] | None:
        """Trial-steps early stopping saved, and the trial-steps the pruned and succeeded
        trials would have run without it; None when a full trial's length is unknown."""
        if self.full_steps is None:
            return None
        pruned = self.pruned
        saved = sum(max(0, self.full_steps - (t.step or 0)) for t in pruned)
        ran_or_would = len(pruned) + sum(t.result.state == "succeeded" for t in self.trials)
        return saved, ran_or_would * self.full_steps

    @property
    def best_so_far(self) -> BestSoFar:
        if self.curve is None:
            object.__setattr__(self, "curve", best_so_far(self.trials, self.lower_is_better))
        assert self.curve is not None
        return self.curve

    @property
    def best(self) -> RankedTrial | None:
        return self.trials[0] if self.trials and self.trials[0].rank == 1 else None

    @property
    def all_finished(self) -> bool:
        return all(t.result.finished for t in self.trials)

    @property
    def all_succeeded(self) -> bool:
        """Every trial ranked, or was pruned by early stopping (what it is for) while another
        ranked."""
        return all(t.rank is not None or t.result.state == "pruned" for t in self.trials) and (
            self.best is not None or not self.trials
        )


def rank(
    sweep_id: str,
    results: list[TrialResult],
    metric: str,
    lower_is_better: bool,
    full_steps: int | None = None,
) -> Ranking:
    ranked: list[tuple[float, int, TrialResult]] = []
    unranked: list[RankedTrial] = []
    pruned: list[RankedTrial] = []
    sign = 1.0 if lower_is_better else -1.0
    for result in results:
        if result.state == "pruned":
            pruned.append(
                RankedTrial(result, None, result.last_value, result.problem, result.last_step)
            )
            continue
        value, problem = metric_value(result.metrics, metric)
        if result.state == "succeeded" and value is not None:
            ranked.append((value, result.index, result))
            continue
        if result.state != "succeeded":
            reason = result.problem or (result.state if result.finished else None)
        else:
            reason = problem or result.problem or "no metrics"
        unranked.append(RankedTrial(result, None, value, reason))
    ranked.sort(key=lambda item: (sign * item[0], item[1]))
    # Furthest first (a trial pruned later got further), then by its last value.
    pruned.sort(
        key=lambda t: (
            -(t.step or 0),
            t.value is None,
            sign * (t.value or 0.0),
            t.result.index,
        )
    )
    ordered = [
        RankedTrial(result, place, value, None)
        for place, (value, _, result) in enumerate(ranked, start=1)
    ]
    unranked.sort(key=lambda t: t.result.index)
    return Ranking(
        sweep_id, metric, lower_is_better, ordered + pruned + unranked, full_steps=full_steps
    )
