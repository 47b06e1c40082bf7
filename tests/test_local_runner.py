"""The local backend's handling of a trial whose results cannot reach the store."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from skysweep.backends.local import LocalBackend, _record_once, _upload
from skysweep.errors import StoreError
from skysweep.store import FileStore
from skysweep.trial import JobHandle, TrialState


class _Bucket(FileStore):
    """A folder standing in for a bucket: no local folder to share with the jobs, so the
    trials stage and upload, and it refuses writes under one trial, as a store that denies
    or keeps failing would."""

    def __init__(self, root: Path, refused: str = "") -> None:
        super().__init__(root)
        self.refused = refused

    def put(self, key: str, data: bytes) -> None:
        if self.refused and f"/{self.refused}" in key:
            raise StoreError(f"access denied to {key} (AccessDenied)")
        super().put(key, data)

    def local_folder(self, prefix: str) -> Path | None:
        return None


def test_a_failed_upload_fails_that_trial_alone(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    refusing = _Bucket(tmp_path / "store", refused="bad")
    for trial_id in ("bad", "good"):
        out = staging / "trials" / trial_id
        out.mkdir(parents=True)
        (out / "metrics.json").write_text('{"eval/loss": 1}')
        os.symlink(tmp_path / "nowhere", out / "dangling-link")  # a job's leftover: skipped
        record = {"trial_id": trial_id, "state": "succeeded", "exit_code": 0}
        assert _record_once(staging / "finished" / f"{trial_id}.json", record)
        _upload(refusing, "s", staging, trial_id)

    store = _Bucket(tmp_path / "store")
    assert store.get("s/finished/good.json") is not None
    assert store.get("s/trials/good/metrics.json") == b'{"eval/loss": 1}'
    assert store.get("s/finished/bad.json") is None

    # Both processes are gone (a pid that cannot exist); only the upload tells them apart.
    gone = {"host": socket.gethostname(), "pid": 2**22 + 1, "start": None}
    where = {**gone, "sweep_dir": str(staging), "upload": True}
    jobs = {
        t: JobHandle(backend="local", job_id=f"local-{t}", locator=where) for t in ("bad", "good")
    }
    views = LocalBackend().poll(store, "s", jobs)
    assert set(views) == {"bad"}
    assert views["bad"].state is TrialState.failed
    assert "upload to the store failed" in (views["bad"].detail or "")
    assert json.loads((staging / "finished" / "bad.json").read_text())["exit_code"] == 0


def test_a_record_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "finished" / "t.json"
    assert _record_once(path, {"state": "succeeded"})
    assert not _record_once(path, {"state": "cancelled"})  # the trial ended first: it stays
    assert json.loads(path.read_text()) == {"state": "succeeded"}
