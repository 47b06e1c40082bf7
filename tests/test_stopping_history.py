"""Reading history.jsonl incrementally: ``Store.get_from`` on a folder and on moto's S3
server, and the reader's handling of partial lines, missing files and new attempts."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from skysweep.history import HISTORY, HistoryReader, parse_point
from skysweep.store import FileStore, S3Store, Store, join


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "file":
        return FileStore(tmp_path / "store")
    bucket: str = request.getfixturevalue("bucket")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return S3Store(f"s3://{bucket}/sweeps", endpoint_url=endpoint)


def test_get_from_reads_from_the_offset(store: Store) -> None:
    assert store.get_from("a/b.txt", 0) is None
    assert store.get_from("a/b.txt", 5) is None
    store.put("a/b.txt", b"0123456789")
    assert store.get_from("a/b.txt", 0) == b"0123456789"
    assert store.get_from("a/b.txt", 4) == b"456789"
    assert store.get_from("a/b.txt", 10) == b""
    assert store.get_from("a/b.txt", 99) == b""


def test_get_from_on_s3_is_one_ranged_get(bucket: str, moto_endpoint: str) -> None:
    store = S3Store(f"s3://{bucket}/p", endpoint_url=moto_endpoint)
    store.put("h.jsonl", b"x" * 100)
    sent: list[dict[str, Any]] = []

    def on_send(request: Any, **_: Any) -> None:
        sent.append(
            {
                "method": request.method,
                "path": urlparse(request.url).path,
                "range": request.headers.get("Range").decode(),
            }
        )

    store.client.meta.events.register("before-send.s3", on_send)
    assert store.get_from("h.jsonl", 60) == b"x" * 40
    assert sent == [{"method": "GET", "path": f"/{bucket}/p/h.jsonl", "range": "bytes=60-"}]


def _history(store: Store, text: str) -> None:
    store.put(join("sw", "trials", "t1", HISTORY), text.encode())


def test_reader_reads_only_whats_new_and_waits_for_a_whole_line(store: Store) -> None:
    reader = HistoryReader(store, "sw", "eval/loss")
    assert reader.read("t1", 1) is False  # no file yet
    assert reader.values("t1") == {}
    first = '{"step": 1, "eval/loss": 0.9}\n{"step": 2, "eval/lo'
    _history(store, first)
    assert reader.read("t1", 1) is True
    assert reader.values("t1") == {1: 0.9}
    assert reader.latest("t1") == (1, 0.9)
    # The upload caught up: the cut line is read whole, nothing is read twice.
    second = first + 'ss": 0.7}\n{"step": 3, "eval": {"loss": 0.5}}\n'
    _history(store, second)
    assert reader.read("t1", 1) is True
    assert reader.values("t1") == {1: 0.9, 2: 0.7, 3: 0.5}
    assert reader.latest("t1") == (3, 0.5)
    assert reader.read("t1", 1) is False
    # A new attempt has its own file, read from its start.
    _history(store, '{"step": 1, "eval/loss": 0.4}\n')
    assert reader.read("t1", 2) is True
    assert reader.values("t1") == {1: 0.4}


def test_reader_offsets_are_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    reader = HistoryReader(store, "sw", "loss")
    _history(store, '{"step": 1, "loss": 1.0, "note": "é"}\n')
    reader.read("t1", 1)
    path = tmp_path / "sw" / "trials" / "t1" / HISTORY
    with path.open("ab") as file:
        file.write(b'{"step": 2, "loss": 0.5}\n')
    assert reader.read("t1", 1) is True
    assert reader.values("t1") == {1: 1.0, 2: 0.5}


@pytest.mark.parametrize(
    ("line", "point"),
    [
        (b'{"step": 3, "loss": 0.5}', (3, 0.5)),
        (b'{"step": 3.0, "loss": 1}', (3, 1.0)),
        (b'{"step": 3, "other": 0.5}', None),
        (b'{"loss": 0.5}', None),
        (b'{"step": true, "loss": 0.5}', None),
        (b'{"step": 1.5, "loss": 0.5}', None),
        (b'{"step": 2, "loss": "high"}', None),
        (b'{"step": 2, "loss": NaN}', None),
        (b"[1, 2]", None),
        (b"", None),
        (b"not json", None),
    ],
)
def test_parse_point(line: bytes, point: tuple[int, float] | None) -> None:
    assert parse_point(line, "loss") == point
