"""Early stopping survives a killed controller (local backend, real CLI): `up` is killed with
SIGKILL once it has pruned a trial, its trials keep running in their own sessions, and
`up --sweep-id` resumes the sweep. The decisions already made stand: a pruned trial stays
pruned with its reason and is never launched again, no trial runs twice, and the best trial
still finishes first. Only `retry --include-pruned` relaunches pruned trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import run_cli
from test_stopping_local import TRAIN

# Three at a time: the first controller prunes some of the first three and launches more;
# the resumed one must launch the rest and leave what was decided alone.
TASK = """\
name: prune-resume
run: python train.py 0.7  # seconds a step: time to kill it mid-way
parameters:
  quality: 0.5
sweeps:
  max_parallel: 3
  sweep_config:
    quality: [0.6, 0.1, 0.5, 0.4, 0.3, 0.2]
  early_terminate:
    type: asha
    min_steps: 1
    eta: 3
"""


def _attempts(sweep_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """trial id → attempt number → its record, as the store holds them."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted((sweep_dir / "records").glob("*/attempt-*.json")):
        number = int(path.stem.removeprefix("attempt-"))
        out.setdefault(path.parent.name, {})[number] = json.loads(path.read_text())
    return out


def _pruned(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        trial_id: attempts[1]["pruned"]
        for trial_id, attempts in _attempts(sweep_dir).items()
        if 1 in attempts and attempts[1].get("pruned")
    }


def _steps(sweep_dir: Path, trial_id: str) -> list[int]:
    history = sweep_dir / "trials" / trial_id / "history.jsonl"
    if not history.exists():
        return []
    return [json.loads(line)["step"] for line in history.read_text().splitlines() if line]


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_resumed_sweep_keeps_its_pruning_decisions(tmp_path: Path, isolated_home: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    store_dir = tmp_path / "store"
    store = f"file://{store_dir}"
    log = (tmp_path / "up-1.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes", "--store", store],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        sweep_dir: Path | None = None
        while time.monotonic() < deadline and first.poll() is None:
            found = [p for p in store_dir.glob("*") if p.is_dir()] if store_dir.exists() else []
            if found and _pruned(found[0]):
                sweep_dir = found[0]
                break
            time.sleep(0.05)
        assert sweep_dir is not None, (tmp_path / "up-1.log").read_text()
        # Its own pid only: the trials run in sessions of their own and keep going.
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    sweep_id = sweep_dir.name

    # What the killed controller had decided and launched, read after it can write no more.
    decided = _pruned(sweep_dir)
    launched = {t: a[1]["job"]["locator"]["pid"] for t, a in _attempts(sweep_dir).items()}
    assert decided
    assert len(launched) < 6 or any(
        not (sweep_dir / "finished" / f"{t}.json").exists() for t in launched
    ), "the sweep ended before the kill: nothing left to resume"

    resumed = run_cli(
        "up",
        str(task),
        "--sweep-id",
        sweep_id,
        "--store",
        store,
        "--local",
        "--yes",
        "--output",
        "json",
        timeout=180,
    )
    assert resumed.code == 0, resumed
    assert "resumed:" in resumed.stderr, resumed
    result = json.loads(resumed.stdout)
    assert result["sweep_id"] == sweep_id
    trials = {t["trial_id"]: t for t in result["trials"]}
    assert len(trials) == 6 and all(t["status"] in ("succeeded", "pruned") for t in trials.values())

    # The best trial survived both controllers and ranks first.
    best = result["best"]
    assert best["params"]["quality"] == 0.1 and best["rank"] == 1, result
    assert best["status"] == "succeeded"
    assert result["trials"][0]["trial_id"] == best["trial_id"]

    attempts = _attempts(sweep_dir)
    assert set(attempts) == set(trials)
    for trial_id, trial in trials.items():
        # Nobody launched a trial a second time: one attempt each, the same process as
        # before the kill for those launched then, and one run's history (no step twice).
        assert set(attempts[trial_id]) == {1}, (trial_id, attempts[trial_id])
        if trial_id in launched:
            assert attempts[trial_id][1]["job"]["locator"]["pid"] == launched[trial_id]
        steps = _steps(sweep_dir, trial_id)
        assert steps == list(range(1, len(steps) + 1)), (trial_id, steps)
        if trial["status"] == "succeeded":
            assert steps == list(range(1, 10))

    for trial_id, record in decided.items():
        # Each decision stands as made: same rule, step, value, reason and time.
        assert trials[trial_id]["status"] == "pruned"
        assert attempts[trial_id][1]["pruned"] == record
        assert trials[trial_id]["reason"].endswith(record["reason"]), trials[trial_id]
        assert "pruned by asha at step " in trials[trial_id]["reason"]
        assert not (sweep_dir / "trials" / trial_id / "metrics.json").exists()
        assert _gone(int(launched[trial_id]))
    # Pruned trials rank after every finished one.
    order = [t["status"] for t in result["trials"]]
    assert order.index("pruned") > max(i for i, s in enumerate(order) if s == "succeeded")

    # A plain retry leaves pruned trials alone and says how to include them.
    pruned_ids = sorted(t for t, v in trials.items() if v["status"] == "pruned")
    plain = run_cli("retry", sweep_id, "--store", store, "--yes")
    assert plain.code == 0, plain
    assert f"{len(pruned_ids)} pruned trial(s) left alone" in plain.stderr, plain
    assert "--include-pruned" in plain.stderr
    assert not (sweep_dir / "requests").exists() or not any((sweep_dir / "requests").iterdir())
    assert {t: set(a) for t, a in _attempts(sweep_dir).items()} == {t: {1} for t in trials}

    # --include-pruned relaunches exactly the pruned trials, each as its attempt 2.
    again = run_cli("retry", sweep_id, "--store", store, "--yes", "--include-pruned", timeout=180)
    assert again.code in (0, 1), again
    assert "relaunched " in again.stderr, again  # (what its first look launched: a slot's worth)
    after = _attempts(sweep_dir)
    assert {t: set(a) for t, a in after.items()} == {
        t: ({1, 2} if t in pruned_ids else {1}) for t in trials
    }
    for trial_id in pruned_ids:
        assert after[trial_id][1]["pruned"] == attempts[trial_id][1]["pruned"]
        assert after[trial_id][2]["job"]["locator"]["pid"] != launched.get(trial_id)
