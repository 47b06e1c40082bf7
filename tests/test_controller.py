"""The controller's pure decision step, its backoff, and the grid trial source.

``decide(snapshot, policy)`` is tested as a table: each row is a sweep as the controller
sees it (one state per trial, ``+r`` when a retry of its latest attempt was asked for) and
what it must do next. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from skysweep.controller import (
    Actions,
    Backoff,
    Policy,
    Snapshot,
    TrialView,
    decide,
    left_to_decide,
)
from skysweep.expand import expand
from skysweep.search.grid import GridSource
from skysweep.task import TaskSpec
from skysweep.trial import TrialState

# ---------------------------------------------------------------------------------------
# Helpers


def tid(index: int) -> str:
    return f"t{index:05d}"


def views(*specs: str) -> list[TrialView]:
    """One trial per spec, in index order: ``"running"``, or ``"failed+r"`` for a trial whose
    retry was asked for."""
    out = []
    for index, spec in enumerate(specs):
        state, _, flag = spec.partition("+")
        out.append(
            TrialView(
                tid(index),
                index,
                TrialState(state),
                retry_asked=flag in ("r", "rp"),
                include_pruned=flag == "rp",
            )
        )
    return out


def snap(
    trials: list[TrialView],
    *,
    exhausted: bool = False,
    lease_held: bool = True,
    stop_requested: bool = False,
) -> Snapshot:
    return Snapshot(
        trials=trials,
        source_exhausted=exhausted,
        lease_held=lease_held,
        stop_requested=stop_requested,
    )


@dataclass(frozen=True)
class Row:
    trials: tuple[str, ...]
    cap: int
    exhausted: bool = False
    lease_held: bool = True
    stop_requested: bool = False
    launch: tuple[int, ...] = ()
    ask: int = 0
    done: bool = False
    stop: str | None = None
    """A word the stop reason must contain; None when the controller must not stop."""


ROWS: dict[str, Row] = {
    # Filling slots.
    "fresh-sweep-fills-the-cap-by-asking": Row((), cap=4, ask=4),
    "fresh-sweep-cap-1-asks-1": Row((), cap=1, ask=1),
    "wave-2-running-cap-3-asks-1": Row(("running", "running", "succeeded"), cap=3, ask=1),
    "wave-submitted-counts-as-in-flight": Row(("submitted", "running"), cap=3, ask=1),
    "wave-cap-reached-does-nothing": Row(("running", "submitted", "running"), cap=3),
    "wave-over-the-cap-does-nothing": Row(("running",) * 5, cap=3),
    "ended-trials-free-their-slots": Row(
        ("succeeded", "failed", "cancelled", "lost", "submit_failed", "running"), cap=3, ask=2
    ),
    # Known trials before new ones.
    "pending-launched-before-asking-in-index-order": Row(
        ("succeeded", "pending", "running", "pending", "pending"), cap=3, launch=(1, 3)
    ),
    "pending-all-launched-then-ask-for-the-rest": Row(
        ("pending", "running", "pending"), cap=5, launch=(0, 2), ask=2
    ),
    "pending-launched-even-when-source-exhausted": Row(
        ("pending", "pending"), cap=5, exhausted=True, launch=(0, 1)
    ),
    # Resume: lost and never-accepted trials come back only when a retry was asked.
    "resume-relaunches-lost-and-submit-failed-with-retry-asked": Row(
        ("lost+r", "submit_failed+r", "lost", "submit_failed"),
        cap=10,
        exhausted=True,
        launch=(0, 1),
    ),
    # Early stopping: a pruned trial frees its slot and comes back only when asked by name.
    "pruned-frees-its-slot": Row(("pruned", "running"), cap=2, ask=1),
    "pruned-never-relaunched-by-a-plain-retry": Row(
        ("pruned+r", "failed+r"), cap=5, exhausted=True, launch=(1,)
    ),
    "pruned-relaunched-by-retry-include-pruned": Row(
        ("pruned+rp", "pruned"), cap=5, exhausted=True, launch=(0,)
    ),
    "resume-never-relaunches-running-or-succeeded": Row(
        ("running+r", "submitted+r", "succeeded+r", "lost+r"),
        cap=10,
        exhausted=True,
        launch=(3,),
    ),
    "resume-without-retry-asked-relaunches-nothing": Row(
        ("lost", "submit_failed", "succeeded"), cap=10, exhausted=True, done=True
    ),
    # A driver killed while submitting left attempts "being submitted" (read as submitted
    # until the backend answers): one the backend found never started reads as pending;
    # one it cannot tell about reads as lost, and only a retry by the user relaunches it.
    "being-submitted-holds-its-slot-and-is-not-relaunched": Row(
        ("submitted", "pending"), cap=1, exhausted=True
    ),
    "being-submitted-found-never-started-is-launched": Row(
        ("pending", "running"), cap=2, exhausted=True, launch=(0,)
    ),
    "lost-while-submitting-ends-the-sweep-without-relaunch": Row(
        ("lost", "succeeded"), cap=2, exhausted=True, done=True
    ),
    "lost-while-submitting-relaunched-by-a-retry": Row(
        ("lost+r", "succeeded"), cap=2, exhausted=True, launch=(0,)
    ),
    # Retry.
    "retry-relaunches-failed-and-cancelled-with-retry-asked": Row(
        ("failed+r", "succeeded", "cancelled+r", "failed"), cap=10, exhausted=True, launch=(0, 2)
    ),
    "retry-limited-by-the-cap": Row(
        ("failed+r", "cancelled+r", "failed+r", "running"), cap=3, exhausted=True, launch=(0, 1)
    ),
    "retry-and-pending-share-the-cap-in-index-order": Row(
        ("pending", "failed+r", "pending", "lost+r"), cap=3, launch=(0, 1, 2)
    ),
    "retry-waits-while-the-cap-is-full": Row(("running", "failed+r"), cap=1, exhausted=True),
    # Done.
    "done-when-all-ended-and-source-exhausted": Row(
        ("succeeded", "failed", "cancelled", "lost", "submit_failed"),
        cap=2,
        exhausted=True,
        done=True,
    ),
    "done-on-an-empty-exhausted-source": Row((), cap=2, exhausted=True, done=True),
    "not-done-while-source-has-more": Row(("succeeded", "succeeded"), cap=2, ask=2),
    "not-done-while-a-trial-runs": Row(("succeeded", "running"), cap=2, exhausted=True),
    "not-done-while-a-trial-is-submitted": Row(("submitted",), cap=2, exhausted=True),
    "not-done-while-a-retry-is-waiting": Row(
        ("succeeded", "failed+r"), cap=2, exhausted=True, launch=(1,)
    ),
    "not-done-while-a-pending-trial-is-waiting": Row(
        ("succeeded", "pending"), cap=2, exhausted=True, launch=(1,)
    ),
    # Stopping.
    "lease-lost-stops-and-launches-nothing": Row(
        ("pending", "failed+r", "running"), cap=10, lease_held=False, stop="lease"
    ),
    "lease-lost-on-a-finished-sweep-still-stops": Row(
        ("succeeded",), cap=10, exhausted=True, lease_held=False, stop="lease"
    ),
    "stop-requested-stops-and-launches-nothing": Row(
        ("pending", "failed+r", "running"), cap=10, stop_requested=True, stop="stop"
    ),
    "stop-requested-on-a-fresh-sweep-asks-nothing": Row(
        (), cap=10, stop_requested=True, stop="stop"
    ),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_decide(row: Row) -> None:
    snapshot = snap(
        views(*row.trials),
        exhausted=row.exhausted,
        lease_held=row.lease_held,
        stop_requested=row.stop_requested,
    )
    actions = decide(snapshot, Policy(max_parallel=row.cap))
    assert actions.launch == tuple(tid(i) for i in row.launch)
    assert actions.ask == row.ask
    assert actions.done is row.done
    assert actions.cancel == ()
    if row.stop is None:
        assert actions.stop is None
    else:
        assert actions.stop is not None
        assert row.stop in actions.stop


def test_decide_never_exceeds_the_cap() -> None:
    """Whatever the mix, in flight + launched + asked is at most the cap (when not over it)."""
    mixes = [
        ("pending",) * 7,
        ("running", "failed+r", "pending", "lost+r", "cancelled+r"),
        ("submitted", "submitted", "pending"),
        (),
    ]
    for specs in mixes:
        trials = views(*specs)
        for cap in range(1, 9):
            actions = decide(snap(trials), Policy(max_parallel=cap))
            in_flight = sum(t.state.in_flight for t in trials)
            assert in_flight + len(actions.launch) + actions.ask == max(cap, in_flight), (
                specs,
                cap,
            )


def test_decide_does_not_launch_a_trial_twice() -> None:
    actions = decide(snap(views("pending", "failed+r", "pending")), Policy(max_parallel=10))
    assert len(set(actions.launch)) == len(actions.launch) == 3


# ---------------------------------------------------------------------------------------
# Large sweeps


N = 10_000


def test_cap_of_1_with_10000_pending_launches_only_the_first() -> None:
    actions = decide(snap(views(*["pending"] * N)), Policy(max_parallel=1))
    assert actions == Actions(launch=(tid(0),))


def test_cap_of_1_with_10000_trials_and_one_running_waits() -> None:
    specs = ["succeeded"] * 5000 + ["running"] + ["pending"] * (N - 5001)
    actions = decide(snap(views(*specs)), Policy(max_parallel=1))
    assert actions == Actions()


def test_cap_of_1_with_10000_trials_launches_the_next_after_one_ends() -> None:
    specs = ["succeeded"] * 5001 + ["pending"] * (N - 5001)
    actions = decide(snap(views(*specs)), Policy(max_parallel=1))
    assert actions == Actions(launch=(tid(5001),))


def test_cap_of_1_with_10000_ended_trials_is_done() -> None:
    specs = ["succeeded", "failed", "lost", "cancelled"] * (N // 4)
    actions = decide(snap(views(*specs), exhausted=True), Policy(max_parallel=1))
    assert actions == Actions(done=True)


def test_10000_trials_with_100_running() -> None:
    """100 running, 4900 ended, 10 retries asked, the rest pending: cap 150 launches the 10
    retries, then 40 pending trials, in index order, and asks the source for nothing."""
    specs = ["running"] * 100 + ["succeeded"] * 4900 + ["failed+r"] * 10 + ["pending"] * (N - 5010)
    trials = views(*specs)
    assert len(trials) == N

    actions = decide(snap(trials), Policy(max_parallel=150))
    assert actions.launch == tuple(tid(i) for i in range(5000, 5050))
    assert actions.ask == 0
    assert not actions.done
    assert actions.stop is None

    assert decide(snap(trials), Policy(max_parallel=100)) == Actions()
    assert decide(snap(trials), Policy(max_parallel=50)) == Actions()


def test_10000_trials_with_100_running_and_nothing_waiting_asks_the_source() -> None:
    specs = ["succeeded"] * (N - 100) + ["running"] * 100
    actions = decide(snap(views(*specs)), Policy(max_parallel=128))
    assert actions == Actions(ask=28)
    exhausted = decide(snap(views(*specs), exhausted=True), Policy(max_parallel=128))
    assert exhausted == Actions()


# ---------------------------------------------------------------------------------------
# Backoff


def test_backoff_starts_low_and_grows_by_its_factor_up_to_high() -> None:
    backoff = Backoff(low=1.0, high=10.0, factor=2.0)
    assert backoff.current == 1.0
    pauses = [backoff.next(False) for _ in range(6)]
    assert pauses == pytest.approx([2.0, 4.0, 8.0, 10.0, 10.0, 10.0])


def test_backoff_resets_to_low_on_change() -> None:
    backoff = Backoff(low=0.5, high=8.0, factor=3.0)
    for _ in range(5):
        backoff.next(False)
    assert backoff.current == pytest.approx(8.0)
    assert backoff.next(True) == pytest.approx(0.5)
    assert backoff.next(True) == pytest.approx(0.5)
    assert backoff.next(False) == pytest.approx(1.5)


def test_backoff_defaults_stay_within_bounds() -> None:
    backoff = Backoff()
    pauses = [backoff.next(False) for _ in range(50)]
    assert all(backoff.low <= p <= backoff.high for p in pauses)
    assert pauses == sorted(pauses)
    assert pauses[-1] == pytest.approx(backoff.high)


# ---------------------------------------------------------------------------------------
# GridSource


def task_with(sweep_config: dict[str, list[Any]] | None, **parameters: Any) -> TaskSpec:
    fields: dict[str, Any] = {"name": "t", "run": "echo", "parameters": parameters}
    if sweep_config is not None:
        fields["sweeps"] = {"sweep_config": sweep_config}
    return TaskSpec.model_validate(fields)


GRID = {"lr": [0.1, 0.01, 0.001], "batch": [8, 16]}


def test_grid_yields_in_order() -> None:
    task = task_with(GRID, epochs=1)
    source = GridSource(task)
    assert not source.exhausted
    first = source.next(2, {})
    rest = source.next(100, {})
    everything = expand(task)
    assert [t.trial_id for t in first + rest] == [t.trial_id for t in everything]
    assert [t.index for t in first + rest] == list(range(6))
    assert [(t.params["lr"], t.params["batch"]) for t in first] == [(0.1, 8), (0.1, 16)]
    assert all(t.params["epochs"] == 1 for t in first + rest)


def test_grid_skips_known_ids() -> None:
    task = task_with(GRID)
    everything = expand(task)
    known = {t.trial_id: t for t in (everything[0], everything[1], everything[4])}
    source = GridSource(task)
    got = source.next(2, known)
    assert [t.trial_id for t in got] == [everything[2].trial_id, everything[3].trial_id]
    got = source.next(10, known)
    assert [t.trial_id for t in got] == [everything[5].trial_id]
    assert source.exhausted


def test_grid_with_every_point_known_gives_nothing_and_is_exhausted() -> None:
    task = task_with(GRID)
    known = {t.trial_id: t for t in expand(task)}
    source = GridSource(task)
    assert source.next(3, known) == []
    assert source.exhausted


def test_grid_exhausted_turns_true_after_the_last_point() -> None:
    source = GridSource(task_with(GRID))
    for _ in range(5):
        assert len(source.next(1, {})) == 1
        assert not source.exhausted
    assert len(source.next(1, {})) == 1
    assert source.exhausted
    assert source.next(5, {}) == []
    assert source.exhausted


def test_grid_next_0_gives_nothing_and_consumes_nothing() -> None:
    task = task_with(GRID)
    source = GridSource(task)
    assert source.next(0, {}) == []
    assert not source.exhausted
    assert source.next(1, {})[0].trial_id == expand(task)[0].trial_id


@pytest.mark.parametrize(
    "sweep_config, count",
    [
        pytest.param(GRID, 6, id="product"),
        pytest.param({"a": [1, 2, 3, 4], "b": ["x"], "c": [True, False]}, 8, id="three-keys"),
        pytest.param({"a": [1, 1, 2]}, 2, id="duplicate-value"),
        pytest.param({"a": [1, 1.0, True, "1"]}, 4, id="look-alike-values"),
        pytest.param(None, 1, id="no-sweep"),
    ],
)
def test_grid_expected_equals_the_count(
    sweep_config: dict[str, list[Any]] | None, count: int
) -> None:
    source = GridSource(task_with(sweep_config, base=1))
    got = source.next(1000, {})
    assert len(got) == count
    assert source.expected == count
    assert len({t.trial_id for t in got}) == count
    assert source.exhausted


# ---------------------------------------------------------------------------------------
# The budget: (trials, cap, exhausted, spent, committed) -> launch, ask, done, budget_reached.


@dataclass(frozen=True)
class BudgetRow:
    trials: tuple[str, ...]
    spent: float = 0.0
    committed: float = 0.0
    exhausted: bool = False
    cap: int = 100
    launch: tuple[int, ...] = ()
    ask: int = 0
    done: bool = False
    reached: bool = False


# 12 trials of 30 minutes at $0.096/h: $0.048 each, a $0.25 budget.
BUDGET_ROWS = {
    "fresh-sweep-asks-for-5-and-says-the-budget-binds": BudgetRow((), ask=5, reached=True),
    "5-running-launches-nothing-more-and-waits": BudgetRow(
        ("submitted",) * 5, committed=0.24, reached=True
    ),
    "5-ended-at-their-estimate-ends-the-sweep": BudgetRow(
        ("succeeded",) * 5, spent=0.24, done=True, reached=True
    ),
    "5-ended-cheaper-than-expected-makes-room-for-2": BudgetRow(
        ("succeeded",) * 5, spent=0.15, ask=2, reached=True
    ),
    "known-pending-trials-count-too": BudgetRow(
        ("succeeded", "pending", "pending"), spent=0.16, exhausted=True, launch=(1,), reached=True
    ),
    "budget-not-binding-when-everything-fits": BudgetRow(
        ("pending", "pending"), exhausted=True, launch=(0, 1)
    ),
    "budget-never-binds-once-nothing-is-left": BudgetRow(
        ("succeeded",) * 5, spent=0.24, exhausted=True, done=True
    ),
    "a-full-cap-is-not-a-reached-budget": BudgetRow(("running", "running"), cap=2),
}


@pytest.mark.parametrize("row", list(BUDGET_ROWS.values()), ids=list(BUDGET_ROWS))
def test_decide_with_a_budget(row: BudgetRow) -> None:
    snapshot = Snapshot(
        trials=views(*row.trials),
        source_exhausted=row.exhausted,
        spent_usd=row.spent,
        committed_usd=row.committed,
    )
    policy = Policy(max_parallel=row.cap, max_cost_usd=0.25, trial_cost_usd=0.048)
    actions = decide(snapshot, policy)
    assert actions.launch == tuple(tid(i) for i in row.launch)
    assert actions.ask == row.ask
    assert actions.done is row.done
    assert actions.budget_reached is row.reached
    assert actions.stop is None


def test_decide_without_a_budget_never_reports_one() -> None:
    actions = decide(
        Snapshot(trials=views("succeeded"), source_exhausted=False, spent_usd=99.0),
        Policy(max_parallel=4),
    )
    assert actions.ask == 4
    assert actions.budget_reached is False


@pytest.mark.parametrize(
    "all_launched, budget, stopping, needed",
    [
        (True, None, None, False),  # the trials report to the store by themselves
        (False, None, None, True),  # trials still to launch
        (True, 5.0, None, True),  # a budget to hold
        (True, None, "asha", True),  # a stopping rule to apply
        (False, 5.0, "asha", True),
    ],
)
def test_a_sweep_needs_a_driver_only_while_something_is_left_to_decide(
    all_launched: bool, budget: float | None, stopping: str | None, needed: bool
) -> None:
    assert left_to_decide(all_launched=all_launched, budget=budget, stopping=stopping) is needed
