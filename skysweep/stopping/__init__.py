"""Early stopping: judge running trials from their intermediate metrics (DESIGN.md §7).

The rules are Optuna's pruners (one small file each: median, asha, hyperband); this package
only feeds them. As in :mod:`skysweep.search.study`, there is no Optuna database: for each
judgment an in-memory study is made from the histories the store holds, holding every other
trial with its intermediate values (and, for the rung-based rules, the rung values the
pruner would have recorded when it judged them), then the judged trial as a RUNNING trial
with its own. ``pruner.prune(study, trial)`` decides; the rule's module says why, in numbers.

Everything here is pure: histories in, decisions out. The controller reads the histories
(``history.jsonl``) and carries the decisions out.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import optuna

from skysweep.stopping import asha, hyperband, median
from skysweep.task import EarlyTerminate
from skysweep.trial import TrialState

# The user sees skysweep's reasons, not Optuna's notes on trials or experimental features.
optuna.logging.set_verbosity(logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

STUDY_NAME = "skysweep"
"""Fixed: Hyperband puts trial *n* in a bracket by a hash of the study's name and *n*, so the
same trial lands in the same bracket on every look and after any resume."""


@dataclass(frozen=True)
class History:
    """One trial's intermediate values of the judged metric, as far as they were read."""

    trial_id: str
    number: int
    """The trial's index in the sweep (Optuna's trial number)."""
    state: TrialState
    values: Mapping[int, float] = field(default_factory=dict)
    """step → value."""

    @property
    def last_step(self) -> int | None:
        return max(self.values) if self.values else None

    def upto(self, step: int) -> History:
        kept = {s: v for s, v in self.values.items() if s <= step}
        return History(self.trial_id, self.number, self.state, kept)


@dataclass(frozen=True)
class Prune:
    """A decision: stop this trial, and why."""

    trial_id: str
    rule: str
    step: int
    """The step it was judged at (its latest reported step then)."""
    value: float
    """Its value of the judged metric at that step."""
    reason: str
    """The numbers that decided it, in words."""


@dataclass(frozen=True)
class Judge:
    """One stopping rule over one metric, in one direction."""

    rule: EarlyTerminate
    metric: str
    lower_is_better: bool

    def decide(
        self, histories: Sequence[History], judged: Mapping[str, int] | None = None
    ) -> list[Prune]:
        """Which running trials to prune. Each running trial is judged at every step it
        reported after ``judged[trial_id]`` (the step judged last; absent: all of them), in
        order, as Optuna judges a trial that reports and asks at every step; its first
        pruning decision is kept. A trial is never judged before ``min_steps`` steps."""
        judged = judged or {}
        out: list[Prune] = []
        for history in histories:
            if history.state is not TrialState.running or not history.values:
                continue
            steps = sorted(history.values)
            since = judged.get(history.trial_id)
            for place, step in enumerate(steps, start=1):
                if place < self.rule.min_steps or (since is not None and step <= since):
                    continue
                decision = self.judge(histories, history.upto(step))
                if decision is not None:
                    out.append(decision)
                    break
        return out

    def judge(self, histories: Sequence[History], trial: History) -> Prune | None:
        """One trial at its latest step, against the other trials as they are."""
        step = trial.last_step
        if step is None:
            return None
        others = [h for h in histories if h.trial_id != trial.trial_id]
        kind = self.rule.type
        if kind == "median":
            pruner: optuna.pruners.BasePruner = median.pruner(self.rule)
        elif kind == "asha":
            pruner = asha.pruner(self.rule)
        else:
            pruner = hyperband.pruner(self.rule)
        # A pruner keeps state (Hyperband's brackets): a fresh one for each judgment.
        study = optuna.create_study(
            study_name=STUDY_NAME,
            direction="minimize" if self.lower_is_better else "maximize",
            pruner=pruner,
        )
        by_number = {h.number: h for h in others}
        # Trial numbers are the sweep's: the numbers of trials without a history are filled,
        # so a rule that places trials by number (Hyperband's brackets) places them the same.
        plain = [
            _as_running(trial) if n == trial.number else self._frozen(by_number.get(n), kind)
            for n in range(max([trial.number, *by_number]) + 1)
        ]
        if isinstance(pruner, optuna.pruners.HyperbandPruner):
            # Brackets are set up from the trials as they are, before any rung value.
            draft = optuna.create_study(study_name=STUDY_NAME, direction=study.direction)
            draft.add_trials(plain)
            hyperband.prepare(pruner, draft)
        # The rung values the pruner would have recorded while judging each trial at the
        # steps it reported before; for the judged trial, the steps before this one.
        before = max((s for s in trial.values if s < step), default=None)
        for n, frozen_trial in enumerate(plain):
            frozen_trial.number = n
            upto = before if n == trial.number else None
            if n == trial.number and before is None:
                continue
            frozen_trial.system_attrs = {
                **frozen_trial.system_attrs,
                **_rungs(pruner, self.rule, study, frozen_trial, upto),
            }
        study.add_trials(plain)
        target = study.get_trials(deepcopy=False)[trial.number]
        target_id = target._trial_id
        if not pruner.prune(study, target):
            return None
        value = trial.values[step]
        after = study._storage.get_trial(target_id)
        if kind == "median":
            why = median.explain(others, trial, self.metric, self.lower_is_better)
        elif kind == "asha":
            why = asha.explain(study, after, self.rule, self.metric, self.lower_is_better)
        else:
            assert isinstance(pruner, optuna.pruners.HyperbandPruner)
            why = hyperband.explain(
                pruner, study, after, self.rule, self.metric, self.lower_is_better
            )
        return Prune(trial.trial_id, kind, step, value, f"step {step}: {why}")

    def _frozen(self, history: History | None, kind: str) -> optuna.trial.FrozenTrial:
        if history is None:
            return _placeholder()
        values = {s: v for s, v in history.values.items() if not math.isnan(v)}
        last = values[max(values)] if values else None
        state = history.state
        if kind == "median" and last is not None and state is not TrialState.failed:
            # The median rule compares with the trials that reached a step, finished or not
            # (Optuna's pruner reads only COMPLETE trials: present them so).
            return optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=last, intermediate_values=values
            )
        if state is TrialState.succeeded and last is not None:
            return optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=last, intermediate_values=values
            )
        if state is TrialState.pruned:
            return optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED, intermediate_values=values
            )
        if state.final:
            return optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL, intermediate_values=values
            )
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, intermediate_values=values
        )


def _as_running(history: History) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, intermediate_values=dict(history.values)
    )


def _placeholder() -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)


def _rungs(
    pruner: optuna.pruners.BasePruner,
    rule: EarlyTerminate,
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    upto: int | None,
) -> dict[str, float]:
    if isinstance(pruner, optuna.pruners.HyperbandPruner):
        return hyperband.rungs(pruner, rule, study, trial, upto)
    if isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner):
        return asha.rungs(rule, 0, trial, upto)
    return {}
