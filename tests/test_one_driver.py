"""No sequence of user actions runs a trial twice: retry while trials run, a second `up` on the
same sweep, kill -9 of the controller, resume. Through the real CLI, on the local backend.

Each trial appends a line to ``marks/<x>`` when it starts, so the tests count how many times
each trial really ran.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_cli

# x=1 fails on its first attempt only; x=2 and x=3 run until $RELEASE exists.
TASK = """\
name: twice
run: |
  echo start >> "$MARKS/$x"
  if [ "$x" = 1 ] && [ ! -e "$MARKS/1.failed-once" ]; then
    touch "$MARKS/1.failed-once"; echo boom; exit 3
  fi
  while [ "$x" != 1 ] && [ ! -e "$RELEASE" ]; do sleep 0.1; done
  echo '{"eval/loss": '$x'}' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"
sweeps:
  sweep_config:
    x: [1, 2, 3]
"""


class Sweep:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.release = tmp_path / "release"
        self.task = tmp_path / "task.yaml"
        self.task.write_text(TASK)
        self.store = f"file://{tmp_path / 'store'}"
        self.env = {"MARKS": str(self.marks), "RELEASE": str(self.release)}

    def cli(self, *args: str, timeout: float = 120) -> Any:
        return run_cli(*args, env=self.env, timeout=timeout)

    def runs(self, x: int) -> int:
        path = self.marks / str(x)
        return len(path.read_text().splitlines()) if path.exists() else 0

    def states(self, sweep_id: str) -> dict[int, str]:
        done = self.cli("status", sweep_id, "--store", self.store, "--output", "json")
        assert done.code == 0, done
        return {t["params"]["x"]: t["status"] for t in json.loads(done.stdout)["trials"]}

    def until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def holder(self, sweep_id: str) -> dict[str, Any]:
        folder = self.tmp_path / "store" / sweep_id / "lease"
        return dict(json.loads(max(folder.iterdir()).read_text()))


@pytest.fixture
def sweep(tmp_path: Path, isolated_home: Path) -> Sweep:
    return Sweep(tmp_path)


def test_retry_while_trials_run_reruns_only_the_failed_one(sweep: Sweep) -> None:
    up = sweep.cli(
        "up", str(sweep.task), "--local", "--yes", "--detach", "--output", "json",
        "--max-parallel", "3", "--store", sweep.store,
    )  # fmt: skip
    assert up.code == 0, up
    sweep_id = json.loads(up.stdout)["sweep_id"]
    sweep.until("x=1 to fail", lambda: sweep.states(sweep_id).get(1) == "failed")
    assert sweep.states(sweep_id) == {1: "failed", 2: "running", 3: "running"}

    retried = sweep.cli("retry", sweep_id, "--store", sweep.store, "--yes", "--detach")
    assert retried.code == 0, retried
    assert "relaunch 1 trial(s)" in retried.stderr  # asked the controller that drives it
    sweep.until("x=1 to succeed", lambda: sweep.states(sweep_id).get(1) == "succeeded")
    assert sweep.states(sweep_id) == {1: "succeeded", 2: "running", 3: "running"}

    # A second driver is refused while the first lives: exit 2, naming it.
    second = sweep.cli("up", str(sweep.task), "--local", "--yes", "--sweep-id", sweep_id,
                       "--store", sweep.store)  # fmt: skip
    assert second.code == 2, second
    holder = sweep.holder(sweep_id)
    assert f"pid {holder['pid']}" in second.stderr and "skysweep wait" in second.stderr
    assert "Traceback" not in second.stderr

    # The controller dies without a word; its trials keep running and are shown running.
    os.kill(holder["pid"], signal.SIGKILL)
    sweep.until("the controller to die", lambda: not _alive(holder["pid"]))
    assert sweep.states(sweep_id) == {1: "succeeded", 2: "running", 3: "running"}
    nothing = sweep.cli("retry", sweep_id, "--store", sweep.store, "--yes")
    assert nothing.code == 0 and "no failed trial to retry" in nothing.stderr, nothing

    # Resume takes the sweep over (its driver is gone) and launches nothing that runs.
    sweep.release.touch()
    resumed = sweep.cli("up", str(sweep.task), "--local", "--yes", "--sweep-id", sweep_id,
                        "--store", sweep.store, "--output", "json")  # fmt: skip
    assert resumed.code == 0, resumed
    assert "0 trial(s) launched now" in resumed.stderr
    assert {t["status"] for t in json.loads(resumed.stdout)["trials"]} == {"succeeded"}
    assert [sweep.runs(x) for x in (1, 2, 3)] == [2, 1, 1]


def test_two_ups_of_one_sweep_at_once_run_each_trial_once(sweep: Sweep) -> None:
    command = [
        sys.executable, "-m", "skysweep", "up", str(sweep.task), "--local", "--yes",
        "--sweep-id", "shared", "--store", sweep.store, "--max-parallel", "3",
    ]  # fmt: skip
    env = {**os.environ, **sweep.env}
    ups = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    sweep.until("both trials to start", lambda: sweep.runs(2) and sweep.runs(3))
    time.sleep(1)
    sweep.release.touch()
    outcomes = sorted((up.wait(timeout=120), up.stderr.read() if up.stderr else "") for up in ups)
    codes = [code for code, _ in outcomes]
    assert codes in ([1, 2], [0, 2]), outcomes  # the driver ends (x=1 failed once); one refused
    refused = outcomes[-1][1]
    assert "already" in refused and "Traceback" not in refused
    assert [sweep.runs(x) for x in (1, 2, 3)] == [1, 1, 1]


def test_every_printed_hint_works_when_pasted(tmp_path: Path, isolated_home: Path) -> None:
    folder = tmp_path / "my tasks"  # a path with a space, and a store that is not the default
    folder.mkdir()
    task = folder / "task.yaml"
    task.write_text(
        "name: hints\nrun: |\n  sleep 1\n  echo '{\"eval/loss\": '$n'}' > "
        '"$SKYSWEEP_OUTPUT_DIR/metrics.json"\nsweeps:\n  sweep_config:\n    n: [1, 2, 3]\n'
    )
    store = f"file://{tmp_path / 'other store'}"
    up = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes", "--store", store,
         "--max-parallel", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not list((tmp_path / "other store").glob("*/trials/*/run.log")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    up.send_signal(signal.SIGINT)
    _, err = up.communicate(timeout=60)
    assert up.returncode == 130, err
    hints = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("  ") and ":" in line and "skysweep " in line
    }
    assert set(hints) >= {"watch", "cancel"}, err
    # The pasted command, split as a shell would, from another folder, as another terminal.
    waited = run_cli(*shlex.split(hints["watch"])[1:], cwd=ROOT, timeout=120)
    assert waited.code == 0, waited
    assert "3 succeeded" in waited.stderr
    down = run_cli(*shlex.split(hints["cancel"])[1:], cwd=ROOT)
    assert down.code == 0 and "nothing was running" in down.stderr, down


def test_the_sky_resume_hint_names_the_real_file_and_store() -> None:
    from skysweep.cli.drive import Hints
    from skysweep.store import FileStore

    store = FileStore(Path("/tmp/s s"))
    hints = Hints(Path("my tasks/task.yaml"), store, "sid", "sky", ["lr=1e-4,3e-4"])
    assert shlex.split(hints.resume) == [
        "skysweep", "up", "my tasks/task.yaml", "--sweep-id", "sid", "--sweep", "lr=1e-4,3e-4",
        "--store", "file:///tmp/s s",
    ]  # fmt: skip
    assert shlex.split(hints.wait) == ["skysweep", "wait", "file:///tmp/s s/sid"]


def test_retry_with_an_edited_task_file_is_refused(sweep: Sweep) -> None:
    sweep.release.touch()
    up = sweep.cli("up", str(sweep.task), "--local", "--yes", "--store", sweep.store,
                   "--output", "json")  # fmt: skip
    assert up.code == 1, up  # x=1 failed
    sweep_id = json.loads(up.stdout)["sweep_id"]
    edited = sweep.tmp_path / "edited.yaml"
    edited.write_text(TASK.replace("echo boom", "echo changed"))
    done = sweep.cli("retry", sweep_id, "--store", sweep.store, "--yes", "--task-file", str(edited))
    assert done.code == 2, done
    assert "(run)" in done.stderr and "skysweep up" in done.stderr
    assert sweep.runs(1) == 1  # nothing was launched
    same = shutil.copy(sweep.task, sweep.tmp_path / "moved.yaml")
    again = sweep.cli("retry", sweep_id, "--store", sweep.store, "--yes", "--task-file", same)
    assert again.code == 0 and "relaunched 1 trial(s)" in again.stderr, again
    assert sweep.runs(1) == 2


def test_each_local_trial_has_a_working_directory_of_its_own(
    tmp_path: Path, isolated_home: Path
) -> None:
    (tmp_path / "helper.txt").write_text("shipped")
    (tmp_path / "big.bin").write_text("left out")
    (tmp_path / ".skyignore").write_text("*.bin\n")
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: dirs\nrun: |\n  mkdir -p outputs\n  echo $x > outputs/result.txt\n  sleep 0.5\n"
        "  test -e big.bin && exit 9\n"
        '  printf \'{"eval/loss": %s, "seen": "%s", "helper": "%s"}\' $x '
        '"$(cat outputs/result.txt)" "$(cat helper.txt)" > $SKYSWEEP_OUTPUT_DIR/metrics.json\n'
        "sweeps:\n  sweep_config:\n    x: [1, 2]\n"
    )
    done = run_cli("up", str(task), "--local", "--yes", "--max-parallel", "2", "--output",
                   "json", "--store", f"file://{tmp_path / 'store'}")  # fmt: skip
    assert done.code == 0, done
    for trial in json.loads(done.stdout)["trials"]:
        x = trial["params"]["x"]
        assert trial["metrics"]["seen"] == str(x) and trial["metrics"]["helper"] == "shipped"
    assert not (tmp_path / "outputs").exists()  # the task's own folder is left alone


def test_a_sweep_made_by_skysweep_0_1_is_still_readable(
    tmp_path: Path, isolated_home: Path
) -> None:
    stored = tmp_path / "store"
    shutil.copytree(ROOT / "tests" / "fixtures" / "store-0.1", stored)
    store = f"file://{stored}"
    results = run_cli("results", "legacy-0-1", "--store", store, "--format", "json")
    assert results.code == 1, results  # one of its three trials failed
    data = json.loads(results.stdout)
    assert [(t["params"]["x"], t["rank"], t["status"]) for t in data["trials"]] == [
        (1, 1, "succeeded"),
        (3, 2, "succeeded"),
        (2, None, "failed"),
    ]
    status = run_cli("status", "legacy-0-1", "--store", store)
    assert status.code == 0 and "legacy-0-1" in status.stdout, status
    listed = run_cli("list", "--store", store, "--output", "json")
    assert [(s["sweep_id"], s["trials"]) for s in json.loads(listed.stdout)] == [("legacy-0-1", 3)]
    retry = run_cli("retry", "legacy-0-1", "--store", store, "--yes")
    assert retry.code == 2 and "skysweep 0.1" in retry.stderr, retry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_cancelling_one_trial_leaves_the_others_running(
    tmp_path: Path, isolated_home: Path
) -> None:
    """What early stopping needs: stop one trial's job, and only that one."""
    from skysweep import session
    from skysweep.backends import get_backend
    from skysweep.expand import grid_size
    from skysweep.ledger import SweepHeader
    from skysweep.load import load
    from skysweep.store import FileStore
    from skysweep.trial import TrialState

    task_file = tmp_path / "project" / "task.yaml"
    task_file.parent.mkdir()
    task_file.write_text("name: one\nrun: sleep 30\nsweeps:\n  sweep_config:\n    x: [1, 2]\n")
    task = load(task_file)
    store = FileStore(tmp_path / "store")
    header = SweepHeader.new(
        sweep_id="one", task=task, task_file=task_file, backend="local", store_url=store.url,
        max_parallel=2, expected_trials=grid_size(task),
    )  # fmt: skip
    driving = session.start(store, header, get_backend("local"), task_file.parent, 2)
    try:
        controller = driving.controller
        launched = controller.step().launched
        assert len(launched) == 2
        first, second = launched
        assert controller.cancel([first]) == [first]
        controller.observe()
        assert controller.results[first].state is TrialState.cancelled
        assert controller.results[second].state is TrialState.running
        assert controller.cancel([second]) == [second]
    finally:
        driving.lease.release()
