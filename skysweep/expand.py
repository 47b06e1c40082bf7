"""Stage 2, expand: a task's sweep becomes the list of trials to run. Pure: no I/O."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from skysweep.task import RESOURCE_SWEEP_PREFIX, Scalar, TaskSpec


@dataclass(frozen=True)
class Trial:
    """One combination: the base parameters overlaid with one point of the search space."""

    index: int
    trial_id: str
    params: dict[str, Scalar]
    resources: dict[str, Any] = field(default_factory=dict)
    """Resource keys swept like parameters (``resources.accelerators``), for this trial."""


def trial_id_for(params: dict[str, Scalar], resources: dict[str, Any]) -> str:
    """A stable id from the canonical form of a trial's values.

    The same values give the same id in every run, on every machine: resume, retries and
    object-storage keys rely on it.
    """
    canonical = json.dumps(
        {"params": params, "resources": resources},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(task: TaskSpec) -> list[Trial]:
    """The Cartesian product of ``sweep_config`` over the base parameters, in file order.

    A task with no sweep, ``run_sweeps: false`` or an empty ``sweep_config`` is one trial.
    """
    config = task.sweeps.sweep_config if task.sweeps else {}
    names = list(config)
    trials: list[Trial] = []
    seen: set[str] = set()
    for point in itertools.product(*(config[name] for name in names)):
        params: dict[str, Scalar] = dict(task.parameters)
        resources: dict[str, Any] = {}
        for name, value in zip(names, point, strict=True):
            if name.startswith(RESOURCE_SWEEP_PREFIX):
                resources[name.removeprefix(RESOURCE_SWEEP_PREFIX)] = value
            else:
                params[name] = value
        trial_id = trial_id_for(params, resources)
        if trial_id in seen:  # a value listed twice is one trial, not two
            continue
        seen.add(trial_id)
        trials.append(Trial(len(trials), trial_id, params, resources))
    return trials
