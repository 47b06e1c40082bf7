"""The CI flow end to end: separate processes with separate empty HOMEs, the local backend, and
a store on a real S3 endpoint (moto on loopback).

Process A (the CI job that launches) and process B (any later step or machine) share nothing
but the bucket and the ``store_url`` that A printed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, CompletedCli, run_cli

from skysweep import lease
from skysweep.expand import expand, grid_size
from skysweep.ledger import Ledger, SweepHeader
from skysweep.load import load
from skysweep.store import S3Store, join

QUICKSTART = EXAMPLES / "quickstart" / "task.yaml"

# A tiny sweep of three trials. x=2 fails while $MARKER does not exist (after leaving a file
# behind), so the same task file serves a failing sweep and a retry that then succeeds.
FLAKY_TASK = """\
name: flaky
resources:
  cpus: 1
envs:
  MARKER: {marker}
run: |
  if [ "$x" = 2 ] && [ ! -e "$MARKER" ]; then
    echo "partial output" > "$SKYSWEEP_OUTPUT_DIR/partial.txt"
    echo "boom: no marker"
    exit 7
  fi
  echo "trial x=$x ran"
  python3 - <<'PY'
  import json, os
  loss = abs(float(os.environ["x"]) - 2.2)
  with open(os.path.join(os.environ["SKYSWEEP_OUTPUT_DIR"], "metrics.json"), "w") as out:
      json.dump({{"loss": loss}}, out)
  PY
parameters: {{}}
sweeps:
  sweep_config:
    x: [1, 2, 3]
  sweep_metric: loss
  lower_is_better: true
"""


class Ci:
    """Runs skysweep as separate CI processes, each with its own empty HOME."""

    def __init__(self, tmp_path: Path, env: dict[str, str], bucket: str, endpoint: str) -> None:
        self.tmp_path, self.env, self.bucket, self.endpoint = tmp_path, env, bucket, endpoint
        self.root = f"s3://{bucket}/sweeps"
        self.homes = 0

    def home(self) -> Path:
        self.homes += 1
        home = self.tmp_path / f"home-{self.homes}"
        home.mkdir()
        return home

    def run(
        self, *args: str, home: Path | None = None, timeout: float = 120, **extra_env: str
    ) -> CompletedCli:
        env = {**self.env, "HOME": str(home or self.home()), **extra_env}
        return run_cli(*args, env=env, cwd=self.tmp_path, timeout=timeout)

    def store(self) -> S3Store:
        return S3Store(self.root, endpoint_url=self.endpoint)

    def up_detached(self, task: Path, *extra: str, home: Path | None = None) -> dict[str, Any]:
        started = time.monotonic()
        done = self.run(
            "up", str(task), "--local", "--detach", "--yes", "--output", "json",
            "--store", self.root, *extra, home=home,
        )  # fmt: skip
        assert done.code == 0, done
        assert time.monotonic() - started < 30, "a detached up must return without waiting"
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1, done  # exactly one JSON object on stdout, nothing else
        launched: dict[str, Any] = json.loads(lines[0])
        assert launched["store_url"] == f"{self.root}/{launched['sweep_id']}"
        return launched

    def wait(self, url: str, *extra: str) -> CompletedCli:
        return self.run("wait", url, "--timeout", "120", "--interval", "0.5", *extra)

    def wait_for_controller(self, sweep_id: str) -> None:
        """A detached controller gives the sweep's lease back shortly after the sweep ends."""
        deadline = time.monotonic() + 30
        while lease.current(self.store(), sweep_id) is not None:
            assert time.monotonic() < deadline, "the detached controller never let go"
            time.sleep(0.2)

    def versions(self, key: str) -> int:
        """How many times an object was written (the bucket keeps every version)."""
        full = join("sweeps", key)
        listing = self.store().client.list_object_versions(Bucket=self.bucket, Prefix=full)
        return sum(v["Key"] == full for v in listing.get("Versions", []))


