"""The median stopping rule: Optuna's ``MedianPruner``.

A trial whose best value so far is worse than the median of the other trials' values at the
same step is stopped, once at least :data:`MIN_TRIALS` other trials reached that step.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import optuna

from skysweep.task import EarlyTerminate

if TYPE_CHECKING:
    from skysweep.stopping import History

MIN_TRIALS = 3
"""Other trials that must have reached a step before it judges there: a median of one or
two values is one trial's luck."""


def pruner(rule: EarlyTerminate) -> optuna.pruners.MedianPruner:
    # min_steps is applied by the caller (a count of reported steps, not a step number).
    return optuna.pruners.MedianPruner(
        n_startup_trials=0, n_warmup_steps=0, n_min_trials=MIN_TRIALS
    )


def explain(others: Sequence[History], trial: History, metric: str, lower_is_better: bool) -> str:
    step = max(trial.values)
    at_step = [h.values[step] for h in others if step in h.values]
    values = list(trial.values.values())
    best = min(values) if lower_is_better else max(values)
    middle = statistics.median(at_step)
    so_far = "" if best == trial.values[step] else f" (best so far {best:.4g})"
    return (
        f"{metric} {trial.values[step]:.4g}{so_far} is worse than the median {middle:.4g} "
        f"of {len(at_step)} other trials at this step"
    )
