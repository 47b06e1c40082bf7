"""Readers of a sweep (`status`, `results`, `wait`) and `up --dry-run`: what they must not touch.

A SkyPilot sweep whose trials all have their final records in the store is answered from the
store alone: SkyPilot is not imported and its API server is not asked (a CI step that only
reports must not need one). Every test runs the real CLI in a subprocess, with SkyPilot's
client pointed at a port where nothing listens, so that any call to it would fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import CompletedCli, run_cli

from skysweep.expand import expand
from skysweep.ledger import Ledger, SweepHeader, now
from skysweep.load import load
from skysweep.store import S3Store, Store, join, open_store
from skysweep.trial import Attempt, JobHandle, Trial

TASK = """\
name: readers
resources:
  cpus: 1
run: echo "x=$x"
parameters: {}
sweeps:
  sweep_config:
    x: [1, 2, 3]
  sweep_metric: loss
  lower_is_better: true
"""
LOSSES = {1: 0.5, 2: 0.2, 3: 0.9}
"""x=2 is the best trial, then x=1, then x=3."""

NO_SKY = {
    # Nothing listens on port 9 (discard): any request to SkyPilot's API server fails, and
    # SkyPilot must not start a local one in its place.
    "SKYPILOT_API_SERVER_ENDPOINT": "http://127.0.0.1:9",
    "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1",
}
SKY_IMPORT = re.compile(r"\|\s*sky(\.|$)")


def sky_imports(stderr: str) -> list[str]:
    """The `-X importtime` lines that name the ``sky`` package or one of its modules."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("import time:") and SKY_IMPORT.search(line.rstrip())
    ]


