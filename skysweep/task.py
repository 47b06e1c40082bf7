"""The task file schema: Transformer Lab's keys, with skysweep's extensions beside them."""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema


class WrittenFloat(float):
    """A number that keeps the text the user wrote: ``1.10`` reaches the job as ``1.10``,
    ``1e-5`` as ``1e-5``, while it still compares, hashes and serialises as the float.

    Trial ids hash the float (``json.dumps`` writes ``float.__repr__``), so they equal the
    ids of the same value read as a plain float: resume and the manifest round trip rely on it.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> WrittenFloat:
        self = super().__new__(cls, text)
        self.text = text
        return self

    @classmethod
    def parse(cls, text: str) -> float:
        """``text`` as a number; infinities and NaN stay plain floats, which every
        language reads back from ``inf``/``nan`` but not from YAML's ``.inf``."""
        value = cls(text)
        return value if math.isfinite(value) else float(value)

    def __reduce__(self) -> tuple[type[WrittenFloat], tuple[str]]:
        return (WrittenFloat, (self.text,))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Without this, pydantic turns the subclass into a plain float on validation.
        # In a union it wins over ``float`` only for instances of this class; it
        # serialises as the float it is (JSON mode writes a number, Python mode keeps it).
        return core_schema.is_instance_schema(cls)


