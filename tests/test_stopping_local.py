"""Early stopping end to end on the local backend, through the real CLI: trials report one
history line per step for 9 steps; the best finishes and ranks first, the pruned trials'
processes are gone, and their states and reasons are recorded in the store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import run_cli

TRAIN = """\
import json, os, sys, time
params = json.loads(os.environ["SKYSWEEP_PARAMS"])
out = os.environ["SKYSWEEP_OUTPUT_DIR"]
final = float(params["quality"])
for step in range(1, 10):
    loss = final + (9 - step) * 0.1
    with open(os.path.join(out, "history.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, "eval/loss": round(loss, 4)}) + "\\n")
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.3)
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"eval/loss": final}, f)
"""

TASK = """\
name: prune
run: python train.py
parameters:
  quality: 0.5
sweeps:
  sweep_config:
    quality: [0.6, 0.1, 0.5, 0.4, 0.3, 0.2]
  early_terminate:
    type: {rule}
    min_steps: 1
    eta: 3
"""


def _sweep(tmp_path: Path, rule: str) -> tuple[dict, Path]:  # type: ignore[type-arg]
    (tmp_path / "train.py").write_text(TRAIN)
    task = tmp_path / "task.yaml"
    task.write_text(TASK.format(rule=rule))
    store = f"file://{tmp_path / 'store'}"
    done = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--store",
        store,
        "--max-parallel",
        "6",
        "--output",
        "json",
    )
    assert done.code == 0, done  # pruning is what the sweep asked for, not a failure
    result = json.loads(done.stdout)
    return result, tmp_path / "store" / result["sweep_id"]


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether the process group ``pid`` is gone, or goes within ``within`` seconds (its
    processes may still be handling the stop signal when `up` returns)."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def test_asha_prunes_losers_and_keeps_the_best(tmp_path: Path, isolated_home: Path) -> None:
    result, sweep_dir = _sweep(tmp_path, "asha")
    trials = {t["trial_id"]: t for t in result["trials"]}
    best = result["best"]
    assert best["params"]["quality"] == 0.1 and best["rank"] == 1
    assert best["status"] == "succeeded"
    pruned = [t for t in trials.values() if t["status"] == "pruned"]
    assert pruned, result
    assert result["counts"]["pruned"] == len(pruned)
    for trial in pruned:
        assert trial["rank"] is None
        assert trial["params"]["quality"] > 0.1
        assert "pruned by asha at step " in trial["reason"], trial
        assert "eval/loss" in trial["reason"] and "rung" in trial["reason"]
        record = json.loads(
            (sweep_dir / "records" / trial["trial_id"] / "attempt-1.json").read_text()
        )
        prune = record["pruned"]
        assert prune["rule"] == "asha" and prune["metric"] == "eval/loss"
        assert 1 <= prune["step"] < 9
        history = (sweep_dir / "trials" / trial["trial_id"] / "history.jsonl").read_text()
        lines = [json.loads(line) for line in history.splitlines()]
        assert {"step": prune["step"], "eval/loss": prune["value"]} in lines
        # Stopped, not run to its end, and its whole process group is gone.
        assert len(lines) < 9
        assert not (sweep_dir / "trials" / trial["trial_id"] / "metrics.json").exists()
        assert _gone(int(record["job"]["locator"]["pid"]))
    # Pruned trials come after every finished one.
    order = [t["status"] for t in result["trials"]]
    assert order.index("pruned") > max(i for i, s in enumerate(order) if s == "succeeded")

    # Another reader of the store sees the same states and reasons.
    again = run_cli(
        "results", result["sweep_id"], "--store", f"file://{tmp_path / 'store'}", "--format", "json"
    )
    assert again.code in (0, 1), again
    seen = {t["trial_id"]: (t["status"], t["reason"]) for t in json.loads(again.stdout)["trials"]}
    assert seen == {t: (trials[t]["status"], trials[t]["reason"]) for t in trials}
    saved = result["pruned"]
    steps = sum(9 - t["last_step"] for t in pruned)
    assert saved == {"trials": len(pruned), "steps_saved": steps, "steps_without_stopping": 54}
    markdown = run_cli(
        "results", result["sweep_id"], "--store", f"file://{tmp_path / 'store'}", "-f", "markdown"
    )
    assert f"{len(pruned)} trial(s) pruned early, saving {steps} of 54 trial-steps" in (
        markdown.stdout
    ), markdown
