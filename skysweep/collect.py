"""Stage 5, collect: read what the trials wrote back from the store.

Costs are bounded so that following a 1,000-trial sweep stays cheap:

- The job wrapper drops ``<sweep>/finished/<trial_id>.json`` when a trial ends, so one LIST
  page tells which of 1,000 trials finished, and its ETags tell which changed since the
  last look. Only those are fetched, in parallel.
- After a look that learned something, the collector saves what it knows in
  ``<sweep>/collected.json``, so the first look from another machine (a CI runner, a
  laptop) starts from there instead of fetching every trial again.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from skysweep.cost import spent
from skysweep.errors import StoreError
from skysweep.store import MAX_CONNECTIONS, FileStore, Store, concurrently, join
from skysweep.task import ParamValue
from skysweep.trial import Attempt, Trial, TrialState

if TYPE_CHECKING:
    from skysweep.ledger import Ledger

SNAPSHOT = "collected.json"
SNAPSHOT_EVERY = 10.0
FETCH_WORKERS = min(32, MAX_CONNECTIONS)
"""Trials fetched at once on a look that finds new records (two GETs each). Past ~32 the
client is CPU-bound (~3-8 ms per boto3 request), so more threads only add GIL contention:
bench/collect.py --tune measured 1,000 trials at 50 ms latency in 11.3 s with 32 threads,
12.8 s with 64 and 13.4 s with 128."""


@dataclass(frozen=True)
class TrialResult:
    trial_id: str
    index: int
    params: dict[str, ParamValue]
    state: TrialState
    metrics: dict[str, Any] | None = None
    problem: str | None = None
    """Why this trial has no usable result, in words for the table."""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    job_id: str | None = None
    backend_status: str | None = None
    attempt: int = 0
    """The run attempt this result is of (0: never launched)."""
    cost_usd: float | None = None
    """Its cost so far, an estimate from catalog prices (price x running time x nodes);
    0.0 on the local backend, None when unknown. Filled in by :func:`with_costs`."""
    last_step: int | None = None
    """A pruned trial's last reported step (when it was judged)."""
    last_value: float | None = None
    """A pruned trial's last reported value of the judged metric."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TrialState(self.state))

    @property
    def finished(self) -> bool:
        return self.state.final


@dataclass
class _Finished:
    etag: str
    record: dict[str, Any]
    metrics: dict[str, Any] | None
    metrics_problem: str | None


@dataclass(frozen=True)
class BackendView:
    """What a backend says about one trial's job, merged into the result."""

    state: TrialState
    detail: str | None = None
    started_at: str | None = None
    """When the job started running, as the backend recorded it (ISO 8601)."""