Scalar = str | int | float | bool | WrittenFloat
# A parameter may also be structured (the gallery's batch-image-gen-flux takes a list of
# prompts): the job sees JSON text in its env var and the structure in SKYSWEEP_PARAMS.
ParamValue = Scalar | list[Any] | dict[str, Any]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("SKYSWEEP_", "SKYPILOT_")
RESOURCE_SWEEP_PREFIX = "resources."
SECRET_REFERENCE = re.compile(r"\{\{\s*secret\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What one trial asks for. Transformer Lab's keys, plus ``infra`` from SkyPilot."""

    cpus: int | float | str | None = None
    memory: int | float | str | None = None
    accelerators: str | dict[str, int] | None = None
    disk_space: int | str | None = None
    num_nodes: Annotated[int, Field(ge=1)] | None = None
    instance_type: str | None = None
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    use_spot: bool | None = None
    image_id: str | None = None
    compute_provider: str | None = None
    # skysweep extensions: several providers, and how to use them.
    infra: str | list[str] | None = None
    infra_order: Literal["any", "ordered"] = "any"

    @field_validator("infra")
    @classmethod
    def _infra_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("infra list is empty; give at least one provider such as 'aws'")
        return value

    def requested_cpus(self) -> float:
        """The number of cpus a trial needs, for the local scheduler; 1 when unsaid."""
        if self.cpus is None:
            return 1.0
        match = re.match(r"\s*([0-9]*\.?[0-9]+)", str(self.cpus))
        return float(match.group(1)) if match else 1.0


# ---------------------------------------------------------------------------------------
# Search spaces: W&B Sweeps' distributions, with W&B's meanings
# (https://docs.wandb.ai/guides/sweeps/sweep-config-keys#distribution-options-for-random-and-bayesian-search).


class _Distribution(_Strict):
    distribution: str

    def describe(self) -> str:
        """One line for ``up --dry-run``."""
        fields = self.model_dump(exclude={"distribution"})
        return (
            f"{self.distribution_name()}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
        )

    def distribution_name(self) -> str:
        return self.distribution


class Constant(_Distribution):
    distribution: Literal["constant"] = "constant"
    value: Scalar


class Categorical(_Distribution):
    distribution: Literal["categorical"] = "categorical"
    values: list[Scalar]

    @field_validator("values")
    @classmethod
    def _not_empty(cls, value: list[Scalar]) -> list[Scalar]:
        if not value:
            raise ValueError(
                "a categorical with no values has nothing to choose from; list them, "
                "e.g. values: [adam, sgd]"
            )
        return value


class _Bounded(_Distribution):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> _Bounded:
        if self.min >= self.max:
            raise ValueError(
                f"{self.distribution_name()} needs min < max, got min {self.min} and max "
                f"{self.max}; swap them, or use distribution: constant with value: for one value"
            )
        return self


def _quantum(value: float) -> float:
    if value <= 0:
        raise ValueError(f"q is the step values are rounded to and must be > 0, got {value}")
    return value


def _positive_min(model: _Bounded) -> None:
    if model.min <= 0:
        raise ValueError(
            f"{model.distribution_name()} takes the values themselves, and their logarithm "
            f"needs min > 0, got min {model.min}; use e.g. min: 1.0e-6 (or distribution: "
            "log_uniform, whose min and max are natural-log exponents)"
        )


class Uniform(_Bounded):
    distribution: Literal["uniform"] = "uniform"


class IntUniform(_Bounded):
    distribution: Literal["int_uniform"] = "int_uniform"
    min: int
    max: int

    @field_validator("min", "max", mode="before")
    @classmethod
    def _whole(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, float) and not value.is_integer():
            whole = math.floor(value) if info.field_name == "min" else math.ceil(value)
            raise ValueError(
                f"int_uniform takes whole-number bounds, got {info.field_name} {value}; "
                f"write e.g. {info.field_name}: {whole}, or use distribution: uniform for "
                "real numbers"
            )
        if isinstance(value, float):
            return int(value)
        return value


class QUniform(_Bounded):
    distribution: Literal["q_uniform"] = "q_uniform"
    q: float = 1.0

    _q = field_validator("q")(_quantum)

    @model_validator(mode="after")
    def _a_step_fits(self) -> QUniform:
        if math.ceil(self.min / self.q) > math.floor(self.max / self.q):
            raise ValueError(
                f"no multiple of q={self.q} lies between min {self.min} and max {self.max}; "
                "use a smaller q or a wider range"
            )
        return self


class LogUniformValues(_Bounded):
    distribution: Literal["log_uniform_values"] = "log_uniform_values"

    @model_validator(mode="after")
    def _positive(self) -> LogUniformValues:
        _positive_min(self)
        return self


class QLogUniformValues(_Bounded):
    distribution: Literal["q_log_uniform_values"] = "q_log_uniform_values"
    q: float = 1.0

    _q = field_validator("q")(_quantum)

    @model_validator(mode="after")
    def _positive(self) -> QLogUniformValues:
        _positive_min(self)
        return self


class LogUniform(_Bounded):
    """W&B's ``log_uniform``: ``min`` and ``max`` are natural-log exponents, values lie
    between e^min and e^max (``log_uniform_values`` takes the values themselves)."""

    distribution: Literal["log_uniform"] = "log_uniform"


class Normal(_Distribution):
    distribution: Literal["normal"] = "normal"
    mu: float = 0.0
    sigma: float = 1.0

    @field_validator("sigma")
    @classmethod
    def _spread(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"normal needs sigma > 0, got sigma {value}; e.g. sigma: 1.0")
        return value


Distribution = (
    Constant
    | Categorical
    | Uniform
    | IntUniform
    | QUniform
    | LogUniformValues
    | QLogUniformValues
    | LogUniform
    | Normal
)
DISTRIBUTIONS: dict[str, type[_Distribution]] = {
    "constant": Constant,
    "categorical": Categorical,
    "uniform": Uniform,
    "int_uniform": IntUniform,
    "q_uniform": QUniform,
    "log_uniform_values": LogUniformValues,
    "q_log_uniform_values": QLogUniformValues,
    "log_uniform": LogUniform,
    "normal": Normal,
}
FINITE = ("categorical", "constant")
"""Distributions a grid can take: W&B's ``values:`` and ``value:`` spellings."""
METHODS = ("grid", "random", "sobol", "bayes")
# Tags hold '[' so load.py's messages leave them out of the key path, as for other unions.
_LIST_TAG = "list[values]"


def _tag(name: str) -> str:
    return f"distribution[{name}]"


def _branch(value: Any) -> str:
    if isinstance(value, dict):
        return _tag(str(value.get("distribution")))
    if isinstance(value, _Distribution):  # when serialising
        return _tag(value.distribution)
    return _LIST_TAG


def _entry(value: Any, info: ValidationInfo) -> Any:
    """One ``sweep_config`` value: a list, or a distribution mapping (W&B's inference when
    ``distribution`` is left out: ``values`` is categorical, ``value`` constant, ``min`` and
    ``max`` uniform, or int_uniform for two integers)."""
    if not isinstance(value, dict):
        return value
    value = dict(value)
    name = value.get("distribution")
    if name is None:
        if "values" in value:
            name = "categorical"
        elif "value" in value:
            name = "constant"
        elif "min" in value and "max" in value:
            both_int = all(
                isinstance(value[k], int) and not isinstance(value[k], bool) for k in ("min", "max")
            )
            name = "int_uniform" if both_int else "uniform"
        else:
            raise ValueError(
                "a mapping needs 'distribution:' (one of " + ", ".join(DISTRIBUTIONS) + "), "
                "or 'values:' for a choice; e.g. {distribution: uniform, min: 0, max: 1}"
            )
    if name not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(name), list(DISTRIBUTIONS), n=1, cutoff=0.5)
        raise ValueError(
            f"unknown distribution {name!r}; "
            + (f"did you mean '{close[0]}'? " if close else "")
            + "known: "
            + ", ".join(DISTRIBUTIONS)
        )
    method = info.data.get("method", "grid")
    if method == "grid" and name not in FINITE:
        raise ValueError(
            f"distribution {name!r} needs a search method that samples, but the sweep's "
            "method is grid, which takes a list of values; add 'method: random' (or sobol, "
            "bayes) and 'max_trials: N' to the sweeps section, or give a list of values"
        )
    value["distribution"] = name
    return value


