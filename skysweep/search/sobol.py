"""Quasi-random search: a scrambled Sobol sequence (Optuna's QMCSampler), which covers the
space more evenly than random points at the same count. Trial *n* is the sequence's point
*n*, whoever asks and whatever ran before, so a resumed sweep continues the same sequence."""

from __future__ import annotations

import importlib.util
from typing import Any

from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, QMCSampler
from optuna.trial import FrozenTrial

from skysweep.errors import UsageError
from skysweep.search.study import SampledSource
from skysweep.task import TaskSpec


class NumberedSobol(QMCSampler):
    """Optuna's QMC sampler with the two things a study rebuilt on every ask cannot give it:
    the search space before any trial completed (else its first point is random), and the
    point's place in the sequence (Optuna counts asks in the study's storage)."""

    def __init__(self, space: dict[str, BaseDistribution], number: int, seed: int) -> None:
        super().__init__(qmc_type="sobol", scramble=True, seed=seed)
        self._space = space
        self._number = number

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def _find_sample_id(self, study: Study, search_space: dict[str, Any]) -> int:
        return self._number


def require_scipy(method: str) -> None:
    if importlib.util.find_spec("scipy") is None:
        raise UsageError(
            f"method {method} draws Sobol points with scipy's engine (through Optuna's "
            "QMCSampler), and scipy is not installed",
            hint="pip install scipy, or use method: random",
        )


class SobolSource(SampledSource):
    method = "sobol"
    suggested_by = "sobol:QMCSampler"

    def __init__(self, task: TaskSpec, sweep_id: str | None = None) -> None:
        super().__init__(task, sweep_id)
        require_scipy(self.method)

    def sampler(self, number: int) -> BaseSampler:
        return NumberedSobol(self.space.distributions, number, self.seed)