@dataclass
class Collector:
    """Collects a sweep's results, remembering what it saw so repeated looks are cheap."""

    store: Store
    sweep_id: str
    requests: int = 0
    _known: dict[str, _Finished] = field(default_factory=dict)
    _primed: bool = False
    _unsaved: bool = False
    _saved_at: float = -SNAPSHOT_EVERY

    def collect(
        self, ledger: Ledger, backend: Mapping[str, BackendView] | None = None
    ) -> list[TrialResult]:
        """Every trial's result, in index order: one look for a reader."""
        self.refresh()
        views = backend or {}
        return [
            self.result(trial, ledger.latest(trial.trial_id), views.get(trial.trial_id))
            for trial in ledger.ordered()
        ]

    def has_finished(self, trial_id: str) -> bool:
        return trial_id in self._known

    def refresh(self, only: Collection[str] | None = None) -> set[str]:
        """Read the finished records that are new or changed; returns their trial ids.

        ``only``: the trials whose record may have changed (those in flight, for the sweep's
        driver). On a folder store they are looked at one by one, so a look costs what is in
        flight rather than the whole sweep; a bucket is listed (one request per 1,000).
        """
        if not self._primed:
            self._prime()
        self.requests += 1
        folder = join(self.sweep_id, "finished")
        if only is not None and isinstance(self.store, FileStore):
            listing = {
                tid: info.etag
                for tid in only
                if (info := self.store.stat(join(folder, f"{tid}.json"))) is not None
            }
            looked: Collection[str] = only
        else:
            listing = {
                info.key.rsplit("/", 1)[-1].removesuffix(".json"): info.etag
                for info in self.store.list(folder)
                if info.key.endswith(".json")
            }
            looked = self._known
        changed = [
            tid
            for tid, etag in listing.items()
            if tid not in self._known or self._known[tid].etag != etag
        ]
        # A record that disappeared was archived by a retry: that trial is running again.
        gone = [tid for tid in looked if tid in self._known and tid not in listing]
        for tid in gone:
            del self._known[tid]
        if changed:
            self.requests += 2 * len(changed)
            fetched = concurrently(
                self.store, lambda t: self._fetch(t, listing[t]), changed, FETCH_WORKERS
            )
            self._known.update(
                (tid, found)
                for tid, found in zip(changed, fetched, strict=True)
                if found is not None
            )
        if changed or gone:
            self._unsaved = True
        if self._unsaved and time.monotonic() - self._saved_at >= SNAPSHOT_EVERY:
            self.save_snapshot()
        return set(changed) | set(gone)

    def _prime(self) -> None:
        self._primed = True
        self.requests += 1
        data = self.store.get(join(self.sweep_id, SNAPSHOT))
        if data is None:
            return
        try:
            saved = json.loads(data)
            self._known = {tid: _Finished(**entry) for tid, entry in saved["finished"].items()}
        except (ValueError, TypeError, KeyError):
            self._known = {}  # a snapshot is only a cache: start over when it is unreadable

    def flush(self) -> None:
        if self._unsaved:
            self.save_snapshot()

    def save_snapshot(self) -> None:
        """Save what this collector knows for the next reader (a cache: at most every
        :data:`SNAPSHOT_EVERY` seconds while a sweep runs, so a long sweep does not rewrite it
        on every look)."""
        self._unsaved = False
        self._saved_at = time.monotonic()
        self.requests += 1
        data = {"finished": {tid: asdict(entry) for tid, entry in self._known.items()}}
        # Only a cache: a reader with read-only credentials still gets its answer.
        with contextlib.suppress(StoreError):
            self.store.put(join(self.sweep_id, SNAPSHOT), json.dumps(data).encode())

    def _fetch(self, trial_id: str, etag: str) -> _Finished | None:
        """The trial's finished record and metrics; None while the record is still being
        written (the job wrapper writes it in place, in one short write)."""
        base = join(self.sweep_id, "trials", trial_id)
        record_bytes = self.store.get(join(self.sweep_id, "finished", f"{trial_id}.json"))
        try:
            # No prefix of a JSON object parses: a record cut short reads as not yet there.
            record = json.loads(record_bytes or b"")
        except ValueError:
            return None
        if not isinstance(record, dict):
            record = {}
        metrics, problem = parse_metrics(self.store.get(join(base, "metrics.json")))
        return _Finished(etag, record, metrics, problem)

    def result(
        self, trial: Trial, attempt: Attempt | None, view: BackendView | None
    ) -> TrialResult:
        """One trial's result from its finished record, its job's state and its attempt.

        An attempt the stopping rule stopped is ``pruned`` from the moment the decision is
        recorded (its job is being cancelled), unless it succeeded first."""
        result = self._result(trial, attempt, view)
        pruned = attempt.pruned if attempt is not None else None
        if pruned is None or result.state is TrialState.succeeded:
            return result
        return replace(
            result,
            state=TrialState.pruned,
            problem=f"pruned by {pruned.rule} at {pruned.reason}",
            last_step=pruned.step,
            last_value=pruned.value,
        )

    def _result(
        self, trial: Trial, attempt: Attempt | None, view: BackendView | None
    ) -> TrialResult:
        base = TrialResult(
            trial.trial_id,
            trial.index,
            trial.params,
            TrialState.pending,
            job_id=attempt.job.job_id if attempt and attempt.job else None,
            attempt=attempt.number if attempt else 0,
        )
        finished = self._known.get(trial.trial_id)
        if finished is not None:
            record = finished.record
            exit_code = record.get("exit_code")
            state = TrialState.succeeded if exit_code == 0 else TrialState.failed
            problem = finished.metrics_problem
            if record.get("state") == "cancelled":
                state = TrialState.cancelled
                problem = record.get("error") or "cancelled before it finished"
            elif state is TrialState.failed:
                problem = record.get("error") or f"exited with code {exit_code}"
            return replace(
                base,
                state=state,
                metrics=finished.metrics,
                problem=problem,
                exit_code=exit_code if isinstance(exit_code, int) else None,
                started_at=record.get("started_at"),
                finished_at=record.get("finished_at"),
                backend_status=view.detail if view else None,
            )
        if view is not None:
            if view.state is TrialState.succeeded:
                # The job ended well but left no record in the store: say so rather than
                # wait for a record that will not come.
                return replace(
                    base,
                    state=TrialState.failed,
                    problem=f"{view.detail or 'the backend'} says it succeeded, but it left no "
                    "record in the store (was the bucket mounted and writable?)",
                    backend_status=view.detail,
                )
            return replace(
                base,
                state=view.state,
                problem=view.detail if view.state.final else None,
                backend_status=view.detail,
                started_at=view.started_at,
            )
        if attempt is None:
            return base
        if attempt.job is None and attempt.submitting:
            if attempt.error is not None:  # its job may run: the backend could not tell
                return replace(base, state=TrialState.lost, problem=attempt.error)
            return replace(base, state=TrialState.submitted, backend_status="being submitted")
        if attempt.job is None:
            return replace(
                base,
                state=TrialState.submit_failed,
                problem=f"submission failed: {attempt.error or 'no job id'}",
            )
        return replace(base, state=TrialState.submitted)


