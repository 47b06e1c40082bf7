"""Benchmark: the HTML report of a 1,000-trial sweep: build time and file size.

    python bench/html_report.py [--trials 1000] [--points 20] [--runs 3]

Makes a synthetic sweep with the real dataclasses (bench/report.py's mix: 70 % succeeded, 20 %
failed, 10 % running; four parameters, one a long model name; each finished trial with a
``history.jsonl`` of ``--points`` points) and times, in one run:

- ``build_html`` in process, with where the time goes (figures, importance, page), beside the
  baseline: the same figures built the usual way, ``plotly.graph_objects.Figure(...)`` and
  ``to_json()`` for each (what ``fig.write_html`` does before it writes);
- ``skysweep report`` end to end on a file store (interpreter, imports, reading the ledger and
  the 1,000 histories, ranking, writing), beside ``skysweep results --format json`` of the same
  sweep (the floor any reader pays);
- the file's size, and how much of it is Plotly's JS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import trial_results, write_sweep  # bench/report.py

from skysweep import html_report
from skysweep.ledger import SweepHeader
from skysweep.rank import rank
from skysweep.report import varying_params


def median_time(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def histories_for(results: list, points: int) -> dict[str, list[dict[str, float]]]:
    rng = random.Random(3)
    found = {}
    for r in results:
        if r.state == "running":
            continue
        start = rng.uniform(0.8, 2.0)
        found[r.trial_id] = [
            {"step": 100 * (i + 1), "eval/loss": start / (1 + i) + rng.uniform(0, 0.05)}
            for i in range(points)
        ]
    return found


def wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, check=False, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args} failed: {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n, runs = args.trials, args.runs

    results = trial_results(n)
    ranking = rank("bench", results, "eval/loss", True)
    header = SweepHeader(
        sweep_id="bench",
        name="bench",
        created_at="2026-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={},
        metric="eval/loss",
        lower_is_better=True,
        backend="sky",
        store_url="file:///bench",
    )
    histories = histories_for(results, args.points)
    html_report._plotly_js()  # the first read of the 4.8 MB file is the disk's, not ours

    print(
        f"HTML report of a {n}-trial sweep ({args.points} history points a trial), median of {runs}"
    )
    page = html_report.build_html(ranking, header, histories=histories)
    build = median_time(lambda: html_report.build_html(ranking, header, histories=histories), runs)
    params = varying_params(ranking)
    axes = [
        html_report.infer_axis(p, [t.result.params.get(p) for t in ranking.trials]) for p in params
    ]
    figures = [
        html_report._parallel(ranking, axes),
        *(html_report._against(ranking, a, i) for i, a in enumerate(axes)),
        html_report._learning_curves(ranking, histories),
        html_report._best_so_far(ranking),
    ]
    figure_time = median_time(
        lambda: [
            html_report._parallel(ranking, axes),
            *(html_report._against(ranking, a, i) for i, a in enumerate(axes)),
            html_report._learning_curves(ranking, histories),
            html_report._best_so_far(ranking),
        ],
        runs,
    )
    importance = median_time(lambda: html_report._importance(ranking, axes), runs)
    as_json = median_time(lambda: html_report._script_json({"figures": figures}), runs)
    print(f"  build_html:                 {build:.3f} s")
    print(f"    figures as plain JSON:    {figure_time:.3f} s (+ {as_json:.3f} s to serialize)")
    print(f"    importance (PED-ANOVA):   {importance:.3f} s")

    import plotly.graph_objects as go

    def baseline() -> None:
        for figure in figures:
            if figure is not None:
                go.Figure(data=figure["data"], layout=figure["layout"]).to_json()

    base = median_time(baseline, runs)
    print(
        f"  baseline, the same figures through plotly.graph_objects + to_json: {base:.3f} s "
        f"(plain JSON is {base / (figure_time + as_json):.1f}x faster)"
    )
    js = len(html_report._plotly_js().encode())
    size = len(page.encode())
    print(
        f"  file size: {size / 1e6:.2f} MB, of which Plotly's JS {js / 1e6:.2f} MB, "
        f"the rest (table, data) {(size - js) / 1e6:.2f} MB"
    )

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "store"
        url = write_sweep(root, "bench", results)
        for trial_id, points in histories.items():
            lines = "".join(json.dumps(p) + "\n" for p in points)
            (root / "bench" / "trials" / trial_id / "history.jsonl").write_text(lines)
        command = [sys.executable, "-m", "skysweep"]
        wall([*command, "results", "bench", "--store", url, "--format", "json"], env)  # warm
        out = Path(folder) / "report.html"
        report = statistics.median(
            wall([*command, "report", "bench", "--store", url, "--out", str(out)], env)
            for _ in range(runs)
        )
        reader = statistics.median(
            wall([*command, "results", "bench", "--store", url, "--format", "json"], env)
            for _ in range(runs)
        )
        print(
            f"  skysweep report, end to end: {report:.2f} s; "
            f"baseline skysweep results --format json: {reader:.2f} s "
            f"(report/results = {report / reader:.1f}x); file {out.stat().st_size / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
