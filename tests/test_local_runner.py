"""The local runner's handling of a trial whose results cannot reach the store."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from skysweep.backends.local import LocalBackend, _Runner
from skysweep.errors import StoreError
from skysweep.manifest import JobRecord, Manifest, TrialRecord
from skysweep.store import FileStore


class _Bucket(FileStore):
    """A folder standing in for a bucket: no local folder to share with the jobs, so the
    runner stages and uploads, and it refuses writes under one trial, as a store that denies
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
    runner = _Runner({"sweep_id": "s", "store_url": f"file://{tmp_path}/store",
                      "sweep_dir": str(staging), "upload": True})  # fmt: skip
    runner.store = _Bucket(tmp_path / "store", refused="bad")
    for trial_id in ("bad", "good"):
        out = staging / "trials" / trial_id
        out.mkdir(parents=True)
        (out / "metrics.json").write_text('{"eval/loss": 1}')
        os.symlink(tmp_path / "nowhere", out / "dangling-link")  # a job's leftover: skipped
        runner._finish(trial_id, "succeeded", 0, None)

    store = _Bucket(tmp_path / "store")
    assert store.get("s/finished/good.json") is not None
    assert store.get("s/trials/good/metrics.json") == b'{"eval/loss": 1}'
    assert store.get("s/finished/bad.json") is None

    manifest = Manifest(
        sweep_id="s", name="s", created_at="now", task_file="t", task={}, metric="eval/loss",
        lower_is_better=True, backend="local", store_url=store.url,
        trials=[TrialRecord(trial_id=t, index=i, params={}) for i, t in enumerate(["bad", "good"])],
        jobs={t: JobRecord(job_id=f"local-1-{t}") for t in ("bad", "good")},
        backend_state={"host": socket.gethostname(), "runner_pid": 2**22 + 1,
                       "sweep_dir": str(staging)},
    )  # fmt: skip
    views = LocalBackend().status(manifest, store)
    assert set(views) == {"bad"}
    assert views["bad"].state == "failed"
    assert "upload to the store failed" in (views["bad"].detail or "")
    assert json.loads((staging / "finished" / "bad.json").read_text())["exit_code"] == 0
