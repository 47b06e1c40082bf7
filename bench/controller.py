"""Benchmark: the controller's look, at 1,000 and 10,000 trials.

    python bench/controller.py [--cpu-trials 1000] [--skip-cpu]

Three targets from the controller issue, measured in one run:

1. "The controller's decision step for a sweep of 10,000 trials with 100 running: <= 10 ms
   per look." Times the pure ``decide()`` on a 10,000-trial snapshot (100 running), and
   building that snapshot the way ``Controller.snapshot()`` does from a ledger and results
   held in memory (medians of many calls).
2. "A look costs work in proportion to what changed, not to the sweep's size." Writes a
   sweep into a temp ``file://`` store the way ``up`` and the job wrapper do (header, one
   trial and one attempt record per trial, ``trials/<id>/metrics.json``,
   ``finished/<id>.json``) at 1,000 and 10,000 trials, and times a fresh watcher's first
   look, a repeated look with nothing changed, and a look after 10 more trials finished.
   The baseline is the same look at 1,000 trials: proportional to size would be ~10x.
3. The CPU of watching. The issue: "today ``up`` of 10,000 local trials spends 22 s of CPU
   watching, 13.6x the CPU of 1,000". Runs ``skysweep up --local --yes --max-parallel 8``
   of near-zero trials (``run: 'true'``) and reads the ``up`` process's own CPU
   (``RUSAGE_SELF`` at exit, all its threads, not its trials); the trials' CPU is reported
   beside it, and ``xargs -P 8`` running ``bash -c true`` as often, as a baseline.

No assertions on time: figures are printed beside their targets and baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skysweep.backends import get_backend
from skysweep.collect import TrialResult
from skysweep.controller import Controller, Policy, Snapshot, TrialView, decide
from skysweep.ledger import Ledger, SweepHeader
from skysweep.process import start_time
from skysweep.session import watcher
from skysweep.store import FileStore, join
from skysweep.trial import Attempt, JobHandle, Trial, TrialState

SWEEP = "bench-sweep"
TARGET_DECIDE_MS = 10.0
RUNNING = 100
PARALLEL = 8


def trial_id(i: int) -> str:
    return f"t{i:05d}"


def median_ms(fn: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def state_of(i: int, n: int) -> TrialState:
    """10,000 trials: most ended, 100 running, a tail never launched."""
    if i >= n - 500:
        return TrialState.pending
    if i >= n - 500 - RUNNING:
        return TrialState.running
    return TrialState.failed if i % 17 == 0 else TrialState.succeeded


def header(store: FileStore, n: int) -> SweepHeader:
    return SweepHeader(
        sweep_id=SWEEP,
        name="bench",
        created_at="2025-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={"name": "bench", "run": "true"},
        metric="eval/loss",
        lower_is_better=True,
        backend="local",
        store_url=store.url,
        max_parallel=PARALLEL,
        expected_trials=n,
    )


def attempt(tid: str, job: JobHandle) -> Attempt:
    return Attempt(trial_id=tid, number=1, submitted_at="2025-01-01T00:00:00+00:00", job=job)


def job_handle(tid: str, sweep_dir: Path, pid: int, start: str | None) -> JobHandle:
    return JobHandle(
        backend="local",
        job_id=f"local-{pid}",
        job_name=tid,
        locator={"host": socket.gethostname(), "pid": pid, "start": start,
                 "sweep_dir": str(sweep_dir)},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# 1. The decision step.


def decision_step(n: int) -> None:
    print(f"1. decision step, {n:,} trials ({RUNNING} running), target <= {TARGET_DECIDE_MS:g} ms")
    views = [TrialView(trial_id(i), i, state_of(i, n)) for i in range(n)]
    snapshot = Snapshot(trials=views, source_exhausted=False)
    policy = Policy(max_parallel=RUNNING + 8)
    actions = decide(snapshot, policy)
    assert len(actions.launch) == 8, actions  # the bench measures what it means to
    decide_ms = median_ms(lambda: decide(snapshot, policy), 200)

    with tempfile.TemporaryDirectory() as folder:
        store = FileStore(Path(folder))
        ledger = Ledger.create(store, header(store, n))
        controller = Controller(ledger, get_backend("local"), None, None, policy=policy, lease=None)
        job = job_handle("x", Path(folder), 1, None)
        for i in range(n):
            tid = trial_id(i)
            state = state_of(i, n)
            ledger.trials[tid] = Trial(i, tid, {"lr": 10 ** (-4 + 3 * i / n), "i": i})
            if state is not TrialState.pending:
                ledger.attempts[tid] = [attempt(tid, job)]
            controller.results[tid] = TrialResult(tid, i, ledger.trials[tid].params, state)
        assert sum(v.state.in_flight for v in controller.snapshot().trials) == RUNNING
        build_ms = median_ms(controller.snapshot, 50)
        whole_ms = median_ms(lambda: decide(controller.snapshot(), policy), 50)

    def row(name: str, ms: float) -> None:
        verdict = "PASS" if ms <= TARGET_DECIDE_MS else "FAIL"
        print(f"   {name:46} {ms:8.2f} ms  {ms / TARGET_DECIDE_MS:5.2f}x target  {verdict}")

    row("decide(snapshot) alone", decide_ms)
    row("Controller.snapshot() from ledger + results", build_ms)
    row("snapshot() + decide(): one look's deciding", whole_ms)


# ---------------------------------------------------------------------------------------
# 2. A look's cost against the sweep's size.


ROUNDS = 5
BATCH = 10


def write_finished(store: FileStore, tid: str, i: int) -> None:
    store.put(join(SWEEP, "trials", tid, "metrics.json"), json.dumps({"eval/loss": i}).encode())
    record = {"trial_id": tid, "state": "succeeded", "exit_code": 0}
    store.put(join(SWEEP, "finished", f"{tid}.json"), json.dumps(record).encode())


def look_costs(n: int) -> dict[str, float]:
    """Seconds for: a fresh watcher's first look; an unchanged look; a look after 10 more
    trials finished (medians). All ``n`` trials launched, all but ``ROUNDS * BATCH`` ended."""
    with tempfile.TemporaryDirectory() as folder:
        store = FileStore(Path(folder))
        writer = Ledger.create(store, header(store, n))
        trials = [Trial(i, trial_id(i), {"i": i}) for i in range(n)]
        writer.add_trials(trials)
        sweep_dir = Path(folder) / SWEEP
        pid = os.getpid()  # the unfinished trials' "process": alive, so they run
        job = job_handle("x", sweep_dir, pid, start_time(pid))
        writer.add_attempts([attempt(t.trial_id, job) for t in trials])
        unfinished = ROUNDS * BATCH
        for i in range(n - unfinished):
            write_finished(store, trial_id(i), i)

        started = time.perf_counter()
        reader = watcher(Ledger.open(store, SWEEP))
        reader.observe()
        first = time.perf_counter() - started
        running = sum(r.state is TrialState.running for r in reader.results.values())
        assert len(reader.results) == n and running == unfinished, running

        repeat = median_ms(reader.observe, 20) / 1000

        after = []
        for r in range(ROUNDS):
            for i in range(n - unfinished + r * BATCH, n - unfinished + (r + 1) * BATCH):
                write_finished(store, trial_id(i), i)
            started = time.perf_counter()
            changed = reader.observe()
            after.append(time.perf_counter() - started)
            assert len(changed) == BATCH, changed
        assert all(r.state is TrialState.succeeded for r in reader.results.values())
        listed = len(store.list(join(SWEEP, "records"))) + len(store.list(join(SWEEP, "finished")))
    return {
        "first": first,
        "repeat": repeat,
        "after": statistics.median(after),
        "listed": listed,
    }


def look_scaling(small: int, large: int) -> None:
    print(f"\n2. one look, {small:,} vs {large:,} trials (file:// store; proportional = 10x)")
    a, b = look_costs(small), look_costs(large)
    print(f"   {'':40} {f'{small:,}':>10} {f'{large:,}':>10} {'ratio':>7}")
    for key, name in (
        ("first", "fresh watcher: open + first look"),
        ("repeat", "repeated look, nothing changed"),
        ("after", f"look after {BATCH} more trials finished"),
    ):
        print(f"   {name:40} {a[key] * 1000:8.1f}ms {b[key] * 1000:8.1f}ms {b[key] / a[key]:6.1f}x")
    print(
        f"   still scales with size: every look LISTs records/ and finished/ ({a['listed']:,.0f}"
        f" vs {b['listed']:,.0f} keys, a stat each on file://) and walks every trial's latest"
        " attempt to pick the ones to poll"
    )


# ---------------------------------------------------------------------------------------
# 3. The CPU of watching.


SHIM = """
import atexit, json, os, resource, runpy, sys
def report():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["BENCH_RUSAGE"], "w") as out:
        json.dump([me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime], out)
