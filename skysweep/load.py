"""Stage 1, load: a task file on disk becomes a validated :class:`TaskSpec`.

Both forms of Transformer Lab's sweep page load here: the YAML form (``run``,
``resources``, ``sweeps``) and the flat JSON form (``command``, ``cpus``, ``run_sweeps``,
``sweep_config``). Every problem in a file is reported at once, each with its place.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from skysweep.errors import Problem, TaskFileError, UsageError
from skysweep.task import (
    DISTRIBUTIONS,
    EARLY_TERMINATE_TYPES,
    ENV_NAME,
    RESOURCE_SWEEP_PREFIX,
    SECRET_REFERENCE,
    EarlyTerminate,
    Resources,
    Scalar,
    Sweep,
    TaskSpec,
    WrittenFloat,
    is_form_field,
    secret_reference,
)

YAML_FORM_KEYS = frozenset({"run", "resources", "sweeps"})
FLAT_SWEEP_KEYS = frozenset(
    {"run_sweeps", "sweep_config", "sweep_metric", "lower_is_better", "max_parallel"}
)
FLAT_RESOURCE_KEYS = frozenset(Resources.model_fields)
FLAT_FORM_KEYS = frozenset({"command"}) | FLAT_SWEEP_KEYS | FLAT_RESOURCE_KEYS


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2's core schema on PyYAML's safe loader.

    PyYAML follows YAML 1.1, where ``no``/``off``/``y`` are booleans (a language list
    ``[en, no, de]`` loses Norway), ``017`` is octal, ``1_000`` and ``1:30`` are numbers,
    ``2024-01-01`` is a date and ``1e-5`` is a string. The core schema has none of that: only
    the resolvers below decide a plain scalar's type; everything else is a string. Merge keys
    (``<<: *base``) are kept: they are not core YAML 1.2, but no task file means a literal
    ``<<`` key and people use them to share settings.
    """


# Its own table, filled below: SafeLoader's YAML 1.1 table is not inherited.
_Yaml12Loader.yaml_implicit_resolvers = {}


_CORE_RESOLVERS = [
    ("tag:yaml.org,2002:null", r"null|Null|NULL|~|", ["n", "N", "~", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
    ("tag:yaml.org,2002:merge", r"<<", ["<"]),
]
# Resolvers are tried in the order added: an int pattern must win over the float one.
for _tag, _pattern, _first in _CORE_RESOLVERS:
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)  # YAML 1.2: a leading 0 is not octal
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not an integer", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    if text.lower() in special:
        return special[text.lower()]
    try:
        return WrittenFloat.parse(text)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a number", node.start_mark
        ) from None


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load(
    path: str | Path,
    *,
    sweep_overrides: Mapping[str, Sequence[Any]] | None = None,
    search: SearchOverrides | None = None,
    param_overrides: Mapping[str, Any] | None = None,
    secret_values: dict[str, str] | None = None,
) -> TaskSpec:
    """Read, normalise and validate one task file.

    ``sweep_overrides`` (``--sweep``) adds or replaces sweep values, and ``search``
    (``--search FILE``, ``--method``, ``--max-trials``, ``--seed``) the search settings, from
    the command line. They are merged into the raw ``sweeps`` section before validation, so a
    task file can stay as Transformer Lab accepts it. Precedence: flags, then the ``--search``
    file, then the task file. ``param_overrides`` (``--param NAME=VALUE``) sets a parameter's
    value over the file's, also a form field's. The value of a ``password`` form field never
    enters the task: it is put in ``secret_values`` (secret name → value, for the launching
    process's environment) and the task keeps a ``{{secret.NAME}}`` reference.
    """
    file = Path(path)
    text = _read(file)
    data = _parse(file, text)
    problems: list[Problem] = []
    normalised, flat = _normalise(data, problems)
    layers = (search or SearchOverrides()).layers()
    if sweep_overrides:
        config = {name: list(values) for name, values in sweep_overrides.items()}
        flags = {name: f"--sweep {name}=..." for name in config}
        layers.insert(-1, _Layer({"sweep_config": config}, flags))
    layers = [layer for layer in layers if layer.values]
    if layers:
        base = normalised.get("sweeps")
        normalised["sweeps"] = merge_sweeps(
            base if isinstance(base, Mapping) or base is None else {},
            *(layer.values for layer in layers),
        )
    if not problems:
        _apply_params(file, normalised, param_overrides or {}, secret_values)
    if "name" not in normalised and not problems:
        normalised["name"] = file.stem
    task: TaskSpec | None = None
    try:
        task = TaskSpec.model_validate(normalised)
    except ValidationError as exc:
        problems += _translate(exc, flat, _LineFinder(text), _origins(layers))
    if problems or task is None:
        raise TaskFileError(str(file), problems)
    return task


