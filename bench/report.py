"""Benchmark: printing the results of a 1,000- and a 10,000-trial sweep, side by side.

    python bench/report.py [--sizes 1000,10000] [--runs 3] [--no-cli]

Builds a synthetic ``Ranking`` with the real dataclasses (70 % succeeded with metrics, 20 %
failed with a reason, 10 % running with a job id and what the backend says; four parameters,
one a long model name) and times, in one run, every format printed to a sink through the path
the CLI takes (``print_ranking`` for ``results``, ``out_console().print(ranking_table(...,
jobs=True))`` for ``status``), piped (160 columns, no colour) and on an 80-column colour
terminal, beside the baseline: rich's ``Table`` of the same data, built as skysweep did before
(``baseline_table`` below). Then, unless ``--no-cli``, it writes a finished 10,000-trial sweep
into a file store in a temp folder (manifest, ``finished/<id>.json``,
``trials/<id>/metrics.json``) and times the real ``skysweep results`` end to end, with where
the time goes: interpreter and imports, reading the manifest, collecting, ranking, printing.

Targets (issue #7): a 10,000-row table <= 1 s; 10,000 trials as JSON <= 0.5 s; CSV and
Markdown well under 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.table import Table
from rich.text import Text

from skysweep.cli.common import Format, out_console
from skysweep.cli.follow import print_ranking
from skysweep.collect import Collector, TrialResult
from skysweep.ledger import Ledger, SweepHeader
from skysweep.rank import Ranking, rank
from skysweep.report import STATE_STYLES, ranking_table, varying_params
from skysweep.store import FileStore, join
from skysweep.task import parameter_text
from skysweep.trial import Trial

TARGET_TABLE_S = 1.0
TARGET_JSON_S = 0.5
MODELS = [f"meta-llama/Llama-3.1-{size}B-Instruct-finetune-{v}" for size in (8, 70) for v in "ab"]
REASONS = [
    "exited with code 1",
    "exited with code 137: killed (out of memory?) after 3 h 12 min on g5.xlarge in us-east-1",
    "no 'eval/loss' in metrics.json",
]


def trial_results(n: int, seed: int = 7) -> list[TrialResult]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        params: dict[str, str | float | int] = {
            "learning_rate": rnd.choice([1e-5, 3e-5, 1e-4, 3e-4]),
            "batch_size": rnd.choice([8, 16, 32, 64]),
            "model": rnd.choice(MODELS),
            "warmup_ratio": round(rnd.random() * 0.1, 4),
        }
        trial_id = hashlib.sha256(json.dumps(params | {"i": i}).encode()).hexdigest()[:12]
        kind = rnd.random()
        if kind < 0.7:
            metrics = {"eval/loss": rnd.uniform(0.2, 2.0), "eval/accuracy": rnd.random()}
            out.append(
                TrialResult(
                    trial_id, i, params, "succeeded", metrics, exit_code=0, job_id=str(i + 1)
                )
            )
        elif kind < 0.9:
            out.append(
                TrialResult(
                    trial_id,
                    i,
                    params,
                    "failed",
                    problem=rnd.choice(REASONS),
                    exit_code=1,
                    job_id=str(i + 1),
                    backend_status="FAILED",
                )
            )
        else:
            out.append(
                TrialResult(
                    trial_id,
                    i,
                    params,
                    "running",
                    job_id=str(i + 1),
                    backend_status="RUNNING on aws us-east-1 (spot, recovered once)",
                )
            )
    return out


def baseline_table(ranking: Ranking, *, title: str | None = None, jobs: bool = False) -> Table:
    """skysweep's table before issue #7: rich's ``Table``, one cell at a time."""
    params = varying_params(ranking)
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    table = Table(
        title=title or f"{ranking.sweep_id}: ranked by {ranking.metric} ({direction})",
        title_justify="left",
    )
    says = jobs and any(t.result.backend_status for t in ranking.trials)
    table.add_column("rank", justify="right")
    table.add_column("trial", min_width=12, no_wrap=True)
    table.add_column("status", min_width=9, no_wrap=True)
    if jobs:
        table.add_column("job", justify="right", no_wrap=True)
    if says:
        table.add_column("backend says", overflow="fold")
    table.add_column(ranking.metric, justify="right", min_width=min(len(ranking.metric), 10))
    for name in params:
        table.add_column(name, justify="right", min_width=min(len(name), 13))
    table.add_column("note", overflow="fold")
    for trial in ranking.trials:
        r = trial.result
        value = r.params
        table.add_row(
            str(trial.rank) if trial.rank else "-",
            r.trial_id,
            Text(r.state, style=STATE_STYLES.get(r.state, "")),
            *((r.job_id or "",) if jobs else ()),
            *((r.backend_status or "",) if says else ()),
            "" if trial.value is None else f"{trial.value:.6g}",
            *("" if value.get(n) is None else parameter_text(value[n]) for n in params),
            trial.reason or "",
            style="bold green" if trial.rank == 1 else None,
        )
    return table


@contextlib.contextmanager
def sink(terminal: bool) -> Iterator[io.StringIO]:
    """stdout swapped for a string buffer; ``terminal``: as an 80-column colour terminal
    (rich reads COLUMNS and FORCE_COLOR), else as a pipe (``out_console()`` then uses 160)."""
    out = io.StringIO()
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "TERM")}
    os.environ.pop("NO_COLOR", None)
    if terminal:
        os.environ.update(COLUMNS="80", FORCE_COLOR="1", TERM="xterm-256color")
    else:
        os.environ.pop("COLUMNS", None)
        os.environ.pop("FORCE_COLOR", None)
    try:
        with contextlib.redirect_stdout(out):
            yield out
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def timed(work: Callable[[], None], terminal: bool, runs: int) -> tuple[float, int]:
    """Best wall time of ``runs``, and how many characters were printed."""
    times, size = [], 0
    for _ in range(runs):
        with sink(terminal) as out:
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        size = len(out.getvalue())
    return min(times), size


def status_print(ranking: Ranking, make: Callable[..., object]) -> Callable[[], None]:
    # What `skysweep status` does with the table it is given.
    return lambda: out_console().print(make(ranking, title="bench (sky): trials", jobs=True))


def in_process(sizes: list[int], runs: int) -> None:
    print(f"{'case':<58} {'trials':>7} {'skysweep':>10} {'baseline':>10} {'ratio':>7}")
    for n in sizes:
        ranking = rank("bench", trial_results(n), "eval/loss", True)
        for terminal in (False, True):
            where = "80-col colour terminal" if terminal else "piped, 160 col"
            cases: list[tuple[str, Callable[[], None], Callable[[], None] | None]] = [
                (
                    f"results table, {where}",
                    lambda r=ranking: print_ranking(r, Format.table),
                    lambda r=ranking: out_console().print(baseline_table(r)),
                ),
                (
                    f"status table (job, backend says), {where}",
                    status_print(ranking, ranking_table),
                    status_print(ranking, baseline_table),
                ),
            ]
            if not terminal:
                cases += [
                    (fmt.value, lambda r=ranking, f=fmt: print_ranking(r, f), None)
                    for fmt in (Format.json, Format.csv, Format.markdown)
                ]
            for name, ours, baseline in cases:
                mine, size = timed(ours, terminal, runs)
                # The baseline takes seconds per run; once is enough to compare.
                base = timed(baseline, terminal, 1)[0] if baseline else None
                ratio = f"{base / mine:6.1f}x" if base else ""
                print(
                    f"{name:<58} {n:>7} {mine:>9.3f}s "
                    + (f"{base:>9.3f}s" if base else f"{'':>10}")
                    + f" {ratio:>7}   ({size / 1e3:,.0f} kB)"
                )
    print(
        f"targets: table <= {TARGET_TABLE_S} s, json <= {TARGET_JSON_S} s, "
        "csv and markdown well under 1 s (10,000 trials)"
    )


def write_sweep(root: Path, sweep_id: str, results: list[TrialResult]) -> str:
    """A sweep in a file store as the controller, the job wrapper and the jobs leave it."""
    store = FileStore(root)
    header = SweepHeader(
        sweep_id=sweep_id,
        name="bench",
        created_at="2026-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={"name": "bench", "run": "python train.py"},
        metric="eval/loss",
        lower_is_better=True,
        backend="local",
        store_url=store.url,
        expected_trials=len(results),
    )
    Ledger.create(store, header).add_trials([Trial(r.index, r.trial_id, r.params) for r in results])
    for r in results:
        if r.state == "running":
            continue
        base = root / sweep_id / "trials" / r.trial_id
        base.mkdir(parents=True)
        (base / "metrics.json").write_text(json.dumps(r.metrics or {}))
        record = {"exit_code": r.exit_code, "error": r.problem, "finished_at": "2026-01-01"}
        finished = root / sweep_id / "finished" / f"{r.trial_id}.json"
        finished.parent.mkdir(exist_ok=True)
        finished.write_text(json.dumps(record))
    return store.url


def wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=False, capture_output=True, env=env)
    return time.perf_counter() - start


def end_to_end(n: int, runs: int) -> None:
    print(f"\nskysweep results of a {n}-trial sweep in a file store, end to end (median of {runs})")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "store"
        url = write_sweep(root, "bench", trial_results(n))
        command = [sys.executable, "-m", "skysweep", "results", "bench", "--store", url]
        first = wall([*command, "--format", "json"], env)
        print(f"  first look (no collected.json yet: reads {n} records), json: {first:.2f} s")
        for fmt in ("table", "json"):
            times = [wall([*command, "--format", fmt], env) for _ in range(runs)]
            print(f"  results --format {fmt:<5} {statistics.median(times):.2f} s")
        floor = statistics.median(wall([sys.executable, "-c", "pass"], env) for _ in range(runs))
        imports = statistics.median(
            wall(
                [
                    sys.executable,
                    "-c",
                    "import skysweep.cli, skysweep.controller, skysweep.backends, "
                    "skysweep.report, rich.console",
                ],
                env,
            )
            for _ in range(runs)
        )
        store = FileStore(root)
        start = time.perf_counter()
        ledger = Ledger.open(store, "bench")
        read = time.perf_counter() - start
        start = time.perf_counter()
        collected = Collector(store, "bench").collect(ledger)
        collect = time.perf_counter() - start
        start = time.perf_counter()
        header = ledger.header
        ranking = rank("bench", collected, header.metric, header.lower_is_better)
        ranked = time.perf_counter() - start
        table = timed(lambda: print_ranking(ranking, Format.table), False, 1)[0]
        as_json = timed(lambda: print_ranking(ranking, Format.json), False, 1)[0]
        print(
            "  where it goes, in process:\n"
            f"    python start {floor:.2f} s, imports {imports - floor:.2f} s,\n"
            f"    read the ledger {read:.2f} s, collect {collect:.2f} s "
            f"(listing finished/ and the collected.json snapshot), rank {ranked:.2f} s,\n"
            f"    print table {table:.2f} s, print json {as_json:.2f} s"
        )
        listed = len(store.list(join("bench", "finished")))
        print(f"    ({listed} finished records listed on every look)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    in_process(sizes, args.runs)
    if not args.no_cli:
        end_to_end(max(sizes), args.runs)


if __name__ == "__main__":
    main()
