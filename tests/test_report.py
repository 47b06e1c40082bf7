"""Reports of a sweep: the terminal table (rich's ``Table`` for small sweeps, ``LargeTable`` for
large ones), JSON, CSV and Markdown; every format keeps every trial, and tables stay aligned
whatever the characters in them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from conftest import run_cli
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from skysweep.collect import TrialResult
from skysweep.ledger import Ledger, SweepHeader
from skysweep.rank import Ranking, rank
from skysweep.report import (
    LARGE_TABLE,
    LargeTable,
    ranking_json,
    ranking_table,
    render_ranking,
    state_counts,
)
from skysweep.store import FileStore, join
from skysweep.trial import Trial

# CJK, an emoji, fullwidth "full": display width and len() differ.
MODELS = [
    "日本語モデル-ベース",
    "🚀rocket-7b",
    "meta-llama/Llama-3.1-8B-Instruct",
    "\uff46\uff55\uff4c\uff4c",
]
REASON = "exited with code 1: CUDA out of memory"


def trial_id(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:12]


def results(n: int) -> list[TrialResult]:
    """Succeeded, failed (with a reason) and running trials; parameters in CJK, emoji and
    fullwidth characters, so that ``len`` and display width differ."""
    out = []
    for i in range(n):
        params: dict[str, str | float | int] = {
            "lr": [1e-4, 3e-4, 1e-3][i % 3],
            "batch": [16, 32][i % 2],
            "model": MODELS[i % len(MODELS)],
            "タグ": "✅" * (i % 3),
        }
        kind = i % 10
        if kind < 7:
            out.append(
                TrialResult(trial_id(i), i, params, "succeeded", {"eval/loss": (i * 37 % 101) / 7})
            )
        elif kind < 9:
            out.append(TrialResult(trial_id(i), i, params, "failed", problem=REASON, exit_code=1))
        else:
            out.append(TrialResult(trial_id(i), i, params, "running", job_id=str(i)))
    return out


def printed(renderable: object, width: int, **console: object) -> str:
    out = io.StringIO()
    Console(file=out, width=width, highlight=False, soft_wrap=True, **console).print(renderable)  # type: ignore[arg-type]
    return out.getvalue()


def table_lines(text: str) -> list[str]:
    """The lines of the boxed table: from its top border to its bottom border."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[top : bottom + 1]


def border_columns(line: str) -> list[int]:
    """Display columns at which the line has a vertical border."""
    columns, at = [], 0
    for char in line:
        if char in "┃│┏┓┳┡┩╇└┘┴":
            columns.append(at)
        at += cell_len(char)
    return columns


def check_table(text: str, ranking: Ranking, width: int) -> list[str]:
    lines = table_lines(text)
    widths = {cell_len(line) for line in lines}
    assert len(widths) == 1, f"lines of different display widths: {sorted(widths)}"
    assert widths.pop() <= width
    # Aligned: every border of every line at the same display column as in the top line.
    assert {tuple(border_columns(line)) for line in lines} == {tuple(border_columns(lines[0]))}
    for trial in ranking.trials:
        assert text.count(trial.result.trial_id) == 1, trial.result.trial_id
    first_row = lines[3]
    assert ranking.best is not None
    assert ranking.best.result.trial_id in first_row
    assert re.match(r"│\s*1\s*│", first_row)
    return lines


@pytest.mark.parametrize("jobs", [False, True])
def test_a_large_table_keeps_every_trial_once_aligned_best_first(jobs: bool) -> None:
    ranking = rank("big", results(1000), "eval/loss", True)
    table = ranking_table(ranking, jobs=jobs)
    assert isinstance(table, LargeTable)
    text = printed(table, 160)
    lines = check_table(text, ranking, 160)
    header = lines[1]
    for name in ["rank", "trial", "status", "eval/loss", "lr", "batch", "model", "タグ", "note"]:
        assert name in header
    assert ("job" in header) is jobs
    failed = [line for line in lines if " failed " in line]
    assert len(failed) == 200 and all(REASON in line for line in failed)
    assert text.count("日本語モデル-ベース") == 250 and text.count("🚀rocket-7b") == 250


