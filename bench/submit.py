"""Benchmark: submitting a sweep's trials to SkyPilot, against a real local API server.

    python bench/submit.py [--trials 64] [--loop 3]

Starts SkyPilot's API server on loopback (AWS faked by moto, as the tests do), then prints,
side by side in one run:
- one ``sky.jobs.launch`` of one task (the unit everything is compared with);
- skysweep submitting ``--trials`` trials (``SkyBackend.submit``: trials that share
  resources go out as one ``num_jobs`` request); target: <= 1.5x one launch;
- the same trials spread over two providers (two requests, sent before either is awaited);
- the documented baseline: a shell loop of ``sky jobs launch -d -y``, one per trial, on
  ``--loop`` trials, and the per-trial ratio against skysweep;
- the API-version check skysweep pays once per sweep (one ``sky.api_info()``);
- whole processes: ``skysweep up --detach --yes`` of ``--trials`` trials (the CLI in a
  subprocess, store on the moto S3 endpoint) against a script process that does
  ``import sky`` and one ``sky.jobs.launch``, each started on a settled server (every job
  cancelled, the CPUs idle for 3 s), in alternating order; target: <= 1.5x. One more
  ``up`` run with timers around SkyPilot's calls shows where the time goes in it.
Every job is cancelled at the end; the server is stopped.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sky_api_server import apply_env, running_sky_api_server  # noqa: E402

TARGET_RATIO = 1.5
BUCKET = "bench-submit"

ONE_LAUNCH_PROCESS = """
import sys
import sky
task = sky.Task.from_yaml_config({"name": "bench-process", "workdir": sys.argv[1],
    "run": "python train.py", "resources": {"cpus": 2, "infra": "aws"}})
job_ids, _ = sky.get(sky.jobs.launch(task, name="bench-process"))
assert job_ids
"""

# Runs the skysweep CLI in this process with a timer around each SkyPilot call it makes
# (the time of a request's get/stream_and_get is added to the call that made the request),
# then writes the seconds per phase as JSON to $BENCH_TIMINGS.
TIMED_UP = """
import json, os, sys, time
start = time.perf_counter()
spent = {}
def add(label, seconds):
    spent[label] = spent.get(label, 0.0) + seconds
clock = time.perf_counter()
import sky
import sky.jobs
add("import sky", time.perf_counter() - clock)
made_by = {}
def timed(label, fn, remember=True):
    def wrapper(*args, **kwargs):
        clock = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        finally:
            add(label, time.perf_counter() - clock)
        if remember:
            made_by[out] = label
        return out
    return wrapper
def awaited(fn):
    def wrapper(request, *args, **kwargs):
        clock = time.perf_counter()
        try:
            return fn(request, *args, **kwargs)
        finally:
            add(made_by.get(request, "other requests"), time.perf_counter() - clock)
    return wrapper
sky.api_info = timed("api_info (version check)", sky.api_info, remember=False)
sky.client.sdk.enabled_clouds = timed("enabled clouds", sky.client.sdk.enabled_clouds)
sky.optimize = timed("optimizer", sky.optimize)
sky.jobs.launch = timed("launch (num_jobs)", sky.jobs.launch)
sky.Task.from_yaml_config = staticmethod(
    timed("SkyPilot task checks", sky.Task.from_yaml_config, remember=False))
sky.get = awaited(sky.get)
sky.stream_and_get = awaited(sky.stream_and_get)
import skysweep.cli
from skysweep.cli import main
# skysweep leaves with os._exit (no interpreter teardown); exit as usual so the timings are written.
skysweep.cli._leave = sys.exit
sys.argv = ["skysweep", *sys.argv[1:]]
try:
    main()
finally:
    spent["total in process"] = time.perf_counter() - start
    with open(os.environ["BENCH_TIMINGS"], "w") as out:
        json.dump(spent, out)
