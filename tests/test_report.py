"""Reports of a sweep that has no best trial yet keep the format that was asked for."""

from __future__ import annotations

import json

from rich.table import Table

from skysweep.collect import TrialResult
from skysweep.rank import rank
from skysweep.report import render_ranking, state_counts


def test_best_only_without_a_best_trial_keeps_the_format() -> None:
    results = [
        TrialResult("a", 0, {"lr": 0.1}, "running"),
        TrialResult("b", 1, {"lr": 0.2}, "failed", problem="exited with code 1"),
    ]
    ranking = rank("s", results, "eval/loss", True)
    assert ranking.best is None
    assert state_counts(ranking) == "1 failed, 1 running"
    csv_text = render_ranking(ranking, "csv", best_only=True)
    assert isinstance(csv_text, str) and csv_text.splitlines() == [
        "rank,trial_id,status,eval/loss,reason"
    ]
    markdown = render_ranking(ranking, "markdown", best_only=True)
    assert isinstance(markdown, str) and "No trial has a usable result yet" in markdown
    best = json.loads(str(render_ranking(ranking, "json", best_only=True)))
    assert best["trial_id"] is None and best["rank"] is None
    assert isinstance(render_ranking(ranking, "table", best_only=True), Table)
