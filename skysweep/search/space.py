"""A sweep's search space in Optuna's terms, and back.

Each swept parameter becomes one Optuna distribution over an *internal* value, and a rule
that turns the internal value into what the job receives (and back, to rebuild a study from
the trials a sweep recorded). W&B's meanings, mapped onto what Optuna samples:

========================  ==============================  =====================================
sweep_config              Optuna samples                  the job receives
========================  ==============================  =====================================
list, ``values:``         CategoricalDistribution         one of the values, as written
``constant``              (nothing: not searched)         ``value``
``uniform``               FloatDistribution(min, max)     the float
``int_uniform``           IntDistribution(min, max)       the integer
``q_uniform``             IntDistribution(k_lo, k_hi)     k * q: the multiples of q in [min, max]
``log_uniform_values``    FloatDistribution(log=True)     the float
``q_log_uniform_values``  FloatDistribution(log=True)     round(x / q) * q (W&B's rounding)
``log_uniform``           FloatDistribution(e^min, e^max, log=True): min/max are exponents
``normal``                FloatDistribution(0, 1)         NormalDist(mu, sigma).inv_cdf(u)
========================  ==============================  =====================================

``normal`` is searched through its quantile ``u``: Optuna has no normal distribution, and an
inverse-CDF map is how quasi-random sequences sample one (random and Sobol points in ``u``
are normal samples of the value); TPE then models ``u``, which keeps the order of values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from skysweep.task import (
    RESOURCE_SWEEP_PREFIX,
    Categorical,
    Constant,
    IntUniform,
    LogUniform,
    LogUniformValues,
    Normal,
    ParamValue,
    QLogUniformValues,
    QUniform,
    SweepValue,
    TaskSpec,
    Uniform,
)
from skysweep.trial import Trial

_EDGE = 1e-12
"""How close a normal's quantile may come to 0 or 1 (inv_cdf is infinite there)."""


def _tidy(value: float) -> float:
    """``3 * 0.05`` is ``0.15000000000000002``; the job should see ``0.15``."""
    return float(f"{value:.12g}")


@dataclass(frozen=True)
class Param:
    """One searched parameter: what Optuna samples and how it maps to the job's value."""

    name: str
    distribution: BaseDistribution
    to_value: Callable[[Any], ParamValue]
    to_internal: Callable[[Any], Any]
    """The internal value of a recorded value; raises ValueError when it cannot be one."""
    described: str


def _param(name: str, spec: SweepValue) -> Param | None:
    """The Optuna form of one ``sweep_config`` entry; None for a constant."""
    if isinstance(spec, Constant):
        return None
    if isinstance(spec, list | Categorical):
        values: list[ParamValue] = list(spec if isinstance(spec, list) else spec.values)
        if any(isinstance(v, list | dict) for v in values):
            # Optuna chooses among scalars: a list or a mapping is chosen by its place.
            places = tuple(range(len(values)))
            return Param(
                name,
                CategoricalDistribution(places),
                lambda i: values[i],
                values.index,
                "categorical(" + ", ".join(json.dumps(v) for v in values) + ")",
            )
        choices = tuple(v for v in values if not isinstance(v, list | dict))
        return Param(
            name,
            CategoricalDistribution(choices),
            lambda v: v,
            lambda v: choices[choices.index(v)],
            "categorical(" + ", ".join(map(str, choices)) + ")",
        )
    described = spec.describe()
    if isinstance(spec, IntUniform):
        return Param(name, IntDistribution(spec.min, spec.max), int, _int, described)
    if isinstance(spec, QUniform):
        q = spec.q
        low, high = math.ceil(spec.min / q - 1e-9), math.floor(spec.max / q + 1e-9)
        return Param(
            name,
            IntDistribution(low, high),
            lambda k: _tidy(int(k) * q),
            lambda v: round(float(v) / q),
            described,
        )
    if isinstance(spec, QLogUniformValues):
        q, lo, hi = spec.q, spec.min, spec.max
        return Param(
            name,
            FloatDistribution(lo, hi, log=True),
            lambda x: _tidy(round(float(x) / q) * q),
            # W&B's rounding may leave [min, max] (0 when q > min): Optuna gets the nearest
            # value it could have drawn.
            lambda v: min(hi, max(lo, float(v))),
            described,
        )
    if isinstance(spec, Normal):
        normal = NormalDist(spec.mu, spec.sigma)
        return Param(
            name,
            FloatDistribution(0.0, 1.0),
            lambda u: normal.inv_cdf(min(1 - _EDGE, max(_EDGE, float(u)))),
            lambda v: min(1.0, max(0.0, normal.cdf(float(v)))),
            described,
        )
    if isinstance(spec, LogUniform):
        smallest, largest = math.exp(spec.min), math.exp(spec.max)
        return Param(
            name,
            FloatDistribution(smallest, largest, log=True),
            float,
            float,
            f"{described}: min and max are exponents, values e^{spec.min}..e^{spec.max} "
            f"= {smallest:.6g}..{largest:.6g}",
        )
    if isinstance(spec, LogUniformValues):
        return Param(name, FloatDistribution(spec.min, spec.max, log=True), float, float, described)
    if isinstance(spec, Uniform):
        return Param(name, FloatDistribution(spec.min, spec.max), float, float, described)
    raise TypeError(f"no Optuna form for {spec!r}")