atexit.register(report)
sys.argv = ["skysweep", *sys.argv[1:]]
runpy.run_module("skysweep", run_name="__main__")
"""


def up_cpu(trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        task = root / "project" / "task.yaml"
        task.parent.mkdir()
        values = ", ".join(str(i) for i in range(trials))
        task.write_text(f"name: bench\nrun: 'true'\nsweeps:\n  sweep_config:\n    i: [{values}]\n")
        env = {**os.environ, "HOME": str(root / "home"), "BENCH_RUSAGE": str(root / "rusage")}
        command = [
            sys.executable, "-c", SHIM, "up", str(task), "--local", "--yes",
            "--max-parallel", str(PARALLEL), "--store", f"file://{root}/store",
        ]  # fmt: skip
        started = time.perf_counter()
        with (root / "stderr").open("wb") as err:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if not (root / "rusage").exists():
            raise RuntimeError(f"skysweep up failed: {(root / 'stderr').read_text()[-2000:]}")
        # A non-zero exit is expected: 'true' writes no metric, so there is nothing to rank.
        ended = len(list((root / "store").glob("*/finished/*.json")))
        own, children = json.loads((root / "rusage").read_text())
        total = usage.ru_utime + usage.ru_stime

        lines = "".join(f"{i}\n" for i in range(trials))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        xstart = time.perf_counter()
        subprocess.run(
            ["xargs", "-P", str(PARALLEL), "-I{}", "bash", "-c", "true"],
            input=lines, text=True, env=env, check=True, capture_output=True,
        )  # fmt: skip
        xwall = time.perf_counter() - xstart
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        xargs = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"own": own, "children": children, "total": total, "wall": wall,
            "xargs": xargs, "xwall": xwall, "code": os.waitstatus_to_exitcode(status),
            "ended": ended}  # fmt: skip


def watching_cpu(counts: list[int]) -> None:
    print(
        f"\n3. CPU of 'skysweep up --local --max-parallel {PARALLEL}', run: 'true' "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"   {'trials':>7} {'up itself':>10} {'per trial':>10} {'trials CPU':>11} "
        f"{'wall':>7} {'xargs CPU':>10} {'xargs wall':>11}"
    )
    rows = {}
    for n in counts:
        r = rows[n] = up_cpu(n)
        print(
            f"   {n:7,} {r['own']:9.2f}s {r['own'] / n * 1000:8.2f}ms {r['children']:10.2f}s "
            f"{r['wall']:6.1f}s {r['xargs']:9.2f}s {r['xwall']:10.1f}s  "
            f"(exit {r['code']}, {r['ended']:,} finished records)"
        )
    if len(counts) >= 2:
        small, large = counts[0], counts[-1]
        grow = rows[large]["own"] / rows[small]["own"]
        print(
            f"   up's own CPU, {large:,} vs {small:,} trials: {grow:.1f}x for {large / small:g}x "
            f"the trials (linear = {large / small:g}x; the issue saw 13.6x for 10x)"
        )
    n = counts[-1]
    per = rows[n]["own"] / n
    if len(counts) >= 2:
        per = (rows[n]["own"] - rows[counts[0]]["own"]) / (n - counts[0])
    print(
        f"   marginal CPU per trial {per * 1000:.2f} ms; linear extrapolation to 10,000 trials: "
        f"{per * 10000:.1f} s (up's own CPU covers start-up, launching, records and watching,"
        " so it is not the issue's 22 s of watching alone, measured elsewhere)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-trials", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores\n")
    decision_step(10_000)
    look_scaling(1_000, 10_000)
    if not args.skip_cpu:
        watching_cpu(args.cpu_trials)


if __name__ == "__main__":
    main()