SweepValue = Annotated[
    Annotated[list[ParamValue], Tag(_LIST_TAG)]
    | Annotated[Constant, Tag(_tag("constant"))]
    | Annotated[Categorical, Tag(_tag("categorical"))]
    | Annotated[Uniform, Tag(_tag("uniform"))]
    | Annotated[IntUniform, Tag(_tag("int_uniform"))]
    | Annotated[QUniform, Tag(_tag("q_uniform"))]
    | Annotated[LogUniformValues, Tag(_tag("log_uniform_values"))]
    | Annotated[QLogUniformValues, Tag(_tag("q_log_uniform_values"))]
    | Annotated[LogUniform, Tag(_tag("log_uniform"))]
    | Annotated[Normal, Tag(_tag("normal"))],
    Discriminator(_branch),
    BeforeValidator(_entry),
]
"""A ``sweep_config`` value: a list (grid values, or a categorical choice for the other
methods) or one distribution."""


class Budget(_Strict):
    """``sweeps.budget``: what the whole sweep may cost (an estimate from catalog prices)."""

    max_cost_usd: Annotated[float, Field(gt=0)]


EARLY_TERMINATE_TYPES = ("median", "asha", "hyperband")


class EarlyTerminate(_Strict):
    """``sweeps.early_terminate``: stop losing trials from their intermediate metrics.

    W&B's ``{type: hyperband, min_iter, eta}`` (and ``max_iter``) read with their meaning.
    """

    type: Literal["median", "asha", "hyperband"]
    min_steps: Annotated[int, Field(ge=1)] = 1
    """No decision before a trial has reported this many steps (W&B: ``min_iter``). For asha
    and hyperband it is also the first rung's step."""
    eta: Annotated[int, Field(ge=2)] = 3
    """asha/hyperband reduction factor: about 1 in ``eta`` trials goes on at each rung."""
    max_steps: Annotated[int, Field(ge=1)] | None = None
    """hyperband: the steps a trial runs at most (W&B: ``max_iter``); unknown: estimated from
    the trials that finished."""
    metric: str | None = None
    """The intermediate metric judged; default the sweep's metric (same direction)."""

    @model_validator(mode="before")
    @classmethod
    def _wandb_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for theirs, ours in (("min_iter", "min_steps"), ("max_iter", "max_steps")):
            if theirs in data:
                if ours in data:
                    raise ValueError(
                        f"{theirs} and {ours} are the same key (W&B's and skysweep's names); "
                        "keep one of them"
                    )
                data[ours] = data.pop(theirs)
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if value not in EARLY_TERMINATE_TYPES:
            close = difflib.get_close_matches(str(value).lower(), EARLY_TERMINATE_TYPES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"early_terminate type {value!r} is not a stopping rule; {hint}use one of "
                + ", ".join(EARLY_TERMINATE_TYPES)
            )
        return value

    @model_validator(mode="after")
    def _steps_ordered(self) -> EarlyTerminate:
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise ValueError(
                f"early_terminate max_steps ({self.max_steps}) is below min_steps "
                f"({self.min_steps}); a trial runs at least min_steps steps"
            )
        return self


