"""Stage 3, render: each trial becomes a SkyPilot task spec. Pure: no I/O past the templates.

The spec is what ``sky jobs launch`` reads; the local backend runs the same spec's setup,
run, envs and workdir, so both backends give a job the same contract (DESIGN.md §3).
Secrets stay references here (``secrets: {NAME: null}``); their values are filled in
memory at launch time and never reach a rendered file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml

from skysweep.errors import SecretMissingError
from skysweep.expand import Trial
from skysweep.task import SECRET_REFERENCE, TaskSpec, parameter_text, secret_reference

MOUNT_POINT_ON_VM = "/skysweep/store"


@dataclass(frozen=True)
class Placement:
    """Where the sweep's store prefix is, as a job sees it."""

    sweep_dir: str
    """A folder in the job where ``<store>/<sweep_id>/`` appears."""
    mount_source: str | None = None
    """The bucket SkyPilot mounts at ``mount_point``; None when ``sweep_dir`` is local."""
    mount_point: str | None = None

    @classmethod
    def mounted(cls, sweep_url: str) -> Placement:
        """The sweep's prefix inside a mounted bucket.

        SkyPilot's MOUNT modes take a whole bucket only (a ``s3://bucket/prefix`` source
        fails its prechecks), so the bucket is mounted and the job writes under the prefix.
        """
        scheme, _, rest = sweep_url.partition("://")
        bucket, _, prefix = rest.partition("/")
        sweep_dir = str(PurePosixPath(MOUNT_POINT_ON_VM) / prefix) if prefix else MOUNT_POINT_ON_VM
        return cls(sweep_dir, f"{scheme}://{bucket}", MOUNT_POINT_ON_VM)


@dataclass(frozen=True)
class RenderedTrial:
    trial: Trial
    spec: dict[str, Any]
    """The SkyPilot task spec as a mapping. ``sky.Task.from_yaml_config`` consumes the mapping
    it is given (it pops keys): pass it a ``copy.deepcopy``."""
    secret_envs: dict[str, str] = field(default_factory=dict)
    """Env name → its template with ``{{secret.NAME}}`` references, filled at launch."""

    @property
    def job_name(self) -> str:
        return str(self.spec["name"])

    def to_yaml(self) -> str:
        return dump_spec(self.spec)


LAB_WORKSPACE = ".skysweep-tfl"
"""The Transformer Lab workspace the job wrapper prepares in the job's working directory."""


def lab_job_folder(workdir: Path, sweep_id: str, trial_id: str) -> Path:
    """Where the `lab` SDK looks for a trial's job record. A backend that makes it before
    the job starts spares the wrapper a `mkdir` process per trial."""
    return workdir / LAB_WORKSPACE / "experiments" / sweep_id / "jobs" / trial_id


