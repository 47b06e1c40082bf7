"""Bayesian search: a space-filling start, then Optuna's TPE, multivariate (it models
parameters jointly) and with the constant liar (trials still running count as bad, so
parallel slots do not all get the same suggestion). It learns from every trial the store
holds; see ``study.py``."""

from __future__ import annotations

from optuna.samplers import BaseSampler, TPESampler

from skysweep.search.sobol import NumberedSobol, require_scipy
from skysweep.search.study import SampledSource, derive_seed
from skysweep.task import TaskSpec

STARTUP_TRIALS = 12
"""The first trials are the Sobol points that ``method: sobol`` draws with the same seed (as
Ax starts its Bayesian optimisation); TPE suggests every trial after them, from whatever has
completed by then. A space-filling start gives the model a better first picture than random
points do.

Measured (``bench/search.py --replay``: the controller's ask pattern replayed on
BayesSource, max_parallel 4, median best after 40 trials against random search's after 80):

===========  =========  ===================  ====================  ===================
objective    seeds      TPE from 10 random   Sobol 12, then TPE    random search @ 80
===========  =========  ===================  ====================  ===================
quickstart   0-19       0.44592              0.44519               0.44526
quickstart   20-59      0.44600              0.44523               0.44607
synthetic    0-39       0.155                0.134                 0.193
rosenbrock   0-39       6.33                 4.55                  13.3
===========  =========  ===================  ====================  ===================

Sobol 8 and 16 were no better overall (16: better on the quickstart, worse on Rosenbrock's
first five seeds than random at 80). It is a constant, not derived from max_parallel,
because ``--max-parallel`` may change on a resume and the same sweep must keep suggesting
the same trials.

Left at Optuna's defaults, on purpose: ``n_ei_candidates`` (24; 48 was worse on the
quickstart, 0.44616 over seeds 0-19); ``group`` (it splits a space whose parameters only
some trials have; every trial here has every parameter); ``consider_endpoints``,
``prior_weight`` and ``gamma`` (deprecated since Optuna 4.9). The constant liar stays: the
quickstart without it was no better (0.44525 and 0.44533). A persistent Optuna study with one
TPESampler, driven the same way, scored as this rebuilt-per-ask, reseeded-per-trial one does:
the rebuild and the per-trial seeds cost nothing.
"""


class BayesSource(SampledSource):
    method = "bayes"
    suggested_by = "bayes:TPESampler"
    learns = True

    def __init__(self, task: TaskSpec, sweep_id: str | None = None) -> None:
        super().__init__(task, sweep_id)
        require_scipy(self.method)

    def label(self, number: int) -> str:
        return "bayes:QMCSampler" if number < STARTUP_TRIALS else self.suggested_by

    def sampler(self, number: int) -> BaseSampler:
        if number < STARTUP_TRIALS:
            return NumberedSobol(self.space.distributions, number, self.seed)
        # Seeded per number: a sampler made anew on every ask with one seed would make the
        # same random choices (its candidates) on every ask.
        return TPESampler(
            multivariate=True,
            constant_liar=True,
            n_startup_trials=0,
            seed=derive_seed(self.seed, number),
        )