@pytest.fixture
def ci(tmp_path: Path, s3_env: dict[str, str], bucket: str, moto_endpoint: str) -> Ci:
    # Versioning lets the tests tell "not rewritten" from "rewritten with the same bytes".
    S3Store(f"s3://{bucket}", endpoint_url=moto_endpoint).client.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return Ci(tmp_path, s3_env, bucket, moto_endpoint)


def flaky_task(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    task = tmp_path / "flaky" / "task.yaml"
    task.parent.mkdir()
    task.write_text(FLAKY_TASK.format(marker=marker))
    return task, marker


def trial_ids_by_x(store: S3Store, sweep_id: str) -> dict[int, str]:
    ledger = Ledger.open(store, sweep_id)
    return {int(t.params["x"]): t.trial_id for t in ledger.trials.values()}  # type: ignore[arg-type]


def test_ci_flow_across_machines(ci: Ci) -> None:
    launched = ci.up_detached(QUICKSTART)
    sweep_id, url = launched["sweep_id"], launched["store_url"]
    assert launched["backend"] == "local" and launched["trials"] == 9
    # The first wave is launched; the detached controller launches the rest as slots free.
    assert 1 <= len(launched["launched"]) <= 9 and launched["skipped"] == []

    # Another machine knows only the URL.
    waited = ci.wait(url)
    assert waited.code == 0, waited
    assert waited.stdout == ""
    assert f"{sweep_id}: 9 succeeded" in waited.stderr
    assert "finished: best trial" in waited.stderr

    results = ci.run("results", url, "--format", "json")
    assert results.code == 0, results
    data = json.loads(results.stdout)
    assert (data["sweep_id"], data["metric"], data["lower_is_better"]) == (
        sweep_id, "eval/loss", True,
    )  # fmt: skip
    best = data["best"]
    assert (best["params"]["learning_rate"], best["params"]["batch_size"]) == (0.1, 8)
    assert best["rank"] == 1 and best["status"] == "succeeded"
    trials = data["trials"]
    assert [t["rank"] for t in trials] == list(range(1, 10))
    assert trials[0]["trial_id"] == best["trial_id"]
    losses = [t["metrics"]["eval/loss"] for t in trials]
    assert losses == sorted(losses)
    for trial in trials:
        assert set(trial) >= {"trial_id", "rank", "status", "params", "metrics"}
        assert trial["status"] == "succeeded"
        assert trial["params"]["epochs"] == 3
    combos = {(t["params"]["learning_rate"], t["params"]["batch_size"]) for t in trials}
    assert combos == {(lr, bs) for lr in (0.01, 0.1, 1.0) for bs in (8, 32, 128)}

    markdown = ci.run("results", url, "--format", "markdown")
    assert markdown.code == 0, markdown
    assert "| rank | # | trial | status | eval/loss |" in markdown.stdout
    assert f"`{best['trial_id']}`" in markdown.stdout
    assert "`learning_rate=0.1`, `batch_size=8`" in markdown.stdout

    # The workflow's HTML report, read from the bucket: every trial and its history.
    report = ci.run("report", url, "--out", str(ci.tmp_path / "report.html"))
    assert report.code == 0, report
    page = (ci.tmp_path / "report.html").read_text(encoding="utf-8")
    assert all(f'data-trial="{t["trial_id"]}"' in page for t in trials)
    assert '"id":"curves"' in page

    as_csv = ci.run("results", url, "--format", "csv")
    assert as_csv.code == 0, as_csv
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 9
    assert (rows[0]["rank"], rows[0]["trial_id"]) == ("1", best["trial_id"])
    assert (rows[0]["learning_rate"], rows[0]["batch_size"]) == ("0.1", "8")
    assert float(rows[0]["eval/loss"]) == pytest.approx(best["value"], rel=1e-5)

    only_best = ci.run("results", url, "--best", "--format", "json")
    assert only_best.code == 0, only_best
    single = json.loads(only_best.stdout)
    assert single["trial_id"] == best["trial_id"]
    assert single["params"] == best["params"] and single["metrics"] == best["metrics"]

    status = ci.run("status", url, "--output", "json")
    assert status.code == 0, status
    state = json.loads(status.stdout)
    assert state["counts"] == {"succeeded": 9}

    listed = ci.run("list", "--store", ci.root, "--output", "json")
    assert listed.code == 0, listed
    sweeps = json.loads(listed.stdout)
    assert [(s["sweep_id"], s["store_url"], s["trials"]) for s in sweeps] == [(sweep_id, url, 9)]
    table = ci.run("list", "--store", ci.root, COLUMNS="200")
    assert table.code == 0 and sweep_id in table.stdout, table


def test_wait_times_out_with_exit_3_on_a_sweep_that_cannot_finish(ci: Ci) -> None:
    # A sweep whose trials were recorded but never launched, and that nobody drives.
    task, _ = flaky_task(ci.tmp_path)
    spec = load(task)
    header = SweepHeader.new(
        sweep_id="never-launched", task=spec, task_file=task, backend="local",
        store_url=ci.root, max_parallel=1, expected_trials=grid_size(spec),
    )  # fmt: skip
    Ledger.create(ci.store(), header).add_trials(expand(spec))
    started = time.monotonic()
    done = ci.run("wait", f"{ci.root}/never-launched", "--timeout", "2", "--interval", "0.5")
    assert done.code == 3, done
    assert time.monotonic() - started < 30
    assert "3 of 3 trials still unfinished after 2 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failed_trial_fails_wait_and_results(ci: Ci) -> None:
    task, _ = flaky_task(ci.tmp_path)
    launched = ci.up_detached(task)
    url = launched["store_url"]
    waited = ci.wait(url)
    assert waited.code == 1, waited
    assert "1 failed, 2 succeeded" in waited.stderr
    results = ci.run("results", url, "--format", "json")
    assert results.code == 1, results
    by_x = {t["params"]["x"]: t for t in json.loads(results.stdout)["trials"]}
    assert (by_x[2]["status"], by_x[2]["rank"], by_x[2]["exit_code"]) == ("failed", None, 7)
    assert by_x[2]["reason"] == "exited with code 7"
    assert (by_x[3]["rank"], by_x[1]["rank"]) == (1, 2)  # loss 0.8, then 1.2
    markdown = ci.run("results", url, "--format", "markdown")
    assert markdown.code == 1 and "failed" in markdown.stdout


def test_resuming_a_finished_sweep_launches_nothing(ci: Ci) -> None:
    task, marker = flaky_task(ci.tmp_path)
    marker.touch()
    home = ci.home()
    launched = ci.up_detached(task, home=home)
    sweep_id, url = launched["sweep_id"], launched["store_url"]
    assert ci.wait(url).code == 0
    ci.wait_for_controller(sweep_id)
    store = ci.store()
    ids = trial_ids_by_x(store, sweep_id)

    resumed = ci.up_detached(task, "--sweep-id", sweep_id, home=home)
    assert resumed["sweep_id"] == sweep_id
    assert resumed["launched"] == []
    assert sorted(resumed["skipped"]) == sorted(ids.values())
    ledger = Ledger.open(store, sweep_id)
    assert {t: [a.number for a in ledger.attempts[t]] for t in ids.values()} == {
        t: [1] for t in ids.values()
    }  # no trial was launched again
    assert ci.wait(url).code == 0
    for trial_id in launched["launched"]:
        trial = join(sweep_id, "trials", trial_id)
        for name in ("run.log", "metrics.json"):
            assert ci.versions(join(trial, name)) == 1, (trial_id, name)
        # One run writes status.json twice: "running" when it starts, the final one at the end.
        assert ci.versions(join(trial, "status.json")) == 2, trial_id
        assert ci.versions(join(sweep_id, "finished", f"{trial_id}.json")) == 1, trial_id


def test_resuming_launches_only_trials_never_launched(ci: Ci) -> None:
    task, marker = flaky_task(ci.tmp_path)
    marker.touch()
    home = ci.home()
    launched = ci.up_detached(task, home=home)
    sweep_id, url = launched["sweep_id"], launched["store_url"]
    assert ci.wait(url).code == 0
    ci.wait_for_controller(sweep_id)
    # Make trial x=3 one that was never launched: the ledger has no attempt for it (as when
    # `up` was interrupted before submitting it) and the store holds nothing of it.
    store = ci.store()
    ids = trial_ids_by_x(store, sweep_id)
    store.delete(join(sweep_id, "records", ids[3], "attempt-1.json"))
    for info in store.list(join(sweep_id, "trials", ids[3])):
        store.delete(info.key)
    store.delete(join(sweep_id, "finished", f"{ids[3]}.json"))

    resumed = ci.up_detached(task, "--sweep-id", sweep_id, home=home)
    assert resumed["launched"] == [ids[3]]
    assert sorted(resumed["skipped"]) == sorted([ids[1], ids[2]])
    waited = ci.wait(url)
    assert waited.code == 0, waited
    assert "3 succeeded" in waited.stderr
    assert ci.versions(join(sweep_id, "trials", ids[3], "run.log")) == 2  # ran again
    for x in (1, 2):
        assert ci.versions(join(sweep_id, "trials", ids[x], "run.log")) == 1  # left alone
    ledger = Ledger.open(store, sweep_id)
    assert {t: len(ledger.attempts[t]) for t in ids.values()} == {t: 1 for t in ids.values()}


def test_retry_relaunches_only_the_failed_trial(ci: Ci) -> None:
    task, marker = flaky_task(ci.tmp_path)
    home = ci.home()
    launched = ci.up_detached(task, home=home)
    sweep_id, url = launched["sweep_id"], launched["store_url"]
    assert ci.wait(url).code == 1  # x=2 failed: no marker yet
    ci.wait_for_controller(sweep_id)
    store = ci.store()
    ids = trial_ids_by_x(store, sweep_id)
    failed = join(sweep_id, "trials", ids[2])
    assert store.get(join(failed, "partial.txt")) == b"partial output\n"

    marker.touch()
    retried = ci.run("retry", url, "--yes", home=home)
    assert retried.code == 0, retried
    assert f"relaunched 1 trial(s) of {sweep_id}" in retried.stderr

    results = ci.run("results", url, "--format", "json")
    assert results.code == 0, results
    by_x = {t["params"]["x"]: t for t in json.loads(results.stdout)["trials"]}
    assert {x: t["status"] for x, t in by_x.items()} == {
        1: "succeeded",
        2: "succeeded",
        3: "succeeded",
    }
    assert by_x[2]["metrics"]["loss"] == pytest.approx(0.2) and by_x[2]["rank"] == 1

    # The failed attempt is kept, whole, under attempts/1; the new attempt starts clean.
    attempt = join(failed, "attempts", "1")
    assert b"boom: no marker" in (store.get(join(attempt, "run.log")) or b"")
    assert json.loads(store.get(join(attempt, "finished.json")) or b"{}")["exit_code"] == 7
    assert store.get(join(attempt, "partial.txt")) == b"partial output\n"
    assert store.get(join(failed, "partial.txt")) is None
    assert b"trial x=2 ran" in (store.get(join(failed, "run.log")) or b"")
    assert (
        json.loads(store.get(join(sweep_id, "finished", f"{ids[2]}.json")) or b"{}")["exit_code"]
        == 0
    )
    latest = Ledger.open(store, sweep_id).latest(ids[2])
    assert latest is not None and latest.number == 2

    # The trials that had succeeded were not run again.
    for x in (1, 3):
        for name in ("run.log", "metrics.json"):
            assert ci.versions(join(sweep_id, "trials", ids[x], name)) == 1, (x, name)

    again = ci.run("retry", url, "--yes", home=home)
    assert again.code == 0 and "no failed trial to retry" in again.stderr, again
