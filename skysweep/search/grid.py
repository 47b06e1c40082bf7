"""Transformer Lab's sweep: the Cartesian product of ``sweep_config`` over the base
parameters, yielded in file order. Trial ids are content hashes, so the same point is the
same trial on every machine and a resumed grid skips what it has seen."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from skysweep.expand import grid_points, grid_size
from skysweep.search import NO_OUTCOMES, Outcome
from skysweep.task import TaskSpec
from skysweep.trial import Trial


class GridSource:
    def __init__(self, task: TaskSpec) -> None:
        self._points: Iterator[Trial] = grid_points(task)
        self._lookahead: list[Trial] = []
        self.expected: int | None = grid_size(task)

    @property
    def exhausted(self) -> bool:
        if not self._lookahead:
            self._lookahead = list(itertools.islice(self._points, 1))
        return not self._lookahead

    def next(
        self,
        count: int,
        known: Mapping[str, Trial],
        outcomes: Mapping[str, Outcome] = NO_OUTCOMES,
    ) -> list[Trial]:
        """The next points not in ``known``; a grid's order does not depend on outcomes."""
        out: list[Trial] = []
        while len(out) < count and not self.exhausted:
            trial = self._lookahead.pop()
            if trial.trial_id not in known:
                out.append(trial)
        return out