class ControllerSettings(_Strict):
    """``sweeps.controller``: the SkyPilot job that drives a detached sweep."""

    resources: Resources | None = None
    """Where the controller runs; default the cheapest small CPU instance among the sweep's
    providers, on demand (``use_spot: true`` here to allow spot)."""


class Sweep(_Strict):
    """The ``sweeps`` section: what to vary and how to judge it.

    ``method``, ``max_trials``, ``seed`` and W&B's ``metric`` are skysweep's extensions;
    they come before ``sweep_config`` because its values are checked against the method.
    """

    method: Literal["grid", "random", "sobol", "bayes"] = "grid"
    max_trials: int | None = None
    """How many trials to launch in all (W&B's ``run_cap`` is the same key); required for
    every method but grid."""
    seed: int | None = None
    sweep_config: dict[str, SweepValue] = Field(default_factory=dict)
    sweep_metric: str = "eval/loss"
    lower_is_better: bool = True
    # skysweep extensions
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    budget: Budget | None = None
    early_terminate: EarlyTerminate | None = None
    controller: ControllerSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _wandb_spellings(cls, data: Any) -> Any:
        """W&B's ``run_cap`` and ``metric: {name, goal}`` become skysweep's keys, so the
        sweep reads (and is stored) one way."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "run_cap" in data:
            if "max_trials" in data:
                raise ValueError(
                    "run_cap and max_trials are the same key (W&B's and skysweep's names); "
                    "keep one of them"
                )
            data["max_trials"] = data.pop("run_cap")
        if "metric" in data:
            data.update(_wandb_metric(data.pop("metric"), data))
        return data

    @field_validator("max_trials")
    @classmethod
    def _trial_count(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(
                f"max_trials is how many trials to launch in all and must be >= 1, got "
                f"{value}; e.g. max_trials: 20"
            )
        return value

    @field_validator("sweep_config")
    @classmethod
    def _lists_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        empty = [name for name, values in value.items() if isinstance(values, list) and not values]
        if empty:
            raise ValueError(
                f"the value list of {', '.join(repr(n) for n in empty)} is empty; "
                "give at least one value or remove the key"
            )
        return value

    @field_validator("sweep_config")
    @classmethod
    def _swept_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_parameter_names([n for n in value if not n.startswith(RESOURCE_SWEEP_PREFIX)])
        unknown = [
            n.removeprefix(RESOURCE_SWEEP_PREFIX)
            for n in value
            if n.startswith(RESOURCE_SWEEP_PREFIX)
            and n.removeprefix(RESOURCE_SWEEP_PREFIX) not in SWEEPABLE_RESOURCES
        ]
        if unknown:
            raise ValueError(
                f"resources.{unknown[0]} cannot be swept; sweepable resource keys are "
                + ", ".join(sorted(SWEEPABLE_RESOURCES))
            )
        return value

    @field_validator("sweep_metric")
    @classmethod
    def _metric_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("sweep_metric is empty; name the metric to rank by, e.g. 'eval/loss'")
        return value

    @model_validator(mode="after")
    def _trial_count_for_sampling(self) -> Sweep:
        if self.method != "grid" and self.max_trials is None:
            raise ValueError(
                f"method {self.method} samples without end and needs a trial count: add "
                "'max_trials: N' (W&B's run_cap) to the sweeps section, e.g. max_trials: 20, "
                "or pass --max-trials N"
            )
        return self

    @property
    def stopping_metric(self) -> str:
        """The metric early stopping judges (same direction as the sweep's)."""
        rule = self.early_terminate
        return rule.metric if rule is not None and rule.metric else self.sweep_metric

    def grid_values(self) -> dict[str, list[ParamValue]]:
        """``sweep_config`` as lists of values (a grid's axes: ``values:`` and ``value:``
        are W&B's spellings of a list and of one value)."""
        out: dict[str, list[ParamValue]] = {}
        for name, spec in self.sweep_config.items():
            if isinstance(spec, list):
                out[name] = spec
            elif isinstance(spec, Categorical):
                out[name] = list(spec.values)
            elif isinstance(spec, Constant):
                out[name] = [spec.value]
            else:  # the validator refuses other distributions on a grid
                raise ValueError(f"{name}: {spec.distribution_name()} is not a list of values")
        return out


def _wandb_metric(metric: Any, data: dict[str, Any]) -> dict[str, Any]:
    given = [k for k in ("sweep_metric", "lower_is_better") if k in data]
    if given:
        raise ValueError(
            f"metric (W&B's spelling) and {' and '.join(given)} say the same thing twice; "
            "keep either metric: {name, goal} or sweep_metric/lower_is_better"
        )
    shape = "metric takes {name: eval/loss, goal: minimize} (goal: minimize or maximize)"
    if not isinstance(metric, dict):
        raise ValueError(f"{shape}, got {metric!r}")
    extra = set(metric) - {"name", "goal"}
    if extra:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, extra)))} in metric; {shape}")
    name, goal = metric.get("name"), metric.get("goal", "minimize")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"metric needs a name; {shape}")
    if goal not in ("minimize", "maximize"):
        raise ValueError(f"metric goal {goal!r} is neither minimize nor maximize; {shape}")
    return {"sweep_metric": name, "lower_is_better": goal == "minimize"}


