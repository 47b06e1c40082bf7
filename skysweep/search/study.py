"""What the random, Sobol and Bayesian sources share: an Optuna study rebuilt in memory from
the trials the sweep's store holds, asked for the next trials, then dropped.

The store is the only state. There is no Optuna database: whenever the controller asks for
trials, the study is made again from the ledger's trials (parameters) and the collector's
results (states, metric values), so a controller on any machine continues the same search.

- a trial that succeeded and has the metric is COMPLETE with that value;
- a trial that ended otherwise (failed, cancelled, lost, no metric) is FAIL, never a value;
- a trial not ended yet is RUNNING (TPE's constant liar keeps new suggestions off it);
- a trial the stopping rule pruned is PRUNED with its last intermediate value.

Trial numbers are the sweep's own (``Trial.index``): a sampler that draws from a seed is
seeded with (seed, number), so trial *n* gets the same suggestion in a fresh sweep and after
any resume, and the Sobol point of trial *n* is the sequence's point *n*.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.samplers import BaseSampler

from skysweep.search import Outcome
from skysweep.search.space import Space
from skysweep.task import TaskSpec
from skysweep.trial import Trial, TrialState

# The user sees skysweep's output, not Optuna's notes on trials or experimental features.
optuna.logging.set_verbosity(logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def derive_seed(*parts: object) -> int:
    """A 32-bit seed (what numpy takes) from any parts, the same on every machine."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def numbered_trial_id(number: int, params: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    """A sampled trial's id: its number is part of it, so two equal suggestions are two
    trials (a grid trial's id is its values alone)."""
    canonical = json.dumps(
        {"number": number, "params": params, "resources": resources},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def optuna_state(outcome: Outcome | None) -> tuple[optuna.trial.TrialState, float | None]:
    if outcome is None:
        return optuna.trial.TrialState.RUNNING, None
    state, value = outcome
    if state is TrialState.succeeded and value is not None:
        return optuna.trial.TrialState.COMPLETE, value
    if state is TrialState.pruned:
        # Its last intermediate value: TPE weighs pruned trials by it.
        return optuna.trial.TrialState.PRUNED, value
    if state.final:
        return optuna.trial.TrialState.FAIL, None
    return optuna.trial.TrialState.RUNNING, None


def rebuild(
    space: Space, known: Mapping[str, Trial], outcomes: Mapping[str, Outcome]
) -> optuna.Study:
    """An in-memory study holding the sweep's trials, in number order."""
    study = optuna.create_study(
        direction="minimize" if space.lower_is_better else "maximize",
        sampler=optuna.samplers.RandomSampler(0),  # replaced before every ask
    )
    frozen = []
    for trial in sorted(known.values(), key=lambda t: t.index):
        internal = space.internal(trial)
        if internal is None:
            continue
        state, value = optuna_state(outcomes.get(trial.trial_id))
        pruned = state is optuna.trial.TrialState.PRUNED
        try:
            frozen.append(
                optuna.trial.create_trial(
                    state=state,
                    value=None if pruned else value,
                    params=internal,
                    distributions=space.distributions,
                    # The step it was pruned at is not part of an outcome: one step for all.
                    intermediate_values={0: value} if pruned and value is not None else None,
                )
            )
        except ValueError:
            continue  # a recorded value outside the space (written by hand): not evidence
    study.add_trials(frozen)
    return study


class SampledSource:
    """A trial source whose trials a sampler suggests, up to ``max_trials``.

    Subclasses say which sampler suggests trial *n* and whether it learns from the trials
    before (only the Bayesian one does: the others need no study of the past).
    """

    method = "random"
    suggested_by = "random:RandomSampler"
    """Kept in each trial's record: the method, and the Optuna sampler that suggested it."""
    learns = False

    def __init__(self, task: TaskSpec, sweep_id: str | None = None) -> None:
        self.space = Space(task)
        if self.space.max_trials is None:  # the schema requires it; a bare Sweep may not
            raise ValueError(f"method {self.method} needs max_trials")
        self.expected: int | None = self.space.max_trials
        # Unseeded: one seed per sweep, from its id, so a resumed sweep goes on as it was.
        self.seed: int = (
            self.space.seed
            if self.space.seed is not None
            else derive_seed(sweep_id)
            if sweep_id is not None
            else secrets.randbits(32)
        )
        self._made = 0

    @property
    def exhausted(self) -> bool:
        return self._made >= self.space.max_trials if self.space.max_trials else True

    def sampler(self, number: int) -> BaseSampler:
        raise NotImplementedError

    def label(self, number: int) -> str:
        """What trial ``number``'s record says suggested it."""
        return self.suggested_by

    def next(
        self,
        count: int,
        known: Mapping[str, Trial],
        outcomes: Mapping[str, Outcome] | None = None,
    ) -> list[Trial]:
        budget = self.space.max_trials or 0
        count = max(0, min(count, budget - len(known)))
        self._made = len(known) + count
        if count == 0:
            return []
        number = max((t.index for t in known.values()), default=-1) + 1
        study = (
            rebuild(self.space, known, outcomes or {})
            if self.learns
            else rebuild(self.space, {}, {})
        )
        out: list[Trial] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's notes on Sobol balance, Optuna's on seeds
            for n in range(number, number + count):
                study.sampler = self.sampler(n)
                asked = study.ask(self.space.distributions)
                params, resources = self.space.values(asked.params)
                out.append(
                    Trial(
                        n, numbered_trial_id(n, params, resources), params, resources, self.label(n)
                    )
                )
        return out