SEARCH_METHODS = ("grid", "random", "sobol", "bayes")
SEARCH_FILE_KEYS = (
    "method",
    "max_trials",
    "run_cap",
    "seed",
    "max_parallel",
    "metric",
    "sweep_metric",
    "lower_is_better",
    "sweep_config",
    "early_terminate",
)
"""What a ``--search`` file may hold: skysweep's keys of the ``sweeps`` section."""

# Keys that say the same thing: setting one drops the others from the layers below, so an
# override never leaves the task file's spelling behind to clash with it.
_SAME_MEANING: dict[str, tuple[str, ...]] = {
    "max_trials": ("run_cap",),
    "run_cap": ("max_trials",),
    "metric": ("sweep_metric", "lower_is_better"),
    "sweep_metric": ("metric",),
    "lower_is_better": ("metric",),
}


def merge_sweeps(base: Mapping[str, Any] | None, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """A raw ``sweeps`` mapping with each layer laid over the one before.

    A key of a layer replaces the key below it; ``sweep_config`` is merged entry by entry (an
    entry replaces the same-named one and adds new ones). A key replaces its other spellings
    below: ``max_trials``/``run_cap``, and W&B's ``metric: {name, goal}`` for
    ``sweep_metric``/``lower_is_better`` (a ``metric`` below is split into those two first,
    so that a layer changing only the direction keeps the metric's name).
    """
    merged: dict[str, Any] = dict(base or {})
    for layer in layers:
        for key, value in layer.items():
            if key in ("sweep_config", "early_terminate"):
                below = merged.get(key)
                if below is None or isinstance(below, Mapping):
                    merged[key] = {**(below or {}), **value}
                continue  # a malformed section below stays, for its own error
            if key in ("sweep_metric", "lower_is_better") and "metric" in merged:
                merged = {**_split_metric(merged.pop("metric")), **merged}
            for other in _SAME_MEANING.get(key, ()):
                merged.pop(other, None)
            merged[key] = value
    return merged


def _split_metric(metric: Any) -> dict[str, Any]:
    if not isinstance(metric, Mapping) or set(metric) - {"name", "goal"}:
        return {}
    split: dict[str, Any] = {}
    if isinstance(metric.get("name"), str):
        split["sweep_metric"] = metric["name"]
    if metric.get("goal") in ("minimize", "maximize"):
        split["lower_is_better"] = metric["goal"] == "minimize"
    return split


@dataclass(frozen=True)
class _Layer:
    values: dict[str, Any]
    origins: dict[str, str]
    """Where each key (``sweep_config`` entries as ``sweep_config.NAME``) came from, as a
    location prefix for messages."""
    lines: _LineFinder | None = None
    """Lines of the file the layer was read from, for keys found in it."""


@dataclass(frozen=True)
class SearchOverrides:
    """Search settings given on the command line, over the task file's ``sweeps`` section."""

    method: str | None = None
    max_trials: int | None = None
    seed: int | None = None
    search_file: Path | None = None
    early_terminate: str | None = None

    def __post_init__(self) -> None:
        if self.early_terminate is not None and self.early_terminate not in (EARLY_TERMINATE_TYPES):
            close = difflib.get_close_matches(
                self.early_terminate.lower(), EARLY_TERMINATE_TYPES, n=1
            )
            raise UsageError(
                f"--early-terminate {self.early_terminate!r} is not a stopping rule; use one of "
                + ", ".join(EARLY_TERMINATE_TYPES),
                hint=f"did you mean '--early-terminate {close[0]}'?"
                if close
                else "median stops trials below the median at a step; asha and hyperband "
                "keep the best 1 in eta at each rung",
            )
        if self.method is not None and self.method not in SEARCH_METHODS:
            close = difflib.get_close_matches(self.method.lower(), SEARCH_METHODS, n=1)
            raise UsageError(
                f"--method {self.method!r} is not a search method; use one of "
                + ", ".join(SEARCH_METHODS),
                hint=f"did you mean '--method {close[0]}'?"
                if close
                else "grid tries every combination; random, sobol and bayes sample "
                "max_trials points of the distributions in sweep_config",
            )
        if self.max_trials is not None and self.max_trials < 1:
            raise UsageError(
                f"--max-trials {self.max_trials}: a sweep runs at least one trial",
                hint="give a positive number, e.g. --max-trials 40",
            )

    def flags(self) -> list[str]:
        """The same overrides as command-line words, for a command to paste (resume)."""
        words: list[str] = []
        if self.search_file is not None:
            words += ["--search", str(self.search_file)]
        if self.method is not None:
            words += ["--method", self.method]
        if self.max_trials is not None:
            words += ["--max-trials", str(self.max_trials)]
        if self.seed is not None:
            words += ["--seed", str(self.seed)]
        if self.early_terminate is not None:
            words += ["--early-terminate", self.early_terminate]
        return words

    def layers(self) -> list[_Layer]:
        """The ``--search`` file's layer, then one of the flags (``--sweep`` goes between)."""
        layers = [read_search_file(self.search_file)] if self.search_file else []
        flags: dict[str, Any] = {}
        if self.method is not None:
            flags["method"] = self.method
        if self.max_trials is not None:
            flags["max_trials"] = self.max_trials
        if self.seed is not None:
            flags["seed"] = self.seed
        if self.early_terminate is not None:
            flags["early_terminate"] = {"type": self.early_terminate}
        names = {"max_trials": "--max-trials", "early_terminate": "--early-terminate"}
        shown = {**flags, **({"early_terminate": self.early_terminate} if flags else {})}
        origins = {key: f"{names.get(key, '--' + key)} {shown[key]}" for key in flags}
        return [*layers, _Layer(flags, origins)]


class SearchFileError(TaskFileError):
    """A ``--search`` file that cannot be read; lists every problem found."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        super().__init__(path, problems)
        lines = [f"{path}: {len(problems)} problem(s) in the --search file:"]
        lines += [f"  - {problem.render()}" for problem in problems]
        UsageError.__init__(self, "\n".join(lines))


def read_search_file(path: Path) -> _Layer:
    """A ``--search`` file: skysweep's keys of the ``sweeps`` section, at its top level, read
    with the task file's YAML 1.2 rules (duplicate keys are an error, numbers keep their
    text). Values are checked with the task file's, each problem placed in this file."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise UsageError(
            f"--search {path}: {what}",
            hint="give a YAML file holding sweeps keys such as method, max_trials and "
            "sweep_config, e.g. --search search.yaml",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--search {path}: cannot be read: {exc}") from exc
    try:
        data = _load_yaml(path, text)
    except TaskFileError as exc:
        raise SearchFileError(str(path), exc.problems) from exc
    except yaml.YAMLError as exc:
        raise SearchFileError(str(path), [_yaml_problem(exc)]) from exc
    if not isinstance(data, dict) or not data:
        got = "empty" if data is None or data == {} else f"a {type(data).__name__}"
        raise SearchFileError(
            str(path),
            [
                Problem(
                    "",
                    f"the file is {got}, expected a mapping of sweeps keys",
                    "write e.g. 'method: random', 'max_trials: 20' and 'sweep_config:'",
                )
            ],
        )
    lines = _LineFinder(text)
    problems: list[Problem] = []
    for key in data:
        if key in SEARCH_FILE_KEYS:
            continue
        where = _at(str(key), lines.line_of((key,)))
        if key == "sweeps":
            hint = "write the keys of the sweeps section at the top level, without 'sweeps:'"
        elif key in ("name", "run", "resources", "setup", "parameters", "envs"):
            hint = f"'{key}' belongs in the task file; this file holds only sweeps keys"
        else:
            close = difflib.get_close_matches(str(key), SEARCH_FILE_KEYS, n=1, cutoff=0.6)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else _ALIASES.get(str(key), "known keys: " + ", ".join(SEARCH_FILE_KEYS))
            )
        problems.append(Problem(where, f"unknown key '{key}'", hint))
    config = data.get("sweep_config")
    if "sweep_config" in data and not isinstance(config, dict):
        problems.append(
            Problem(
                _at("sweep_config", lines.line_of(("sweep_config",))),
                "expected a mapping of parameter names",
                "e.g. sweep_config: {learning_rate: {distribution: log_uniform_values, "
                "min: 1.0e-5, max: 1.0e-2}}",
            )
        )
    if problems:
        raise SearchFileError(str(path), problems)
    values = {str(k): v for k, v in data.items()}
    origins = {k: str(path) for k in values if k != "sweep_config"}
    origins.update({f"sweep_config.{name}": str(path) for name in config or {}})
    return _Layer(values, origins, lines)