class TaskSpec(_Strict):
    """One task file, validated, in the YAML form's shape whatever form it was written in."""

    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    resources: Resources = Field(default_factory=Resources)
    setup: str | None = None
    run: Annotated[str, Field(min_length=1)]
    envs: dict[str, str] = Field(default_factory=dict)
    sweeps: Sweep | None = None
    github_repo_url: str | None = None
    github_repo_dir: str | None = None
    github_repo_branch: str | None = None
    minutes_requested: Annotated[int, Field(ge=1)] | None = None

    @field_validator("run")
    @classmethod
    def _run_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "the run command is empty; give the command that trains, e.g. 'python train.py'"
            )
        return value

    @field_validator("envs", mode="before")
    @classmethod
    def _envs_as_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {
                k: _scalar_text(v) if isinstance(v, int | float | bool) else v
                for k, v in value.items()
            }
        return value

    @field_validator("envs")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(
                f"{', '.join(repr(b) for b in bad)} cannot be an environment "
                "variable name; use letters, digits and '_', not starting with a "
                "digit"
            )
        return value

    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    parameter_envs: dict[str, list[str]] = Field(default_factory=dict)
    """Parameter → the extra env vars it also reaches the job under (a form field's
    ``env_var``, as Transformer Lab passes ``MODEL_NAME``)."""

    @model_validator(mode="before")
    @classmethod
    def _form_fields(cls, data: Any) -> Any:
        # Transformer Lab's gallery describes parameters as form fields; each becomes its
        # value here, its env_var an alias, a password field a secret env (never a value).
        if isinstance(data, dict) and "parameters" in data and data["parameters"] is None:
            data = {**data, "parameters": {}}
        if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
            return data
        swept = (
            set((data.get("sweeps") or {}).get("sweep_config") or {})
            if isinstance(data.get("sweeps"), dict)
            else set()
        )
        values: dict[str, Any] = {}
        aliases: dict[str, list[str]] = dict(data.get("parameter_envs") or {})
        envs: dict[str, Any] = dict(data.get("envs") or {})
        for name, item in data["parameters"].items():
            if not is_form_field(item):
                values[name] = item
                continue
            extra = [item["env_var"]] if isinstance(item.get("env_var"), str) else []
            extra = [e for e in extra if e and e != name]
            value = item.get("value", item.get("default"))
            if value == "" and (item.get("required") or item.get("password")):
                value = None  # a required field's empty default is a form's "not given"
            if item.get("password"):
                if value is None and not item.get("required"):
                    continue  # an optional secret nobody gave
                ref = (
                    value
                    if isinstance(value, str) and SECRET_REFERENCE.fullmatch(value.strip())
                    else secret_reference(extra[0] if extra else name)
                )
                for env_name in [name, *extra]:
                    envs.setdefault(env_name, ref)
                continue
            if value is None:
                if not item.get("required") and name not in swept:
                    values[name] = item  # refused by _no_form_left, at its own place
                # a required one is given by --param or swept, which load() checks
                if extra:
                    aliases[name] = extra
                continue
            values[name] = value
            if extra:
                aliases[name] = extra
        return {**data, "parameters": values, "parameter_envs": aliases, "envs": envs}

    @field_validator("parameters", mode="before")
    @classmethod
    def _no_form_left(cls, value: Any) -> Any:
        for name, item in value.items() if isinstance(value, dict) else ():
            if is_form_field(item):
                raise ValueError(
                    f"parameter {name!r} is a mapping without a 'default'; give a plain "
                    "value, a mapping with 'default:' or 'value:', or 'required: true'"
                )
        return value

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, ParamValue]) -> dict[str, ParamValue]:
        _check_parameter_names(list(value))
        return value

    @field_validator("parameter_envs")
    @classmethod
    def _alias_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        _check_parameter_names([alias for aliases in value.values() for alias in aliases])
        return value

    def secret_names(self) -> list[str]:
        """The secrets the envs, ``setup`` and ``run`` refer to, in order of first use."""
        found: list[str] = []
        for value in [*self.envs.values(), self.setup or "", self.run]:
            for name in SECRET_REFERENCE.findall(value):
                if name not in found:
                    found.append(name)
        return found


