"""End to end on the local backend, through the real CLI in separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, run_cli


def _store(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'store'}"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_quickstart_ranks_the_designed_best(tmp_path: Path, isolated_home: Path) -> None:
    store = _store(tmp_path)
    done = run_cli(
        "up",
        str(EXAMPLES / "quickstart" / "task.yaml"),
        "--local",
        "--yes",
        "--store",
        store,
        "--output",
        "json",
    )
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert result["metric"] == "eval/loss" and result["lower_is_better"] is True
    assert len(result["trials"]) == 9
    best = result["best"]
    assert best["params"]["learning_rate"] == 0.1 and best["params"]["batch_size"] == 8
    assert best["rank"] == 1 and best["status"] == "succeeded"
    values = [t["value"] for t in result["trials"]]
    assert values == sorted(values)
    assert "9 trial(s)" in done.stderr  # the count is shown before launching

    sweep_dir = tmp_path / "store" / result["sweep_id"]
    header = json.loads((sweep_dir / "sweep.json").read_text())
    recorded = {p.parent.name for p in (sweep_dir / "records").glob("*/trial.json")}
    assert recorded == {t["trial_id"] for t in result["trials"]}
    assert header["skysweep_version"] and header["created_at"]
    trial_dir = sweep_dir / "trials" / best["trial_id"]
    assert json.loads((trial_dir / "params.json").read_text())["learning_rate"] == 0.1
    status = json.loads((trial_dir / "status.json").read_text())
    assert status["exit_code"] == 0 and status["state"] == "succeeded"
    assert status["started_at"] and status["finished_at"]
    assert len((trial_dir / "history.jsonl").read_text().splitlines()) == 3
    assert "epoch 3" in (trial_dir / "run.log").read_text()

    # Any reader of the store sees the same ranking, in every format.
    again = run_cli("results", result["sweep_id"], "--store", store, "--format", "json")
    assert again.code == 0 and json.loads(again.stdout)["best"]["trial_id"] == best["trial_id"]
    markdown = run_cli("results", f"{store}/{result['sweep_id']}", "--format", "markdown")
    assert markdown.code == 0 and f"`{best['trial_id']}`" in markdown.stdout
    assert markdown.stdout.count("\n| ") == 10  # header + 9 rows
    table = run_cli("results", result["sweep_id"], "--store", store)
    assert best["trial_id"] in table.stdout and "best: trial" in table.stdout


def test_json_form_gives_the_same_trials(tmp_path: Path, isolated_home: Path) -> None:
    yaml_run = run_cli(
        "up",
        str(EXAMPLES / "quickstart" / "task.yaml"),
        "--local",
        "--yes",
        "--dry-run",
        "--output",
        "json",
        "--store",
        _store(tmp_path),
    )
    json_run = run_cli(
        "up",
        str(EXAMPLES / "quickstart" / "task.json"),
        "--local",
        "--yes",
        "--dry-run",
        "--output",
        "json",
        "--store",
        _store(tmp_path),
    )
    assert yaml_run.code == 0 and json_run.code == 0, (yaml_run, json_run)
    assert json.loads(yaml_run.stdout)["trials"] == json.loads(json_run.stdout)["trials"] == 9
    assert not (tmp_path / "store").exists()  # a dry run writes nothing


def test_parallel_cap_setup_once_and_one_failure(tmp_path: Path, isolated_home: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    task = _write(
        tmp_path / "task.yaml",
        f"""
name: cap-test
setup: echo setup >> {marks}/setup.log
run: |
  python3 -c "import time; print('start', time.time())" >> {marks}/$SKYSWEEP_TRIAL_ID
  sleep 0.6
  python3 -c "import time; print('end', time.time())" >> {marks}/$SKYSWEEP_TRIAL_ID
  if [ "$x" = 3 ]; then echo boom >&2; exit 7; fi
  echo '{{"score": '$x'}}' > $SKYSWEEP_OUTPUT_DIR/metrics.json
sweeps:
  sweep_config:
    x: [1, 2, 3, 4, 5]
  sweep_metric: score
  lower_is_better: false
