"""Trial sources: where the controller gets its next trials when slots free up.

One small file per source: ``grid.py`` (Transformer Lab's Cartesian product), ``random.py``,
``sobol.py`` and ``bayes.py`` (Optuna's samplers, sharing ``space.py`` and ``study.py``). A
source is asked for at most ``count`` new trials at a time and is told which trials the
sweep already has and how those ended, so a resumed sweep continues where it was instead of
starting again (the grid skips the points it has seen; the samplers rebuild their study).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from skysweep.task import TaskSpec
from skysweep.trial import Trial, TrialState

Outcome = tuple[TrialState, float | None]
"""What the controller knows of a trial: its state, and its metric value when it has one
(only for a trial that succeeded and reported the sweep's metric)."""
NO_OUTCOMES: Mapping[str, Outcome] = MappingProxyType({})

if TYPE_CHECKING:
    from skysweep.search.space import Space


class TrialSource(Protocol):
    expected: int | None
    """How many trials the source gives in all, when it knows (a grid's size, max_trials)."""

    @property
    def exhausted(self) -> bool:
        """True once the source has no trial left to give."""

    def next(
        self,
        count: int,
        known: Mapping[str, Trial],
        outcomes: Mapping[str, Outcome] = NO_OUTCOMES,
    ) -> list[Trial]:
        """Up to ``count`` trials the sweep does not have yet, in the source's order.
        ``known``: every trial the sweep has; ``outcomes``: how they stand, by trial id."""


def source_for(task: TaskSpec, sweep_id: str | None = None) -> TrialSource:
    """The source for the task's ``sweeps.method``. ``sweep_id`` seeds an unseeded sampler,
    so the sweep draws the same numbers whichever controller asks."""
    method = task.sweeps.method if task.sweeps else "grid"
    if method == "random":
        from skysweep.search.random import RandomSource

        return RandomSource(task, sweep_id)
    if method == "sobol":
        from skysweep.search.sobol import SobolSource

        return SobolSource(task, sweep_id)
    if method == "bayes":
        from skysweep.search.bayes import BayesSource

        return BayesSource(task, sweep_id)
    from skysweep.search.grid import GridSource

    return GridSource(task)


def space_of(task: TaskSpec) -> Space | None:
    """The search space of a sampled sweep, for showing it; None for a grid."""
    if task.sweeps is None or task.sweeps.method == "grid":
        return None
    from skysweep.search.space import Space

    return Space(task)
