"""Stage 6, rank: order the trials by the sweep metric. Pure: no I/O.

Only succeeded trials with a finite numeric metric are ranked; every other trial is listed
after them with the reason. Ties keep trial order, so the same results always rank the same.
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
        return all(t.rank is not None for t in self.trials)


def rank(sweep_id: str, results: list[TrialResult], metric: str, lower_is_better: bool) -> Ranking:
    ranked: list[tuple[float, int, TrialResult]] = []
    unranked: list[RankedTrial] = []
    for result in results:
        value, problem = metric_value(result.metrics, metric)
        if result.state == "succeeded" and value is not None:
            ranked.append((value, result.index, result))
            continue
        if result.state != "succeeded":
            reason = result.problem or (result.state if result.finished else None)
        else:
            reason = problem or result.problem or "no metrics"
        unranked.append(RankedTrial(result, None, value, reason))
    sign = 1.0 if lower_is_better else -1.0
    ranked.sort(key=lambda item: (sign * item[0], item[1]))
    ordered = [
        RankedTrial(result, place, value, None)
        for place, (value, _, result) in enumerate(ranked, start=1)
    ]
    unranked.sort(key=lambda t: t.result.index)
    return Ranking(sweep_id, metric, lower_is_better, ordered + unranked)