def _at(path: str, line: int | None) -> str:
    return f"{path} (line {line})" if line else path


def _origins(layers: Sequence[_Layer]) -> dict[tuple[str, ...], _Layer]:
    """Which layer set each key last: its problems are placed there."""
    found: dict[tuple[str, ...], _Layer] = {}
    for layer in layers:
        for key in layer.origins:
            where = ("sweeps", *key.split(".", 1))
            found[where] = layer
            for other in _SAME_MEANING.get(key, ()):
                found.pop(("sweeps", other), None)
    return found


# Characters that start YAML syntax rather than a value: a flag value beginning with one is
# refused, not read as an alias, tag, anchor or flow collection.
_YAML_INDICATORS = frozenset("[]{}#&*!|>%@`")


def parse_sweep_overrides(values: Sequence[str]) -> dict[str, list[Scalar]]:
    """``--sweep NAME=V1,V2`` flags as sweep values, each read as a YAML 1.2 core scalar, the
    rule the task file follows: ``1.10`` is a number that reaches the job as ``1.10``,
    ``no`` and ``gelu`` are strings, ``'1'`` quoted is a string."""
    overrides: dict[str, list[Scalar]] = {}
    for item in values:
        flag = f"--sweep {shlex.quote(item)}"
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(
                f"{flag} is not NAME=V1,V2", hint="e.g. --sweep learning_rate=1e-4,3e-4"
            )
        if not ENV_NAME.match(name.removeprefix(RESOURCE_SWEEP_PREFIX)):
            raise UsageError(
                f"{flag}: {name!r} cannot be an environment variable name, which is how a "
                "job receives a parameter",
                hint="use letters, digits and '_', not starting with a digit, "
                "e.g. --sweep learning_rate=1e-4,3e-4",
            )
        if name in overrides:
            raise UsageError(
                f"{flag}: {name} is already swept by an earlier --sweep",
                hint=f"give all its values in one flag, e.g. --sweep {name}=V1,V2,V3",
            )
        text = raw.strip()
        if not text:
            raise UsageError(f"{flag}: no values after '='", hint=f"e.g. --sweep {name}=1,2")
        if text[0] in "[(" and text[-1] in "])":
            fixed = shlex.quote(f"{name}={text[1:-1]}")
            raise UsageError(
                f"{flag}: values are separated by commas without brackets: --sweep {fixed}"
            )
        parts = [part.strip() for part in raw.split(",")]
        if not all(parts):
            fixed = shlex.quote(f"{name}={','.join(p for p in parts if p)}")
            raise UsageError(
                f"{flag}: an empty value between commas",
                hint=f"remove the extra comma: --sweep {fixed}",
            )
        overrides[name] = [_flag_value(flag, name, part) for part in parts]
    return overrides


