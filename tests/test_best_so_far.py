"""The trial number and the best-so-far curve: the best metric value against the number of
finished trials, in finish order, in every format of ``results``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import run_cli
from test_report import printed, table_lines, write_sweep

from skysweep.collect import TrialResult
from skysweep.rank import rank
from skysweep.report import (
    LARGE_TABLE,
    LargeTable,
    best_so_far_line,
    checkpoints,
    ranking_table,
    render_ranking,
)

# (state, loss, finished_at): a trial per item, numbered in list order.
Row = tuple[str, float | None, str | None]
T = "2026-01-01T00:00:%02dZ"


def results_of(rows: list[Row]) -> list[TrialResult]:
    out = []
    for i, (state, loss, finished_at) in enumerate(rows):
        metrics = {"eval/loss": loss} if loss is not None else {}
        out.append(
            TrialResult(f"t{i}", i, {"x": i}, state, metrics, finished_at=finished_at)  # type: ignore[arg-type]
        )
    return out


@pytest.mark.parametrize(
    ("rows", "lower", "curve", "order"),
    [
        pytest.param([], True, [], {}, id="empty"),
        pytest.param(
            [("succeeded", 3.0, T % 1), ("succeeded", 1.0, T % 2), ("succeeded", 2.0, T % 3)],
            True,
            [3.0, 1.0, 1.0],
            {"t0": 1, "t1": 2, "t2": 3},
            id="lower-is-better",
        ),
        pytest.param(
            [("succeeded", 3.0, T % 1), ("succeeded", 1.0, T % 2), ("succeeded", 2.0, T % 3)],
            False,
            [3.0, 3.0, 3.0],
            {"t0": 1, "t1": 2, "t2": 3},
            id="higher-is-better",
        ),
        pytest.param(
            [("succeeded", 1.0, T % 9), ("succeeded", 5.0, T % 1), ("succeeded", 4.0, T % 5)],
            True,
            [5.0, 4.0, 1.0],
            {"t1": 1, "t2": 2, "t0": 3},
            id="finish-order-not-trial-order",
        ),
        pytest.param(
            [("succeeded", 2.0, T % 1), ("succeeded", 1.0, T % 1), ("succeeded", 3.0, T % 1)],
            True,
            [2.0, 1.0, 1.0],
            {"t0": 1, "t1": 2, "t2": 3},
            id="same-second-then-trial-number",
        ),
        pytest.param(
            [("failed", None, T % 1), ("succeeded", 4.0, T % 2), ("failed", 0.5, T % 3)],
            True,
            [None, 4.0, 4.0],
            {"t0": 1, "t1": 2, "t2": 3},
            id="failed-count-but-never-improve",
        ),
        pytest.param(
            [("succeeded", None, T % 1), ("succeeded", 2.0, T % 2)],
            True,
            [None, 2.0],
            {"t0": 1, "t1": 2},
            id="succeeded-without-the-metric",
        ),
        pytest.param(
            [("running", None, None), ("succeeded", 2.0, T % 4), ("pending", None, None)],
            True,
            [2.0],
            {"t1": 1},
            id="unfinished-are-not-on-the-curve",
        ),
        pytest.param(
            [("lost", None, None), ("succeeded", 2.0, T % 4), ("cancelled", None, T % 2)],
            True,
            [None, 2.0, 2.0],
            {"t2": 1, "t1": 2, "t0": 3},
            id="finished-without-a-time-count-last",
        ),
    ],
)
def test_the_curve(
    rows: list[Row], lower: bool, curve: list[float | None], order: dict[str, int]
) -> None:
    ranking = rank("s", results_of(rows), "eval/loss", lower)
    assert ranking.best_so_far.values == curve
    assert ranking.best_so_far.order == order
    for trial_id, place in order.items():
        assert ranking.best_so_far.of(trial_id) == curve[place - 1]
    assert ranking.best_so_far.of("missing") is None


@pytest.mark.parametrize(
    ("finished", "points"),
    [
        (0, []),
        (1, [1]),
        (9, [1, 2, 4, 8, 9]),
        (10, [1, 2, 4, 8, 10]),
        (11, [10, 11]),
        (40, [10, 20, 40]),
        (53, [10, 20, 40, 53]),
        (80, [10, 20, 40, 80]),
    ],
)
def test_checkpoints(finished: int, points: list[int]) -> None:
    assert checkpoints(finished) == points


def twenty() -> list[TrialResult]:
    """20 trials finishing in reverse order of their number, loss 20 - number: the best
    improves with every finish; trial 5 failed; trial 0 still runs."""
    rows: list[Row] = [
        ("running", None, None) if i == 0 else ("failed", None, T % (30 - i)) if i == 5 else
        ("succeeded", 20.0 - i, T % (30 - i))
        for i in range(20)
    ]  # fmt: skip
    return results_of(rows)


def test_best_so_far_in_every_format() -> None:
    ranking = rank("s", twenty(), "eval/loss", True)
    # finish order: 19 (loss 1), 18, ..., 6, 5 (failed), 4, ..., 1: the best is 1.0 throughout
    assert ranking.best_so_far.values == [1.0] * 19
    line = best_so_far_line(ranking)
    assert line == "best eval/loss so far: 1 after 10, 1 after 19 finished"

    data = json.loads(str(render_ranking(ranking, "json")))
    assert data["best_so_far"] == [1.0] * 19
    by_id = {t["trial_id"]: t for t in data["trials"]}
    assert (by_id["t19"]["number"], by_id["t19"]["finish_order"]) == (19, 1)
    assert (by_id["t5"]["finish_order"], by_id["t5"]["best_so_far"]) == (15, 1.0)
    assert (by_id["t0"]["finish_order"], by_id["t0"]["best_so_far"]) == (None, None)

    rows = list(csv.DictReader(io.StringIO(str(render_ranking(ranking, "csv")))))
    by_row = {r["trial_id"]: r for r in rows}
    assert (by_row["t1"]["number"], by_row["t1"]["finish_order"]) == ("1", "19")
    assert by_row["t1"]["best_so_far"] == "1" and by_row["t0"]["best_so_far"] == ""

    markdown = str(render_ranking(ranking, "markdown"))
    assert "Best eval/loss so far: 1 after 10, 1 after 19 finished." in markdown
    assert "| rank | # | trial | status | eval/loss | x | note |" in markdown
    assert "| 1 | 19 | `t19` | succeeded | 1 | 19 |  |" in markdown

    text = printed(render_ranking(ranking, "table"), 160)
    assert line in text
    header = table_lines(text)[1]
    assert header.split("┃")[1:3] == [" rank ", "  # "]


def test_best_so_far_improves_and_respects_higher_is_better() -> None:
    rows: list[Row] = [("succeeded", float(v), T % i) for i, v in enumerate([3, 1, 4, 1, 5, 9, 2])]
    lower = rank("s", results_of(rows), "eval/loss", True)
    higher = rank("s", results_of(rows), "eval/loss", False)
    assert lower.best_so_far.values == [3, 1, 1, 1, 1, 1, 1]
    assert higher.best_so_far.values == [3, 3, 4, 4, 5, 9, 9]
    assert best_so_far_line(higher) == (
        "best eval/loss so far: 3 after 1, 3 after 2, 4 after 4, 9 after 7 finished"
    )
    none_yet = rank("s", results_of([("failed", None, T % 1)]), "eval/loss", True)
    assert best_so_far_line(none_yet) == "best eval/loss so far: none after 1 finished"
    assert best_so_far_line(rank("s", [], "eval/loss", True)) is None


def test_best_only_keeps_the_whole_sweeps_place() -> None:
    ranking = rank("s", twenty(), "eval/loss", True)
    best = json.loads(str(render_ranking(ranking, "json", best_only=True)))
    assert (best["trial_id"], best["finish_order"], best["best_so_far"]) == ("t19", 1, 1.0)
    rows = list(csv.DictReader(io.StringIO(str(render_ranking(ranking, "csv", best_only=True)))))
    assert [(r["trial_id"], r["finish_order"]) for r in rows] == [("t19", "1")]


def test_a_large_table_has_the_number_and_the_curve() -> None:
    count = 201  # three-digit trial numbers, and more rows than a rich table is used for
    assert count > LARGE_TABLE
    many = [
        TrialResult(f"t{i:05d}", i, {"x": i}, "succeeded", {"eval/loss": 1000.0 - i})
        for i in range(count)
    ]
    ranking = rank("s", many, "eval/loss", True)
    table = ranking_table(ranking, curve=True)
    assert isinstance(table, LargeTable)
    text = printed(table, 160)
    lines = table_lines(text)
    assert lines[1].split("┃")[1:3] == [" rank ", "   # "]
    assert lines[3].split("│")[1:4] == ["    1 ", " 200 ", " t00200 "]
    assert text.splitlines()[len(text.splitlines()) - 1] == (
        "best eval/loss so far: 991 after 10, 981 after 20, 961 after 40, 921 after 80, "
        "841 after 160, 800 after 201 finished"
    )
    assert "best eval/loss so far" not in printed(ranking_table(ranking), 160)


def test_cli_results_and_status_show_the_number_and_the_curve(
    tmp_path: Path, isolated_home: Path
) -> None:
    trials = [
        TrialResult(f"trial{i:04d}", i, {"x": i}, "succeeded", {"eval/loss": 30.0 - i})
        for i in range(12)
    ]
    write_sweep(tmp_path / "store", "small", trials)
    store = f"file://{tmp_path / 'store'}"
    table = run_cli("results", "small", "--store", store)
    assert table.code == 0, table
    assert "best eval/loss so far: " in table.stdout and " after 12 finished" in table.stdout
    assert table_lines(table.stdout)[1].split("┃")[1:3] == [" rank ", "  # "]
    data = json.loads(run_cli("results", "small", "--store", store, "-f", "json").stdout)
    assert len(data["best_so_far"]) == 12 and data["best_so_far"][-1] == 19.0
    assert sorted(t["number"] for t in data["trials"]) == list(range(12))
    assert sorted(t["finish_order"] for t in data["trials"]) == list(range(1, 13))
    markdown = run_cli("results", "small", "--store", store, "-f", "markdown").stdout
    assert "Best eval/loss so far: " in markdown and "19 after 12 finished." in markdown
    csv_text = run_cli("results", "small", "--store", store, "-f", "csv").stdout
    csv_rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {r["best_so_far"] for r in csv_rows if r["finish_order"] == "12"} == {"19"}
    status = run_cli("status", "small", "--store", store)
    assert status.code == 0, status
    assert table_lines(status.stdout)[1].split("┃")[1:3] == [" rank ", "  # "]