def test_a_large_table_fits_80_columns_shortening_and_then_hiding_columns() -> None:
    ranking = rank("big", results(LARGE_TABLE + 1), "eval/loss", True)
    text = printed(ranking_table(ranking, jobs=True), 80)
    lines = check_table(text, ranking, 80)
    assert "note" in lines[1], "the reasons are the last column to go"
    assert "…" in text
    # Whatever did not fit is named under the table rather than silently dropped.
    assert all(name in lines[1] or name in text.splitlines()[-1] for name in ["lr", "model"])
    narrow = printed(ranking_table(ranking), 50)
    check_table(narrow, ranking, 50)
    assert narrow.splitlines()[-1].startswith("not shown in 50 columns: ")


def test_a_small_table_is_rich_table_with_the_same_guarantees() -> None:
    ranking = rank("small", results(40), "eval/loss", True)
    table = ranking_table(ranking, title="my title")
    assert isinstance(table, Table)
    text = printed(table, 160)
    assert text.startswith("my title")
    check_table(text, ranking, 160)
    assert text.count("exited with code 1") == 8


@pytest.mark.parametrize("n", [40, LARGE_TABLE + 1])
def test_on_a_terminal_the_status_is_coloured_and_the_best_row_bold_green(n: int) -> None:
    ranking = rank("s", results(n), "eval/loss", True)
    console = Console(width=160, force_terminal=True, color_system="truecolor")
    segments = list(console.render(ranking_table(ranking)))
    failed = [s for s in segments if s.text.strip() == "failed"]
    assert failed and all(s.style is not None and s.style.color is not None for s in failed)
    assert {s.style.color.name for s in failed if s.style and s.style.color} == {"red"}
    assert ranking.best is not None
    best = next(s for s in segments if s.text.strip() == ranking.best.result.trial_id)
    assert best.style is not None and best.style.bold and best.style.color is not None
    assert best.style.color.name == "green"
    others = [s for s in segments if s.text.strip() == ranking.trials[1].result.trial_id]
    assert not any(s.style and s.style.bold for s in others)


@pytest.mark.parametrize("n", [3, LARGE_TABLE + 1])
def test_markup_and_control_characters_in_values_are_shown_as_text(n: int) -> None:
    rows = [
        TrialResult(
            f"trial{i:07d}",
            i,
            {"tag": f"[bold]{i}[/bold]"},
            "failed",
            problem="line one\nline two\x1b[31m",
        )
        for i in range(n)
    ]
    ranking = rank("s", rows, "eval/loss", True)
    text = printed(ranking_table(ranking), 160, force_terminal=True, color_system="standard")
    assert "[bold]1[/bold]" in text
    assert "\x1b[31m" not in text.replace("\x1b[31mfailed", "")
    plain = printed(ranking_table(ranking), 160)
    assert "line one line two" in plain
    lines = table_lines(plain)
    assert len(lines) == n + 4, "one line per trial, whatever its reason holds"


def test_json_round_trips_every_trial() -> None:
    ranking = rank("s", results(500), "eval/loss", True)
    text = render_ranking(ranking, "json")
    assert isinstance(text, str)
    data = json.loads(text)
    assert data == ranking_json(ranking)
    assert [t["trial_id"] for t in data["trials"]] == [t.result.trial_id for t in ranking.trials]
    assert data["best"]["rank"] == 1 and data["counts"] == {
        "succeeded": 350,
        "failed": 100,
        "running": 50,
    }
    assert data["trials"][0]["params"]["model"] in MODELS


