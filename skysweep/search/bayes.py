"""Bayesian search: Optuna's TPE, multivariate (it models parameters jointly) and with the
constant liar (trials still running count as bad, so parallel slots do not all get the same
suggestion). It learns from every trial the store holds; see ``study.py``."""

from __future__ import annotations

from optuna.samplers import BaseSampler, TPESampler

from skysweep.search.study import SampledSource, derive_seed


class BayesSource(SampledSource):
    method = "bayes"
    suggested_by = "bayes:TPESampler"
    learns = True

    def sampler(self, number: int) -> BaseSampler:
        # Seeded per number: a sampler made anew on every ask with one seed would draw its
        # first (random, startup) trials all alike.
        return TPESampler(
            multivariate=True, constant_liar=True, seed=derive_seed(self.seed, number)
        )
