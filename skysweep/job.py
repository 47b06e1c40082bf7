"""Report from inside a Python job: ``skysweep.log`` each step, ``skysweep.finish`` at the end.

    import skysweep

    for epoch in range(1, epochs + 1):
        ...
        skysweep.log(epoch, {"eval/loss": loss, "eval/accuracy": acc})   # a dict ...
        skysweep.log(epoch, lr=current_lr)                                # ... or keywords
    skysweep.finish({"eval/loss": loss, "eval/accuracy": acc})          # the ranked metrics

``log(step, metrics=None, /, **named)`` appends one line ``{"step": step, ...}`` to
``$SKYSWEEP_OUTPUT_DIR/history.jsonl``; this is what early stopping judges a running trial
by, so report the sweep's metric at comparable steps in every trial (epochs, not batches,
when trials differ in batch size). ``finish(metrics=None, /, **named)`` writes
``$SKYSWEEP_OUTPUT_DIR/metrics.json``, the metrics the trial is ranked by; with no
arguments it writes the last value of each metric this process logged. Metric names may
contain ``/`` (``eval/loss``): pass them in the dict, or as ``**{"eval/loss": x}``.

Values are numbers, strings, bools, None or nested dicts of them; number-likes such as NumPy
scalars or one-element tensors are turned into ``int``/``float``. JSON has no NaN or
infinity: a non-finite value is written as ``null`` with a warning, so every line stays
JSON that any reader (jq, a browser, another language) accepts.

Outside a skysweep job (``SKYSWEEP_OUTPUT_DIR`` unset or empty) both calls write nothing and
warn once, so a training script runs unchanged on a laptop; set ``SKYSWEEP_OUTPUT_DIR=.``
to get the files in the current directory.

Standard library only: a job needs skysweep importable, nothing else of it is loaded.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["SkysweepJobWarning", "finish", "log", "output_dir"]

HISTORY = "history.jsonl"
METRICS = "metrics.json"

# The last value of each metric logged by this process: what ``finish()`` writes when it is
# given nothing.
_latest: dict[str, Any] = {}
_warned_outside = False


class SkysweepJobWarning(UserWarning):
    """Something a job reported could not be written as given."""


def output_dir() -> str | None:
    """The folder this job reports to, or None outside a skysweep job."""
    return os.environ.get("SKYSWEEP_OUTPUT_DIR") or None


def log(step: int, metrics: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, Any]:
    """Append ``{"step": step, **metrics, **named}`` as one line of ``history.jsonl``.

    ``step`` is a non-negative integer that grows over the run (an epoch, an evaluation
    round). Returns the point as written. A failed write (a full disk) warns rather than
    stopping the training: the final metrics are what counts, and ``finish`` does raise.
    """
    number = _step(step)
    values = _merge("log", metrics, named)
    if "step" in values:
        raise ValueError("skysweep.log: 'step' is the first argument; it cannot be a metric too")
    point = {"step": number, **values}
    _latest.update(values)
    folder = _folder("log")
    if folder is None:
        return point
    line = (json.dumps(point, allow_nan=False) + "\n").encode()
    try:
        _append(os.path.join(folder, HISTORY), line)
    except OSError as error:
        warnings.warn(
            f"skysweep.log: could not append step {number} to {HISTORY}: {error}",
            SkysweepJobWarning,
            stacklevel=2,
        )
    return point


def finish(metrics: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, Any]:
    """Write ``metrics.json``, the metrics this trial is ranked by, and return them.

    With no arguments, the last value of each metric this process logged. The file is
    replaced atomically, so a reader sees the old file or the new one, never half of one;
    calling it again replaces it. A failed write raises: without it the trial has no result.
    """
    values = _merge("finish", metrics, named) or dict(_latest)
    if not values:
        raise ValueError(
            "skysweep.finish: no metrics given and none logged; "
            'pass them, e.g. skysweep.finish({"eval/loss": loss})'
        )
    folder = _folder("finish")
    if folder is None:
        return values
    data = json.dumps(values, allow_nan=False, indent=1).encode()
    os.makedirs(folder, exist_ok=True)
    # A temporary file in the same folder, so os.replace is a rename on one file system;
    # named by the pid, so two processes of one job (several ranks) never share one.
    temporary = os.path.join(folder, f".{METRICS}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, os.path.join(folder, METRICS))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return values


def _append(path: str, line: bytes) -> None:
    """One ``write`` of the whole line on an O_APPEND descriptor: a reader sees whole lines
    (only the end of the file can be partial, while a write is in progress). Opened and
    closed per line: a bucket mounted with SkyPilot's MOUNT_CACHED uploads a file once it
    is closed, so a descriptor kept open would hold the history back until the job ends."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:  # a regular file takes it in one write; the loop is for the odd short one
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _folder(caller: str) -> str | None:
    global _warned_outside
    folder = output_dir()
    if folder is None and not _warned_outside:
        _warned_outside = True
        warnings.warn(
            f"skysweep.{caller}: SKYSWEEP_OUTPUT_DIR is not set, so this is not a skysweep job "
            "and nothing is written; set SKYSWEEP_OUTPUT_DIR=. to write the files here",
            SkysweepJobWarning,
            stacklevel=3,
        )
    return folder


def _step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError("skysweep.log: step is a bool; pass an integer such as the epoch")
    try:
        number = operator.index(step)  # int, NumPy integers
    except TypeError:
        if isinstance(step, float) and step.is_integer():
            number = int(step)
        else:
            raise TypeError(
                f"skysweep.log: step is {step!r}; pass an integer such as the epoch"
            ) from None
    if number < 0:
        raise ValueError(f"skysweep.log: step is {number}; steps start at 0")
    return number


def _merge(
    caller: str, metrics: Mapping[str, Any] | None, named: Mapping[str, Any]
) -> dict[str, Any]:
    """The metrics as JSON can hold them; warns (at the caller's line) about each value
    that is not finite."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(
            f"skysweep.{caller}: metrics is a {type(metrics).__name__}; "
            'pass a dict such as {"eval/loss": 0.5}, or keywords'
        )
    not_finite: list[tuple[str, float]] = []
    values = _mapping(caller, "", {**(metrics or {}), **named}, not_finite)
    for name, number in not_finite:
        # No step in the text: Python shows a warning once per text and call site, so a
        # diverged run warns once rather than at every step.
        warnings.warn(
            f"skysweep.{caller}: metric {name!r} is {number}; written as null (JSON has no "
            "NaN or infinity)",
            SkysweepJobWarning,
            stacklevel=3,
        )
    return values


def _mapping(
    caller: str, prefix: str, given: Mapping[Any, Any], not_finite: list[tuple[str, float]]
) -> dict[str, Any]:
    cleaned = {}
    for key, value in given.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"skysweep.{caller}: metric name {key!r} is not a non-empty string")
        cleaned[key] = _value(caller, prefix + key, value, not_finite)
    return cleaned


def _value(caller: str, name: str, value: Any, not_finite: list[tuple[str, float]]) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Mapping):
        return _mapping(caller, name + "/", value, not_finite)
    if not isinstance(value, float):
        try:
            return operator.index(value)  # NumPy integers, integer tensors
        except TypeError:
            pass
        try:
            value = float(value)  # NumPy floats, one-element tensors, Decimal, Fraction
        except (TypeError, ValueError):
            raise TypeError(
                f"skysweep.{caller}: metric {name!r} is a {type(value).__name__}; "
                "expected a number, a string, a bool, None or a dict of them"
            ) from None
    if math.isfinite(value):
        return value
    not_finite.append((name, value))
    return None
