"""A driver killed while submitting (between a job's start and its attempt record) never makes
a trial run twice: each attempt is first recorded as "being submitted", and the next driver
asks the backend about it instead of launching it again.

The crash is recreated as it happens: ``skysweep up`` is killed with SIGKILL while its trials
run, and the attempt records it left are put back in the state a kill between start and record
leaves (the intent, no job); or the intent is written for a trial whose job never started.
Then the sweep is resumed through the real CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from skysweep.collect import Collector
from skysweep.ledger import now
from skysweep.store import FileStore, join, open_store
from skysweep.trial import Attempt, JobHandle, Trial, TrialState

# Every trial marks its start, then runs until $RELEASE exists.
TASK = """\
name: intent
run: |
  echo start >> "$MARKS/$x"
  while [ ! -e "$RELEASE" ]; do sleep 0.1; done
  echo '{"eval/loss": '$x'}' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"
sweeps:
  sweep_config:
    x: [1, 2, 3]
"""


class Sweep:
    def __init__(self, tmp_path: Path, store_url: str) -> None:
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.release = tmp_path / "release"
        self.task = tmp_path / "task.yaml"
        self.task.write_text(TASK)
        self.store = store_url
        self.records = open_store(
            store_url, endpoint_url=os.environ.get("SKYSWEEP_S3_ENDPOINT_URL")
        )
        self.env = {**os.environ, "MARKS": str(self.marks), "RELEASE": str(self.release)}

    def up(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "skysweep", "up", str(self.task), "--local", "--yes",
             "--store", self.store, "--output", "json", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def runs(self, x: int) -> int:
        path = self.marks / str(x)
        return len(path.read_text().splitlines()) if path.exists() else 0

    def trial_ids(self, sweep_id: str) -> dict[int, str]:
        found = {}
        for info in self.records.list(join(sweep_id, "records")):
            if info.key.endswith("/trial.json"):
                record = json.loads(self.records.get(info.key) or b"{}")
                found[record["params"]["x"]] = record["trial_id"]
        return found

    def attempts(self, sweep_id: str, trial_id: str) -> dict[int, dict[str, Any]]:
        return {
            int(info.key.rsplit("/attempt-", 1)[1].removesuffix(".json")): json.loads(
                self.records.get(info.key) or b"{}"
            )
            for info in self.records.list(join(sweep_id, "records", trial_id))
            if "/attempt-" in info.key
        }

    def write_attempt(self, sweep_id: str, attempt: Attempt) -> None:
        key = join(sweep_id, "records", attempt.trial_id, f"attempt-{attempt.number}.json")
        self.records.put(key, attempt.model_dump_json().encode())


def until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sessions_of(sweep_id: str, trial_id: str) -> set[int]:
    """The sessions of the live processes that run this trial (each attempt has its own)."""
    wanted = {f"SKYSWEEP_SWEEP_ID={sweep_id}".encode(), f"SKYSWEEP_TRIAL_ID={trial_id}".encode()}
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if wanted <= set(handle.read().split(b"\0")):
                    found.add(os.getsid(int(name)))
        except OSError:
            continue
    return found


def intent(trial_id: str, number: int = 1) -> Attempt:
    """The record the launcher writes before it submits (what a kill then leaves)."""
    return Attempt(
        trial_id=trial_id, number=number, submitted_at=now(), submit_tries=0, submitting=True
    )


@pytest.fixture(params=["file", "s3"])
def sweep(request: pytest.FixtureRequest, tmp_path: Path, isolated_home: Path) -> Iterator[Sweep]:
    """A sweep on a folder store, where trials write in place, and on a bucket, where each
    trial runs under an uploader process of its session."""
    if request.param == "s3":
        store_url = f"s3://{request.getfixturevalue('bucket')}/sweeps"
    else:
        store_url = f"file://{tmp_path / 'store'}"
    made = Sweep(tmp_path, store_url)
    yield made
    made.release.touch()  # a test that failed half-way leaves no trial waiting forever


def test_a_trial_started_before_its_record_is_adopted_and_one_never_started_runs_once(
    sweep: Sweep,
) -> None:
    up = sweep.up("--sweep-id", "killed", "--max-parallel", "2")
    ids: dict[int, str] = {}

    def started() -> bool:
        ids.update(sweep.trial_ids("killed"))
        return (
            sweep.runs(1) == 1
            and sweep.runs(2) == 1
            and all(sweep.attempts("killed", ids[x]).get(1, {}).get("job") for x in (1, 2))
        )

    until("x=1 and x=2 to start and be recorded", started)
    os.kill(up.pid, signal.SIGKILL)
    up.wait(timeout=30)
    assert 3 not in ids  # the cap held x=3 back: it was never made

    # x=2: the driver died after its process started and before its record was written.
    recorded = sweep.attempts("killed", ids[2])[1]
    sweep.write_attempt("killed", intent(ids[2]))
    # x=3: the driver died after writing its intent, before starting it.
    from skysweep.expand import expand
    from skysweep.ledger import Ledger
    from skysweep.load import load

    third = next(t for t in expand(load(sweep.task)) if t.params["x"] == 3)
    ledger = Ledger.open(sweep.records, "killed")
    ledger.add_trials([third])
    ledger.add_attempts([intent(third.trial_id)])
    ids[3] = third.trial_id

    # A watcher (status) says what it sees without deciding anything.
    status = run_cli("status", "killed", "--store", sweep.store, "--output", "json")
    assert status.code == 0, status
    states = {t["params"]["x"]: t["status"] for t in json.loads(status.stdout)["trials"]}
    assert states == {1: "running", 2: "submitted", 3: "submitted"}

    resumed = sweep.up("--sweep-id", "killed", "--max-parallel", "3")
    until("x=2 to be adopted", lambda: sweep.attempts("killed", ids[2])[1].get("job"))
    until("x=3 to start", lambda: sweep.runs(3) == 1)
    sweep.release.touch()
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert {t["status"] for t in json.loads(out)["trials"]} == {"succeeded"}

    # Each trial ran exactly once.
    assert [sweep.runs(x) for x in (1, 2, 3)] == [1, 1, 1]
    for x in (1, 2, 3):
        files = [i.key for i in sweep.records.list(join("killed", "trials", ids[x]))]
        assert join("killed", "trials", ids[x], "run.log") in files
        assert not [key for key in files if "/attempts/" in key]  # nothing was archived
        assert list(sweep.attempts("killed", ids[x])) == [1]
    # x=2's record holds the job it adopted: the process the killed driver started.
    adopted = sweep.attempts("killed", ids[2])[1]
    assert adopted["submitting"] is False and adopted["error"] is None
    assert adopted["job"]["locator"]["pid"] == recorded["job"]["locator"]["pid"]
    assert adopted["job"]["locator"]["start"] == recorded["job"]["locator"]["start"]
    assert adopted["job"]["locator"]["workdir"] == recorded["job"]["locator"]["workdir"]
    # x=3 was launched as the attempt its intent named, and recorded as such.
    third_record = sweep.attempts("killed", ids[3])[1]
    assert third_record["submitting"] is False and third_record["job"]["locator"]["pid"]
    until("the trials' processes to end", lambda: not sessions_of("killed", ids[2]))


def test_a_trial_that_ended_while_its_driver_was_dead_is_not_run_again(sweep: Sweep) -> None:
    sweep.release.touch()  # trials end at once
    done = run_cli(
        "up", str(sweep.task), "--local", "--yes", "--store", sweep.store,
        "--sweep-id", "ended", "--output", "json", env=sweep.env,
    )  # fmt: skip
    assert done.code == 0, done
    ids = sweep.trial_ids("ended")
    # The state a kill between x=1's start and its record leaves, found after it ended.
    sweep.write_attempt("ended", intent(ids[1]))

    resumed = run_cli(
        "up", str(sweep.task), "--local", "--yes", "--store", sweep.store,
        "--sweep-id", "ended", "--output", "json", env=sweep.env,
    )  # fmt: skip
    assert resumed.code == 0, resumed
    assert "0 trial(s) launched now" in resumed.stderr
    assert {t["status"] for t in json.loads(resumed.stdout)["trials"]} == {"succeeded"}
    assert [sweep.runs(x) for x in (1, 2, 3)] == [1, 1, 1]
    record = sweep.attempts("ended", ids[1])
    assert list(record) == [1] and record[1]["job"] is not None
    assert record[1]["submitting"] is False


def test_on_sky_a_trial_being_submitted_is_lost_and_never_relaunched(
    tmp_path: Path, isolated_home: Path
) -> None:
    """SkyPilot cannot be asked reliably whether the job started: the trial is lost, with what
    to check, and only ``skysweep retry`` launches it again."""
    from skysweep import session
    from skysweep.backends.sky import SkyBackend
    from skysweep.expand import expand, grid_size
    from skysweep.ledger import Ledger, SweepHeader
    from skysweep.load import load

    task_file = tmp_path / "task.yaml"
    task_file.write_text("name: one\nrun: echo hi\nsweeps:\n  sweep_config:\n    x: [1]\n")
    task = load(task_file)
    store = FileStore(tmp_path / "store")
    header = SweepHeader.new(
        sweep_id="sky", task=task, task_file=task_file, backend="sky", store_url=store.url,
        max_parallel=1, expected_trials=grid_size(task),
    )  # fmt: skip
    ledger = Ledger.create(store, header)
    (trial,) = expand(task)
    ledger.add_trials([trial])
    ledger.add_attempts([intent(trial.trial_id)])

    driving = session.resume(Ledger.open(store, "sky"), task, task_file, SkyBackend(), parallel=1)
    try:
        result = driving.controller.results[trial.trial_id]
        assert result.state is TrialState.lost
        assert result.problem is not None
        assert "sky jobs queue" in result.problem and "skysweep retry" in result.problem
        assert not driving.ledger.retry_asked(trial.trial_id)  # not relaunched on resume
        # The grid learns it has nothing more on the first look, then the sweep is done.
        looks = [driving.controller.step() for _ in range(2)]
        assert [look.launched for look in looks] == [[], []]
        assert looks[-1].actions.done
    finally:
        driving.lease.release()
    stored = Ledger.open(store, "sky").latest(trial.trial_id)
    assert stored is not None and stored.number == 1 and stored.job is None
    assert stored.submitting and stored.error is not None


# ---------------------------------------------------------------------------------------
# What an attempt record says, as a table: the same collector for every reader.

JOB = JobHandle(backend="local", job_id="local-1", locator={"pid": 1})

RESULT_ROWS: dict[str, tuple[Attempt | None, TrialState, str | None]] = {
    "never-launched-is-pending": (None, TrialState.pending, None),
    "being-submitted-holds-its-slot": (
        Attempt(trial_id="t", number=1, submitted_at="", submit_tries=0, submitting=True),
        TrialState.submitted,
        None,
    ),
    "lost-while-submitting-says-what-to-check": (
        Attempt(trial_id="t", number=1, submitted_at="", submitting=True, error="check it"),
        TrialState.lost,
        "check it",
    ),
    "refused-by-the-backend-is-submit-failed": (
        Attempt(trial_id="t", number=1, submitted_at="", error="no capacity"),
        TrialState.submit_failed,
        "submission failed: no capacity",
    ),
    "a-0-1-record-without-job-or-error-is-submit-failed-not-being-submitted": (
        Attempt(trial_id="t", number=1, submitted_at=""),
        TrialState.submit_failed,
        "submission failed: no job id",
    ),
    "with-a-job-is-submitted": (
        Attempt(trial_id="t", number=1, submitted_at="", job=JOB),
        TrialState.submitted,
        None,
    ),
}


@pytest.mark.parametrize("row", list(RESULT_ROWS.values()), ids=list(RESULT_ROWS))
def test_an_attempt_record_reads_as(
    row: tuple[Attempt | None, TrialState, str | None], tmp_path: Path
) -> None:
    attempt, state, problem = row
    collector = Collector(FileStore(tmp_path), "s")
    result = collector.result(Trial(0, "t", {}), attempt, None)
    assert result.state is state
    assert result.problem == problem


def test_a_same_named_sweep_in_another_store_never_adopts_this_ones_process(
    tmp_path: Path,
) -> None:
    """Two sweeps of one id and one task file have the same trial ids; a driver settling an
    interrupted attempt of one must not take the other's running process for its job."""
    from skysweep.backends.local import LocalBackend

    here, there = FileStore(tmp_path / "a"), FileStore(tmp_path / "b")
    # A trial of the sweep "same" in store a, running as the local backend starts one: in a
    # session of its own, with the sweep, the trial and the sweep's folder in its env.
    env = {
        **os.environ,
        "SKYSWEEP_SWEEP_ID": "same",
        "SKYSWEEP_TRIAL_ID": "t1",
        "SKYSWEEP_SWEEP_DIR": str(tmp_path / "a" / "same"),
    }
    running = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        backend = LocalBackend()
        assert backend.find(there, "same", intent("t1")) is None  # nothing started in b
        found = backend.find(here, "same", intent("t1"))
        assert isinstance(found, JobHandle)
        assert found.locator["pid"] == running.pid
    finally:
        running.kill()
        running.wait()