def render(
    task: TaskSpec,
    trials: list[Trial],
    *,
    sweep_id: str,
    placement: Placement,
    task_dir: Path,
    spread: bool = False,
) -> list[RenderedTrial]:
    """Render every trial. ``spread`` assigns trials round-robin over ``resources.infra``.

    The template is rendered and parsed once per spec shape (resources, node count, env
    names), with slots for the job name and the env values; each trial is a copy of that
    parsed shape with its own values in the slots. Values filled this way never pass
    through YAML text, so any string arrives as it is.
    """
    template = _template("task.yaml.j2")
    wrapper = _template("run_wrapper.sh.j2")
    enter = _start_dir_command(task)
    secret_envs = {k: v for k, v in task.envs.items() if SECRET_REFERENCE.search(v)}
    plain_envs = {k: v for k, v in task.envs.items() if k not in secret_envs}
    # {{secret.NAME}} in run or setup becomes a variable filled in memory at launch, like a
    # secret env: the spec keeps the reference and shell text never holds the value.
    run, run_secrets = _secret_variables(task.run.rstrip("\n"))
    setup, setup_secrets = _secret_variables(task.setup) if task.setup else (None, {})
    secret_envs.update({**run_secrets, **setup_secrets})
    workdir_git = None
    if task.github_repo_url:
        workdir_git = {"url": task.github_repo_url, "ref": task.github_repo_branch}
    wrapped_run = wrapper.render(enter_start_dir=enter, run=run, lab_workspace=LAB_WORKSPACE)
    infra_list = _infra_list(task)
    token = _SLOT_TOKEN
    shapes: dict[str, dict[str, Any]] = {}
    rendered: list[RenderedTrial] = []
    for trial in trials:
        output_dir = str(PurePosixPath(placement.sweep_dir) / "trials" / trial.trial_id)
        envs = {
            **plain_envs,
            **{name: parameter_text(value) for name, value in trial.params.items()},
            **{
                alias: parameter_text(trial.params[name])
                for name, aliases in task.parameter_envs.items()
                if name in trial.params
                for alias in aliases
            },
            "SKYSWEEP_PARAMS": json.dumps(trial.params, sort_keys=True, ensure_ascii=False),
            "SKYSWEEP_SWEEP_ID": sweep_id,
            "SKYSWEEP_TRIAL_ID": trial.trial_id,
            "SKYSWEEP_SWEEP_DIR": placement.sweep_dir,
            "SKYSWEEP_OUTPUT_DIR": output_dir,
        }
        num_nodes = trial.resources.get("num_nodes", task.resources.num_nodes)
        resources = _resources(task, trial, infra_list, spread)
        key = json.dumps([resources, num_nodes, list(envs)], default=str)
        shape = shapes.get(key)
        if shape is None:
            slots = [f"skysweep-slot-{token}-{i}" for i in range(len(envs) + 1)]
            text = template.render(
                job_name=slots[0],
                workdir_git=workdir_git,
                workdir=None if workdir_git else str(task_dir),
                num_nodes=num_nodes,
                resources=resources,
                envs=dict(zip(envs, slots[1:], strict=True)),
                secrets=list(secret_envs),
                mount_source=placement.mount_source,
                mount_point=placement.mount_point,
                setup=setup,
                enter_start_dir=enter,
                wrapped_run=wrapped_run,
            )
            shape = shapes[key] = _parsed_shape(text, tuple(slots))
        values = {f"skysweep-slot-{token}-0": f"{sweep_id}-{trial.trial_id}"}
        for i, value in enumerate(envs.values(), start=1):
            values[f"skysweep-slot-{token}-{i}"] = value
        spec = _fill(shape, values)
        rendered.append(RenderedTrial(trial, spec, secret_envs))
    return rendered


_SLOT_TOKEN = secrets.token_hex(8)
"""Marks the slots of a shape: one per process, so that the controller, which renders each
batch of trials as it launches it, renders the same text for the same shape and parses it
once (``_parsed_shape``)."""


@lru_cache(maxsize=64)
def _parsed_shape(text: str, slots: tuple[str, ...]) -> Any:
    """A rendered spec shape, parsed and checked. Shared by every call that renders the
    same text: ``_fill`` copies what it returns, never changes it."""
    shape = yaml.load(text, Loader=_FastLoader)
    _check_slots(shape, list(slots))
    return shape


def _fill(node: Any, values: dict[str, str]) -> Any:
    """A fresh copy of a parsed shape with its slots replaced: no trial shares a container."""
    if isinstance(node, str):
        return values.get(node, node)
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    return node


def _check_slots(shape: Any, slots: list[str]) -> None:
    """Slots are filled only where they stand as whole values: one spliced into other text
    (a template edit) would be left unfilled silently, so it fails here, once per shape."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(shape)
    if sorted(v for v in found if v in set(slots)) != sorted(slots):
        raise RuntimeError(
            "templates/task.yaml.j2 must write the job name and each env value as a whole value"
        )


SECRET_VARIABLE_PREFIX = "SKYSWEEP_SECRET_"


def _secret_variables(script: str) -> tuple[str, dict[str, str]]:
    """``script`` with each ``{{secret.NAME}}`` made ``${SKYSWEEP_SECRET_NAME}``, and those
    variables' templates."""
    found: dict[str, str] = {}

    def variable(match: re.Match[str]) -> str:
        name = SECRET_VARIABLE_PREFIX + match.group(1)
        found[name] = secret_reference(match.group(1))
        return "${" + name + "}"

    return SECRET_REFERENCE.sub(variable, script), found


