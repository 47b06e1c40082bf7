"""The HTML report of a Bayesian sweep with early stopping, opened in headless Chromium: every
trial is in the table and the plots, pruned trials are marked as such, and nothing errs.

A real sweep through `skysweep up --local`: TPE suggests the trials, asha prunes the losers
from their histories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from test_html_report import Opened, needs_chromium, open_report

TRIALS = 8

TASK = f"""\
name: searched-and-pruned
run: python3 job.py
sweeps:
  method: bayes
  max_trials: {TRIALS}
  max_parallel: 4
  seed: 5
  sweep_config:
    lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0}}
    layers: {{distribution: int_uniform, min: 1, max: 6}}
  early_terminate: {{type: asha, min_steps: 1, eta: 3}}
  sweep_metric: loss
"""
# The loss falls with each step towards a floor set by the parameters (best near lr 0.01,
# 3 layers); trials far from it are visibly losing from the first steps.
JOB = """\
import json, math, os, time
from pathlib import Path

out = Path(os.environ["SKYSWEEP_OUTPUT_DIR"])
lr, layers = float(os.environ["lr"]), int(os.environ["layers"])
floor = abs(math.log10(lr) + 2) + abs(layers - 3) * 0.2
for step in range(1, 10):
    loss = floor + 1.0 / step
    with (out / "history.jsonl").open("a") as history:
        history.write(json.dumps({"step": step, "loss": round(loss, 5)}) + "\\n")
    time.sleep(0.25)
(out / "metrics.json").write_text(json.dumps({"loss": loss}))
"""


class Sweep:
    def __init__(self, root: Path, result: dict[str, Any], report: Path) -> None:
        self.root, self.result, self.report = root, result, report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    root = tmp_path_factory.mktemp("html-search")
    (root / "task.yaml").write_text(TASK)
    (root / "job.py").write_text(JOB)
    env = {"HOME": str(root / "home")}
    store = f"file://{root / 'store'}"
    up = run_cli(
        "up", str(root / "task.yaml"), "--local", "--yes", "--store", store, "--output", "json",
        env=env, timeout=300,
    )  # fmt: skip
    assert up.code == 0, up
    result = json.loads(up.stdout)
    report = root / "report.html"
    made = run_cli(
        "report", result["sweep_id"], "--store", store, "--out", str(report), env=env, cwd=root
    )
    assert made.code == 0, made
    return Sweep(root, result, report)


def test_the_sweep_was_searched_and_pruned(sweep: Sweep) -> None:
    trials = sweep.result["trials"]
    assert len(trials) == TRIALS
    assert sorted(t["number"] for t in trials) == list(range(TRIALS))
    states = [t["status"] for t in trials]
    assert "pruned" in states and "succeeded" in states, states
    assert sweep.result["counts"]["pruned"] == states.count("pruned")


@needs_chromium
def test_pruned_trials_are_marked_in_the_table_and_the_plots(sweep: Sweep, browser: Any) -> None:
    report: Opened = open_report(browser, sweep.report, plots=4)
    opened, errors, requests = report.page, report.errors, report.requests
    by_id = {t["trial_id"]: t for t in sweep.result["trials"]}
    rows = opened.eval_on_selector_all(
        "#trials tbody tr",
        "rows => rows.map(r => [r.dataset.trial, r.querySelector('span.state').className])",
    )
    assert {trial for trial, _ in rows} == set(by_id)
    for trial, css in rows:
        assert css == f"state state-{by_id[trial]['status']}", trial
    pruned = [t for t in by_id.values() if t["status"] == "pruned"]
    marks = opened.eval_on_selector_all(
        "#trials .state-pruned", "els => els.map(e => getComputedStyle(e, '::before').content)"
    )
    assert marks == ['"◆ "'] * len(pruned)
    parallel = opened.evaluate("document.getElementById('parallel').data[0]")
    assert set(parallel["meta"]) == set(by_id)
    symbols = opened.evaluate(
        "Object.fromEntries(document.getElementById('against-0').data"
        ".map(t => [t.name, [t.marker.symbol, t.customdata.length]]))"
    )
    assert symbols["pruned"] == ["diamond", len(pruned)]
    # Learning curves: every trial reported steps, the pruned ones fewer than nine.
    curves = opened.evaluate("document.getElementById('curves').data.flatMap(t => t.text || [])")
    assert {text.removeprefix("trial ") for text in curves} >= set(by_id)
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:", "blob:"))] == []