""",
    )
    done = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--max-parallel",
        "2",
        "--store",
        _store(tmp_path),
        "--output",
        "json",
    )
    assert done.code == 1, done  # the sweep ran, one trial failed
    result = json.loads(done.stdout)
    by_x = {t["params"]["x"]: t for t in result["trials"]}
    assert by_x[3]["status"] == "failed" and by_x[3]["rank"] is None
    assert "exited with code 7" in by_x[3]["reason"]
    assert [t["params"]["x"] for t in result["trials"] if t["rank"]] == [5, 4, 2, 1]
    assert result["best"]["params"]["x"] == 5
    assert (marks / "setup.log").read_text().count("setup") == 1

    spans = []
    for path in marks.iterdir():
        if path.name == "setup.log":
            continue
        lines = dict(line.split() for line in path.read_text().splitlines())
        spans.append((float(lines["start"]), float(lines["end"])))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert len(spans) == 5 and peak == 2


def test_secrets_reach_the_job_and_never_the_disk(tmp_path: Path, isolated_home: Path) -> None:
    import hashlib

    secret = "s3cr3t-value-4f9a1c"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    # The job proves it got the value by its hash, so the task file never holds the secret.
    task = _write(
        tmp_path / "task.yaml",
        """
name: secret-test
envs:
  TOKEN: "{{secret._MY_TOKEN}}"
run: |
  test "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" = DIGEST || exit 3
  echo '{"eval/loss": 1}' > $SKYSWEEP_OUTPUT_DIR/metrics.json
""".replace("DIGEST", digest),
    )
    missing = run_cli("up", str(task), "--local", "--yes", "--store", _store(tmp_path))
    assert missing.code == 2 and "MY_TOKEN" in missing.stderr, missing
    assert not (tmp_path / "store").exists()

    done = run_cli(
        "up", str(task), "--local", "--yes", "--store", _store(tmp_path), env={"MY_TOKEN": secret}
    )
    assert done.code == 0, done
    for root in (tmp_path / "store", isolated_home):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path


def test_interrupt_leaves_trials_running_then_wait_logs_and_down(
    tmp_path: Path, isolated_home: Path
) -> None:
    task = _write(
        tmp_path / "task.yaml",
        """
name: slow
run: |
  echo "working on $n"
  sleep 1.5
  echo '{"eval/loss": '$n'}' > $SKYSWEEP_OUTPUT_DIR/metrics.json
sweeps:
  sweep_config:
    n: [1, 2]
""",
    )
    store = _store(tmp_path)
    up = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 30
    while not list((tmp_path / "store").glob("*/trials/*/status.json")):
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.1)
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=30)
    assert up.returncode == 130, (out, err)
    assert "keep running" in err and "skysweep wait" in err and "skysweep down" in err
    sweep_id = next((tmp_path / "store").iterdir()).name

    waited = run_cli("wait", sweep_id, "--store", store, "--timeout", "60", "--interval", "0.2")
    assert waited.code == 0, waited
    assert "finished: best trial" in waited.stderr and waited.stdout == ""

    status = run_cli("status", sweep_id, "--store", store, "--output", "json")
    assert status.code == 0
    assert {t["status"] for t in json.loads(status.stdout)["trials"]} == {"succeeded"}

    trial_id = json.loads(status.stdout)["trials"][0]["trial_id"]
    logs = run_cli("logs", sweep_id, trial_id, "--store", store, "--no-follow")
    assert logs.code == 0 and "working on" in logs.stdout

    # Nothing runs any more: down says so, twice, and changes nothing.
    for _ in range(2):
        down = run_cli("down", sweep_id, "--store", store)
        assert down.code == 0 and "nothing was running" in down.stderr, down


def test_down_cancels_a_running_local_sweep(tmp_path: Path, isolated_home: Path) -> None:
    task = _write(
        tmp_path / "task.yaml",
        """
name: forever
run: sleep 60
sweeps:
  sweep_config:
    n: [1, 2, 3]
