"""The task file schema: Transformer Lab's keys, with skysweep's extensions beside them."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, field_validator
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


class Budget(_Strict):
    """``sweeps.budget``: what the whole sweep may cost (an estimate from catalog prices)."""

    max_cost_usd: Annotated[float, Field(gt=0)]


class Sweep(_Strict):
    """The ``sweeps`` section: what to vary and how to judge it."""

    sweep_config: dict[str, list[Scalar]] = Field(default_factory=dict)
    sweep_metric: str = "eval/loss"
    lower_is_better: bool = True
    # skysweep extensions
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    budget: Budget | None = None

    @field_validator("sweep_config")
    @classmethod
    def _lists_not_empty(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(
                f"the value list of {', '.join(repr(n) for n in empty)} is empty; "
                "give at least one value or remove the key"
            )
        return value

    @field_validator("sweep_config")
    @classmethod
    def _swept_names(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
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


class TaskSpec(_Strict):
    """One task file, validated, in the YAML form's shape whatever form it was written in."""

    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    resources: Resources = Field(default_factory=Resources)
    setup: str | None = None
    run: Annotated[str, Field(min_length=1)]
    envs: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, Scalar] = Field(default_factory=dict)
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

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameter_defaults(cls, value: Any) -> Any:
        # Transformer Lab's gallery files describe a parameter as a form field
        # ({type, default, min, max, title, ...}); its value is the default.
        if value is None:
            return {}
        if not isinstance(value, dict):
            return value
        resolved: dict[str, Any] = {}
        for name, item in value.items():
            if isinstance(item, dict):
                if "default" not in item:
                    raise ValueError(
                        f"parameter {name!r} is a mapping without a 'default'; "
                        "give a plain value or a mapping with 'default:'"
                    )
                resolved[name] = item["default"]
            else:
                resolved[name] = item
        return resolved

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        _check_parameter_names(list(value))
        return value

    def secret_names(self) -> list[str]:
        """The secrets the envs refer to, in order of first use."""
        found: list[str] = []
        for value in self.envs.values():
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


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, WrittenFloat):
        return value.text
    return str(value)


def parameter_text(value: Scalar) -> str:
    """A parameter value as its job sees it in the environment."""
    return _scalar_text(value)
