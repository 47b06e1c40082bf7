"""Stage 6, rank: order the trials by the sweep metric. Pure: no I/O.

Only succeeded trials with a finite numeric metric are ranked; every other trial is listed
after them with the reason. Ties keep trial order, so the same results always rank the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from skysweep.collect import TrialResult, metric_value


@dataclass(frozen=True)
class RankedTrial:
    result: TrialResult
    rank: int | None
    value: float | None
    reason: str | None
    """Why the trial is not ranked."""


@dataclass(frozen=True)
class Ranking:
    sweep_id: str
    metric: str
    lower_is_better: bool
    trials: list[RankedTrial]

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