def resolve_secrets(rendered: RenderedTrial, environ: dict[str, str]) -> dict[str, str]:
    """Fill a trial's secret envs from the user's environment, in memory.

    ``{{secret.NAME}}`` takes ``NAME`` from the environment, or ``NAME`` without leading
    underscores (Transformer Lab names its secrets ``_HF_TOKEN``; users hold ``HF_TOKEN``).
    """
    values: dict[str, str] = {}
    for env_name, template in rendered.secret_envs.items():

        def lookup(match: Any, env_name: str = env_name) -> str:
            name = match.group(1)
            value = secret_value(name, environ)
            if value is not None:
                return value
            raise SecretMissingError(
                f"secret '{name}' (for env {env_name}) is not set in your environment",
                hint=f"export {name.lstrip('_')}=... before launching; secrets are read at "
                "launch time and never written to disk",
            )

        values[env_name] = SECRET_REFERENCE.sub(lookup, template)
    return values


def missing_secrets(task: TaskSpec, environ: dict[str, str]) -> list[str]:
    return [n for n in task.secret_names() if secret_value(n, environ) is None]


def secret_value(name: str, environ: dict[str, str]) -> str | None:
    """``NAME`` from the environment, else ``NAME`` without its leading underscores."""
    for candidate in (name, name.lstrip("_")):
        if candidate in environ:
            return environ[candidate]
    return None


def dump_spec(spec: dict[str, Any]) -> str:
    """YAML for people: multi-line scripts as literal blocks.

    libyaml's emitter (10x faster) writes a character beyond the BMP as ``\\U0001F680``, and
    so cannot keep a script holding one as a literal block; such a spec takes the Python
    emitter, which can, and is kept if it reads back the same: that emitter writes U+0085
    raw, where YAML reads it as a line break.
    """
    if _astral_script(spec):
        text = yaml.dump(
            spec, Dumper=_PyBlockDumper, sort_keys=False, allow_unicode=True, width=100
        )
        if yaml.load(text, Loader=_FastLoader) == spec:
            return text
    # A top-level block mapping is written entry by entry, each at column 0 and independent
    # of the others, so the entries trials share (the scripts, resources, mounts) are
    # written once and only the name and envs per trial.
    entries = [_dump_entry(key, value) for key, value in spec.items()]
    # An entry ending in a keep-chomped block (``|+``, a value ending in blank lines) is
    # closed with ``...`` as the end of its own document; within the spec it is not one.
    return "".join(
        [text[:-4] if text.endswith("\n...\n") else text for text in entries[:-1]] + entries[-1:]
    )


_CHUNK = 512
"""Specs whose per-trial entries are dumped in one call: enough to spread the call's cost,
few enough that the texts of a 100,000-trial sweep are never all in memory at once."""


def dump_specs(specs: Iterable[dict[str, Any]]) -> Iterator[str]:
    """``dump_spec`` of each spec, in order; the same text, about 4x less CPU.

    ``dump_spec`` calls ``yaml.dump`` twice a trial for the entries that differ per trial
    (``name``, ``envs``), ~60 us of per-call cost each. Here the names of many specs are one
    multi-document dump, and each distinct env entry of many specs is one item of a single
    dumped block sequence: a mapping item ``- KEY: VALUE`` is emitted at the same columns,
    with the same indent, as ``  KEY: VALUE`` under ``envs:``, so the item's text with its
    ``- `` made ``  `` is the entry's text, byte for byte, line wrapping included.
    """
    chunk: list[dict[str, Any]] = []
    for spec in specs:
        chunk.append(spec)
        if len(chunk) == _CHUNK:
            yield from _dump_chunk(chunk)
            chunk = []
    yield from _dump_chunk(chunk)


def _dump_chunk(specs: list[dict[str, Any]]) -> list[str]:
    # Entries trials share are the same objects in every spec of a shape (strings) or equal
    # copies (mappings); by identity first, which holds while the specs are alive (this call).
    shared: dict[tuple[str, int], str | None] = {}
    names: dict[str, str] = {}
    entries: dict[tuple[str, str], str] = {}
    batched: list[bool] = []
    for spec in specs:
        ok = _batchable(spec)
        for key, value in spec.items():
            if key in ("name", "envs"):
                continue
            memo = (key, id(value))
            if memo not in shared:
                # beyond the BMP in a script: dump_spec's own path, see there
                shared[memo] = None if _astral_script(value) else _dump_entry(key, value)
            ok = ok and shared[memo] is not None
        batched.append(ok)
        if ok:
            names.setdefault(spec["name"], "")
            for pair in spec["envs"].items():
                entries.setdefault(pair, "")
    name_texts = _split(_dump_names(list(names)), "", "\n---\n", len(names))
    entry_texts = _split(_dump_pairs(list(entries)), "- ", "\n- ", len(entries))
    if name_texts is None or entry_texts is None:  # never seen: the emitter changed its layout
        return [dump_spec(spec) for spec in specs]
    names = dict(zip(names, name_texts, strict=True))
    entries = dict(zip(entries, ["  " + text for text in entry_texts], strict=True))
    out: list[str] = []
    for spec, ok in zip(specs, batched, strict=True):
        if not ok:
            out.append(dump_spec(spec))
            continue
        parts: list[str] = []
        for key, value in spec.items():
            if key == "name":
                parts.append(names[value])
            elif key == "envs":
                parts.append("envs:\n")
                parts.extend(map(entries.__getitem__, value.items()))
            else:
                parts.append(shared[(key, id(value))] or "")
        out.append("".join(parts))
    return out


