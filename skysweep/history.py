"""Intermediate metrics: each running trial's ``history.jsonl`` (DESIGN.md §3), read a little
at a time.

A job appends one JSON object a line (``{"step": 3, "eval/loss": 0.52}``). The reader keeps,
per trial, how many bytes it has read and the part of a line not finished yet, so each look
fetches only what is new (a ranged GET on a bucket, a seek on a folder) and a line cut short
by a mounted bucket's upload lag is read whole on a later look. A file that does not exist
yet is no history yet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skysweep.collect import metric_value
from skysweep.store import Store, join

HISTORY = "history.jsonl"


@dataclass
class _Trail:
    attempt: int
    offset: int = 0
    partial: bytes = b""
    values: dict[int, float] = field(default_factory=dict)
    """step → value of the reader's metric."""
    latest: tuple[int, float] | None = None
    """The last line's step and value that had the metric."""
    lines: int = 0


@dataclass
class HistoryReader:
    """Reads the histories of one sweep's trials for one metric, remembering where it was."""

    store: Store
    sweep_id: str
    metric: str
    requests: int = 0
    _trails: dict[str, _Trail] = field(default_factory=dict)

    def read(self, trial_id: str, attempt: int) -> bool:
        """Read what ``trial_id``'s attempt appended since the last look; True when it
        brought a new point. A new attempt starts from its own, new file."""
        trail = self._trails.get(trial_id)
        if trail is None or trail.attempt != attempt:
            trail = self._trails[trial_id] = _Trail(attempt)
        self.requests += 1
        data = self.store.get_from(join(self.sweep_id, "trials", trial_id, HISTORY), trail.offset)
        if not data:
            return False
        trail.offset += len(data)
        buffer = trail.partial + data
        complete, _, trail.partial = buffer.rpartition(b"\n")
        added = False
        for line in complete.split(b"\n"):
            point = parse_point(line, self.metric)
            if point is None:
                continue
            step, value = point
            trail.values[step] = value
            trail.latest = point
            trail.lines += 1
            added = True
        return added

    def values(self, trial_id: str) -> dict[int, float]:
        trail = self._trails.get(trial_id)
        return dict(trail.values) if trail else {}

    def latest(self, trial_id: str) -> tuple[int, float] | None:
        trail = self._trails.get(trial_id)
        return trail.latest if trail else None

    def forget(self, trial_id: str) -> None:
        self._trails.pop(trial_id, None)

    def all_latest(self) -> Mapping[str, tuple[int, float]]:
        return {t: trail.latest for t, trail in self._trails.items() if trail.latest}


def full_steps(store: Store, sweep_id: str, trial_id: str) -> int | None:
    """The last step a trial reported in its whole history (one GET): how long a trial runs
    when nothing stops it, taken from one that finished."""
    data = store.get(join(sweep_id, "trials", trial_id, HISTORY))
    steps: list[int] = []
    for line in (data or b"").split(b"\n"):
        try:
            item: Any = json.loads(line)
        except ValueError:
            continue
        step = item.get("step") if isinstance(item, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            steps.append(step)
    return max(steps) if steps else None


def parse_point(line: bytes, metric: str) -> tuple[int, float] | None:
    """One history line's step and value of ``metric``; None for a line without both (a
    blank line, a foreign one, another metric's)."""
    try:
        item: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    step = item.get("step")
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
        return None
    if step != int(step):
        return None
    value, _ = metric_value(item, metric)
    if value is None:
        return None
    return int(step), value
