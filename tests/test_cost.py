"""Cost arithmetic and the budget, as tables. Pure: no I/O, no clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from skysweep.cost import (
    FREE,
    Price,
    TrialCost,
    budget_room,
    expected_minutes,
    hours_run,
    spent,
    spent_and_committed,
    sweep_cost,
    sweep_estimate,
    trial_estimate,
    usd,
)

M6I = Price(hourly_usd=0.096, choice="AWS m6i.large (us-east-1)")
SPOT = Price(hourly_usd=0.04, spot=True, choice="AWS m6i.large (us-east-1)")
TWO_NODES = Price(hourly_usd=0.5, nodes=2, choice="AWS x")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("price", "minutes", "expected"),
    [
        (M6I, 30, 0.048),
        (M6I, 60, 0.096),
        (SPOT, 30, 0.02),
        (TWO_NODES, 30, 0.5),
        (FREE, None, 0.0),
        (FREE, 30, 0.0),
        (M6I, None, None),
        (None, 30, None),
    ],
)
def test_trial_estimate(price: Price | None, minutes: float | None, expected: float | None) -> None:
    assert trial_estimate(price, minutes) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prices", "minutes", "expected"),
    [
        ([M6I] * 12, 30, 0.576),
        ([M6I, TWO_NODES], 60, 1.096),
        ([FREE] * 9, None, 0.0),
        ([M6I] * 3, None, None),
        ([M6I, None], 30, None),
        ([], 30, 0.0),
    ],
)
def test_sweep_estimate(
    prices: list[Price | None], minutes: float | None, expected: float | None
) -> None:
    assert sweep_estimate(prices, minutes) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("started", "finished", "hours"),
    [
        ("2026-01-01T11:00:00+00:00", "2026-01-01T11:30:00+00:00", 0.5),
        ("2026-01-01T11:00:00Z", None, 1.0),
        ("2026-01-01T11:00:00", "2026-01-01T11:06:00", 0.1),
        ("2026-01-01T11:30:00+00:00", "2026-01-01T11:00:00+00:00", 0.0),
        (None, "2026-01-01T11:30:00+00:00", None),
        ("not a time", None, None),
    ],
)
def test_hours_run(started: str | None, finished: str | None, hours: float | None) -> None:
    assert hours_run(started, finished, NOW) == pytest.approx(hours)


@pytest.mark.parametrize(
    ("price", "started", "finished", "expected"),
    [
        (M6I, "2026-01-01T11:00:00+00:00", "2026-01-01T11:30:00+00:00", 0.048),
        (TWO_NODES, "2026-01-01T11:00:00+00:00", None, 1.0),
        (FREE, None, None, 0.0),
        (M6I, None, None, None),
        (None, "2026-01-01T11:00:00+00:00", None, None),
    ],
)
def test_spent(
    price: Price | None, started: str | None, finished: str | None, expected: float | None
) -> None:
    assert spent(price, started, finished, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("flag", "requested", "expected"),
    [(30.0, 60, 30.0), (None, 60, 60), (None, None, None), (2.5, None, 2.5)],
)
def test_expected_minutes(
    flag: float | None, requested: int | None, expected: float | None
) -> None:
    assert expected_minutes(flag, requested) == expected


# (budget, spent, committed, one trial, wanted) -> how many may launch
BUDGET_ROWS = {
    "no-budget-launches-all": (None, 5.0, 5.0, 1.0, 7, 7),
    "issue-example-5-of-12-at-0.048-in-0.25": (0.25, 0.0, 0.0, 0.048, 12, 5),
    "exact-fit-counts-despite-float-rounding": (0.24, 0.0, 0.0, 0.048, 12, 5),
    "spent-and-committed-count": (0.25, 0.096, 0.096, 0.048, 12, 1),
    "the-6th-would-exceed": (0.25, 0.192, 0.048, 0.048, 1, 0),
    "over-budget-launches-nothing": (1.0, 1.2, 0.0, 0.1, 3, 0),
    "free-trials-always-fit": (1.0, 0.0, 0.0, 0.0, 4, 4),
    "no-estimate-launches-nothing": (1.0, 0.0, 0.0, None, 4, 0),
    "nothing-wanted": (1.0, 0.0, 0.0, 0.1, 0, 0),
    "cheaper-finish-frees-room": (0.25, 0.1, 0.048, 0.048, 3, 2),
}


@pytest.mark.parametrize("row", list(BUDGET_ROWS.values()), ids=list(BUDGET_ROWS))
def test_budget_room(row: tuple[float | None, float, float, float | None, int, int]) -> None:
    budget, spent_usd, committed, one, wanted, allowed = row
    assert budget_room(budget, spent_usd, committed, one, wanted) == allowed


def test_spent_and_committed() -> None:
    trials = [
        TrialCost(in_flight=False, launched=True, so_far=0.05, estimate=0.048),  # ended
        TrialCost(in_flight=False, launched=True, so_far=None, estimate=0.048),  # no times
        TrialCost(in_flight=False, launched=False, so_far=None, estimate=0.048),  # refused
        TrialCost(in_flight=True, launched=True, so_far=0.01, estimate=0.048),  # runs
        TrialCost(in_flight=True, launched=True, so_far=0.06, estimate=0.048),  # overran
    ]
    spent_usd, committed = spent_and_committed(trials)
    assert spent_usd == pytest.approx(0.05 + 0.048)
    assert committed == pytest.approx(0.048 + 0.06)


def test_sweep_cost_lines_say_estimate_free_and_budget() -> None:
    free = sweep_cost([(True, 0.0)] * 3, free=True)
    assert free.total_usd == 0.0 and "costs nothing" in free.lines()[0]
    priced = sweep_cost(
        [(True, 0.048)] * 5 + [(True, None)],
        free=False,
        max_cost_usd=0.25,
        used_usd=0.24,
        budget_reached=True,
        not_launched=7,
    )
    assert priced.total_usd == pytest.approx(0.24)
    assert priced.unknown == 1
    assert priced.lines() == [
        "cost so far: $0.24 (an estimate from catalog prices); 1 trial(s) of unknown cost",
        "budget reached: $0.24 of $0.25 spent or committed; 7 trial(s) not launched",
    ]
    assert priced.json()["budget_reached"] is True


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "unknown"), (0.0, "$0.00"), (0.576, "$0.576"), (0.24, "$0.24"), (12.345, "$12.35")],
)
def test_usd(value: float | None, text: str) -> None:
    assert usd(value) == text