def _flag_value(flag: str, name: str, text: str) -> Scalar:
    doubled = text.replace("'", "''")
    as_text = f"{name}='{doubled}'"  # a YAML single-quoted string
    # double quotes read best in a shell, unless the value holds what they expand
    shell = f'"{as_text}"' if not set(as_text) & set('"$`\\!') else shlex.quote(as_text)
    quoted = f"--sweep {shell}"
    if "\n" in text or "\r" in text:
        raise UsageError(f"{flag}: a value cannot span lines", hint="give each value on one line")
    if text[0] in _YAML_INDICATORS:
        raise UsageError(
            f"{flag}: the value {text!r} starts with {text[0]!r}, which YAML reserves",
            hint=f"quote it to pass it as text: {quoted}",
        )
    loader = _Yaml12Loader(text)
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(
            f"{flag}: {text!r} is not a plain value: {problem}",
            hint=f"quote it to pass it as text: {quoted}",
        ) from exc
    finally:
        loader.dispose()
    if value is None:
        raise UsageError(
            f"{flag}: {text!r} is null, and a job receives a value",
            hint=f"quote it to pass the word: {quoted}",
        )
    if not isinstance(value, str | int | float):  # bool is an int
        kind = "mapping" if isinstance(value, dict) else type(value).__name__
        raise UsageError(
            f"{flag}: {text!r} reads as a YAML {kind}, not one value",
            hint=f"quote it to pass it as text: {quoted}",
        )
    return value


