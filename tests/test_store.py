"""Object storage against real parts: S3Store on a moto S3 server on loopback, FileStore on disk.

Both stores must behave the same (the local default and a bucket are interchangeable), faults
must become one clear StoreError, botocore's retries must ride out throttling and transient
5xx answers, and the collector must stay cheap on a 1,000-trial sweep.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from conftest import free_port, handmade_ledger, run_cli

from skysweep.collect import SNAPSHOT, Collector
from skysweep.errors import StoreError, StoreSetupError, UsageError
from skysweep.rank import rank
from skysweep.store import FileStore, S3Store, Store, join, open_store

# ---------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(params=["file", "s3", "s3-bucket-root"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests run on a folder, a bucket prefix and a whole bucket."""
    if request.param == "file":
        return FileStore(tmp_path / "store")
    bucket: str = request.getfixturevalue("bucket")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    url = f"s3://{bucket}/sweeps" if request.param == "s3" else f"s3://{bucket}"
    return S3Store(url, endpoint_url=endpoint)


def count_requests(store: S3Store) -> list[str]:
    """Record every HTTP request the store's client really sends (retries included)."""
    sent: list[str] = []

    def on_send(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {urlparse(request.url).path}")

    store.client.meta.events.register("before-send.s3", on_send)
    return sent


def write_trial(
    store: Store,
    sweep_id: str,
    trial_id: str,
    metrics: bytes | None,
    *,
    exit_code: int = 0,
    error: str | None = None,
    finished_at: str = "2025-01-01T00:01:00Z",
) -> None:
    """What a job and its wrapper leave behind: outputs first, the finished record last."""
    base = join(sweep_id, "trials", trial_id)
    if metrics is not None:
        store.put(join(base, "metrics.json"), metrics)
    record = {
        "trial_id": trial_id,
        "state": "succeeded" if exit_code == 0 else "failed",
        "exit_code": exit_code,
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": finished_at,
    }
    if error:
        record["error"] = error
    data = json.dumps(record).encode()
    store.put(join(base, "status.json"), data)
    store.put(join(sweep_id, "finished", f"{trial_id}.json"), data)


# ---------------------------------------------------------------------------------------
# The Store contract, the same on every kind of store


def test_put_get_and_missing_key(store: Store) -> None:
    assert store.get("sweep-a/sweep.json") is None
    store.put("sweep-a/sweep.json", b'{"a": 1}')
    assert store.get("sweep-a/sweep.json") == b'{"a": 1}'
    store.put("sweep-a/sweep.json", b'{"a": 22}')
    assert store.get("sweep-a/sweep.json") == b'{"a": 22}'
    # A "folder" is not an object, and a key below a missing folder is simply missing.
    assert store.get("sweep-a") is None
    assert store.get("no-such-sweep/trials/x/metrics.json") is None


def test_list_is_recursive_relative_and_respects_prefix_boundaries(store: Store) -> None:
    store.put("s1/sweep.json", b"m")
    store.put("s1/trials/t1/metrics.json", b"1")
    store.put("s1/trials/t2/history.jsonl", b"2")
    store.put("s10/sweep.json", b"other sweep, same leading characters")
    keys = sorted(info.key for info in store.list("s1"))
    assert keys == ["s1/sweep.json", "s1/trials/t1/metrics.json", "s1/trials/t2/history.jsonl"]
    assert sorted(i.key for i in store.list("s1/trials")) == keys[1:]
    assert store.list("missing") == []
    assert sorted(i.key for i in store.list("")) == [*keys, "s10/sweep.json"]
    # Every key listed can be read back under the same name.
    assert store.get(keys[1]) == b"1"


def test_etag_changes_when_the_object_changes(store: Store) -> None:
    store.put("s/finished/t.json", b'{"exit_code": 0}')
    store.put("s/finished/u.json", b'{"exit_code": 0}')
    before = {i.key: i.etag for i in store.list("s/finished")}
    store.put("s/finished/t.json", b'{"exit_code": 1, "longer": true}')
    after = {i.key: i.etag for i in store.list("s/finished")}
    assert all(before.values())
    assert after["s/finished/t.json"] != before["s/finished/t.json"]
    assert after["s/finished/u.json"] == before["s/finished/u.json"]


def test_children_are_immediate_subfolders(store: Store) -> None:
    store.put("sweep-b/sweep.json", b"m")
    store.put("sweep-a/sweep.json", b"m")
    store.put("sweep-a/trials/t1/metrics.json", b"1")
    store.put("sweep-a/trials/t2/metrics.json", b"2")
    store.put("loose-file.txt", b"not a folder")
    assert store.children("") == ["sweep-a", "sweep-b"]
    assert store.children("sweep-a") == ["trials"]
    assert store.children("sweep-a/trials") == ["t1", "t2"]
    assert store.children("nothing-here") == []


def test_delete(store: Store) -> None:
    store.put("s/a.json", b"a")
    store.put("s/b.json", b"b")
    store.delete("s/a.json")
    assert store.get("s/a.json") is None
    assert [i.key for i in store.list("s")] == ["s/b.json"]
    store.delete("s/a.json")  # deleting what is gone is not an error
    store.delete("never/was.json")


def test_upload_tree_copies_files_and_leaves_others_alone(store: Store, tmp_path: Path) -> None:
    local = tmp_path / "out"
    (local / "ckpt").mkdir(parents=True)
    (local / "metrics.json").write_text('{"eval/loss": 0.5}')
    (local / "ckpt" / "step-1.bin").write_bytes(b"\x00\x01binary")
    store.put("s/trials/t/metrics.json", b"old")
    store.put("s/trials/t/keep.txt", b"written earlier by someone else")
    store.upload_tree(local, "s/trials/t")
    assert store.get("s/trials/t/metrics.json") == b'{"eval/loss": 0.5}'
    assert store.get("s/trials/t/ckpt/step-1.bin") == b"\x00\x01binary"
    assert store.get("s/trials/t/keep.txt") == b"written earlier by someone else"
    assert sorted(i.key for i in store.list("s/trials/t")) == [
        "s/trials/t/ckpt/step-1.bin",
        "s/trials/t/keep.txt",
        "s/trials/t/metrics.json",
    ]


def test_open_store_picks_the_kind_from_the_url(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/st"), FileStore)
    assert isinstance(open_store(str(tmp_path / "plain")), FileStore)
    s3 = open_store("s3://my-bucket/some/prefix/")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.url) == (
        "my-bucket",
        "some/prefix",
        "s3://my-bucket/some/prefix",
    )
    assert isinstance(open_store("r2://my-bucket/p"), S3Store)
    # A path that starts with '/' or '~' cannot be a bucket: it is a folder.
    assert open_store("~/st").url == f"file://{Path.home().resolve() / 'st'}"
    with pytest.raises(UsageError, match="unknown scheme 'gs'"):
        open_store("gs://my-bucket/p")
    with pytest.raises(UsageError, match="names no bucket"):
        open_store("s3:///prefix")


# ---------------------------------------------------------------------------------------
# Faults become one clear StoreError


def test_missing_bucket_names_the_bucket(s3_env: dict[str, str], moto_endpoint: str) -> None:
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    store = S3Store(f"s3://{name}/sweeps", endpoint_url=moto_endpoint)
    operations: list[Callable[[], object]] = [
        lambda: store.get("s/sweep.json"),
        lambda: store.put("s/sweep.json", b"{}"),
        lambda: store.list("s"),
        lambda: store.children(""),
    ]
    for operation in operations:
        with pytest.raises(StoreError) as caught:
            operation()
        assert f"bucket '{name}' does not exist" in str(caught.value)
        assert moto_endpoint in str(caught.value)
        assert f"s3://{name}" in str(caught.value)  # the hint says how to create it
        assert isinstance(caught.value, StoreSetupError) and caught.value.exit_code == 2


def test_unreachable_endpoint_fails_fast_and_clearly(s3_env: dict[str, str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store("s3://some-bucket/sweeps", endpoint_url=closed)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.get("s/sweep.json")
    elapsed = time.monotonic() - started
    assert f"cannot reach the object store endpoint {closed}" in str(caught.value)
    assert "SKYSWEEP_S3_ENDPOINT_URL" in str(caught.value)
    assert isinstance(caught.value, StoreSetupError) and caught.value.exit_code == 2
    # No 8-attempt throttling backoff (~35 s) for an endpoint that is not there.
    assert elapsed < 5, elapsed


def _moto_auth(endpoint: str, initial_no_auth_actions: str) -> None:
    """moto's own switch: after N more requests, check IAM credentials and policies."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=initial_no_auth_actions.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _list_only_user(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of a new IAM user who may list buckets and nothing else, put in the
    environment of this process and of the CLI processes it starts."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint)
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="list-only", PolicyDocument=json.dumps(policy))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def test_access_denied_is_a_real_403_with_the_credential_source(
    bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _list_only_user(moto_endpoint, monkeypatch)
    store = S3Store(f"s3://{bucket}/sweeps", endpoint_url=moto_endpoint)
    _moto_auth(moto_endpoint, "0")
    try:
        with pytest.raises(StoreError) as on_get:
            store.get("s/sweep.json")
        with pytest.raises(StoreError) as on_put:
            store.put("s/sweep.json", b"{}")
    finally:
        _moto_auth(moto_endpoint, "inf")
    for caught in (on_get, on_put):
        text = str(caught.value)
        assert f"access denied to s3://{bucket}/sweeps/s/sweep.json (AccessDenied)" in text
        assert "the environment (AWS_ACCESS_KEY_ID)" in text
        assert isinstance(caught.value, StoreSetupError) and caught.value.exit_code == 2


class _FlakyProxy(ThreadingHTTPServer):
    """A loopback HTTP proxy in front of moto: the first ``failures`` requests get an S3 error
    answer, every later one is forwarded as is."""

    daemon_threads = True

    def __init__(self, upstream: str, failures: int, status: int, code: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.failures, self.status, self.code = failures, status, code
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FlakyProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy = self.server
        with proxy.lock:
            fail = proxy.failures > 0
            proxy.failures -= fail
        if fail:
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                + proxy.code
                + "</Code><Message>Please reduce your request rate.</Message>"
                "<RequestId>flaky-proxy</RequestId></Error>"
            ).encode()
            status, headers = proxy.status, {"Content-Type": "application/xml"}
        else:
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream.getresponse()
                payload = answer.read()
                status = answer.status
                headers = {
                    k: v
                    for k, v in answer.getheaders()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")
                }
            finally:
                upstream.close()
        with proxy.lock:
            proxy.seen.append((self.command, self.path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


@pytest.fixture
def flaky_proxy(moto_endpoint: str) -> Iterator[Callable[[int, int, str], _FlakyProxy]]:
    started: list[_FlakyProxy] = []

    def start(failures: int, status: int = 503, code: str = "SlowDown") -> _FlakyProxy:
        proxy = _FlakyProxy(moto_endpoint, failures, status, code)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.shutdown()
        proxy.server_close()


def test_throttling_is_retried_until_it_succeeds(
    bucket: str, moto_endpoint: str, flaky_proxy: Callable[..., _FlakyProxy]
) -> None:
    S3Store(f"s3://{bucket}/sweeps", endpoint_url=moto_endpoint).put("s/metrics.json", b"{}")
    proxy = flaky_proxy(2, 503, "SlowDown")
    store = S3Store(f"s3://{bucket}/sweeps", endpoint_url=proxy.url)
    assert store.get("s/metrics.json") == b"{}"
    path = f"/{bucket}/sweeps/s/metrics.json"
    assert proxy.seen == [("GET", path, 503), ("GET", path, 503), ("GET", path, 200)]


def test_transient_server_errors_are_retried_on_writes(
    bucket: str, moto_endpoint: str, flaky_proxy: Callable[..., _FlakyProxy]
) -> None:
    proxy = flaky_proxy(1, 500, "InternalError")
    store = S3Store(f"s3://{bucket}/sweeps", endpoint_url=proxy.url)
    store.put("s/finished/t.json", b'{"exit_code": 0}')
    path = f"/{bucket}/sweeps/s/finished/t.json"
    assert [(m, p, s) for m, p, s in proxy.seen if m == "PUT"] == [
        ("PUT", path, 500),
        ("PUT", path, 200),
    ]
    direct = S3Store(f"s3://{bucket}/sweeps", endpoint_url=moto_endpoint)
    assert direct.get("s/finished/t.json") == b'{"exit_code": 0}'


def test_throttling_that_never_ends_becomes_a_store_error(
    bucket: str, flaky_proxy: Callable[..., _FlakyProxy]
) -> None:
    proxy = flaky_proxy(1000, 503, "SlowDown")
    store = S3Store(f"s3://{bucket}/sweeps", endpoint_url=proxy.url, max_attempts=2)
    with pytest.raises(StoreError, match="SlowDown") as caught:
        store.get("s/metrics.json")
    assert len(proxy.seen) == 2
    # Throttling is no setup mistake: it stays an ordinary store error (exit 1).
    assert not isinstance(caught.value, StoreSetupError) and caught.value.exit_code == 1


# ---------------------------------------------------------------------------------------
# Collecting: bad metrics mark only their trial; repeated looks stay cheap


def test_bad_metrics_mark_only_that_trial(store: Store) -> None:
    sweep = "bad-metrics"
    trials = {
        "good-slow": b'{"eval/loss": 0.5, "eval/accuracy": 0.8}',
        "good-best": b'{"eval": {"loss": 0.2}}',
        "missing": None,
        "truncated": b'{"eval/loss": 0.3',
        "not-json": b"eval/loss = 0.1\n",
        "a-list": b"[0.1, 0.2]",
        "no-metric": b'{"eval/accuracy": 0.99}',
        "nan": b'{"eval/loss": NaN}',
    }
    for trial_id, metrics in trials.items():
        write_trial(store, sweep, trial_id, metrics)
    write_trial(store, sweep, "crashed", b'{"eval/loss": 0.01}', exit_code=3, error="OOM")
    ledger = handmade_ledger(store, sweep, [*trials, "crashed", "not-started"])

    ranking = rank(sweep, Collector(store, sweep).collect(ledger), "eval/loss", True)
    by_id = {t.result.trial_id: t for t in ranking.trials}

    assert [(t.result.trial_id, t.rank, t.value) for t in ranking.trials[:2]] == [
        ("good-best", 1, 0.2),
        ("good-slow", 2, 0.5),
    ]
    assert ranking.best is not None and ranking.best.result.trial_id == "good-best"
    reasons = {tid: t.reason for tid, t in by_id.items() if t.rank is None}
    assert reasons == {
        "missing": "wrote no metrics.json",
        "truncated": "metrics.json is not valid JSON (truncated or corrupt)",
        "not-json": "metrics.json is not valid JSON (truncated or corrupt)",
        "a-list": "metrics.json holds a list, expected a JSON object",
        "no-metric": "no 'eval/loss' in metrics.json",
        "nan": "'eval/loss' is nan",
        "crashed": "OOM",
        "not-started": None,  # not a problem: it has not run yet (its state says so)
    }
    # The job itself succeeded for the bad-metrics trials; only the crash is a failure.
    states = {tid: t.result.state for tid, t in by_id.items()}
    assert states["truncated"] == states["missing"] == "succeeded"
    assert (states["crashed"], by_id["crashed"].result.exit_code) == ("failed", 3)
    assert states["not-started"] == "pending"
    assert not ranking.all_finished and not ranking.all_succeeded


@pytest.fixture
def s3_store(bucket: str, moto_endpoint: str) -> S3Store:
    return S3Store(f"s3://{bucket}/sweeps", endpoint_url=moto_endpoint)


def test_collector_fetches_each_trial_once_then_only_lists(s3_store: S3Store) -> None:
    sweep, n = "cheap-looks", 20
    ids = [f"t{i:03d}" for i in range(n)]
    for i, tid in enumerate(ids):
        write_trial(s3_store, sweep, tid, json.dumps({"eval/loss": 1.0 + i}).encode())
    ledger = handmade_ledger(s3_store, sweep, ids)
    sent = count_requests(s3_store)

    first = Collector(s3_store, sweep).collect(ledger)
    # snapshot GET (none yet) + one LIST + record and metrics per trial + snapshot PUT
    assert len(sent) == 1 + 1 + 2 * n + 1, sent
    assert all(r.state == "succeeded" for r in first)

    sent.clear()
    collector = Collector(s3_store, sweep)  # a new machine: starts from the snapshot
    cold = collector.collect(ledger)
    assert sorted(sent) == sorted(
        [f"GET /{s3_store.bucket}/sweeps/{sweep}/{SNAPSHOT}", f"GET /{s3_store.bucket}"]
    )
    assert cold == first

    sent.clear()
    assert collector.collect(ledger) == first
    assert sent == [f"GET /{s3_store.bucket}"]  # one LIST page, nothing else

    # One trial runs again: only it is fetched again, and the change shows.
    write_trial(s3_store, sweep, "t005", b'{"eval/loss": 0.01}', finished_at="2025-01-02T00:00:00Z")
    sent.clear()
    changed = {r.trial_id: r for r in collector.collect(ledger)}
    assert len(sent) == 1 + 2 + 1, sent
    assert changed["t005"].metrics == {"eval/loss": 0.01}

    # A retry archives a finished record: the trial is no longer finished, here and for a
    # new machine starting from the snapshot.
    s3_store.delete(join(sweep, "finished", "t007.json"))
    assert {r.trial_id: r.state for r in collector.collect(ledger)}["t007"] == "pending"
    fresh = {r.trial_id: r.state for r in Collector(s3_store, sweep).collect(ledger)}
    assert fresh["t007"] == "pending" and fresh["t005"] == "succeeded"


def _put_directly(bucket: str, items: dict[str, bytes]) -> None:
    """Seed moto's S3 backend in this process, so writing 2,000 objects takes a fraction of a
    second; every read below still goes over HTTP to the moto server."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, value in items.items():
        backend.put_object(bucket, key, value)


def test_repeated_look_at_1000_trials_costs_at_most_two_requests(s3_store: S3Store) -> None:
    sweep, n = "thousand", 1000
    ids = [f"t{i:04d}" for i in range(n)]
    records = {
        tid: {"trial_id": tid, "state": "succeeded", "exit_code": 0, "finished_at": "x"}
        for tid in ids
    }
    objects: dict[str, bytes] = {}
    for i, tid in enumerate(ids):
        objects[f"sweeps/{sweep}/trials/{tid}/metrics.json"] = json.dumps({"eval/loss": i}).encode()
        objects[f"sweeps/{sweep}/finished/{tid}.json"] = json.dumps(records[tid]).encode()
    _put_directly(s3_store.bucket, objects)
    # The snapshot a first look leaves behind (that look itself is 2,000 GETs; the benchmark
    # in bench/collect.py measures it), keyed by the ETags the server really reports.
    etags = {
        info.key.rsplit("/", 1)[-1].removesuffix(".json"): info.etag
        for info in s3_store.list(join(sweep, "finished"))
    }
    assert len(etags) == n
    snapshot = {
        "finished": {
            tid: {
                "etag": etags[tid],
                "record": records[tid],
                "metrics": {"eval/loss": i},
                "metrics_problem": None,
            }
            for i, tid in enumerate(ids)
        }
    }
    s3_store.put(join(sweep, SNAPSHOT), json.dumps(snapshot).encode())
    ledger = handmade_ledger(s3_store, sweep, ids)
    sent = count_requests(s3_store)

    collector = Collector(s3_store, sweep)
    cold = collector.collect(ledger)
    assert len(sent) == 2, sent  # the snapshot and one LIST page: no trial is fetched
    assert all(r.state == "succeeded" for r in cold)
    assert rank(sweep, cold, "eval/loss", True).trials[0].result.trial_id == "t0000"

    for _ in range(3):
        sent.clear()
        again = collector.collect(ledger)
        assert len(sent) <= 2 * n / 1000, sent
        assert again == cold


class _ReadOnlyStore(FileStore):
    """A store whose writes are refused, as with read-only credentials (moto cannot be made
    to grant GET and LIST but refuse PUT: with its IAM checks on it refuses LIST too)."""

    def put(self, key: str, data: bytes) -> None:
        raise StoreError(f"access denied to {key} (AccessDenied)")


def test_a_reader_with_read_only_credentials_still_collects(tmp_path: Path) -> None:
    writer = FileStore(tmp_path / "store")
    write_trial(writer, "ro", "t1", b'{"eval/loss": 0.4}')
    write_trial(writer, "ro", "t2", b'{"eval/loss": 0.3}')
    ledger = handmade_ledger(writer, "ro", ["t1", "t2"])
    reader = _ReadOnlyStore(tmp_path / "store")
    ranking = rank("ro", Collector(reader, "ro").collect(ledger), "eval/loss", True)
    assert [(t.result.trial_id, t.rank) for t in ranking.trials] == [("t2", 1), ("t1", 2)]
    assert reader.get("ro/collected.json") is None  # the cache could not be written; no harm


# ---------------------------------------------------------------------------------------
# Setup problems through the real CLI: exit 2 (fix the setup), never 1 (a trial failed)

TASK = """\
name: tiny
run: echo hi
sweeps:
  sweep_config:
    x: [1, 2]
"""


TASK_METRICS_RUN = """run: |
  echo '{"eval/loss": 0.5}' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"
"""


def assert_setup_error(done: Any, *expected: str) -> None:
    assert done.code == 2, done
    assert "Traceback" not in done.stderr, done
    message = " ".join(done.stderr.split())  # rich wraps long lines
    assert message.count("error: ") == 1, done
    message = message[message.index("error: ") :]  # after the plan, when `up` showed one
    for text in expected:
        assert text in message, (text, done)


def test_cli_missing_bucket_exits_2(s3_env: dict[str, str], moto_endpoint: str) -> None:
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    for args in (
        ["list", "--store", f"s3://{name}/sweeps"],
        ["results", f"s3://{name}/sweeps/some-sweep", "--best"],
    ):
        assert_setup_error(run_cli(*args), f"bucket '{name}' does not exist", f"s3://{name}")


def test_cli_access_denied_exits_2(
    bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _list_only_user(moto_endpoint, monkeypatch)
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    _moto_auth(moto_endpoint, "0")
    try:
        read = run_cli("results", f"s3://{bucket}/sweeps/some-sweep")
        write = run_cli("up", str(task), "--local", "--yes", "--store", f"s3://{bucket}/sweeps")
    finally:
        _moto_auth(moto_endpoint, "inf")
    for done in (read, write):
        assert_setup_error(done, f"access denied to s3://{bucket}/sweeps/", "(AccessDenied)")


def test_cli_no_credentials_exits_2(
    isolated_home: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "SKYSWEEP_S3_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role probe on a CI runner
    }
    done = run_cli("results", "s3://some-bucket/sweeps/some-sweep", env=env)
    assert_setup_error(done, "no credentials for s3://some-bucket/", "AWS_ACCESS_KEY_ID")


def test_cli_unreachable_endpoint_exits_2(s3_env: dict[str, str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = run_cli(
        "list", "--store", "s3://some-bucket/sweeps", env={"SKYSWEEP_S3_ENDPOINT_URL": closed}
    )
    assert_setup_error(done, f"cannot reach the object store endpoint {closed}")


def _read_only(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` cannot be written. Not root: the folder's mode
    (0o500). Root ignores modes, so there: a read-only bind mount in a private user and mount
    namespace (``unshare``), which nothing outside the command sees."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return []
    bind = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", bind, str(folder)]

    def works(*command: str) -> bool:
        return subprocess.run([*prefix, *command], capture_output=True).returncode == 0

    probe = folder / ".probe"
    if shutil.which("unshare") is None or not works("true") or works("touch", str(probe)):
        probe.unlink(missing_ok=True)
        pytest.skip("running as root, and no read-only bind mount is possible here (unshare)")
    return prefix


def test_cli_read_only_file_store_exits_2_and_still_reads(
    tmp_path: Path, isolated_home: Path
) -> None:
    store = tmp_path / "store"
    task = tmp_path / "task.yaml"
    task.write_text(TASK.replace("run: echo hi", TASK_METRICS_RUN))
    done = run_cli(
        "up", str(task), "--local", "--yes", "--store", f"file://{store}", "--output", "json"
    )
    assert done.code == 0, done
    sweep_id = json.loads(done.stdout)["sweep_id"]
    prefix = _read_only(store)
    try:
        again = run_cli(
            "up", str(task), "--local", "--yes", "--store", f"file://{store}", prefix=prefix
        )
        # Reading needs no writes: the ranking is shown, only the cache is not refreshed.
        read = run_cli("results", sweep_id, "--store", f"file://{store}", "--best", prefix=prefix)
    finally:
        store.chmod(0o700)
    assert_setup_error(again, f"cannot write {store}/", "writable")
    assert read.code == 0, read


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_cli_store_without_a_scheme_is_refused(
    how: str, tmp_path: Path, isolated_home: Path
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    args = ["up", str(task), "--local", "--yes"]
    if how == "flag":
        done = run_cli(*args, "--store", "my-bucket/x", cwd=tmp_path)
        origin = "--store 'my-bucket/x'"
    else:
        done = run_cli(*args, env={"SKYSWEEP_STORE": "my-bucket/x"}, cwd=tmp_path)
        origin = "SKYSWEEP_STORE 'my-bucket/x'"
    assert_setup_error(
        done,
        origin,
        "has no scheme",
        "s3://my-bucket/x",
        f"file://{tmp_path.resolve()}/my-bucket/x",
    )
    assert not (tmp_path / "my-bucket").exists()  # and nothing was written there
