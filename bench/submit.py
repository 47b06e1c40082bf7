"""Benchmark: submitting a sweep's trials to SkyPilot, against a real local API server.

    python bench/submit.py [--trials 64] [--loop 3]

Starts SkyPilot's API server on loopback (AWS faked by moto, as the tests do), then prints,
side by side in one run:
- one ``sky.jobs.launch`` of one task (the unit everything is compared with);
- skysweep submitting ``--trials`` trials (``SkyBackend.submit``: trials that share
  resources go out as one ``num_jobs`` request); target: <= 1.5x one launch;
- the same trials spread over two providers (two requests, sent before either is awaited);
- the documented baseline: a shell loop of ``sky jobs launch -d -y``, one per trial, on
  ``--loop`` trials, and the per-trial ratio against skysweep.
Every job is cancelled at the end; the server is stopped.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sky_api_server import apply_env, running_sky_api_server  # noqa: E402

TARGET_RATIO = 1.5


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
    from skysweep.manifest import Manifest

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
    manifest = Manifest.new(
        sweep_id=sweep_id,
        task=task,
        task_file=task_file,
        trials=trials,
        backend="sky",
        store_url=store.url,
        max_parallel=len(trials),
    )
    request = LaunchRequest(
        manifest=manifest, store=store, task=task, trials=rendered, max_parallel=len(trials)
    )
    start = time.perf_counter()
    records = SkyBackend().submit(request)
    elapsed = time.perf_counter() - start
    failed = [r.error for r in records.values() if not r.job_id]
    if failed:
        sys.exit(f"submission failed: {failed[:3]}")
    assert len({r.job_id for r in records.values()}) == len(trials)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--loop", type=int, default=3)
    parser.add_argument("--singles", type=int, default=3)
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
            ours, requests = submit_with_skysweep(
                grid_task(work, args.trials, "aws"), base / "store", spread=False
            )
            spread, spread_requests = submit_with_skysweep(
                grid_task(work, args.trials, "[aws/us-east-1, aws]"),
                base / "store",
                spread=True,
            )
            loop = cli_loop(info.env, work, args.loop)
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


if __name__ == "__main__":
    main()
