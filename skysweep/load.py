"""Stage 1, load: a task file on disk becomes a validated :class:`TaskSpec`.

Both forms of Transformer Lab's sweep page load here: the YAML form (``run``,
``resources``, ``sweeps``) and the flat JSON form (``command``, ``cpus``, ``run_sweeps``,
``sweep_config``). Every problem in a file is reported at once, each with its place.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from skysweep.errors import Problem, TaskFileError, UsageError
from skysweep.task import Resources, Sweep, TaskSpec

YAML_FORM_KEYS = frozenset({"run", "resources", "sweeps"})
FLAT_SWEEP_KEYS = frozenset(
    {"run_sweeps", "sweep_config", "sweep_metric", "lower_is_better", "max_parallel"}
)
FLAT_RESOURCE_KEYS = frozenset(Resources.model_fields)
FLAT_FORM_KEYS = frozenset({"command"}) | FLAT_SWEEP_KEYS | FLAT_RESOURCE_KEYS


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads ``1e-5`` as a string (YAML 1.1); users mean a number (YAML 1.2)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(
    path: str | Path, *, sweep_overrides: Mapping[str, Sequence[Any]] | None = None
) -> TaskSpec:
    """Read, normalise and validate one task file.

    ``sweep_overrides`` adds or replaces sweep values from the command line, for task files
    that have no sweep section of their own.
    """
    file = Path(path)
    text = _read(file)
    data = _parse(file, text)
    problems: list[Problem] = []
    normalised, flat = _normalise(data, problems)
    if sweep_overrides:
        sweeps = dict(normalised.get("sweeps") or {})
        config = dict(sweeps.get("sweep_config") or {})
        config.update({name: list(values) for name, values in sweep_overrides.items()})
        sweeps["sweep_config"] = config
        normalised["sweeps"] = sweeps
    if "name" not in normalised and not problems:
        normalised["name"] = file.stem
    task: TaskSpec | None = None
    try:
        task = TaskSpec.model_validate(normalised)
    except ValidationError as exc:
        problems += _translate(exc, flat, _LineFinder(text))
    if problems or task is None:
        raise TaskFileError(str(file), problems)
    return task


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
    try:
        data = (
            json.loads(text)
            if file.suffix == ".json"
            else yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass
        )
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
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TaskFileError(
            str(file),
            [
                Problem(
                    where,
                    f"not valid YAML: {problem}",
                    "check the indentation and that values with ':' or '{{' are quoted",
                )
            ],
        ) from exc
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


def _translate(exc: ValidationError, flat: bool, lines: _LineFinder) -> list[Problem]:
    problems: list[Problem] = []
    # pydantic reports a value that fits no member of a union once per member
    # ("should be a valid integer", "... number", "... string"): one problem per place.
    merged: dict[tuple[str | int, ...], list[dict[str, Any]]] = {}
    for details in exc.errors():
        loc = tuple(part for part in details["loc"] if not _is_union_branch(part))
        merged.setdefault(loc, []).append(dict(details))
    for loc, errors in merged.items():
        shown = _flat_location(loc) if flat else loc
        where = ".".join(str(p) for p in shown) or "top level"
        line = lines.line_of(shown)
        if line:
            where += f" (line {line})"
        for error in _one_per_union(errors):
            problems.append(_problem(error, loc, shown, where, flat))
    return problems


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
        candidates = _keys_at(loc[:-1], flat)
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
    }
    model = models.get(loc)
    if model is None:
        return []
    keys = list(model.model_fields)
    if flat and loc == ():
        keys = [k for k in keys if k not in YAML_FORM_KEYS] + sorted(FLAT_FORM_KEYS)
    return keys


def _hint_for(loc: tuple[str | int, ...]) -> str | None:
    path = ".".join(str(p) for p in loc)
    hints = {
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
            self._root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
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