def parse_param_overrides(values: Sequence[str]) -> dict[str, Any]:
    """``--param NAME=VALUE`` flags: one YAML 1.2 core scalar each, as ``--sweep`` reads
    them, or a JSON list or mapping (``--param prompts='["a cat", "a dog"]'``)."""
    overrides: dict[str, Any] = {}
    for item in values:
        flag = f"--param {shlex.quote(item)}"
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{flag} is not NAME=VALUE", hint="e.g. --param model_name=gpt2")
        if not ENV_NAME.match(name):
            raise UsageError(
                f"{flag}: {name!r} cannot be an environment variable name, which is how a "
                "job receives a parameter",
                hint="use letters, digits and '_', not starting with a digit",
            )
        if name in overrides:
            raise UsageError(f"{flag}: {name} is already given by an earlier --param")
        text = raw.strip()
        if not text:
            raise UsageError(
                f"{flag}: no value after '='", hint=f"quote an empty text: --param \"{name}=''\""
            )
        if text[0] in "[{":
            try:
                overrides[name] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{flag}: {text!r} starts like JSON but is not: {exc.msg}",
                    hint=f"""give a JSON list or mapping, e.g. --param '{name}=["a", "b"]'""",
                ) from exc
            continue
        overrides[name] = _flag_value(flag, name, text)
    return overrides


def _apply_params(
    file: Path,
    normalised: dict[str, Any],
    overrides: Mapping[str, Any],
    secret_values: dict[str, str] | None,
) -> None:
    """Overlay ``--param`` values on the file's parameters, take password values out, and
    refuse a required form field that nothing gives a value."""
    parameters = normalised.get("parameters")
    if not isinstance(parameters, dict):
        parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        return  # the schema reports it
    parameters = dict(parameters)
    for name, value in overrides.items():
        item = parameters.get(name)
        if isinstance(item, dict) and is_form_field(item):
            parameters[name] = {**item, "value": value}
        else:
            parameters[name] = value
    sweeps = normalised.get("sweeps")
    config = sweeps.get("sweep_config") if isinstance(sweeps, dict) else None
    swept = set(config) if isinstance(config, dict) else set()
    for name, item in list(parameters.items()):
        if not is_form_field(item):
            continue
        value = item.get("value", item.get("default"))
        # a required (or password) field's empty default is a form's "not given"
        unset = value == "" and (item.get("required") or item.get("password"))
        given = value is not None and not unset
        if (
            item.get("password")
            and given
            and not (isinstance(value, str) and SECRET_REFERENCE.fullmatch(value.strip()))
        ):
            secret = _secret_name(name, item)
            if secret_values is not None:
                secret_values[secret] = str(value)
            parameters[name] = {**item, "value": secret_reference(secret)}
        elif item.get("password") and not given and _secret_name(name, item) in os.environ:
            # A secret already in the environment, where launching reads secrets from.
            parameters[name] = {**item, "value": secret_reference(_secret_name(name, item))}
        elif item.get("required") and not given and name not in swept:
            label = item.get("field_name") or name
            help_text = f": {item['help_text']}" if item.get("help_text") else ""
            hint = f"give it with --param {name}=VALUE"
            if item.get("password"):
                # Never swept: a swept value is written in the sweep's records.
                hint += f" or set {_secret_name(name, item)} in the environment; it stays in memory"
            else:
                hint += f" (or sweep it with --sweep {name}=V1,V2)"
            raise UsageError(
                f"{file}: parameter {name!r} (field {label!r}{help_text}) is required and "
                "has no value",
                hint=hint,
            )
    normalised["parameters"] = parameters


def _secret_name(name: str, field: Mapping[str, Any]) -> str:
    """A password field's secret: its ``env_var``, else the parameter's name."""
    env_var = field.get("env_var")
    return env_var if isinstance(env_var, str) and env_var else name


def _read(file: Path) -> str:
    if not file.exists():
        raise UsageError(
            f"{file}: no such task file",
            hint="check the path; run from the folder that holds it or give an absolute path",
        )
    if file.is_dir():
        raise UsageError(
            f"{file}: is a folder, not a task file",
            hint="give the YAML or JSON file inside it, e.g. task.yaml",
        )
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: cannot be read: {exc}") from exc


