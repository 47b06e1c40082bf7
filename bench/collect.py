"""Benchmark: collecting a finished 1,000-trial sweep from S3, side by side.

Starts a moto S3 server as a subprocess on a free loopback port, writes a finished sweep the way
jobs do (``trials/<id>/metrics.json`` and ``status.json``, then ``finished/<id>.json``), adds a
simulated network latency to every request (a botocore ``before-send`` hook that sleeps, so
concurrent requests overlap as they would on a network) and measures, in one run:

1. the naive way: a sequential loop of GETs of metrics.json (timed on a sample, extrapolated);
2. the first-ever collection (no ``collected.json`` snapshot yet; parallel fetches);
3. a cold collection by a fresh Collector on a "new machine" when the snapshot exists (what any
   CI runner or laptop sees once somebody has looked at the sweep);
4. a repeated look with nothing changed.

Usage: python bench/collect.py [--trials 1000] [--latency-ms 50] [--sample 100] [--tune]

Targets (issue #4): cold collection of 1,000 trials <= 2.5 s; repeated unchanged look <= 2
requests per 1,000 trials. Needs boto3 and moto[server]; no network beyond loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import skysweep.collect as collect_module
from skysweep.collect import SNAPSHOT, Collector
from skysweep.ledger import Ledger, SweepHeader
from skysweep.store import S3Store, join
from skysweep.trial import Trial

BUCKET = "skysweep-bench"
SWEEP = "bench-sweep"
TARGET_COLD_S = 2.5
TARGET_REPEAT_PER_1000 = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


class Wire:
    """Counts the requests a store's client really sends, and delays each by ``latency``."""

    def __init__(self, store: S3Store, latency: float) -> None:
        self.latency = latency
        self.count = 0
        self._lock = threading.Lock()
        store.client.meta.events.register("before-send.s3", self._on_send)

    def _on_send(self, **_: Any) -> None:
        with self._lock:
            self.count += 1
        time.sleep(self.latency)

    def reset(self) -> None:
        with self._lock:
            self.count = 0


def new_store(endpoint: str, latency: float) -> tuple[S3Store, Wire]:
    """A store as a new process would open it: its own client, no warm connections."""
    store = S3Store(f"s3://{BUCKET}/sweeps", endpoint_url=endpoint)
    return store, Wire(store, latency)


def trial_id(i: int) -> str:
    return f"t{i:05d}"


def write_sweep(endpoint: str, trials: int) -> Ledger:
    """Write a finished sweep the way jobs and their wrapper do: outputs, then the record."""
    store = S3Store(f"s3://{BUCKET}/sweeps", endpoint_url=endpoint)
    store.client.create_bucket(Bucket=BUCKET)

    def write(i: int) -> None:
        tid = trial_id(i)
        base = join(SWEEP, "trials", tid)
        lr = 10 ** (-4 + 3 * i / trials)
        store.put(join(base, "metrics.json"), json.dumps({"eval/loss": abs(lr - 0.01)}).encode())
        record = {
            "trial_id": tid,
            "state": "succeeded",
            "exit_code": 0,
            "started_at": "2025-01-01T00:00:00Z",
            "finished_at": "2025-01-01T00:05:00Z",
        }
        store.put(join(base, "status.json"), json.dumps(record).encode())
        store.put(join(SWEEP, "finished", f"{tid}.json"), json.dumps(record).encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(trials)))
    header = SweepHeader(
        sweep_id=SWEEP,
        name="bench",
        created_at="2025-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={},
        metric="eval/loss",
        lower_is_better=True,
        backend="sky",
        store_url=store.url,
    )
    store.put(join(SWEEP, "sweep.json"), header.model_dump_json().encode())
    # The trials as a reader knows them (their records are not what this bench measures).
    ledger = Ledger(store, header)
    for i in range(trials):
        ledger.trials[trial_id(i)] = Trial(i, trial_id(i), {"i": i})
    return ledger


@dataclass
class Row:
    name: str
    seconds: float
    requests: int
    note: str = ""