def _batchable(spec: dict[str, Any]) -> bool:
    """A string name and env values, each on one line: a multi-line one is a literal block,
    whose chomping indicator (``|+``) can make the emitter end a document with ``...``."""
    name, envs = spec.get("name"), spec.get("envs")
    if not (isinstance(name, str) and "\n" not in name and isinstance(envs, dict) and envs):
        return False
    for key, value in envs.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            return False
        if "\n" in key or "\n" in value:
            return False
    return True


def _split(text: str, first: str, separator: str, count: int) -> list[str] | None:
    """The dumped items without their lead-in, each with its line break; None if there are
    not ``count`` of them."""
    if count == 0:
        return []
    if not text.startswith(first):
        return None
    items = [part + "\n" for part in text[len(first) : -1].split(separator)]
    return items if len(items) == count and text.endswith("\n") else None


_STR = "tag:yaml.org,2002:str"


def _scalar(text: str) -> yaml.ScalarEvent:
    """A string's event as ``yaml.dump``'s serializer makes it: plain allowed unless the
    plain text would read back as another type (``'3'``, ``'yes'``)."""
    plain = _resolver().resolve(yaml.ScalarNode, text, (True, False)) == _STR
    return yaml.ScalarEvent(None, _STR, (plain, True), text)


def _emit(documents: list[list[yaml.Event]]) -> str:
    events: list[yaml.Event] = [yaml.StreamStartEvent()]
    for body in documents:
        events.append(yaml.DocumentStartEvent(explicit=False))
        events += body
        events.append(yaml.DocumentEndEvent(explicit=False))
    events.append(yaml.StreamEndEvent())
    return str(yaml.emit(events, Dumper=_BlockDumper, allow_unicode=True, width=100))


def _mapping(pairs: list[tuple[yaml.ScalarEvent, yaml.ScalarEvent]]) -> list[yaml.Event]:
    events: list[yaml.Event] = [yaml.MappingStartEvent(None, None, True, flow_style=False)]
    for key, value in pairs:
        events += (key, value)
    events.append(yaml.MappingEndEvent())
    return events


def _dump_names(names: list[str]) -> str:
    """``yaml.dump_all([{"name": name}, ...])``, as events straight to libyaml's emitter:
    the events ``yaml.dump`` makes, less its representer's ~10 us a node."""
    key = _scalar("name")
    return _emit([_mapping([(key, _scalar(name))]) for name in names])


def _dump_pairs(pairs: list[tuple[str, str]]) -> str:
    """``yaml.dump([{key: value}, ...])``, as events straight to libyaml's emitter."""
    keys: dict[str, yaml.ScalarEvent] = {}
    body: list[yaml.Event] = [yaml.SequenceStartEvent(None, None, True, flow_style=False)]
    for key, value in pairs:
        if key not in keys:
            keys[key] = _scalar(key)
        body += _mapping([(keys[key], _scalar(value))])
    body.append(yaml.SequenceEndEvent())
    return _emit([body])


@cache
def _resolver() -> Any:
    """The implicit-type rules the dumper itself applies (YAML 1.1's: ``'3'``, ``'yes'``)."""
    return _BlockDumper(io.StringIO())


_ENTRIES: dict[tuple[str, Any], str] = {}
_ENTRIES_MAX = 1024