def parse_metrics(data: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """A trial's metrics.json, or why it cannot be used."""
    if data is None:
        return None, "wrote no metrics.json"
    try:
        value = json.loads(data)
    except ValueError:
        return None, "metrics.json is not valid JSON (truncated or corrupt)"
    if not isinstance(value, dict):
        return None, f"metrics.json holds a {type(value).__name__}, expected a JSON object"
    return value, None


def metric_value(metrics: Mapping[str, Any] | None, metric: str) -> tuple[float | None, str | None]:
    """The ranking value, or why there is none. Accepts nested keys: ``eval/loss`` or
    ``{"eval": {"loss": ...}}``."""
    if metrics is None:
        return None, None
    value: Any = metrics.get(metric)
    if value is None and "/" in metric:
        node: Any = metrics
        for part in metric.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        value = node
    if value is None:
        return None, f"no '{metric}' in metrics.json"
    if isinstance(value, bool):  # JSON true is not 1.0: a flag ranks nothing
        return None, f"'{metric}' is {'true' if value else 'false'}, not a number"
    if not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None, f"'{metric}' is {value!r}, not a number"
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None, f"'{metric}' is {number}"
    return number, None


def with_costs(
    results: list[TrialResult], ledger: Ledger, now: datetime | None = None
) -> list[TrialResult]:
    """``results`` with each trial's cost so far, from the prices in the sweep's header and the
    start and end times its job recorded."""
    header = ledger.header
    if not header.prices:
        return results
    when = now or datetime.now(timezone.utc)
    out = []
    for result in results:
        trial = ledger.trials.get(result.trial_id)
        price = header.price_of(trial.resources if trial else {})
        out.append(
            replace(result, cost_usd=spent(price, result.started_at, result.finished_at, when))
        )
    return out
