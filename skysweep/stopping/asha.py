"""Asynchronous successive halving: Optuna's ``SuccessiveHalvingPruner``.

Rung *r* is at step ``min_steps * eta**r``; a trial reaching a rung goes on only if its value
is among the best ``1/eta`` of the values every trial had there.
"""

from __future__ import annotations

import optuna

from skysweep.task import EarlyTerminate

RUNG_KEY = "completed_rung_{}"
"""Where Optuna's successive halving records a trial's value at a rung (a system attribute)."""


def pruner(rule: EarlyTerminate) -> optuna.pruners.SuccessiveHalvingPruner:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=rule.min_steps,
        reduction_factor=rule.eta,
        min_early_stopping_rate=0,
        bootstrap_count=0,
    )


def rung_step(rule: EarlyTerminate, rate: int, rung: int) -> int:
    return int(rule.min_steps * rule.eta ** (rate + rung))


def rungs(
    rule: EarlyTerminate, rate: int, trial: optuna.trial.FrozenTrial, upto: int | None
) -> dict[str, float]:
    """The rung values the pruner records when it judges ``trial`` at each step it reports
    (up to ``upto``): at each rung, the value of the first step that reached it."""
    steps = sorted(s for s in trial.intermediate_values if upto is None or s <= upto)
    found: dict[str, float] = {}
    rung = 0
    for step in steps:
        while step >= rung_step(rule, rate, rung):
            found[RUNG_KEY.format(rung)] = trial.intermediate_values[step]
            rung += 1
    return found


def explain(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    rule: EarlyTerminate,
    metric: str,
    lower_is_better: bool,
    rate: int = 0,
    others: list[optuna.trial.FrozenTrial] | None = None,
) -> str:
    """Why the pruner stopped ``trial``, from the rung values it recorded."""
    rung = 0
    while RUNG_KEY.format(rung + 1) in trial.system_attrs:
        rung += 1
    key = RUNG_KEY.format(rung)
    value = float(trial.system_attrs[key])
    pool = others if others is not None else study.get_trials(deepcopy=False)
    competing = sorted(
        float(t.system_attrs[key])
        for t in pool
        if key in t.system_attrs and t._trial_id != trial._trial_id
    )
    competing_all = sorted([*competing, value])
    keep = max(len(competing_all) // rule.eta, 1)
    cut = competing_all[keep - 1] if lower_is_better else competing_all[-keep]
    return (
        f"{metric} {value:.4g} is not among the best {keep} of {len(competing_all)} trials "
        f"at rung {rung} (step {rung_step(rule, rate, rung)}); it needed "
        f"{'<=' if lower_is_better else '>='} {cut:.4g}"
    )
