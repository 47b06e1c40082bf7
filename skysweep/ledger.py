"""The sweep's records in the store (DESIGN.md §4): a header written once, then one small
record per trial, per attempt and per retry request, so a sweep that grows one trial at a
time never rewrites a large document.

```
<sweep>/sweep.json                         the header: task as loaded, policy, provenance
<sweep>/records/<trial>/trial.json         one per trial: index, parameters, resources
<sweep>/records/<trial>/attempt-<n>.json   one per launch: job handle, submit tries, error
<sweep>/requests/<trial>-after-<n>.json    "run this trial again after attempt n" (retry)
<sweep>/group.json                         the sweep's SkyPilot job group, when it has one
```

A reader lists ``records/`` and ``requests/`` once and fetches only what changed since its
last look. Sweeps written by skysweep 0.1 (one ``sweep.json`` holding everything) are read
as they are, for ``status`` and ``results``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from skysweep import __version__
from skysweep.cost import Price, resource_key, trial_estimate
from skysweep.errors import StoreError, SweepNotFoundError, UsageError
from skysweep.git import head_commit
from skysweep.store import MAX_CONNECTIONS, Store, concurrently, join
from skysweep.task import EarlyTerminate, ParamValue, TaskSpec, WrittenFloat
from skysweep.trial import RETRYABLE_STATES, Attempt, JobHandle, Trial, TrialState

HEADER = "sweep.json"
GROUP = "group.json"
STOP = "requests/stop.json"
RECORDS_SNAPSHOT = "records.json"
FORMAT = 2
FETCH_WORKERS = min(32, MAX_CONNECTIONS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SweepHeader(BaseModel):
    """What a sweep is, written once when it starts. Never holds a secret's value."""

    format: int = FORMAT
    sweep_id: str
    name: str
    created_at: str
    skysweep_version: str = __version__
    git_commit: str | None = None
    skypilot_version: str | None = None
    """The SkyPilot client installed where the sweep was made (None: not recorded)."""
    task_file: str
    task: dict[str, Any]
    metric: str
    lower_is_better: bool
    backend: str
    store_url: str
    max_parallel: int | None = None
    source: str = "grid"
    expected_trials: int | None = None
    """How many trials the source will give, when it knows (a grid does)."""
    spread: bool = False
    sweep_flags: list[str] = Field(default_factory=list)
    """The ``--sweep`` flags the sweep was started with, for the resume hint."""
    written: dict[str, str] = Field(default_factory=dict)
    """Numbers in ``task`` as the user wrote them (``1.10``), by their JSON path."""
    max_cost_usd: float | None = None
    """The budget (``sweeps.budget.max_cost_usd`` or ``--max-cost``), kept for a resume."""
    expected_minutes: float | None = None
    """How long a trial is expected to run, for estimates (None: unknown)."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """The backend's price for each resource set, by :func:`skysweep.cost.resource_key` of
    the trials' swept resources (``{}`` when none are swept)."""

    @property
    def early_terminate(self) -> EarlyTerminate | None:
        """The sweep's stopping rule, from the task as loaded (None: no early stopping)."""
        sweeps = self.task.get("sweeps")
        rule = sweeps.get("early_terminate") if isinstance(sweeps, dict) else None
        return EarlyTerminate.model_validate(rule) if rule is not None else None

    def price_of(self, resources: dict[str, Any]) -> Price | None:
        return self.prices.get(resource_key(resources))

    def trial_estimate_usd(self) -> float | None:
        """One new trial's estimate: the dearest resource set's (None when any is unknown)."""
        estimates = [trial_estimate(p, self.expected_minutes) for p in self.prices.values()]
        if not estimates or any(e is None for e in estimates):
            return None
        return max(e for e in estimates if e is not None)

    @classmethod
    def new(
        cls,
        *,
        sweep_id: str,
        task: TaskSpec,
        task_file: Path,
        backend: str,
        store_url: str,
        max_parallel: int | None,
        expected_trials: int | None,
        spread: bool = False,
        sweep_flags: list[str] | None = None,
        max_cost_usd: float | None = None,
        expected_minutes: float | None = None,
        prices: dict[str, Price] | None = None,
    ) -> SweepHeader:
        sweeps = task.sweeps
        return cls(
            sweep_id=sweep_id,
            name=task.name,
            created_at=now(),
            git_commit=head_commit(task_file.parent),
            skypilot_version=_installed("skypilot"),
            task_file=str(task_file),
            task=task.model_dump(mode="json", exclude_none=True),
            written=written_texts(task.model_dump(exclude_none=True)),
            metric=sweeps.sweep_metric if sweeps else "eval/loss",
            lower_is_better=sweeps.lower_is_better if sweeps else True,
            backend=backend,
            store_url=store_url,
            max_parallel=max_parallel,
            expected_trials=expected_trials,
            source=sweeps.method if sweeps else "grid",
            spread=spread,
            sweep_flags=sweep_flags or [],
            max_cost_usd=max_cost_usd,
            expected_minutes=expected_minutes,
            prices=prices or {},
        )

    def task_spec(self) -> TaskSpec:
        return TaskSpec.model_validate(with_written(self.task, self.written))