"""


def grid_task(folder: Path, trials: int, infra: str) -> Path:
    side = max(1, int(trials**0.5))
    rest = max(1, trials // side)
    (folder / "train.py").write_text("print('train')\n")
    path = folder / "task.yaml"
    path.write_text(
        "name: bench-submit\n"
        f"resources:\n  cpus: 2\n  infra: {infra}\n"
        "run: python train.py\n"
        "sweeps:\n  sweep_config:\n"
        f"    learning_rate: {[round(0.001 * (i + 1), 6) for i in range(side)]}\n"
        f"    batch_size: {[8 * (i + 1) for i in range(rest)]}\n"
    )
    return path


def submit_with_skysweep(task_file: Path, store_dir: Path, spread: bool) -> tuple[float, int]:
    from skysweep.backends import LaunchRequest
    from skysweep.backends.sky import SkyBackend, batches
    from skysweep.expand import expand
    from skysweep.launch import new_sweep_id
    from skysweep.load import load
    from skysweep.render import Placement, render
    from skysweep.store import FileStore

    task = load(task_file)
    trials = expand(task)
    sweep_id = new_sweep_id(task.name)
    store = FileStore(store_dir)
    rendered = render(
        task,
        trials,
        sweep_id=sweep_id,
        placement=Placement.mounted(f"s3://bench-bucket/sweeps/{sweep_id}"),
        task_dir=task_file.parent,
        spread=spread,
    )
    request = LaunchRequest(sweep_id=sweep_id, store=store, task=task, trials=rendered)
    start = time.perf_counter()
    records = SkyBackend().submit(request)
    elapsed = time.perf_counter() - start
    failed = [r.error for r in records.values() if r.job is None]
    if failed:
        sys.exit(f"submission failed: {failed[:3]}")
    assert len({r.job.job_id for r in records.values() if r.job}) == len(trials)
    return elapsed, len(batches(rendered, sweep_id))


def one_launch(sky: Any, folder: Path) -> float:
    task = sky.Task.from_yaml_config(
        {
            "name": "bench-one",
            "workdir": str(folder),
            "run": "python train.py",
            "resources": {"cpus": 2, "infra": "aws"},
        }
    )
    start = time.perf_counter()
    job_ids, _ = sky.get(sky.jobs.launch(task, name="bench-one"))
    assert job_ids
    return time.perf_counter() - start


def cli_loop(env: dict[str, str], folder: Path, count: int) -> float:
    (folder / "one.yaml").write_text(
        f"name: bench-cli\nworkdir: {folder}\nresources:\n  cpus: 2\n  infra: aws\n"
        "run: python train.py\nenvs:\n  learning_rate: '0.1'\n"
    )
    script = (
        f"for i in $(seq 1 {count}); do sky jobs launch -d -y --env learning_rate=0.$i "
        f"{folder / 'one.yaml'} > /dev/null || exit 1; done"
    )
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=1800)
    return time.perf_counter() - start


def timed_process(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{argv[:4]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def up_argv(task_file: Path, store: str) -> list[str]:
    return ["up", str(task_file), "--detach", "--yes", "--store", store, "--output", "json"]


def whole_processes(
    env: dict[str, str], work: Path, trials: int, runs: int, settle: Callable[[], None]
) -> tuple[list[float], list[float], dict[str, float], float]:
    """Seconds of: the one-launch script process, `skysweep up` of ``trials`` trials (each
    ``runs`` times, alternating), the phases of one timed `up` and its wall time."""
    store = f"s3://{BUCKET}/sweeps"
    folder = work / "process"
    folder.mkdir()
    task_file = grid_task(folder, trials, "aws")
    script, ours = [], []
    one = [sys.executable, "-c", ONE_LAUNCH_PROCESS, str(folder)]
    up = [sys.executable, "-m", "skysweep", *up_argv(task_file, store)]
    for run in range(runs):
        # Each process starts on a settled server, in alternating order: the jobs
        # controllers a launch starts share these 2 cores with whatever runs next, and 64
        # of them (after `up`) would slow the next process by seconds.
        for argv, times in [(one, script), (up, ours)][:: 1 if run % 2 == 0 else -1]:
            settle()
            times.append(timed_process(argv, env))
    timings = work / "timings.json"
    settle()
    wall = timed_process(
        [sys.executable, "-c", TIMED_UP, *up_argv(task_file, store)],
        {**env, "BENCH_TIMINGS": str(timings)},
    )
    return script, ours, json.loads(timings.read_text()), wall


def quiet(sky: Any, *, idle: float = 0.9, seconds: int = 3, limit: float = 120) -> None:
    """Cancel every job and let the server settle: the jobs controllers run inside this one
    API server (consolidation mode), and 64 of them starting on 2 cores make the next
    measure's health checks time out. Settled: the machine's CPUs were at least ``idle``
    idle for ``seconds`` seconds in a row (or ``limit`` seconds have passed)."""
    sky.get(sky.jobs.cancel(all=True))
    start, calm = time.monotonic(), 0
    while calm < seconds and time.monotonic() - start < limit:
        before = _cpu_times()
        time.sleep(1)
        after = _cpu_times()
        busy = [b - a for a, b in zip(before, after, strict=True)]
        calm = calm + 1 if (busy[3] + busy[4]) / max(1, sum(busy)) >= idle else 0


def _cpu_times() -> list[int]:
    """The machine's CPU time so far, per kind (user, nice, system, idle, iowait, ...)."""
    with open("/proc/stat") as stat:
        return [int(field) for field in stat.readline().split()[1:]]