def _parse(file: Path, text: str) -> dict[str, Any]:
    duplicates: list[str] = []
    try:
        if file.suffix == ".json":
            data = json.loads(
                text,
                parse_float=WrittenFloat.parse,
                object_pairs_hook=lambda pairs: _json_object(pairs, duplicates),
            )
        else:
            data = _load_yaml(file, text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(
            str(file),
            [
                Problem(
                    f"line {exc.lineno}, column {exc.colno}",
                    f"not valid JSON: {exc.msg}",
                    "check for a missing comma or quote; comments are not allowed in JSON",
                )
            ],
        ) from exc
    except yaml.YAMLError as exc:
        raise TaskFileError(str(file), [_yaml_problem(exc)]) from exc
    if duplicates:
        raise TaskFileError(str(file), _json_duplicates(text, duplicates))
    if data is None:
        raise TaskFileError(
            str(file), [Problem("", "the file is empty", "a task needs at least 'name' and 'run'")]
        )
    if not isinstance(data, dict):
        raise TaskFileError(
            str(file),
            [
                Problem(
                    "",
                    f"the top level is a {type(data).__name__}, expected a mapping of keys",
                    "start the file with keys such as 'name:' and 'run:'",
                )
            ],
        )
    return {str(key): value for key, value in data.items()}


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(
        where,
        f"not valid YAML: {problem}",
        "check the indentation and that values with ':' or '{{' are quoted",
    )


def _load_yaml(file: Path, text: str) -> Any:
    loader = _Yaml12Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        duplicates = _duplicate_keys(root, loader)
        if duplicates:
            raise TaskFileError(str(file), duplicates)
        return loader.construct_document(root)
    finally:
        loader.dispose()


_DUPLICATE_HINT = "keep one of them; otherwise one value would silently replace the other"


def _duplicate_keys(root: yaml.Node, loader: _Yaml12Loader) -> list[Problem]:
    """Every key that appears more than once in one mapping, with the lines it appears on.

    Keys compare by value, so ``1`` and ``+1`` are one key; keys brought in by a merge
    (``<<: *base``) may be overridden, as merging means.
    """
    problems: list[Problem] = []
    seen: set[int] = set()  # aliases share nodes, and may even point back up the tree

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            marks: dict[Any, list[yaml.Mark]] = {}
            shown: dict[Any, str] = {}
            children: list[tuple[yaml.Node, tuple[str, ...]]] = []
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                    key = loader.construct_object(key_node)
                    marks.setdefault(key, []).append(key_node.start_mark)
                    shown.setdefault(key, str(key_node.value))
                    children.append((value_node, (*path, str(key_node.value))))
                else:
                    children.append((value_node, path))
            problems.extend(
                Problem(".".join(path), _appears(shown[key], where), _DUPLICATE_HINT)
                for key, where in marks.items()
                if len(where) > 1
            )
            for child, child_path in children:
                walk(child, child_path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, str(index)))

    walk(root, ())
    return problems


_MERGE = "tag:yaml.org,2002:merge"


def _appears(key: str, marks: list[yaml.Mark]) -> str:
    count = "twice" if len(marks) == 2 else f"{len(marks)} times"
    lines = [m.line + 1 for m in marks]
    if len(set(lines)) == len(lines):
        places = [str(n) for n in lines]
        prefix = "lines "
    else:  # on one line (JSON written on one line, a flow mapping): columns tell them apart
        places = [f"line {m.line + 1} column {m.column + 1}" for m in marks]
        prefix = ""
    return f"key {key!r} appears {count}: {prefix}{', '.join(places[:-1])} and {places[-1]}"


