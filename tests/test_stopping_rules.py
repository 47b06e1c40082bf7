"""The stopping rules (skysweep.stopping): Optuna's pruners fed the sweep's histories, and
the reasons they give, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from skysweep.stopping import History, Judge
from skysweep.task import EarlyTerminate
from skysweep.trial import TrialState

R = TrialState.running
OK = TrialState.succeeded
PRUNED = TrialState.pruned


def curve(final: float, upto: int, *, slope: float = 0.1) -> dict[int, float]:
    """A loss falling toward ``final`` at step 9, reported for steps 1..upto."""
    return {s: round(final + (9 - s) * slope, 6) for s in range(1, upto + 1)}


def histories(rows: list[tuple[TrialState, dict[int, float]]]) -> list[History]:
    return [History(f"t{n}", n, state, values) for n, (state, values) in enumerate(rows)]


def judge(kind: str, lower: bool = True, **rule: Any) -> Judge:
    return Judge(EarlyTerminate(type=kind, **rule), "eval/loss", lower)


FIVE_AT_STEP_3 = [(R, curve(0.1 * n, 3)) for n in range(5)]


@pytest.mark.parametrize(
    ("judge_", "rows", "pruned"),
    [
        pytest.param(judge("median"), FIVE_AT_STEP_3, {"t3": 1, "t4": 1}, id="median-worst-two"),
        pytest.param(
            judge("median", min_steps=3), FIVE_AT_STEP_3, {"t3": 3, "t4": 3}, id="median-min-steps"
        ),
        pytest.param(judge("median"), FIVE_AT_STEP_3[:3], {}, id="median-too-few-others"),
        pytest.param(
            judge("median", lower=False),
            FIVE_AT_STEP_3,
            {"t0": 1, "t1": 1},
            id="median-higher-is-better",
        ),
        pytest.param(
            judge("median"),
            [(OK, curve(0.0, 9)), (OK, curve(0.1, 9)), (OK, curve(0.2, 9)), (R, curve(0.5, 2))],
            {"t3": 1},
            id="median-against-finished",
        ),
        pytest.param(
            judge("median"),
            [(OK, curve(0.5, 9)), (OK, curve(0.6, 9)), (OK, curve(0.7, 9)), (R, curve(0.0, 4))],
            {},
            id="median-keeps-a-better-trial",
        ),
        pytest.param(
            judge("asha"), FIVE_AT_STEP_3, {"t1": 1, "t2": 1, "t3": 1, "t4": 1}, id="asha-eta3"
        ),
        pytest.param(judge("asha", eta=2), FIVE_AT_STEP_3, {"t2": 1, "t3": 1, "t4": 1}, id="eta2"),
        pytest.param(
            judge("asha", min_steps=2, eta=3),
            [(R, curve(0.1 * n, 1)) for n in range(5)],
            {},
            id="asha-before-first-rung",
        ),
        pytest.param(
            judge("asha"),
            [(OK, curve(0.0, 9))]
            + [(PRUNED, curve(0.1 * n, 1)) for n in range(1, 5)]
            + [(R, curve(0.05, 3))],
            {"t5": 3},
            id="asha-second-best-goes-past-rung-0-not-rung-1",
        ),
        pytest.param(
            judge("asha"),
            [(OK, curve(0.0, 9)), (OK, curve(0.1, 9)), (OK, curve(0.2, 9)), (R, curve(0.5, 9))],
            {"t3": 1},
            id="asha-late-loser-at-first-rung",
        ),
        pytest.param(judge("hyperband"), FIVE_AT_STEP_3, {}, id="hyperband-auto-no-finished-trial"),
        pytest.param(
            judge("hyperband", max_steps=9),
            FIVE_AT_STEP_3,
            {"t1": 1, "t2": 1},
            id="hyperband-max-steps",
        ),
    ],
)
def test_rules(judge_: Judge, rows: Any, pruned: dict[str, int]) -> None:
    decisions = judge_.decide(histories(rows))
    assert {d.trial_id: d.step for d in decisions} == pruned
    for decision in decisions:
        assert decision.rule == judge_.rule.type
        assert decision.reason.startswith(f"step {decision.step}: eval/loss ")
        row = int(decision.trial_id[1:])
        assert decision.value == rows[row][1][decision.step]


def test_only_new_steps_are_judged() -> None:
    rows = histories(FIVE_AT_STEP_3)
    everything = judge("median").decide(rows)
    assert [d.trial_id for d in everything] == ["t3", "t4"]
    # Steps 1 and 2 were judged on an earlier look (and kept them): judged again at 3 only.
    later = judge("median").decide(rows, {"t3": 2, "t4": 3})
    assert [(d.trial_id, d.step) for d in later] == [("t3", 3)]


def test_finished_and_pruned_trials_are_never_judged() -> None:
    # The finished and the pruned trial are the worst, yet only a running one is stopped.
    rows = histories([(OK, curve(0.9, 9)), (PRUNED, curve(0.8, 2)), *FIVE_AT_STEP_3[:3]])
    assert {d.trial_id for d in judge("median").decide(rows)} == {"t4"}


@pytest.mark.parametrize(
    ("kind", "wanted"),
    [
        ("median", "step 1: eval/loss 1.1 is worse than the median 0.95 of 4 other trials"),
        (
            "asha",
            "step 1: eval/loss 1.1 is not among the best 1 of 5 trials at rung 0 (step 1); "
            "it needed <= 0.8",
        ),
    ],
)
def test_reasons_give_the_numbers(kind: str, wanted: str) -> None:
    decisions = {d.trial_id: d for d in judge(kind).decide(histories(FIVE_AT_STEP_3))}
    assert decisions["t3"].reason.startswith(wanted), decisions["t3"].reason