class TrialRecord(BaseModel):
    trial_id: str
    index: int
    params: dict[str, ParamValue]
    resources: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    written: dict[str, str] = Field(default_factory=dict)
    suggested_by: str = "grid"
    """Which method and sampler made the trial; records older than search methods are grid."""

    @classmethod
    def of(cls, trial: Trial, created_at: str | None = None) -> TrialRecord:
        return cls(
            trial_id=trial.trial_id,
            index=trial.index,
            params=trial.params,
            resources=trial.resources,
            created_at=created_at,
            written=written_texts(trial.params),
            suggested_by=trial.suggested_by,
        )

    def trial(self) -> Trial:
        params = with_written(dict(self.params), self.written)
        return Trial(self.index, self.trial_id, params, dict(self.resources), self.suggested_by)


def written_texts(value: Any, path: tuple[str | int, ...] = ()) -> dict[str, str]:
    """The numbers in ``value`` whose written text JSON would not keep (``1.10``), by path."""
    found: dict[str, str] = {}
    if isinstance(value, WrittenFloat):
        if value.text != repr(float(value)):
            found[json.dumps(path)] = value.text
    elif isinstance(value, dict):
        for key, item in value.items():
            found.update(written_texts(item, (*path, str(key))))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.update(written_texts(item, (*path, index)))
    return found


def with_written(value: Any, written: dict[str, str]) -> Any:
    """``value`` with the numbers of :func:`written_texts` back as the user wrote them."""
    for key, text in written.items():
        path = json.loads(key)
        node = value
        for part in path[:-1]:
            node = node[part]
        if path and float(node[path[-1]]) == float(text):
            node[path[-1]] = WrittenFloat(text)
    return value


class RetryRequest(BaseModel):
    """Ask the sweep's controller to run a trial again once its attempt ``after_attempt``
    has ended. Keyed by trial and attempt, so asking twice is asking once."""

    trial_id: str
    after_attempt: int
    requested_at: str
    by: str = ""
    include_pruned: bool = False
    """Relaunch the trial even if the stopping rule stopped it (``retry --include-pruned``)."""


class JobGroup(BaseModel):
    """The SkyPilot job group a sweep's jobs belong to: a managed job named after the sweep
    whose one task is the sweep's controller (``skysweep controller``). Trials are attached
    to it, so SkyPilot shows the sweep as one tree and cancelling the group cancels them."""

    job_id: int
    name: str
    launched_at: str
    detached: bool
    """True: the controller job drives the sweep from the start (``up --detach``). False: it
    stands by while a watching ``up`` drives, and takes over if that stops."""


def _installed(distribution: str) -> str | None:
    # The installed metadata, not `import sky`: that takes seconds.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