def first_collection(endpoint: str, ledger: Ledger, latency: float, workers: int) -> Row:
    collect_module.FETCH_WORKERS = workers
    store, wire = new_store(endpoint, latency)
    store.delete(join(SWEEP, SNAPSHOT))
    wire.reset()
    started = time.perf_counter()
    results = Collector(store, SWEEP).collect(ledger)
    elapsed = time.perf_counter() - started
    assert sum(r.state == "succeeded" for r in results) == len(ledger.trials)
    return Row(f"first-ever collection ({workers} threads)", elapsed, wire.count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--sample", type=int, default=100, help="trials in the sequential loop")
    parser.add_argument(
        "--tune", action="store_true", help="also time the first collection at other thread counts"
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    latency = args.latency_ms / 1000
    n = args.trials
    per_1000 = 1000 / n

    with moto_server() as endpoint:
        started = time.perf_counter()
        ledger = write_sweep(endpoint, n)
        print(
            f"wrote a finished {n}-trial sweep ({3 * n} objects) to a moto server at {endpoint} "
            f"in {time.perf_counter() - started:.1f} s; simulated latency "
            f"{args.latency_ms:g} ms per request; {os.cpu_count()} CPU core(s)\n"
        )

        # 1. The naive way: GET every trial's metrics.json, one after the other.
        store, wire = new_store(endpoint, latency)
        sample = min(args.sample, n)
        started = time.perf_counter()
        for i in range(sample):
            assert store.get(join(SWEEP, "trials", trial_id(i), "metrics.json")) is not None
        sequential = (time.perf_counter() - started) * n / sample
        rows = [
            Row(
                "sequential GET loop of metrics.json",
                sequential,
                round(wire.count * n / sample),
                f"timed on {sample} trials, extrapolated to {n}",
            )
        ]

        # 2. First-ever collection: no snapshot, every finished trial fetched in parallel.
        default_workers = collect_module.FETCH_WORKERS
        if args.tune:
            for workers in (8, 16, 32, 128):
                row = first_collection(endpoint, ledger, latency, workers)
                row.note = "thread-count trial"
                rows.append(row)
        rows.append(first_collection(endpoint, ledger, latency, default_workers))
        rows[-1].note = "2 GETs per trial + LIST + snapshot GET/PUT"

        # 3. Cold collection on a new machine: the snapshot exists.
        store, wire = new_store(endpoint, latency)
        collector = Collector(store, SWEEP)
        started = time.perf_counter()
        cold = collector.collect(ledger)
        cold_row = Row(
            "cold collection, fresh Collector + snapshot",
            time.perf_counter() - started,
            wire.count,
            "snapshot GET + LIST",
        )
        assert sum(r.state == "succeeded" for r in cold) == n
        rows.append(cold_row)

        # 4. Repeated look, nothing changed.
        wire.reset()
        started = time.perf_counter()
        again = collector.collect(ledger)
        repeat_row = Row(
            "repeated look, nothing changed",
            time.perf_counter() - started,
            wire.count,
            "LIST only",
        )
        assert again == cold
        rows.append(repeat_row)

    print(f"{'':46} {'seconds':>8} {'requests':>9} {'x faster':>9}  note")
    for row in rows:
        speedup = sequential / row.seconds if row.seconds else float("inf")
        print(f"{row.name:46} {row.seconds:8.2f} {row.requests:9d} {speedup:8.1f}x  {row.note}")
    cold_per_1000 = cold_row.seconds * per_1000
    repeat_per_1000 = repeat_row.requests * per_1000
    print()
    print(
        f"target: cold collection of 1,000 trials <= {TARGET_COLD_S} s: "
        f"{cold_per_1000:.2f} s per 1,000 -> {'PASS' if cold_per_1000 <= TARGET_COLD_S else 'FAIL'}"
    )
    print(
        f"target: repeated unchanged look <= {TARGET_REPEAT_PER_1000:g} requests per 1,000 trials:"
        f" {repeat_per_1000:g} -> "
        f"{'PASS' if repeat_per_1000 <= TARGET_REPEAT_PER_1000 else 'FAIL'}"
    )
    ok = cold_per_1000 <= TARGET_COLD_S and repeat_per_1000 <= TARGET_REPEAT_PER_1000
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