""",
    )
    store = _store(tmp_path)
    up = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--detach",
        "--output",
        "json",
        "--max-parallel",
        "2",
        "--store",
        store,
    )
    assert up.code == 0, up
    sweep_id = json.loads(up.stdout)["sweep_id"]
    deadline = time.monotonic() + 30
    while len(list((tmp_path / "store").glob("*/trials/*/status.json"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    down = run_cli("down", sweep_id, "--store", store)
    assert down.code == 0 and "cancelled 2 job(s)" in down.stderr, down
    result = run_cli("results", sweep_id, "--store", store, "--format", "json")
    assert result.code == 1
    assert {t["status"] for t in json.loads(result.stdout)["trials"]} == {"cancelled"}
    again = run_cli("down", sweep_id, "--store", store)
    assert again.code == 0 and "nothing was running" in again.stderr


@pytest.mark.parametrize("flag", ["--help", "up --help", "results --help"])
def test_help_answers(flag: str) -> None:
    done = run_cli(*flag.split())
    assert done.code == 0 and "Usage" in done.stdout


def test_a_crashed_machine_loses_trials_and_resume_relaunches_only_them(
    tmp_path: Path, isolated_home: Path
) -> None:
    task = _write(
        tmp_path / "task.yaml",
        """
name: crash
run: |
  if [ "$n" = 2 ] && [ ! -e "$MARKER" ]; then sleep 60; fi
  echo '{"eval/loss": '$n'}' > $SKYSWEEP_OUTPUT_DIR/metrics.json
sweeps:
  sweep_config:
    n: [1, 2, 3]
""",
    )
    store = _store(tmp_path)
    env = {"MARKER": str(tmp_path / "marker")}
    up = run_cli(
        "up", str(task), "--local", "--yes", "--detach", "--output", "json",
        "--max-parallel", "1", "--store", store, env=env,
    )  # fmt: skip
    assert up.code == 0, up
    sweep_id = json.loads(up.stdout)["sweep_id"]
    sweep_dir = tmp_path / "store" / sweep_id
    deadline = time.monotonic() + 30

    def started() -> int:
        # An attempt is first recorded as being submitted (no job yet), then with its job.
        records = sweep_dir.glob("records/*/attempt-1.json")
        return sum(json.loads(p.read_text() or "{}").get("job") is not None for p in records)

    while started() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    trial_of = {
        json.loads(p.read_text())["params"]["n"]: p.parent.name
        for p in sweep_dir.glob("records/*/trial.json")
    }
    done_before = (sweep_dir / "finished" / f"{trial_of[1]}.json").stat()
    # The machine "crashes": the controller and the running trial die without a word.
    holder = json.loads(max((sweep_dir / "lease").iterdir()).read_text())
    attempt = json.loads((sweep_dir / "records" / trial_of[2] / "attempt-1.json").read_text())
    os.killpg(attempt["job"]["locator"]["pid"], signal.SIGKILL)
    os.kill(holder["pid"], signal.SIGKILL)

    status = json.loads(run_cli("status", sweep_id, "--store", store, "--output", "json").stdout)
    states = {t["params"]["n"]: t["status"] for t in status["trials"]}
    assert states == {1: "succeeded", 2: "lost"}  # n=3 was never launched
    waited = run_cli("wait", sweep_id, "--store", store, "--timeout", "2", "--interval", "0.2")
    assert waited.code == 3, waited  # nobody drives the sweep any more: it cannot finish

    (tmp_path / "marker").write_text("")
    # The dead controller's lease need not be waited out: its process is gone.
    resumed = run_cli(
        "up", str(task), "--local", "--yes", "--output", "json", "--sweep-id", sweep_id,
        "--store", store, "--max-parallel", "2", env=env,
    )  # fmt: skip
    assert resumed.code == 0, resumed
    assert {t["status"] for t in json.loads(resumed.stdout)["trials"]} == {"succeeded"}
    assert "2 trial(s) launched now" in resumed.stderr
    done_after = (sweep_dir / "finished" / f"{trial_of[1]}.json").stat()
    assert (done_after.st_ino, done_after.st_mtime_ns) == (
        done_before.st_ino,
        done_before.st_mtime_ns,
    )  # the trial that was done was not run again
