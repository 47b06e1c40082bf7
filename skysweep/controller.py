"""The controller: the one loop that drives a sweep (DESIGN.md §7).

Each look reads what changed in the store and what the backend says of the jobs in flight,
builds a :class:`Snapshot`, asks the pure :func:`decide` what to do, and does it: ask the
trial source for new trials, launch them or relaunch retried ones, cancel. Then it sleeps,
backing off while nothing changes (as submitit's ``InfoWatcher`` does).

The loop holds the sweep's lease (``lease.py``) while it runs, so two controllers never drive
one sweep and no trial is ever launched twice. Everything it knows is in the store, so any
machine can pick a sweep up where another left it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from skysweep.backends import Backend
from skysweep.collect import BackendView, Collector, TrialResult, metric_value, with_costs
from skysweep.cost import TrialCost, budget_room, spent_and_committed, trial_estimate
from skysweep.errors import BackendUnavailableError
from skysweep.launch import Launcher, interrupted
from skysweep.lease import Lease
from skysweep.ledger import Ledger
from skysweep.search import Outcome, TrialSource
from skysweep.trial import RETRYABLE_STATES, JobHandle, PruneRecord, TrialState

if TYPE_CHECKING:
    # Imported when a sweep has a stopping rule: Optuna takes a while to import.
    from skysweep.history import HistoryReader
    from skysweep.stopping import History, Judge, Prune

# ---------------------------------------------------------------------------------------
# The decision step: pure.


@dataclass(frozen=True)
class TrialView:
    trial_id: str
    index: int
    state: TrialState
    retry_asked: bool = False
    """A retry of its latest attempt was asked for (``skysweep retry``, resume)."""
    include_pruned: bool = False
    """That retry relaunches the trial even if early stopping pruned it."""


@dataclass(frozen=True)
class Policy:
    max_parallel: int
    max_cost_usd: float | None = None
    """The budget: no trial launches unless what was spent, what the running trials are
    expected to cost and its own estimate stay within it. None: no budget."""
    trial_cost_usd: float | None = None
    """One new trial's estimated cost (the dearest of the sweep's resource sets)."""


@dataclass(frozen=True)
class Snapshot:
    trials: Sequence[TrialView]
    """Every trial the sweep has, in index order."""
    source_exhausted: bool
    lease_held: bool = True
    stop_requested: bool = False
    spent_usd: float = 0.0
    """What the ended trials cost (an estimate from catalog prices)."""
    committed_usd: float = 0.0
    """What the trials in flight are expected to cost in all."""


@dataclass(frozen=True)
class Actions:
    launch: tuple[str, ...] = ()
    """Known trials to launch now (a new attempt each), in order."""
    ask: int = 0
    """How many new trials to ask the source for, and launch."""
    cancel: tuple[str, ...] = ()
    done: bool = False
    """Every trial has ended and nothing is left to launch."""
    stop: str | None = None
    """Stop driving the sweep without it being done, and why."""
    budget_reached: bool = False
    """The budget keeps trials that could run from launching; with ``done``: the sweep ends
    with the trials it has."""


LEASE_LOST = "another controller took over the sweep's lease"
STOP_ASKED = "asked to stop (skysweep down)"


def left_to_decide(*, all_launched: bool, budget: float | None, stopping: object) -> bool:
    """Whether a sweep needs a driver: trials still to launch, a budget to hold, or a
    stopping rule to apply. Without any, the launched trials report to the store by
    themselves and a driver would only wait."""
    return not all_launched or budget is not None or stopping is not None


def decide(snapshot: Snapshot, policy: Policy) -> Actions:
    """What to do next, from what the sweep looks like now. No I/O, no clock."""
    if not snapshot.lease_held:
        return Actions(stop=LEASE_LOST)
    if snapshot.stop_requested:
        return Actions(stop=STOP_ASKED)
    in_flight = 0
    waiting: list[str] = []
    for trial in snapshot.trials:
        if trial.state.in_flight:
            in_flight += 1
        elif trial.state is TrialState.pending or (
            trial.retry_asked
            and (
                trial.state in RETRYABLE_STATES
                or (trial.state is TrialState.pruned and trial.include_pruned)
            )
        ):
            waiting.append(trial.trial_id)
    room = max(0, policy.max_parallel - in_flight)
    wanted = min(room, len(waiting) + (0 if snapshot.source_exhausted else room))
    allowed = budget_room(
        policy.max_cost_usd,
        snapshot.spent_usd,
        snapshot.committed_usd,
        policy.trial_cost_usd,
        wanted,
    )
    launch = tuple(waiting[:allowed])
    ask = 0 if snapshot.source_exhausted else allowed - len(launch)
    more = len(waiting) > len(launch) or not snapshot.source_exhausted
    # Whether one more trial than launched now would fit, so that a full cap is not taken
    # for a reached budget.
    budget_reached = more and (
        allowed < wanted
        or budget_room(
            policy.max_cost_usd,
            snapshot.spent_usd,
            snapshot.committed_usd + allowed * (policy.trial_cost_usd or 0.0),
            policy.trial_cost_usd,
            1,
        )
        == 0
    )
    idle = in_flight == 0 and not launch and not ask
    done = idle and (budget_reached or (not waiting and snapshot.source_exhausted))
    return Actions(launch=launch, ask=ask, done=done, budget_reached=budget_reached)


# ---------------------------------------------------------------------------------------
# The loop around it.

NOTHING_STARTED = "its driver stopped while submitting it and nothing started: launching it"


def lost_reason(backend: Backend) -> str:
    """Why a trial whose driver stopped while submitting it is lost: its job may run."""
    look = "`sky jobs queue`" if backend.name == "sky" else "whether it runs"
    return (
        f"its driver stopped while submitting it; check {look} and run `skysweep retry` "
        "if it is not there"
    )


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C while jobs are submitted and recorded: an interrupt between a job's start
    and its record would leave a trial that a resume launches a second time."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@dataclass
class Backoff:
    """Sleep little while things change, more while they do not."""

    low: float = 0.2
    high: float = 5.0
    factor: float = 1.5
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.low

    def next(self, changed: bool) -> float:
        self.current = self.low if changed else min(self.high, self.current * self.factor)
        return self.current


@dataclass
class Look:
    """What one look found."""

    results: dict[str, TrialResult]
    changed: set[str]
    actions: Actions
    launched: list[str] = field(default_factory=list)
    pruned: list[Prune] = field(default_factory=list)
    """What the stopping rule stopped on this look, and why."""
    progressed: bool = False
    """A running trial reported a new step (looks stay frequent while they do)."""


class Controller:
    def __init__(
        self,
        ledger: Ledger,
        backend: Backend,
        source: TrialSource | None,
        launcher: Launcher | None,
        *,
        policy: Policy,
        lease: Lease | None,
        collector: Collector | None = None,
        on_unavailable: Callable[[Exception], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        self.source = source
        self.launcher = launcher
        self.policy = policy
        self.lease = lease
        self.collector = collector or Collector(ledger.store, ledger.sweep_id)
        self.on_unavailable = on_unavailable
        self.results: dict[str, TrialResult] = {}
        self._polled_once = False
        self._open: set[str] = set()
        """Trials not ended yet, by what the last look saw."""
        self._views: dict[str, TrialView] = {}
        self._stale: set[str] = set()
        self.stopping: Judge | None = None
        """The sweep's stopping rule (``sweeps.early_terminate``), when it has one."""
        self.history: HistoryReader | None = None
        rule = ledger.header.early_terminate
        if rule is not None:
            from skysweep.history import HistoryReader
            from skysweep.stopping import Judge

            metric = rule.metric or ledger.header.metric
            self.stopping = Judge(rule, metric, ledger.header.lower_is_better)
            self.history = HistoryReader(ledger.store, ledger.sweep_id, metric)
        self._judged: dict[str, int] = {}
        """Each running trial's last step judged (in this process)."""
        self._history_closed: set[tuple[str, int]] = set()
        self._cancelled: set[str] = set()
        self._progressed = False
        self._unstarted: set[str] = set()
        """Trials whose interrupted attempt the backend found never started: to launch."""

    # -- observe ---------------------------------------------------------------------------

    def observe(self, *, ask_backend: bool = True) -> set[str]:
        """Bring ``results`` up to date; returns the trials whose result changed.

        A look costs what is in flight and what changed: the backend is asked only about
        jobs that had not ended (on the first look, every job), and the sweep's driver looks
        only at the finished records of those trials. Without ``ask_backend`` only the
        store is read (the backend is asked at the next look).
        """
        # The driver writes the trial and attempt records itself; others only ask it for
        # retries. A watcher reads everything the driver writes.
        touched = self.ledger.refresh(records=self.launcher is None) | self._stale
        self._stale = set()
        fresh = [t for t in self.ledger.trials if t not in self.results]
        open_trials = self._open | touched | set(fresh)
        finished_changed = self.collector.refresh(
            only=open_trials if self.launcher is not None and self._polled_once else None
        )
        candidates = open_trials if self._polled_once else self.ledger.attempts
        touched |= self.find_interrupted(candidates)
        asking = {
            trial_id: attempt.job
            for trial_id in candidates
            if (attempt := self.ledger.latest(trial_id)) is not None
            and attempt.job is not None
            and not self.collector.has_finished(trial_id)
        }
        views: dict[str, BackendView] = {}
        if not ask_backend:
            asking = {}
        elif asking:
            try:
                views = self.backend.poll(self.ledger.store, self.ledger.sweep_id, asking)
            except BackendUnavailableError as exc:
                if self.on_unavailable is not None:
                    self.on_unavailable(exc)
                asking = {}
        self._polled_once |= ask_backend
        for trial_id in list(self._unstarted):
            attempt = self.ledger.latest(trial_id)
            if attempt is not None and interrupted(attempt):
                views[trial_id] = BackendView(TrialState.pending, NOTHING_STARTED)
            else:
                self._unstarted.discard(trial_id)  # launched again since
        changed: set[str] = set()
        for trial_id in touched | finished_changed | set(asking) | set(fresh) | self._unstarted:
            trial = self.ledger.trials.get(trial_id)
            if trial is None:
                continue
            result = self.collector.result(trial, self.ledger.latest(trial_id), views.get(trial_id))
            if self.results.get(trial_id) != result:
                self.results[trial_id] = result
                changed.add(trial_id)
            if result.finished:
                self._open.discard(trial_id)
            else:
                self._open.add(trial_id)
        for trial_id in changed | touched:
            self._views.pop(trial_id, None)
        return changed

    def find_interrupted(self, trial_ids: Iterable[str]) -> set[str]:
        """Settle the attempts whose driver stopped while submitting them (killed between a
        job's start and its record): the backend adopts the job that started, or says that
        none did (the trial is launched again, as the same attempt), or cannot tell (the
        trial is lost, with what to check; never launched blindly). Only a driver does this:
        its lease means no other process is submitting them now. Returns the trials whose
        attempt record changed."""
        if self.launcher is None:
            return set()
        settled = []
        for trial_id in trial_ids:
            attempt = self.ledger.latest(trial_id)
            if attempt is None or not interrupted(attempt) or trial_id in self._unstarted:
                continue
            found = self.backend.find(self.ledger.store, self.ledger.sweep_id, attempt)
            if isinstance(found, JobHandle):
                settled.append(attempt.model_copy(update={"job": found, "submitting": False}))
            elif found is None:
                self._unstarted.add(trial_id)
            else:
                settled.append(attempt.model_copy(update={"error": lost_reason(self.backend)}))
        if settled:
            self.ledger.add_attempts(settled)
        return {a.trial_id for a in settled}

    def _view(self, trial_id: str) -> TrialView:
        view = self._views.get(trial_id)
        if view is None:
            view = self._views[trial_id] = TrialView(
                trial_id,
                self.ledger.trials[trial_id].index,
                self.results[trial_id].state,
                self.ledger.retry_asked(trial_id),
                self.ledger.relaunch_asked(trial_id, TrialState.pruned),
            )
        return view

    def snapshot(self) -> Snapshot:
        held = True
        if self.lease is not None:
            held = self.lease.renew()
        spent_usd, committed_usd = (
            self.spending() if self.policy.max_cost_usd is not None else (0.0, 0.0)
        )
        return Snapshot(
            trials=[self._view(t) for t in self.ledger.order()],
            source_exhausted=self.source_exhausted,
            lease_held=held,
            stop_requested=self.ledger.stop_requested,
            spent_usd=spent_usd,
            committed_usd=committed_usd,
        )

    def spending(self, now: datetime | None = None) -> tuple[float, float]:
        """What the ended trials cost and what those in flight are expected to cost, from the
        prices in the sweep's header (the budget's view; the clock is read here, not in
        :func:`decide`)."""
        header = self.ledger.header
        costed = with_costs(list(self.results.values()), self.ledger, now)
        trials = []
        for result in costed:
            trial = self.ledger.trials.get(result.trial_id)
            price = header.price_of(trial.resources if trial else {})
            trials.append(
                TrialCost(
                    in_flight=result.state.in_flight,
                    launched=result.job_id is not None,
                    so_far=result.cost_usd,
                    estimate=trial_estimate(price, header.expected_minutes),
                )
            )
        return spent_and_committed(trials)

    # -- act -------------------------------------------------------------------------------

    @property
    def source_exhausted(self) -> bool:
        return self.source is None or self.source.exhausted

    def complete(self) -> bool:
        """For a watcher: every trial the sweep has ended, and no more will come."""
        expected = self.ledger.header.expected_trials
        ledger = self.ledger
        return all(
            r.finished and not ledger.relaunch_asked(t, r.state) for t, r in self.results.items()
        ) and (
            ledger.stop_requested
            or expected is None
            or len(ledger.trials) >= expected
            or self.budget_reached()
        )

    def budget_reached(self, now: datetime | None = None) -> bool:
        """The sweep's budget leaves no room for one more trial (False without a budget)."""
        header = self.ledger.header
        if header.max_cost_usd is None:
            return False
        spent_usd, committed_usd = self.spending(now)
        room = budget_room(
            header.max_cost_usd, spent_usd, committed_usd, header.trial_estimate_usd(), 1
        )
        return room == 0

    def step(self) -> Look:
        """One look: observe, decide, act. Without a launcher (a watcher), only observe.

        With a stopping rule, the running trials are judged first, so the slots of those it
        stops are free for new trials in the same look."""
        changed = self.observe()
        if self.launcher is None:
            return Look(self.results, changed, Actions(done=self.complete()))
        pruned = self.prune()
        if pruned:
            changed |= self.observe()
        actions = decide(self.snapshot(), self.policy)
        launched: list[str] = []
        if actions.launch or actions.ask:
            fresh = (
                self.source.next(actions.ask, self.ledger.trials, self.outcomes())
                if actions.ask and self.source is not None
                else []
            )
            chosen = [self.ledger.trials[t] for t in actions.launch] + fresh
            with interrupts_deferred():
                self.launcher.launch(chosen, new=fresh)
            launched = [t.trial_id for t in chosen]
            # Their new attempts are this process's own writes: read them again now. The
            # backend was asked about every job in flight a moment ago and knows nothing yet
            # of these but that they were submitted (on SkyPilot, asking again is a queue
            # request: seconds that `up --detach` would spend for nothing).
            self._open.update(launched)
            self._stale.update(launched)
            changed |= self.observe(ask_backend=False)
        if actions.cancel:
            self.cancel(actions.cancel)
        progressed, self._progressed = self._progressed, False
        return Look(self.results, changed, actions, launched, pruned, progressed)

    # -- early stopping --------------------------------------------------------------------

    def read_histories(self) -> list[History]:
        """Every trial's history as far as it was written, reading only what is new: the
        running trials' on each look, a trial that ended once more for its last lines."""
        from skysweep.stopping import History

        assert self.history is not None
        out: list[History] = []
        for trial_id in self.ledger.order():
            result = self.results.get(trial_id)
            attempt = self.ledger.latest(trial_id)
            if result is None or attempt is None or attempt.job is None:
                continue
            key = (trial_id, attempt.number)
            if key not in self._history_closed:
                self._progressed |= self.history.read(trial_id, attempt.number)
                if result.finished:
                    self._history_closed.add(key)
            values = self.history.values(trial_id)
            state = result.state
            if state is TrialState.submitted and values:
                # A job that reports steps runs, whatever the backend last said: SkyPilot's
                # queue (read without a refresh) says STARTING or PENDING for a while after.
                state = TrialState.running
            if values or state is TrialState.running:
                out.append(History(trial_id, result.index, state, values))
        return out

    def prune(self) -> list[Prune]:
        """Judge the running trials; record and carry out the decisions. A decision is
        written into the trial's attempt record before its job is cancelled, so a controller
        that dies in between cancels it on its next start."""
        if self.stopping is None or self.history is None:
            return []
        histories = self.read_histories()
        decisions = self.stopping.decide(histories, self._judged)
        for history in histories:
            if history.state is TrialState.running and history.values:
                self._judged[history.trial_id] = max(history.values)
        if decisions:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            updated = []
            for decision in decisions:
                attempt = self.ledger.latest(decision.trial_id)
                if attempt is None:
                    continue
                record = PruneRecord(
                    rule=decision.rule,
                    metric=self.stopping.metric,
                    step=decision.step,
                    value=decision.value,
                    reason=decision.reason,
                    at=stamp,
                )
                updated.append(attempt.model_copy(update={"pruned": record}))
            self.ledger.add_attempts(updated)
            self._stale.update(d.trial_id for d in decisions)
            self._open.update(d.trial_id for d in decisions)
        # Every pruned attempt whose job may still run (this look's, or one a controller
        # before this one decided and did not get to cancel), once per controller.
        leftover = [
            t
            for t, r in self.results.items()
            if r.state is TrialState.pruned
            and t not in self._cancelled
            and not self.collector.has_finished(t)
        ]
        leftover += [d.trial_id for d in decisions if d.trial_id not in leftover]
        if leftover:
            self.cancel(leftover)
            self._cancelled.update(leftover)
            self._stale.update(leftover)
        return decisions

    def outcomes(self) -> dict[str, Outcome]:
        """How every trial stands, for a source that learns from results: its state, and
        its metric value when it succeeded and reported the sweep's metric."""
        metric = self.ledger.header.metric
        same_metric = self.stopping is not None and self.stopping.metric == metric
        return {
            trial_id: (
                result.state,
                metric_value(result.metrics, metric)[0]
                if result.state is TrialState.succeeded
                else result.last_value
                if result.state is TrialState.pruned and same_metric
                else None,
            )
            for trial_id, result in self.results.items()
        }

    def cancel(self, trial_ids: Sequence[str]) -> list[str]:
        handles = {
            t: a.job for t in trial_ids if (a := self.ledger.latest(t)) is not None and a.job
        }
        return self.backend.cancel(self.ledger.store, self.ledger.sweep_id, handles)

    def run(
        self,
        *,
        on_look: Callable[[Look], None] | None = None,
        backoff: Backoff | None = None,
        deadline: float | None = None,
    ) -> Look:
        """Look until the sweep is done (or must stop, or ``deadline`` passes)."""
        backoff = backoff or Backoff()
        while True:
            look = self.step()
            if on_look is not None:
                on_look(look)
            if look.actions.done or look.actions.stop:
                self.collector.flush()
                return look
            pause = backoff.next(bool(look.changed or look.launched or look.progressed))
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.collector.flush()
                    return look
                pause = min(pause, remaining)
            self.backend.sleep(pause)
