"""`skysweep controller`: the controller loop on its own, from any machine, through the real CLI.

A sweep recorded in the store that nobody drives (as after `up --detach` on SkyPilot, before
its controller job starts): `status` says so with the command that takes it over, and that
command, pasted as printed, drives the sweep to its end. While another process holds the
sweep's lease the controller stands by and launches nothing; it takes over when the lease
is handed back, and a second controller on a finished sweep launches nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli

from skysweep.lease import Lease
from skysweep.ledger import Ledger, SweepHeader
from skysweep.load import load
from skysweep.store import Store, open_store

TASK = """\
name: undriven
run: python3 train.py
sweeps:
  max_parallel: 2
  sweep_config:
    x: [3, 1, 2]
"""
TRAIN = """\
import json, os
x = json.loads(os.environ["SKYSWEEP_PARAMS"])["x"]
with open(os.path.join(os.environ["SKYSWEEP_OUTPUT_DIR"], "metrics.json"), "w") as out:
    json.dump({"eval/loss": x / 10}, out)
"""


def _undriven_sweep(tmp_path: Path) -> tuple[Store, str, dict[str, str]]:
    """A sweep recorded in a file store with no trial launched and no driver."""
    folder = tmp_path / "project"
    folder.mkdir()
    task_file = folder / "task.yaml"
    task_file.write_text(TASK)
    (folder / "train.py").write_text(TRAIN)
    store = open_store(f"file://{tmp_path / 'store'}")
    header = SweepHeader.new(
        sweep_id="undriven-1",
        task=load(task_file),
        task_file=task_file,
        backend="local",
        store_url=store.url,
        max_parallel=2,
        expected_trials=3,
    )
    Ledger.create(store, header)
    env = {"HOME": str(tmp_path / "home"), "SKYSWEEP_STORE": store.url}
    return store, "undriven-1", env


def _attempts(store: Store, sweep_id: str) -> dict[str, list[int]]:
    ledger = Ledger.open(store, sweep_id)
    return {t: [a.number for a in ledger.attempts.get(t, [])] for t in ledger.trials}


def test_status_names_the_command_that_takes_an_undriven_sweep_over(tmp_path: Path) -> None:
    store, sweep_id, env = _undriven_sweep(tmp_path)

    status = run_cli("status", sweep_id, "--output", "json", env=env)
    assert status.code == 0, status
    controller = json.loads(status.stdout)["controller"]
    assert controller["driver"] is None
    take_over = controller["take_over"]
    assert take_over == f"skysweep controller {store.url}/{sweep_id}"
    table = run_cli("status", sweep_id, env=env)
    assert f"nobody drives the sweep now; take it over from any machine: {take_over}" in (
        " ".join(table.stdout.split())
    )

    # Pasted as printed, from another folder: it drives the sweep to its end.
    words = shlex.split(take_over)
    assert words[0] == "skysweep"
    done = run_cli(*words[1:], env=env, cwd=tmp_path, timeout=120)
    assert done.code == 0, done
    assert "sweep done" in done.stdout
    assert all(line[:4].isdigit() and "T" in line[:20] for line in done.stdout.splitlines())
    assert _attempts(store, sweep_id) == {t: [1] for t in _attempts(store, sweep_id)}
    results = json.loads(run_cli("results", sweep_id, "--format", "json", env=env).stdout)
    assert [t["params"]["x"] for t in results["trials"]] == [1, 2, 3]
    assert all(t["status"] == "succeeded" for t in results["trials"])

    # Nothing is left to drive: a second controller ends at once and launches nothing.
    again = run_cli("controller", sweep_id, env=env, timeout=60)
    assert again.code == 0, again
    assert "sweep done" in again.stdout
    assert all(numbers == [1] for numbers in _attempts(store, sweep_id).values())
    status = json.loads(run_cli("status", sweep_id, "--output", "json", env=env).stdout)
    assert "controller" not in status


def test_a_controller_stands_by_while_the_lease_is_held_then_takes_over(tmp_path: Path) -> None:
    store, sweep_id, env = _undriven_sweep(tmp_path)
    held = Lease.acquire(store, sweep_id)
    controller = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "controller", sweep_id],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        assert controller.stdout is not None
        while not any("standing by" in line for line in seen):
            line = controller.stdout.readline()
            assert line, (seen, controller.communicate())
            seen.append(line)
        time.sleep(2)  # a controller standing by looks again within this time
        assert _attempts(store, sweep_id) == {}, "launched while another held the lease"
        assert controller.poll() is None
        held.release()
        out, err = controller.communicate(timeout=120)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    assert controller.returncode == 0, err
    out = "".join(seen) + out
    assert f"standing by: {held.holder.describe()} drives the sweep" in out
    assert "sweep done" in out
    assert _attempts(store, sweep_id) == {t: [1] for t in Ledger.open(store, sweep_id).trials}
    assert len(Ledger.open(store, sweep_id).trials) == 3


def test_controller_of_an_unknown_sweep_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    done = run_cli(
        "controller", "nope-1", "--store", f"file://{store}", env={"HOME": str(tmp_path)}
    )
    assert done.code == 2, done
    assert "no sweep 'nope-1'" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_asks_for_no_driver_once_every_trial_runs_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    """Every trial launched, no budget, no stopping rule: the trials report to the store by
    themselves, so `status` offers no take-over command (a controller would only wait)."""
    import socket

    from skysweep.expand import expand
    from skysweep.ledger import now
    from skysweep.process import start_time
    from skysweep.trial import Attempt, JobHandle

    store, sweep_id, env = _undriven_sweep(tmp_path)
    ledger = Ledger.open(store, sweep_id)
    trials = expand(ledger.header.task_spec())
    ledger.add_trials(trials)
    running = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in trials]
    try:
        folder = store.local_folder(sweep_id)
        ledger.add_attempts(
            [
                Attempt(
                    trial_id=trial.trial_id,
                    number=1,
                    submitted_at=now(),
                    job=JobHandle(
                        backend="local",
                        job_id=f"local-{process.pid}",
                        locator={
                            "host": socket.gethostname(),
                            "pid": process.pid,
                            "start": start_time(process.pid),
                            "sweep_dir": str(folder),
                            "workdir": str(tmp_path),
                            "upload": False,
                        },
                    ),
                )
                for trial, process in zip(trials, running, strict=True)
            ]
        )
        status = run_cli("status", sweep_id, "--output", "json", env=env)
        assert status.code == 0, status
        shown = json.loads(status.stdout)
        assert {t["status"] for t in shown["trials"]} == {"running"}
        controller = shown["controller"]
        assert controller["driver"] is None and controller["take_over"] is None
        assert "nothing is left to decide" in controller["summary"]
        table = run_cli("status", sweep_id, env=env)
        assert "skysweep controller" not in table.stdout
    finally:
        for process in running:
            process.kill()
            process.wait()
