"""Ranking and display with pruned trials: finished trials first, pruned ones after them with
their last value and step, the trial-steps saved, and a running trial's latest step."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli

from skysweep.collect import TrialResult
from skysweep.rank import rank
from skysweep.report import pruning_line, ranking_json, ranking_markdown
from skysweep.trial import TrialState


def result(
    index: int, state: str, value: float | None = None, step: int | None = None
) -> TrialResult:
    ok = state == "succeeded"
    return TrialResult(
        f"t{index}",
        index,
        {"lr": index},
        TrialState(state),
        metrics={"loss": value} if ok else None,
        problem=None if ok else f"pruned by asha at step {step}: ...",
        last_step=None if ok else step,
        last_value=None if ok else value,
    )


@pytest.mark.parametrize(
    ("lower", "results", "order"),
    [
        pytest.param(
            True,
            [
                result(0, "pruned", 0.01, 3),
                result(1, "succeeded", 0.5),
                result(2, "succeeded", 0.4),
            ],
            ["t2", "t1", "t0"],
            id="a-pruned-trial-never-above-a-finished-one",
        ),
        pytest.param(
            True,
            [
                result(0, "pruned", 0.9, 1),
                result(1, "pruned", 0.7, 3),
                result(2, "pruned", 0.6, 1),
                result(3, "failed"),
                result(4, "succeeded", 0.5),
            ],
            ["t4", "t1", "t2", "t0", "t3"],
            id="furthest-first-then-best-value-then-the-rest",
        ),
        pytest.param(
            False,
            [result(0, "pruned", 0.2, 1), result(1, "pruned", 0.3, 1), result(2, "succeeded", 0.1)],
            ["t2", "t1", "t0"],
            id="higher-is-better",
        ),
    ],
)
def test_pruned_rank_after_finished(
    lower: bool, results: list[TrialResult], order: list[str]
) -> None:
    ranking = rank("s", results, "loss", lower)
    assert [t.result.trial_id for t in ranking.trials] == order
    for trial in ranking.trials:
        if trial.result.state is TrialState.pruned:
            assert trial.rank is None
            assert (trial.value, trial.step) == (trial.result.last_value, trial.result.last_step)


def test_steps_saved_and_summary() -> None:
    results = [
        result(0, "succeeded", 0.1),
        result(1, "pruned", 1.2, 1),
        result(2, "pruned", 0.8, 3),
    ]
    ranking = rank("s", results, "loss", True, full_steps=9)
    assert ranking.steps_saved() == (8 + 6, 27)
    assert pruning_line(ranking) == "2 trial(s) pruned early, saving 14 of 27 trial-steps (52%)"
    data = ranking_json(ranking)
    assert data["pruned"] == {"trials": 2, "steps_saved": 14, "steps_without_stopping": 27}
    assert [t["last_step"] for t in data["trials"]] == [None, 3, 1]
    markdown = ranking_markdown(ranking)
    assert "2 trial(s) pruned early, saving 14 of 27 trial-steps (52%)." in markdown
    assert "| 0.8 @3 |" in markdown
    # Pruning is what the sweep asked for: not a failure.
    assert ranking.all_succeeded
    assert not rank("s", [*results, result(3, "failed")], "loss", True).all_succeeded
    unknown = rank("s", results, "loss", True)
    assert unknown.steps_saved() is None and pruning_line(unknown) == "2 trial(s) pruned early"


SLOW = """\
import json, os, time
out = os.environ["SKYSWEEP_OUTPUT_DIR"]
with open(os.path.join(out, "history.jsonl"), "a") as f:
    f.write(json.dumps({"step": 1, "eval/loss": 0.9}) + "\\n")
    f.write(json.dumps({"step": 2, "eval/loss": 0.75}) + "\\n")
    f.write('{"step": 3, "eval/lo')
time.sleep(60)
"""


def test_status_shows_a_running_trials_latest_step(tmp_path: Path, isolated_home: Path) -> None:
    (tmp_path / "train.py").write_text(SLOW)
    task = tmp_path / "task.yaml"
    task.write_text("name: slow\nrun: python train.py\nsweeps:\n  sweep_config:\n    n: [1]\n")
    store = f"file://{tmp_path / 'store'}"
    up = run_cli(
        "up", str(task), "--local", "--yes", "--detach", "--output", "json", "--store", store
    )
    assert up.code == 0, up
    sweep_id = json.loads(up.stdout)["sweep_id"]
    try:
        deadline = time.monotonic() + 30
        while True:
            status = run_cli("status", sweep_id, "--store", store, "--output", "json")
            progress = json.loads(status.stdout).get("progress", {})
            if progress or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert list(progress.values()) == [{"step": 2, "value": 0.75}]
        table = run_cli("status", sweep_id, "--store", store)
        assert "step 2: eval/loss 0.75" in table.stdout, table
    finally:
        run_cli("down", sweep_id, "--store", store)