class Ledger:
    """A sweep's records, as far as this process has read or written them."""

    def __init__(self, store: Store, header: SweepHeader, *, legacy: bool = False) -> None:
        self.store = store
        self.header = header
        self.sweep_id = header.sweep_id
        self.legacy = legacy
        """Written by skysweep 0.1: readable, never written."""
        self.trials: dict[str, Trial] = {}
        self.attempts: dict[str, list[Attempt]] = {}
        self.requests: dict[tuple[str, int], RetryRequest] = {}
        self.stop_requested = False
        """``skysweep down`` asked the sweep's controller to stop launching."""
        self._etags: dict[str, str] = {}
        self._primed = False
        self._cached: dict[str, tuple[str, bytes]] = {}
        self._order: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.store.url.rstrip('/')}/{self.sweep_id}"

    # -- creating and opening --------------------------------------------------------------

    @classmethod
    def create(cls, store: Store, header: SweepHeader) -> Ledger:
        data = header.model_dump_json(indent=2).encode()
        if not store.put_if_absent(join(header.sweep_id, HEADER), data):
            raise UsageError(
                f"a sweep {header.sweep_id} already exists in {store.url}",
                hint="resume it with --sweep-id, or pick another id",
            )
        return cls(store, header)

    @classmethod
    def exists(cls, store: Store, sweep_id: str) -> bool:
        return store.get(join(sweep_id, HEADER)) is not None

    @classmethod
    def open(cls, store: Store, sweep_id: str) -> Ledger:
        data = store.get(join(sweep_id, HEADER))
        if data is None:
            raise SweepNotFoundError(
                f"no sweep '{sweep_id}' in {store.url}",
                hint="check the id with 'skysweep list --store URL', or pass the store the "
                "sweep was started with (--store or SKYSWEEP_STORE)",
            )
        try:
            raw = json.loads(data)
            if isinstance(raw, dict) and "trials" in raw and "format" not in raw:
                return _from_legacy(store, raw)
            ledger = cls(store, SweepHeader.model_validate(raw))
        except (ValueError, ValidationError) as exc:
            raise StoreError(
                f"{store.url}/{sweep_id}/{HEADER} is not a skysweep sweep header: {exc}"
            ) from exc
        ledger.refresh()
        return ledger

    # -- reading ---------------------------------------------------------------------------

    def refresh(self, *, records: bool = True) -> set[str]:
        """Read what changed since the last look (only the requests unless ``records``);
        returns the trial ids it touched."""
        if self.legacy:
            return set()
        if records and not self._primed:
            self._prime()
        listing = {
            info.key: info.etag
            for prefix in (("records", "requests") if records else ("requests",))
            for info in self.store.list(join(self.sweep_id, prefix))
            if info.key.endswith(".json")
        }
        self.stop_requested = join(self.sweep_id, STOP) in listing
        changed = [k for k, etag in listing.items() if self._etags.get(k) != etag]
        # A record the snapshot holds as it is now need not be fetched.
        known = {
            k: self._cached.pop(k)[1]
            for k in changed
            if self._cached.get(k, ("",))[0] == listing[k]
        }
        missing = [k for k in changed if k not in known]
        fetched = dict(
            zip(
                missing,
                concurrently(self.store, self.store.get, missing, FETCH_WORKERS),
                strict=True,
            )
        )
        touched: set[str] = set()
        for key in changed:
            data = known.get(key) or fetched.get(key)
            if data is None:
                continue
            self._etags[key] = listing[key]
            touched |= self._absorb(key, data)
        return touched

    def _prime(self) -> None:
        """Start from the records snapshot the sweep's driver left, if any: a new machine
        then fetches only the records written since, not every one."""
        self._primed = True
        data = self.store.get(join(self.sweep_id, RECORDS_SNAPSHOT))
        try:
            saved = json.loads(data) if data else {}
            self._cached = {
                key: (str(saved["etags"][key]), str(record).encode())
                for key, record in saved.get("records", {}).items()
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            self._cached = {}  # only a cache: what it does not give is fetched

    def save_snapshot(self) -> None:
        """Leave every record of the sweep in one object for the next reader (a cache, keyed
        by the records' ETags: a record written after it is still fetched)."""
        listing = {
            info.key: info.etag
            for info in self.store.list(join(self.sweep_id, "records"))
            if info.key.endswith(".json")
        }
        records: dict[str, str] = {}
        for key in listing:
            trial_id, name = key.rsplit("/", 2)[-2:]
            if name == "trial.json" and trial_id in self.trials:
                records[key] = TrialRecord.of(self.trials[trial_id]).model_dump_json()
            elif name.startswith("attempt-"):
                number = name.removeprefix("attempt-").removesuffix(".json")
                for attempt in self.attempts.get(trial_id, []):
                    if str(attempt.number) == number:
                        records[key] = attempt.model_dump_json()
        snapshot = {"etags": {k: listing[k] for k in records}, "records": records}
        with contextlib.suppress(StoreError):  # a reader with read-only access loses nothing
            self.store.put(join(self.sweep_id, RECORDS_SNAPSHOT), json.dumps(snapshot).encode())

    def _absorb(self, key: str, data: bytes) -> set[str]:
        name = key.rsplit("/", 1)[-1]
        try:
            if name == "trial.json":
                record = TrialRecord.model_validate_json(data)
                self.trials[record.trial_id] = record.trial()
                return {record.trial_id}
            if name.startswith("attempt-"):
                self._keep_attempt(Attempt.model_validate_json(data))
                return {key.rsplit("/", 2)[-2]}
            if "/requests/" in f"/{key}" and name != STOP.rsplit("/", 1)[-1]:
                request = RetryRequest.model_validate_json(data)
                self.requests[(request.trial_id, request.after_attempt)] = request
                return {request.trial_id}
        except (ValueError, ValidationError):
            pass  # a record being written by a job elsewhere, or foreign: skip, look again later
        return set()

    def _keep_attempt(self, attempt: Attempt) -> None:
        attempts = [
            a for a in self.attempts.get(attempt.trial_id, []) if a.number != attempt.number
        ]
        attempts.append(attempt)
        attempts.sort(key=lambda a: a.number)
        self.attempts[attempt.trial_id] = attempts

    def ordered(self) -> list[Trial]:
        return [self.trials[t] for t in self.order()]

    def order(self) -> list[str]:
        """Trial ids in index order (kept, not sorted anew on every look)."""
        if len(self._order) != len(self.trials):
            self._order = sorted(self.trials, key=lambda t: self.trials[t].index)
        return self._order

    def latest(self, trial_id: str) -> Attempt | None:
        attempts = self.attempts.get(trial_id)
        return attempts[-1] if attempts else None

    def retry_asked(self, trial_id: str) -> bool:
        """Whether a retry of the trial's latest attempt was asked for and not yet done."""
        latest = self.latest(trial_id)
        return latest is not None and (trial_id, latest.number) in self.requests

    def relaunch_asked(self, trial_id: str, state: TrialState) -> bool:
        """Whether the trial, ended in ``state``, is to be launched again: a retry was asked
        and its state is one retries take (a pruned trial only when the retry said so)."""
        if not self.retry_asked(trial_id) or not state.final:
            return False
        if state in RETRYABLE_STATES:
            return True
        latest = self.latest(trial_id)
        request = self.requests.get((trial_id, latest.number)) if latest else None
        return state is TrialState.pruned and request is not None and request.include_pruned

    # -- writing ---------------------------------------------------------------------------

    def require_writable(self) -> None:
        if self.legacy:
            raise UsageError(
                f"sweep {self.sweep_id} was made by skysweep 0.1: status, results and logs work, "
                "but it cannot be resumed or retried",
                hint="start the sweep again with 'skysweep up TASK_FILE'",
            )

    def _write_all(self, items: Iterable[tuple[str, bytes]]) -> None:
        self.require_writable()
        concurrently(self.store, lambda pair: self.store.put(*pair), list(items), FETCH_WORKERS)

    def add_trials(self, trials: Sequence[Trial]) -> None:
        self.add(trials=trials)

    def add_attempts(self, attempts: Sequence[Attempt]) -> None:
        self.add(attempts=attempts)

    def add(
        self,
        *,
        trials: Sequence[Trial] = (),
        attempts: Sequence[Attempt] = (),
        files: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Trial and attempt records, and other objects of the sweep (``files``: keys under
        the store, with their bytes), written together: one round of concurrent requests
        rather than one per kind, which on S3 is a round trip saved before a launch."""
        created = now()
        self._write_all(
            [
                *(
                    (
                        join(self.sweep_id, "records", t.trial_id, "trial.json"),
                        TrialRecord.of(t, created).model_dump_json().encode(),
                    )
                    for t in trials
                ),
                *(
                    (
                        join(self.sweep_id, "records", a.trial_id, f"attempt-{a.number}.json"),
                        a.model_dump_json().encode(),
                    )
                    for a in attempts
                ),
                *files,
            ]
        )
        for trial in trials:
            self.trials[trial.trial_id] = trial
        for attempt in attempts:
            self._keep_attempt(attempt)

    def ask_retry(
        self, trial_ids: Iterable[str], by: str, *, include_pruned: bool = False
    ) -> list[str]:
        """Record retry requests for trials whose latest attempt has ended."""
        asked = []
        pairs = []
        for trial_id in trial_ids:
            latest = self.latest(trial_id)
            after = latest.number if latest else 0
            request = RetryRequest(
                trial_id=trial_id,
                after_attempt=after,
                requested_at=now(),
                by=by,
                include_pruned=include_pruned,
            )
            self.requests[(trial_id, after)] = request
            pairs.append(
                (
                    join(self.sweep_id, "requests", f"{trial_id}-after-{after}.json"),
                    request.model_dump_json().encode(),
                )
            )
            asked.append(trial_id)
        self._write_all(pairs)
        return asked

    def ask_stop(self, by: str) -> None:
        """Ask the sweep's controller to stop launching (``skysweep down``)."""
        self._write_all([(join(self.sweep_id, STOP), json.dumps({"by": by, "at": now()}).encode())])
        self.stop_requested = True

    def group(self) -> JobGroup | None:
        """The sweep's job group, if it has one (one read)."""
        data = self.store.get(join(self.sweep_id, GROUP))
        if data is None:
            return None
        try:
            return JobGroup.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(f"{self.url}/{GROUP} is not a job group record: {exc}") from exc

    def set_group(self, group: JobGroup) -> None:
        self._write_all([(join(self.sweep_id, GROUP), group.model_dump_json().encode())])

    def clear_stop(self) -> None:
        if self.stop_requested:
            self.store.delete(join(self.sweep_id, STOP))
            self.stop_requested = False


def _from_legacy(store: Store, raw: dict[str, Any]) -> Ledger:
    """A 0.1 manifest: trials, a job record per trial and one local runner per sweep."""
    fields = set(SweepHeader.model_fields) - {"format"}
    header = SweepHeader.model_validate({k: v for k, v in raw.items() if k in fields})
    ledger = Ledger(store, header, legacy=True)
    state = raw.get("backend_state") or {}
    for item in raw.get("trials", []):
        record = TrialRecord.model_validate(item)
        ledger.trials[record.trial_id] = record.trial()
    for trial_id, job in (raw.get("jobs") or {}).items():
        handle = None
        if job.get("job_id"):
            locator = (
                {"host": state.get("host"), "pid": state.get("runner_pid"), "legacy": True}
                if header.backend == "local"
                else {}
            )
            handle = JobHandle(
                backend=header.backend,
                job_id=str(job["job_id"]),
                job_name=job.get("job_name"),
                infra=job.get("infra"),
                locator={**locator, "sweep_dir": state.get("sweep_dir")},
            )
        ledger._keep_attempt(
            Attempt(
                trial_id=trial_id,
                number=1,
                submitted_at=job.get("submitted_at") or header.created_at,
                submit_tries=int(job.get("attempts") or 1),
                job=handle,
                error=job.get("error"),
            )
        )
    return ledger