def version_check(sky: Any) -> tuple[float, str]:
    from skysweep.backends.sky import ApiServer

    start = time.perf_counter()
    server = ApiServer.of(sky.api_info())
    return time.perf_counter() - start, server.plan_line(0, 0).split(":")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--loop", type=int, default=3)
    parser.add_argument("--singles", type=int, default=3)
    parser.add_argument("--process-runs", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        print("starting SkyPilot's API server on loopback (about a minute)...", flush=True)
        with running_sky_api_server(base / "server") as info, apply_env(info):
            import sky

            work = base / "work"
            work.mkdir()
            one = sorted(
                one_launch(sky, grid_task(work, 1, "aws").parent) for _ in range(args.singles)
            )
            single = statistics.median(one)
            quiet(sky)
            ours, requests = submit_with_skysweep(
                grid_task(work, args.trials, "aws"), base / "store", spread=False
            )
            quiet(sky)
            spread, spread_requests = submit_with_skysweep(
                grid_task(work, args.trials, "[aws/us-east-1, aws]"),
                base / "store",
                spread=True,
            )
            quiet(sky)
            loop = cli_loop(info.env, work, args.loop)
            quiet(sky)
            check, server = version_check(sky)
            env = {
                **info.env,
                "SKYSWEEP_S3_ENDPOINT_URL": info.moto_endpoint,
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
                ),
            }
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')",
                ],
                env=env,
                check=True,
                timeout=60,
            )
            script, up, phases, timed_wall = whole_processes(
                env, work, args.trials, args.process_runs, lambda: quiet(sky)
            )
            sky.get(sky.jobs.cancel(all=True))

    n = args.trials
    per_loop = loop / args.loop
    rows = [
        (f"one sky.jobs.launch (median of {args.singles})", single, 1, None),
        (f"skysweep, {n} trials, {requests} request(s)", ours, n, TARGET_RATIO),
        (f"skysweep --spread, {n} trials, {spread_requests} request(s)", spread, n, None),
        (f"shell loop of `sky jobs launch -d`, {args.loop} trials", loop, args.loop, None),
    ]
    print(f"\n{'measure':<52} {'seconds':>8} {'per trial':>10} {'x one launch':>13}")
    for name, seconds, count, target in rows:
        ratio = seconds / single
        verdict = "" if target is None else ("ok" if ratio <= target else "OVER")
        print(f"{name:<52} {seconds:8.2f} {seconds / count:10.3f} {ratio:13.2f}  {verdict}")
    print(
        f"\nper trial, the shell loop takes {per_loop:.2f} s and skysweep {ours / n:.3f} s: "
        f"{per_loop / (ours / n):.0f}x faster; {n} trials by the loop would take about "
        f"{per_loop * n:.0f} s, by skysweep {ours:.1f} s."
    )
    print(
        f"\nthe version check ({server}): one sky.api_info() per sweep, {check * 1000:.0f} ms "
        f"= {check / single:.3f}x one launch, {check / ours:.3f}x skysweep's {n}-trial submit"
    )

    base = statistics.median(script)
    whole = statistics.median(up)
    ratio = whole / base
    print(f"\nwhole processes (median of {args.process_runs}):")
    print(f"  python -c 'import sky; one sky.jobs.launch'  {base:7.2f} s   (baseline)")
    print(
        f"  skysweep up --detach --yes, {n} trials       {whole:7.2f} s   {ratio:.2f}x  "
        f"target <= {TARGET_RATIO}x: {'ok' if ratio <= TARGET_RATIO else 'OVER'}"
    )
    print(f"  runs: script {[round(x, 2) for x in script]}, up {[round(x, 2) for x in up]}")
    inside = phases.pop("total in process")
    print(f"\nwhere the time goes in one timed `skysweep up` ({timed_wall:.2f} s wall):")
    for label, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40} {seconds:7.2f} s")
    print(f"  {'skysweep itself (load, render, store)':<40} {inside - sum(phases.values()):7.2f} s")
    print(f"  {'python start, imports before sky':<40} {timed_wall - inside:7.2f} s")


if __name__ == "__main__":
    main()