def _dump_entry(key: str, value: Any) -> str:
    if key in ("name", "envs"):  # differ in every trial: not worth remembering
        return _dump({key: value})
    memo = (key, value if isinstance(value, str | int | float | bool) else json.dumps(value))
    text = _ENTRIES.get(memo)
    if text is None:
        text = _dump({key: value})
        if len(_ENTRIES) >= _ENTRIES_MAX:
            _ENTRIES.clear()
        _ENTRIES[memo] = text
    return text


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _astral_script(node: Any) -> bool:
    if isinstance(node, str):
        return "\n" in node and _ASTRAL.search(node) is not None
    if isinstance(node, dict):
        return any(_astral_script(value) for value in node.values())
    if isinstance(node, list):
        return any(_astral_script(value) for value in node)
    return False


def _resources(task: TaskSpec, trial: Trial, infra_list: list[str], spread: bool) -> dict[str, Any]:
    given = task.resources.model_dump(exclude_none=True)
    given.update(trial.resources)
    out: dict[str, Any] = {}
    for key in ("cpus", "memory", "accelerators", "instance_type", "use_spot", "image_id"):
        if key in given:
            out[key] = given[key]
    if "disk_space" in given:
        out["disk_size"] = _disk_size(given["disk_space"])
    location = _location(given)
    if isinstance(given.get("infra"), str):
        infra_list = [given["infra"]]
    if spread and infra_list:
        out["infra"] = infra_list[trial.index % len(infra_list)]
    elif len(infra_list) == 1:
        out["infra"] = infra_list[0]
    elif infra_list:
        key = "ordered" if task.resources.infra_order == "ordered" else "any_of"
        out[key] = [{"infra": infra} for infra in infra_list]
    elif location:
        out["infra"] = location
    return out


def _location(given: dict[str, Any]) -> str | None:
    """``cloud``/``region``/``zone`` as one SkyPilot infra string, ``*`` for a gap.

    ``region: us-east-1`` alone is ``*/us-east-1``, and ``cloud: aws`` with ``zone: us-east-1a``
    is ``aws/*/us-east-1a``: SkyPilot reads the parts by position.
    """
    parts = [str(given[k]) if given.get(k) else "*" for k in ("cloud", "region", "zone")]
    while parts and parts[-1] == "*":
        parts.pop()
    return "/".join(parts) or None


def _infra_list(task: TaskSpec) -> list[str]:
    infra = task.resources.infra
    if infra is None:
        return []
    return [infra] if isinstance(infra, str) else list(infra)


def _disk_size(value: int | str) -> int | str:
    text = str(value).strip().upper().removesuffix("GB").removesuffix("G").strip()
    return int(text) if text.isdigit() else value


def _start_dir_command(task: TaskSpec) -> str:
    """Transformer Lab starts commands in the folder that holds ``github_repo_dir``'s last part."""
    if not (task.github_repo_url and task.github_repo_dir):
        return ""
    parent = PurePosixPath(task.github_repo_dir.strip("/")).parent
    if str(parent) in ("", "."):
        return ""
    return f"cd {shlex.quote(str(parent))}\n"


def templates_dir() -> Path:
    """The templates: inside the installed package, or the source tree's ``templates/``."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


TEMPLATE_CACHE = Path("~/.skysweep/cache/templates").expanduser()


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs: compiling them costs 20-50 ms at every start of
    a command that renders. A cache that cannot be read or written only costs that again.
    Entries are keyed by the template's source and Python's version, so an edited or
    upgraded template is compiled afresh."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)


@cache
def bytecode_cache() -> jinja2.BytecodeCache:
    return _QuietBytecodeCache(str(TEMPLATE_CACHE))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=bytecode_cache(),
    )
    env.filters["yaml_value"] = yaml_value
    return env


_UNSAFE_IN_YAML = re.compile(r"[^\x20-\x7e]")


def yaml_value(value: Any) -> str:
    """A value as YAML flow text that reads back as exactly that value.

    JSON is YAML, except in one place: JSON writes a character beyond the BMP (an emoji) as
    a surrogate pair, ``\\ud83d\\ude80``, which YAML rejects. So every character outside
    printable ASCII is escaped here, with YAML's own ``\\U0001f680`` beyond the BMP: raw
    non-ASCII could be a YAML line break (U+2028, U+0085) or a character YAML does not allow.
    """
    return _UNSAFE_IN_YAML.sub(_escape, json.dumps(value, ensure_ascii=False))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


_FastLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_FastDumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _BlockDumper(_FastDumper):  # type: ignore[misc]
    pass


class _PyBlockDumper(yaml.SafeDumper):
    pass


def _str_block(dumper: yaml.representer.SafeRepresenter, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_block)
_PyBlockDumper.add_representer(str, _str_block)