def test_each_job_finds_its_records_and_params_when_it_starts(
    tmp_path: Path, isolated_home: Path
) -> None:
    """What a launch writes first (new trials' records, the attempts' intents, what jobs
    read) goes out in one round, all of it before the jobs start: each job finds its trial
    record, an attempt record and params.json as its first step."""
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: order\n"
        "run: |\n"
        '  records="$SKYSWEEP_SWEEP_DIR/records/$SKYSWEEP_TRIAL_ID"\n'
        '  test -s "$records/trial.json" && test -s "$records/attempt-1.json" '
        '&& test -s "$SKYSWEEP_OUTPUT_DIR/params.json" || exit 3\n'
        "  echo '{\"eval/loss\": '$x'}' > \"$SKYSWEEP_OUTPUT_DIR/metrics.json\"\n"
        "sweeps:\n  sweep_config:\n    x: [1, 2, 3]\n"
    )
    store = tmp_path / "store"
    done = run_cli(
        "up", str(task), "--local", "--yes", "--sweep-id", "order", "--max-parallel", "2",
        "--store", f"file://{store}", "--output", "json",
    )  # fmt: skip
    assert done.code == 0, done
    trials = json.loads(done.stdout)["trials"]
    assert [t["status"] for t in trials] == ["succeeded"] * 3
    for trial in trials:
        folder = store / "order" / "trials" / trial["trial_id"]
        assert json.loads((folder / "params.json").read_text()) == trial["params"]
