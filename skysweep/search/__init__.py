"""Trial sources: where the controller gets its next trials when slots free up.

One small file per source. A source is asked for at most ``count`` new trials at a time and
is told which trials the sweep already has, so a resumed sweep continues where it was instead
of starting again (the grid skips the points it has seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from skysweep.task import TaskSpec
from skysweep.trial import Trial


class TrialSource(Protocol):
    expected: int | None
    """How many trials the source gives in all, when it knows."""

    @property
    def exhausted(self) -> bool:
        """True once the source has no trial left to give."""

    def next(self, count: int, known: Mapping[str, Trial]) -> list[Trial]:
        """Up to ``count`` trials the sweep does not have yet, in the source's order."""


def source_for(task: TaskSpec) -> TrialSource:
    from skysweep.search.grid import GridSource

    return GridSource(task)
