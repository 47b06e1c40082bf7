"""Random search: every parameter drawn independently (Optuna's RandomSampler), trial *n*
from a generator seeded with (seed, n)."""

from __future__ import annotations

from optuna.samplers import BaseSampler, RandomSampler

from skysweep.search.study import SampledSource, derive_seed


class RandomSource(SampledSource):
    method = "random"

    def sampler(self, number: int) -> BaseSampler:
        return RandomSampler(seed=derive_seed(self.seed, number))
