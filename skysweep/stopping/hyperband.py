"""Hyperband: Optuna's ``HyperbandPruner``, successive halving in several brackets.

Each trial falls in a bracket by its number; bracket *b* makes its first cut at step
``min_steps * eta**b``, so some brackets stop trials early and others let them run longer.
"""

from __future__ import annotations

import optuna

from skysweep.stopping import asha
from skysweep.task import EarlyTerminate


def pruner(rule: EarlyTerminate) -> optuna.pruners.HyperbandPruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=rule.min_steps,
        max_resource=rule.max_steps if rule.max_steps is not None else "auto",
        reduction_factor=rule.eta,
    )


def prepare(pruner: optuna.pruners.HyperbandPruner, study: optuna.Study) -> None:
    """Set up the brackets as the pruner's first ``prune`` would, so each trial's bracket is
    known before its rung values are filled in. (Optuna's private hooks: the pruner has no
    public way to say which bracket a trial is in.)"""
    if not pruner._pruners:
        pruner._try_initialization(study)


def bracket(
    pruner: optuna.pruners.HyperbandPruner, study: optuna.Study, trial: optuna.trial.FrozenTrial
) -> int | None:
    if not pruner._pruners:
        return None  # not set up yet: max_steps unknown and no trial finished
    return pruner._get_bracket_id(study, trial)


def rungs(
    pruner: optuna.pruners.HyperbandPruner,
    rule: EarlyTerminate,
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    upto: int | None,
) -> dict[str, float]:
    found = bracket(pruner, study, trial)
    return {} if found is None else asha.rungs(rule, found, trial, upto)


def explain(
    pruner: optuna.pruners.HyperbandPruner,
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    rule: EarlyTerminate,
    metric: str,
    lower_is_better: bool,
) -> str:
    found = bracket(pruner, study, trial) or 0
    same = [t for t in study.get_trials(deepcopy=False) if bracket(pruner, study, t) == found]
    why = asha.explain(study, trial, rule, metric, lower_is_better, rate=found, others=same)
    return f"{why} (bracket {found})"
