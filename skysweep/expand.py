"""Stage 2, expand: a task's grid becomes trials, lazily, in file order. Pure: no I/O."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

from skysweep.task import RESOURCE_SWEEP_PREFIX, ParamValue, TaskSpec
from skysweep.trial import Trial

__all__ = ["Trial", "expand", "grid_points", "grid_size", "trial_id_for"]


def trial_id_for(params: dict[str, ParamValue], resources: dict[str, Any]) -> str:
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


def _config(task: TaskSpec) -> dict[str, list[ParamValue]]:
    return task.sweeps.grid_values() if task.sweeps else {}


def grid_points(task: TaskSpec) -> Iterator[Trial]:
    """The Cartesian product of ``sweep_config`` over the base parameters, in file order.

    A task with no sweep, ``run_sweeps: false`` or an empty ``sweep_config`` is one trial.
    A value listed twice is one trial, not two.
    """
    config = _config(task)
    names = list(config)
    seen: set[str] = set()
    for point in itertools.product(*(config[name] for name in names)):
        params: dict[str, ParamValue] = dict(task.parameters)
        resources: dict[str, Any] = {}
        for name, value in zip(names, point, strict=True):
            if name.startswith(RESOURCE_SWEEP_PREFIX):
                resources[name.removeprefix(RESOURCE_SWEEP_PREFIX)] = value
            else:
                params[name] = value
        trial_id = trial_id_for(params, resources)
        if trial_id in seen:
            continue
        seen.add(trial_id)
        yield Trial(len(seen) - 1, trial_id, params, resources)


def grid_size(task: TaskSpec) -> int:
    """How many trials :func:`grid_points` yields, without hashing every point."""
    return math.prod(
        len({json.dumps(v, sort_keys=True) for v in values}) for values in _config(task).values()
    )


def expand(task: TaskSpec) -> list[Trial]:
    return list(grid_points(task))