def _int(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


class Space:
    """The searched parameters of a task, and the values every trial shares."""

    def __init__(self, task: TaskSpec) -> None:
        sweeps = task.sweeps
        config = dict(sweeps.sweep_config) if sweeps else {}
        self.method = sweeps.method if sweeps else "grid"
        self.max_trials = sweeps.max_trials if sweeps else None
        self.seed = sweeps.seed if sweeps else None
        self.lower_is_better = sweeps.lower_is_better if sweeps else True
        self.base: dict[str, ParamValue] = dict(task.parameters)
        self.fixed: dict[str, ParamValue] = {
            name: spec.value for name, spec in config.items() if isinstance(spec, Constant)
        }
        self.params: dict[str, Param] = {
            name: param for name, spec in config.items() if (param := _param(name, spec))
        }
        self.order = list(config)
        self.distributions: dict[str, BaseDistribution] = {
            name: p.distribution for name, p in self.params.items()
        }

    def values(self, internal: Mapping[str, Any]) -> tuple[dict[str, ParamValue], dict[str, Any]]:
        """A trial's parameters and swept resources from Optuna's sampled values."""
        params: dict[str, ParamValue] = dict(self.base)
        resources: dict[str, Any] = {}
        for name in self.order:
            param = self.params.get(name)
            value = param.to_value(internal[name]) if param else self.fixed[name]
            if name.startswith(RESOURCE_SWEEP_PREFIX):
                resources[name.removeprefix(RESOURCE_SWEEP_PREFIX)] = value
            else:
                params[name] = value
        return params, resources

    def internal(self, trial: Trial) -> dict[str, Any] | None:
        """Optuna's values for a recorded trial; None when the trial does not fit the space
        (a value outside it), so a study leaves it out rather than fail."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            if name.startswith(RESOURCE_SWEEP_PREFIX):
                holder: Mapping[str, Any] = trial.resources
                key = name.removeprefix(RESOURCE_SWEEP_PREFIX)
            else:
                holder, key = trial.params, name
            if key not in holder:
                return None
            try:
                out[name] = param.to_internal(holder[key])
            except (ValueError, TypeError):
                return None
        return out

    def describe(self) -> list[str]:
        """The space, one line a parameter, for ``up --dry-run``."""
        lines = [f"{name}: {p.described}" for name, p in self.params.items()]
        lines += [f"{name}: constant {value}" for name, value in self.fixed.items()]
        return lines