def test_csv_keeps_every_trial_and_markdown_the_top_ten() -> None:
    ranking = rank("s", results(500), "eval/loss", True)
    csv_text = render_ranking(ranking, "csv")
    assert isinstance(csv_text, str)
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0] == [
        "rank",
        "number",
        "trial_id",
        "status",
        "eval/loss",
        "lr",
        "batch",
        "model",
        "タグ",
        "reason",
        "finish_order",
        "best_so_far",
    ]
    assert [r[2] for r in rows[1:]] == [t.result.trial_id for t in ranking.trials]
    assert [r[1] for r in rows[1:]] == [str(t.result.index) for t in ranking.trials]
    markdown = render_ranking(ranking, "markdown")
    assert isinstance(markdown, str)
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 10
    assert [f"`{t.result.trial_id}`" in markdown for t in ranking.trials] == [True] * 10 + [
        False
    ] * 490
    assert "… and 490 more trials: the sweep's HTML report (`skysweep report`) has all" in markdown


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
        "rank,number,trial_id,status,eval/loss,reason,finish_order,best_so_far"
    ]
    markdown = render_ranking(ranking, "markdown", best_only=True)
    assert isinstance(markdown, str) and "No trial has a usable result yet" in markdown
    best = json.loads(str(render_ranking(ranking, "json", best_only=True)))
    assert best["trial_id"] is None and best["rank"] is None
    assert isinstance(render_ranking(ranking, "table", best_only=True), Table)


def write_sweep(root: Path, sweep_id: str, trials: list[TrialResult]) -> None:
    """A finished sweep in a file store, written the way the controller, the job wrapper
    and the jobs write it."""
    store = FileStore(root)
    header = SweepHeader(
        sweep_id=sweep_id,
        name="big",
        created_at="2026-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={"name": "big", "run": "true"},
        metric="eval/loss",
        lower_is_better=True,
        backend="local",
        store_url=store.url,
        expected_trials=len(trials),
    )
    Ledger.create(store, header).add_trials([Trial(t.index, t.trial_id, t.params) for t in trials])
    for t in trials:
        if t.state not in ("succeeded", "failed"):
            continue
        base = join(sweep_id, "trials", t.trial_id)
        store.put(join(base, "metrics.json"), json.dumps(t.metrics or {}).encode())
        record = {"exit_code": 0 if t.state == "succeeded" else 1, "error": t.problem}
        store.put(join(sweep_id, "finished", f"{t.trial_id}.json"), json.dumps(record).encode())


def test_cli_results_of_a_large_sweep_print_every_trial_in_every_format(
    tmp_path: Path, isolated_home: Path
) -> None:
    trials = results(LARGE_TABLE + 50)
    write_sweep(tmp_path / "store", "big", trials)
    store = f"file://{tmp_path / 'store'}"
    table = run_cli("results", "big", "--store", store)
    assert table.code == 1, table  # some trials failed
    ranking = rank("big", trials, "eval/loss", True)
    lines = table_lines(table.stdout)
    assert {cell_len(line) for line in lines} == {max(cell_len(line) for line in lines)}
    assert max(cell_len(line) for line in lines) <= 160
    for t in trials:
        assert table.stdout.count(t.trial_id) == (
            2 if ranking.best and t.trial_id == ranking.best.result.trial_id else 1
        )
    assert table.stdout.splitlines()[-1].startswith("best: trial ")
    data = json.loads(run_cli("results", "big", "--store", store, "--format", "json").stdout)
    assert len(data["trials"]) == len(trials)
    status = run_cli("status", "big", "--store", store)
    failed = sum(t.state == "failed" for t in trials)
    assert "job" in table_lines(status.stdout)[1] and status.stdout.count(REASON) == failed
    narrow = run_cli("status", "big", "--store", store, env={"COLUMNS": "80"})
    lines = table_lines(narrow.stdout)
    widths = {cell_len(line) for line in lines}
    assert len(widths) == 1 and widths.pop() <= 80 and "note" in lines[1]
    assert all(narrow.stdout.count(t.trial_id) == 1 for t in trials)
