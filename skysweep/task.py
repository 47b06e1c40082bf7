"""The task file schema: Transformer Lab's keys, with skysweep's extensions beside them."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
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


class Sweep(_Strict):
    """The ``sweeps`` section: what to vary and how to judge it."""

    sweep_config: dict[str, list[ParamValue]] = Field(default_factory=dict)
    sweep_metric: str = "eval/loss"
    lower_is_better: bool = True
    # skysweep extensions
    max_parallel: Annotated[int, Field(ge=1)] | None = None

    @field_validator("sweep_config")
    @classmethod
    def _lists_not_empty(cls, value: dict[str, list[ParamValue]]) -> dict[str, list[ParamValue]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(
                f"the value list of {', '.join(repr(n) for n in empty)} is empty; "
                "give at least one value or remove the key"
            )
        return value

    @field_validator("sweep_config")
    @classmethod
    def _swept_names(cls, value: dict[str, list[ParamValue]]) -> dict[str, list[ParamValue]]:
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
