"""Benchmark: a detached sweep's job group, against a real local API server.

    python bench/detach.py [--runs 3]

Starts SkyPilot's API server on loopback (AWS faked by moto, as the tests do), then prints,
side by side in one run:
- the baseline: a script process that does ``import sky`` and one ``sky.jobs.launch``;
- ``skysweep up --detach --max-parallel 2`` of a 4-trial grid as a whole process, and the
  time from the process start to the sweep's controller job (the group) being queued (its
  launch request returned the job id) and to its first trials being submitted into the
  group (their launch returned), read from what ``up`` prints as it goes;
- the controller's reaction: ``skysweep controller`` started as SkyPilot starts the group's
  task (the group's id in ``SKYPILOT_MANAGED_JOB_ID``/``SKYPILOT_ROOT_JOB_ID``), the time
  from its start to "driving", and from a trial's finished record in the store to the next
  trial submitted into the group.
No VM boots here: on a cloud the controller job's instance adds its boot time before the
controller starts. Every job is cancelled at the end; the server is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sky_api_server import running_sky_api_server  # noqa: E402

BUCKET = "bench-detach"
STORE = f"s3://{BUCKET}/sweeps"

ONE_LAUNCH = """
import sys
import sky
task = sky.Task.from_yaml_config({"name": "bench-one", "workdir": sys.argv[1],
    "run": "python train.py", "resources": {"cpus": 2, "infra": "aws"}})
job_ids, _ = sky.get(sky.jobs.launch(task, name="bench-one"))
assert job_ids
"""

CANCEL_ALL = "import sky; sky.get(sky.jobs.cancel(all_users=True))"


def task_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("print('train')\n")
    path = folder / "task.yaml"
    path.write_text(
        "name: bench-detach\nresources:\n  cpus: 2\n  infra: aws\nrun: python train.py\n"
        "sweeps:\n  sweep_config:\n    lr: [0.1, 0.01]\n    bs: [8, 16]\n"
    )
    return path


def python(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        sys.exit(f"{args[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


FINISH = """
import json, sys, boto3
bucket, prefix, trial_id = sys.argv[1:4]
s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key=f"{prefix}/trials/{trial_id}/metrics.json",
              Body=json.dumps({"eval/loss": 0.5}).encode())
record = {"trial_id": trial_id, "state": "succeeded", "exit_code": 0}
s3.put_object(Bucket=bucket, Key=f"{prefix}/finished/{trial_id}.json",
              Body=json.dumps(record).encode())
"""


def finish(env: dict[str, str], sweep_id: str, trial_id: str) -> None:
    """What the trial's wrapper writes when it succeeds (no VM runs it here)."""
    python(env, "-c", FINISH, BUCKET, f"sweeps/{sweep_id}", trial_id)


def one_run(env: dict[str, str], work: Path) -> dict[str, float]:
    folder = work / f"run-{time.monotonic_ns()}"
    task = task_file(folder)
    script_start = time.perf_counter()
    python(env, "-c", ONE_LAUNCH, str(folder))
    script = time.perf_counter() - script_start

    # When `up` says so on stderr: the group's launch returned its job id, then the first
    # trials' launch returned theirs.
    start = time.perf_counter()
    up = subprocess.Popen(
        [
            sys.executable, "-m", "skysweep", "up", str(task), "--detach", "--yes",
            "--max-parallel", "2", "--store", STORE, "--output", "json",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert up.stderr is not None
    group_at = first_at = float("nan")
    for line in up.stderr:
        if line.startswith("job group: SkyPilot job"):
            group_at = time.perf_counter() - start
        elif line.startswith("submitted sweep"):
            first_at = time.perf_counter() - start
    out, _ = up.communicate()
    elapsed = time.perf_counter() - start
    if up.returncode != 0:
        sys.exit(f"up failed ({up.returncode})")
    data = json.loads(out)
    group = int(data["controller_job_id"])
    sweep_id = data["sweep_id"]

    controller_env = {
        **env,
        "SKYPILOT_MANAGED_JOB_ID": str(group),
        "SKYPILOT_ROOT_JOB_ID": str(group),
    }
    started = time.perf_counter()
    controller = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "controller", sweep_id, "--store", STORE],
        env=controller_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert controller.stdout is not None
    while "driving the sweep" not in controller.stdout.readline():
        assert controller.poll() is None
    driving = time.perf_counter() - started
    finished_at = time.perf_counter()
    finish(env, sweep_id, data["launched"][0])
    while "launched" not in (line := controller.stdout.readline()):
        assert line, "the controller ended"
    reaction = time.perf_counter() - finished_at
    controller.kill()
    controller.wait()
    python(env, "-c", CANCEL_ALL)
    return {
        "script": script,
        "up": elapsed,
        "group_queued": group_at,
        "first_trial": first_at,
        "controller_driving": driving,
        "reaction": reaction,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        print("starting SkyPilot's API server on loopback (a few minutes)...", flush=True)
        with running_sky_api_server(base / "server") as info:
            env = {**info.env, "SKYSWEEP_S3_ENDPOINT_URL": info.moto_endpoint}
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
            python(env, "-c", f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')")
            runs = [one_run(env, base / "work") for _ in range(args.runs)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [
        ("baseline: import sky + one sky.jobs.launch, whole process", median["script"]),
        ("skysweep up --detach (4 trials, cap 2), whole process", median["up"]),
        ("  its controller job (the group) queued after", median["group_queued"]),
        ("  its first trials submitted into the group after", median["first_trial"]),
        ("skysweep controller: start to driving", median["controller_driving"]),
        ("a trial's finished record to the next trial submitted", median["reaction"]),
    ]
    print(f"\nmedians over {args.runs} run(s), seconds:")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds:6.2f}")
    print(f"  up --detach against the baseline: {median['up'] / median['script']:.2f}x")


if __name__ == "__main__":
    main()
