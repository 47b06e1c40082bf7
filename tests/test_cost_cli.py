"""Cost and budget through the real CLI on the local backend: free, and a budget that cannot be
estimated is refused before anything launches."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

TASK = """\
name: costly
resources: {cpus: 1}
run: |
  printf '{"eval/loss": %s}' "$x" > "$SKYSWEEP_OUTPUT_DIR/metrics.json"
sweeps:
  sweep_config: {x: [1, 2, 3]}
"""


def write_task(folder: Path, extra: str = "") -> Path:
    path = folder / "task.yaml"
    path.write_text(TASK + extra)
    return path


def test_budget_without_expected_minutes_is_refused_before_launch(
    tmp_path: Path, isolated_home: Path
) -> None:
    task = write_task(tmp_path, "  budget: {max_cost_usd: 0.25}\n")
    store = f"file://{tmp_path / 'store'}"
    done = run_cli("up", str(task), "--local", "--yes", "--store", store)
    assert done.code == 2, done.stderr
    assert "budget of $0.25" in done.stderr
    assert "--expected-minutes" in done.stderr and "minutes_requested" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
    flag = run_cli("up", str(write_task(tmp_path)), "--local", "--dry-run", "--max-cost", "1")
    assert flag.code == 2 and "--max-cost" in flag.stderr


def test_local_sweep_costs_nothing_and_says_so(tmp_path: Path, isolated_home: Path) -> None:
    task = write_task(tmp_path, "  budget: {max_cost_usd: 0.25}\nminutes_requested: 30\n")
    store = f"file://{tmp_path / 'store'}"
    plan = run_cli("up", str(task), "--local", "--dry-run", "--output", "json", "--store", store)
    assert plan.code == 0, plan.stderr
    figures = json.loads(plan.stdout)
    assert figures["estimated_cost_usd"] == 0.0
    assert figures["estimated_cost_per_trial_usd"] == 0.0
    assert figures["expected_minutes"] == 30
    assert figures["max_cost_usd"] == 0.25
    assert "costs nothing" in figures["cost_note"]
    assert "costs nothing" in plan.stderr

    up = run_cli("up", str(task), "--local", "--yes", "--store", store, "--sweep-id", "c1")
    assert up.code == 0, up.stderr
    results = run_cli("results", "c1", "--store", store, "--format", "json")
    data = json.loads(results.stdout)
    assert [t["cost_usd"] for t in data["trials"]] == [0.0, 0.0, 0.0]
    assert data["cost"]["total_usd"] == 0.0
    assert data["cost"]["max_cost_usd"] == 0.25
    assert data["cost"]["budget_reached"] is False
    status = run_cli("status", "c1", "--store", store)
    assert "cost: $0.00" in status.stdout and "costs nothing" in status.stdout
    # The CI summary says it too, with the dollar escaped from GitHub's math.
    summary = run_cli("results", "c1", "--store", store, "--format", "markdown")
    assert "\nCost: \\$0.00 (the local backend" in summary.stdout, summary.stdout
    header = json.loads((tmp_path / "store" / "c1" / "sweep.json").read_text())
    assert header["max_cost_usd"] == 0.25 and header["expected_minutes"] == 30