SWEEPABLE_RESOURCES = frozenset(
    name for name in Resources.model_fields if name not in {"infra_order", "compute_provider"}
)


def _check_parameter_names(names: list[str]) -> None:
    """Every parameter reaches its job as an environment variable of the same name."""
    bad = [n for n in names if not ENV_NAME.match(n)]
    if bad:
        raise ValueError(
            f"parameter name(s) {', '.join(repr(b) for b in bad)} cannot be environment "
            "variables, which is how a job receives them; rename using letters, digits and "
            "'_' (e.g. 'learning_rate'), not starting with a digit"
        )
    reserved = [n for n in names if n.upper().startswith(RESERVED_PREFIXES)]
    if reserved:
        raise ValueError(
            f"parameter name(s) {', '.join(repr(r) for r in reserved)} use a "
            "reserved prefix (SKYSWEEP_, SKYPILOT_); rename them"
        )


FORM_FIELD_KEYS = frozenset(
    {
        # Transformer Lab's form fields
        "field_name", "env_var", "field_type", "required", "placeholder", "help_text",
        "default", "value", "password",
        # the gallery's typed parameters (nanochat): {type, default, min, max, title, ...}
        "type", "title", "description", "min", "max", "step", "ui_widget", "options",
    }
)  # fmt: skip


def secret_reference(name: str) -> str:
    """``{{secret.NAME}}``, the way a task file names a secret the user holds."""
    return "{{secret." + name + "}}"


def is_form_field(item: Any) -> bool:
    """A mapping of form-field keys only is a form field; any other mapping is a
    structured value (wrap one that looks like a form in ``value:``)."""
    return (
        isinstance(item, dict)
        and bool(item)
        and all(isinstance(k, str) and k in FORM_FIELD_KEYS for k in item)
    )


def _required_message(name: str, item: dict[str, Any]) -> str:
    label = item.get("field_name") or name
    help_text = f" ({item['help_text']})" if item.get("help_text") else ""
    return (
        f"parameter {name!r} (field {label!r}{help_text}) is required and has no value; "
        f"give it with --param {name}=VALUE or sweep it"
    )


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, WrittenFloat):
        return value.text
    return str(value)


def parameter_text(value: ParamValue) -> str:
    """A parameter value as its job sees it in the environment: a list or a mapping as
    JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return _scalar_text(value)