def _importtime(args: Sequence[str], timeout: float = 120) -> CompletedCli:
    """``python -X importtime -m skysweep ...`` with SkyPilot's API server unreachable."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "skysweep", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_SKY},
        timeout=timeout,
        input="",
    )
    return CompletedCli(done.returncode, done.stdout, done.stderr)


def without_importtime(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))


def write_task(folder: Path) -> Path:
    path = folder / "task.yaml"
    path.write_text(TASK)
    return path


def write_sweep(
    store: Store,
    task_file: Path,
    sweep_id: str,
    *,
    backend: str = "sky",
    launched: bool = True,
    unfinished: Sequence[int] = (),
    failed: Sequence[int] = (),
) -> dict[int, Trial]:
    """A sweep as its driver and its jobs would have left it in the store: the header, a
    record per trial, an attempt with a job id per trial (``launched``) and, for every trial
    not in ``unfinished``, the job's ``metrics.json`` and the wrapper's finished record."""
    task = load(task_file)
    trials = expand(task)
    header = SweepHeader.new(
        sweep_id=sweep_id,
        task=task,
        task_file=task_file,
        backend=backend,
        store_url=store.url,
        max_parallel=len(trials),
        expected_trials=len(trials),
    )
    ledger = Ledger.create(store, header)
    ledger.add_trials(trials)
    if launched:
        ledger.add_attempts(
            [
                Attempt(
                    trial_id=t.trial_id,
                    number=1,
                    submitted_at=now(),
                    job=JobHandle(
                        backend=backend, job_id=str(17 + t.index), job_name=f"{sweep_id}-batch0"
                    ),
                )
                for t in trials
            ]
        )
    by_x = {int(t.params["x"]): t for t in trials}
    for x, trial in by_x.items():
        if x in unfinished or not launched:
            continue
        code = 1 if x in failed else 0
        if code == 0:
            store.put(
                join(sweep_id, "trials", trial.trial_id, "metrics.json"),
                json.dumps({"loss": LOSSES[x]}).encode(),
            )
        store.put(
            join(sweep_id, "finished", f"{trial.trial_id}.json"),
            json.dumps(
                {
                    "exit_code": code,
                    "started_at": "2026-01-01T00:00:00Z",
                    "finished_at": "2026-01-01T00:01:00Z",
                }
            ).encode(),
        )
    return by_x


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, isolated_home: Path) -> Store:
    """The sweep's store: a folder, or a bucket prefix on the moto S3 endpoint (the CI case);
    ``s3_env`` puts the endpoint and dummy credentials into the CLI's environment."""
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    bucket = request.getfixturevalue("bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    return S3Store(f"s3://{bucket}/sweeps", endpoint_url=endpoint)


# ---------------------------------------------------------------------------------------
# 1. A finished SkyPilot sweep is read from the store alone.


def test_finished_sky_sweep_is_read_without_skypilot(store: Store, tmp_path: Path) -> None:
    trials = write_sweep(store, write_task(tmp_path), "done")
    url = f"{store.url}/done"
    best, second, worst = trials[2].trial_id, trials[1].trial_id, trials[3].trial_id

    status = _importtime(["status", url, "--output", "json"])
    assert status.code == 0, status
    shown = json.loads(status.stdout)
    assert [t["trial_id"] for t in shown["trials"]] == [best, second, worst]
    assert [t["status"] for t in shown["trials"]] == ["succeeded"] * 3
    assert [t["job_id"] for t in shown["trials"]] == ["18", "17", "19"]

    table = _importtime(["status", url])
    assert table.code == 0, table
    assert "done (sky): 3 trials" in table.stdout and "more to come" not in table.stdout

    results = _importtime(["results", url, "--format", "csv"])
    assert results.code == 0, results
    rows = results.stdout.strip().splitlines()
    assert len(rows) == 4 and best in rows[1] and second in rows[2] and worst in rows[3], results

    only = _importtime(["results", url, "--best", "--format", "json"])
    assert only.code == 0, only
    assert json.loads(only.stdout)["trial_id"] == best and json.loads(only.stdout)["value"] == 0.2

    started = time.monotonic()
    waited = _importtime(["wait", url, "--timeout", "30", "--interval", "0.2"])
    assert waited.code == 0, waited
    assert time.monotonic() - started < 20
    assert f"finished: best trial {best} (loss = 0.2)" in waited.stderr

    for done in (status, table, results, only, waited):
        assert sky_imports(done.stderr) == [], done.stderr
        assert "note:" not in done.stderr and "SkyPilot" not in done.stderr, done
        assert "Traceback" not in done.stderr


def test_finished_sky_sweep_with_a_failed_trial_exits_1(store: Store, tmp_path: Path) -> None:
    trials = write_sweep(store, write_task(tmp_path), "onefailed", failed=[2])
    url = f"{store.url}/onefailed"

    results = _importtime(["results", url, "--format", "json"])
    assert results.code == 1, results
    shown = json.loads(results.stdout)
    assert shown["best"]["trial_id"] == trials[1].trial_id
    assert shown["trials"][-1]["trial_id"] == trials[2].trial_id
    assert shown["trials"][-1]["status"] == "failed"
    assert "exited with code 1" in shown["trials"][-1]["reason"]

    best = _importtime(["results", url, "--best", "--format", "json"])
    assert best.code == 0 and json.loads(best.stdout)["trial_id"] == trials[1].trial_id, best

    waited = _importtime(["wait", url, "--timeout", "30", "--interval", "0.2"])
    assert waited.code == 1, waited
    assert f"finished: best trial {trials[1].trial_id}" in waited.stderr

    status = _importtime(["status", url])
    assert status.code == 0, status

    for done in (results, best, waited, status):
        assert sky_imports(done.stderr) == [], done.stderr
        assert "note:" not in done.stderr, done


# ---------------------------------------------------------------------------------------
# 2. One trial still unfinished: SkyPilot is asked, and its absence is only a note.


def test_unfinished_trial_asks_skypilot_and_degrades_gracefully(
    store: Store, tmp_path: Path
) -> None:
    trials = write_sweep(store, write_task(tmp_path), "open", unfinished=[3])
    url = f"{store.url}/open"

    started = time.monotonic()
    status = _importtime(["status", url, "--output", "json"])
    took = time.monotonic() - started
    assert status.code == 0, status
    assert took < 60, f"status took {took:.0f} s against an unreachable API server"
    # It did ask SkyPilot (it had to), so SkyPilot was imported...
    assert sky_imports(status.stderr), "status should have asked SkyPilot about job 19"
    # ...and the unreachable server is a note, not an error.
    said = without_importtime(status.stderr)
    assert "note:" in said and "showing what the store says" in said, said
    assert "Traceback" not in said
    shown = {t["trial_id"]: t for t in json.loads(status.stdout)["trials"]}
    assert shown[trials[3].trial_id]["status"] == "submitted"
    assert shown[trials[3].trial_id]["job_id"] == "19"
    assert shown[trials[2].trial_id]["rank"] == 1

    results = _importtime(["results", url, "--format", "json"])
    assert results.code == 1, results  # not every trial has succeeded (yet)
    assert "showing what the store says" in without_importtime(results.stderr)


# ---------------------------------------------------------------------------------------
# 3. `up --dry-run` reads nothing from the store.


def test_dry_run_on_a_folder_under_a_file_reads_nothing(
    tmp_path: Path, isolated_home: Path
) -> None:
    task_file = write_task(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run_cli(
        "up", str(task_file), "--local", "--dry-run", "--store", f"file://{blocker}/store",
        env=NO_SKY,
    )  # fmt: skip
    assert done.code == 0, done
    assert "readers: 3 trial(s) over x on the local backend" in done.stderr
    assert f"in file://{blocker}/store" in done.stderr
    assert "dry run: nothing launched." in done.stderr
    assert blocker.read_text() == "not a folder"


def test_dry_run_on_a_missing_bucket_reads_nothing(
    tmp_path: Path, s3_env: dict[str, str], moto_endpoint: str
) -> None:
    task_file = write_task(tmp_path)
    done = run_cli(
        "up", str(task_file), "--local", "--dry-run", "--output", "json",
        "--store", "s3://no-such-bucket/x", env=NO_SKY,
    )  # fmt: skip
    assert done.code == 0, done
    planned = json.loads(done.stdout)
    assert planned["dry_run"] is True and planned["trials"] == 3 and planned["launched"] == []
    assert planned["store_url"] == f"s3://no-such-bucket/x/{planned['sweep_id']}"
    assert "dry run: nothing launched." in done.stderr
    assert "does not exist" not in done.stderr


def test_sky_dry_run_on_a_missing_bucket_fails_on_skypilot_not_the_store(
    tmp_path: Path, s3_env: dict[str, str], moto_endpoint: str
) -> None:
    """Without --local the plan asks SkyPilot's API server (unreachable here): the error is
    about SkyPilot, never about the bucket, which the dry run does not read."""
    task_file = write_task(tmp_path)
    done = run_cli(
        "up", str(task_file), "--dry-run", "--store", "s3://no-such-bucket/x", env=NO_SKY
    )
    assert done.code == 2, done
    assert "cannot reach the SkyPilot API server" in done.stderr, done
    assert "no-such-bucket' does not exist" not in done.stderr
    assert "Traceback" not in done.stderr


def _snapshot(store: Store, sweep_id: str) -> dict[str, str]:
    return {info.key: info.etag for info in store.list(sweep_id)}


def test_dry_run_of_an_existing_sweep_exits_0_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    task_file = write_task(tmp_path)
    write_sweep(store, task_file, "existing", backend="local", unfinished=[3])
    before = _snapshot(store, "existing")
    done = run_cli(
        "up", str(task_file), "--local", "--dry-run", "--sweep-id", "existing",
        "--store", store.url, env=NO_SKY,
    )  # fmt: skip
    assert done.code == 0, done
    assert f"sweep existing in {store.url}" in done.stderr
    assert "dry run: nothing launched." in done.stderr
    assert _snapshot(store, "existing") == before


# ---------------------------------------------------------------------------------------
# 4. `wait --timeout` on a sweep nobody drives.


@pytest.mark.parametrize("backend", ["local", "sky"])
def test_wait_times_out_on_a_sweep_nobody_drives(
    store: Store, tmp_path: Path, backend: str
) -> None:
    write_sweep(store, write_task(tmp_path), "orphan", backend=backend, launched=False)
    started = time.monotonic()
    done = _importtime(["wait", f"{store.url}/orphan", "--timeout", "1", "--interval", "0.2"])
    took = time.monotonic() - started
    assert done.code == 3, done
    said = without_importtime(done.stderr)
    assert "still unfinished after 1 s" in said, said
    assert took < 30
    # Never-launched trials have no job to ask about: SkyPilot is not needed.
    assert sky_imports(done.stderr) == [], done.stderr