def _json_object(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates += [key for key in dict.fromkeys(keys) if keys.count(key) > 1]
    return dict(pairs)


def _json_duplicates(text: str, keys: list[str]) -> list[Problem]:
    """Where the duplicate keys of a JSON file are: JSON text is YAML text, and YAML's
    composer knows lines; json's parser does not tell."""
    loader = _Yaml12Loader(text)
    try:
        root = loader.get_single_node()
        found = _duplicate_keys(root, loader) if root is not None else []
    except yaml.YAMLError:  # JSON that YAML does not read, such as tab indentation
        found = []
    finally:
        loader.dispose()
    return found or [
        Problem("", f"key {key!r} appears more than once in one object", _DUPLICATE_HINT)
        for key in dict.fromkeys(keys)
    ]


def _normalise(data: dict[str, Any], problems: list[Problem]) -> tuple[dict[str, Any], bool]:
    """Bring the flat JSON form into the YAML form's shape. Returns (data, was_flat)."""
    yaml_keys = sorted(YAML_FORM_KEYS & data.keys())
    flat_keys = sorted(FLAT_FORM_KEYS & data.keys())
    if yaml_keys and flat_keys:
        problems.append(
            Problem(
                "top level",
                f"mixes the YAML form ({', '.join(yaml_keys)}) with the flat JSON form "
                f"({', '.join(flat_keys)})",
                "use one form: either 'run'/'resources'/'sweeps', or 'command'/'cpus'/'run_sweeps'/"
                "'sweep_config'",
            )
        )
        return data, False
    if not flat_keys:
        return data, False
    out = {k: v for k, v in data.items() if k not in FLAT_FORM_KEYS}
    if "command" in data:
        out["run"] = data["command"]
    resources = {k: data[k] for k in FLAT_RESOURCE_KEYS & data.keys()}
    if resources:
        out["resources"] = resources
    run_sweeps = data.get("run_sweeps", "sweep_config" in data)
    if not isinstance(run_sweeps, bool):
        problems.append(
            Problem(
                "run_sweeps",
                f"expected true or false, got {run_sweeps!r}",
                "write run_sweeps: true to run the sweep",
            )
        )
        run_sweeps = False
    sweeps = {k: data[k] for k in (FLAT_SWEEP_KEYS - {"run_sweeps"}) & data.keys()}
    if not run_sweeps:
        sweeps.pop("sweep_config", None)
    if sweeps or run_sweeps:
        out["sweeps"] = sweeps
    return out, True


_FLAT_NAMES = {"run": "command"}


def _flat_location(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    if not loc:
        return loc
    if loc[0] in ("resources", "sweeps") and len(loc) > 1:
        return loc[1:]
    return (_FLAT_NAMES.get(str(loc[0]), loc[0]), *loc[1:])


def _translate(
    exc: ValidationError,
    flat: bool,
    lines: _LineFinder,
    origins: Mapping[tuple[str, ...], _Layer] | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    # pydantic reports a value that fits no member of a union once per member
    # ("should be a valid integer", "... number", "... string"): one problem per place.
    merged: dict[tuple[str | int, ...], list[dict[str, Any]]] = {}
    for details in exc.errors():
        if details["type"] == "is_instance_of":
            continue  # the WrittenFloat member of a union; the float member says it better
        loc = tuple(part for part in details["loc"] if not _is_union_branch(part))
        merged.setdefault(loc, []).append(dict(details))
    for loc, errors in merged.items():
        shown = _flat_location(loc) if flat else loc
        where = ".".join(str(p) for p in shown) or "top level"
        line = lines.line_of(shown)
        if line:
            where += f" (line {line})"
        where = _overridden(loc, origins or {}) or where
        for error in _one_per_union(errors):
            problems.append(_problem(error, loc, shown, where, flat))
    return problems


def _overridden(loc: tuple[str | int, ...], origins: Mapping[tuple[str, ...], _Layer]) -> str:
    """Where a problem is when its key came from the command line rather than the task file:
    in the ``--search`` file (its path, key and line), or the flag that set it."""
    key = tuple(str(part) for part in loc)
    layer = origins.get(key[:3]) or origins.get(key[:2])
    if layer is None:
        return ""
    inner = key[1:]
    label = layer.origins[".".join(inner[:2] if inner[0] == "sweep_config" else inner[:1])]
    if layer.lines is None:
        return f"{'.'.join(key)} (set by {label})"
    return f"{label}: {_at('.'.join(inner), layer.lines.line_of(loc[1:]))}"


def _one_per_union(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    typed = [e for e in errors if e["type"] not in ("extra_forbidden", "missing", "value_error")]
    if len(typed) < 2:
        return errors
    prefix = "Input should be a valid "
    kinds = list(dict.fromkeys(str(e["msg"]) for e in typed))
    if all(k.startswith(prefix) for k in kinds):
        names = [k.removeprefix(prefix) for k in kinds]
        message = prefix + (", ".join(names[:-1]) + " or " + names[-1])
    else:
        message = "; or ".join(kinds)
    first = {**typed[0], "msg": message}
    return [first, *(e for e in errors if e not in typed)]


def _problem(
    error: dict[str, Any],
    loc: tuple[str | int, ...],
    shown: tuple[str | int, ...],
    where: str,
    flat: bool,
) -> Problem:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        candidates = _keys_at(loc[:-1], flat) or _distribution_keys(error["loc"])
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if close:
            unknown_hint = f"did you mean '{close[0]}'?"
        elif key in _ALIASES:
            unknown_hint = _ALIASES[key]
        else:
            unknown_hint = "known keys: " + ", ".join(sorted(candidates))
        return Problem(where, f"unknown key '{key}'", unknown_hint)
    if kind == "missing":
        key = str(shown[-1])
        hint = {
            "run": "add 'run: <command>' with the command that trains",
            "command": 'add "command": "<command>" with the command that trains',
            "name": "add 'name: <task name>'",
        }.get(key)
        return Problem(where, f"required key '{key}' is missing", hint)
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if kind != "value_error":
        if isinstance(given, dict | list):
            message += f", got a {'mapping' if isinstance(given, dict) else 'list'}"
        else:
            message += f", got {given!r}"
    # a value_error is raised by our own validators, whose message already says the fix
    return Problem(where, message, None if kind == "value_error" else _hint_for(loc))


_DIRECTION = "say which way is better with lower_is_better: true (lower wins) or false"
_ALIASES = {
    "direction": _DIRECTION,
    "goal": _DIRECTION,
    "mode": _DIRECTION,
    "maximize": _DIRECTION,
    "minimize": _DIRECTION,
    "higher_is_better": _DIRECTION,
    "metric": "did you mean 'sweep_metric'?",
    "objective": "did you mean 'sweep_metric'?",
    "script": "did you mean 'run'?",
    "cmd": "did you mean 'run'?",
    "env": "did you mean 'envs'?",
    "params": "did you mean 'parameters'?",
    "hyperparameters": "did you mean 'parameters'?",
}


def _is_union_branch(part: str | int) -> bool:
    # pydantic names the union member it tried ("int", "str", "list[str]", "function-after[...]").
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "none"} or "[" in part
    )


def _keys_at(loc: tuple[str | int, ...], flat: bool) -> list[str]:
    models: dict[tuple[str | int, ...], type[BaseModel]] = {
        (): TaskSpec,
        ("resources",): Resources,
        ("sweeps",): Sweep,
        ("sweeps", "early_terminate"): EarlyTerminate,
    }
    model = models.get(loc)
    if model is None:
        return []
    keys = list(model.model_fields)
    if flat and loc == ():
        keys = [k for k in keys if k not in YAML_FORM_KEYS] + sorted(FLAT_FORM_KEYS)
    return keys


def _distribution_keys(raw: tuple[str | int, ...]) -> list[str]:
    """The keys of the distribution a misspelled key sits in (its union tag names it)."""
    for part in raw:
        name = str(part).removeprefix("distribution[").removesuffix("]")
        if str(part).startswith("distribution[") and name in DISTRIBUTIONS:
            return list(DISTRIBUTIONS[name].model_fields)
    return []


def _hint_for(loc: tuple[str | int, ...]) -> str | None:
    path = ".".join(str(p) for p in loc)
    hints = {
        "sweeps.method": "use grid (the default), random, sobol or bayes",
        "sweeps.lower_is_better": "use true (lower metric is better) or false (higher is better)",
        "sweeps.sweep_config": "map each parameter to a list of values, e.g. "
        "learning_rate: [1e-5, 3e-5]",
        "resources.cpus": "a number such as 4, or a string such as '4+'",
        "resources.memory": "GiB as a number such as 8, or a string such as '8+'",
        "resources.use_spot": "use true or false",
        "parameters": "map each parameter name to a value",
        "envs": "map each variable name to a string value",
    }
    for prefix, hint in hints.items():
        if path.startswith(prefix):
            return hint
    if path.startswith("sweeps.sweep_config."):
        return "each swept parameter takes a list of values"
    return None


class _LineFinder:
    """Finds the line of a key path in the source text, for messages; best effort."""

    def __init__(self, text: str) -> None:
        try:
            self._root: yaml.Node | None = yaml.compose(text, Loader=_Yaml12Loader)
        except yaml.YAMLError:
            self._root = None

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        node = self._root
        line: int | None = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if found is None:
                    return line
                line = found[0].start_mark.line + 1
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line
