"""The local backend: every trial a subprocess on this machine.

``submit`` hands the rendered trials to a runner process of its own session, so a sweep
keeps running when ``up`` is interrupted or detached, exactly as managed jobs do on
SkyPilot. The runner gets its work (secrets included) on a pipe, never through a file.
It runs the setup once, then the trials, at most ``max_parallel`` at a time, each with the
same environment contract and store layout as on a cloud. With an ``s3://`` store the
trials write to a staging folder that the runner uploads as each trial ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skysweep.collect import BackendView
from skysweep.errors import BackendError, StoreError
from skysweep.manifest import JobRecord, Manifest, now
from skysweep.store import Store, join, open_store

from . import LaunchRequest

STAGING_ROOT = Path("~/.skysweep/staging").expanduser()
WORK_ROOT = Path("~/.skysweep/work").expanduser()


def sweep_folder(store: Store, sweep_id: str) -> tuple[Path, bool]:
    """Where the trials write on this machine, and whether it must be uploaded."""
    local = store.local_folder(sweep_id)
    if local is not None:
        return local, False
    return STAGING_ROOT / sweep_id, True


class LocalBackend:
    name = "local"

    def submit(self, request: LaunchRequest) -> dict[str, JobRecord]:
        manifest = request.manifest
        folder, upload = sweep_folder(request.store, manifest.sweep_id)
        folder.mkdir(parents=True, exist_ok=True)
        first = request.trials[0].spec if request.trials else {}
        payload = {
            "sweep_id": manifest.sweep_id,
            "store_url": request.store.url,
            "endpoint_url": getattr(request.store, "endpoint_url", None),
            "sweep_dir": str(folder),
            "upload": upload,
            "max_parallel": request.max_parallel,
            "workdir": first.get("workdir"),
            "setup": first.get("setup"),
            # Setup runs once for the sweep: the task's envs (secrets filled, the same for
            # every trial) and the sweep's ids, but no trial's parameters.
            "setup_env": {
                **request.task.envs,
                **next(iter(request.secrets.values()), {}),
                "SKYSWEEP_SWEEP_ID": manifest.sweep_id,
                "SKYSWEEP_SWEEP_DIR": str(folder),
            },
            "trials": [
                {
                    "trial_id": r.trial.trial_id,
                    "run": r.spec["run"],
                    "env": {**r.spec["envs"], **request.secrets.get(r.trial.trial_id, {})},
                }
                for r in request.trials
            ],
        }
        log = open(folder / "runner.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            runner = subprocess.Popen(
                [sys.executable, "-m", "skysweep.backends.local"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise BackendError(f"cannot start the local runner: {exc}") from exc
        finally:
            log.close()
        assert runner.stdin is not None
        runner.stdin.write(json.dumps(payload).encode())
        runner.stdin.close()
        manifest.backend_state = {
            "host": socket.gethostname(),
            "runner_pid": runner.pid,
            "sweep_dir": str(folder),
        }
        submitted = now()
        return {
            r.trial.trial_id: JobRecord(
                job_id=f"local-{runner.pid}-{r.trial.index}",
                job_name=r.job_name,
                submitted_at=submitted,
                attempts=1,
            )
            for r in request.trials
        }

    def status(self, manifest: Manifest, store: Store) -> dict[str, BackendView]:
        views: dict[str, BackendView] = {}
        folder = _known_folder(manifest, store)
        alive = _runner_alive(manifest)
        for trial_id, job in manifest.jobs.items():
            if not job.job_id or folder is None:
                continue
            failed_upload = folder / "finished" / f"{trial_id}.upload-failed"
            if failed_upload.exists():
                views[trial_id] = BackendView(
                    "failed",
                    f"finished here, but its upload to the store failed: "
                    f"{failed_upload.read_text().splitlines()[0]} (files in {folder})",
                )
                continue
            if (folder / "finished" / f"{trial_id}.json").exists():
                continue  # the store tells the rest
            started = (folder / "trials" / trial_id / "status.json").exists()
            if alive is False:
                views[trial_id] = BackendView(
                    "lost", "the local runner stopped before this trial finished"
                )
            elif started:
                views[trial_id] = BackendView("running")
        return views

    def cancel(self, manifest: Manifest, store: Store) -> list[str]:
        pid = manifest.backend_state.get("runner_pid")
        host = manifest.backend_state.get("host")
        if not pid:
            return []
        if host != socket.gethostname():
            raise BackendError(
                f"sweep {manifest.sweep_id} runs on host {host}",
                hint="run 'skysweep down' on that machine",
            )
        if not _runner_alive(manifest):
            return []
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return []
        except PermissionError as exc:
            raise BackendError(f"cannot stop the local runner {pid}: {exc}") from exc
        for _ in range(100):
            if not _runner_alive(manifest):
                break
            time.sleep(0.1)
        return [f"local-{pid}"]

    def logs(self, manifest: Manifest, store: Store, trial_id: str, follow: bool) -> Iterator[str]:
        folder = _known_folder(manifest, store)
        path = folder / "trials" / trial_id / "run.log" if folder else None
        if path is None or not path.exists():
            data = store.get(join(manifest.sweep_id, "trials", trial_id, "run.log"))
            if data is None:
                raise BackendError(
                    f"no log yet for trial {trial_id}",
                    hint="it may not have started; see 'skysweep status'",
                )
            yield data.decode(errors="replace")
            return
        finished = (folder / "finished" / f"{trial_id}.json") if folder else None
        with path.open(errors="replace") as handle:
            while True:
                chunk = handle.read()
                if chunk:
                    yield chunk
                elif (
                    not follow
                    or (finished is not None and finished.exists())
                    or _runner_alive(manifest) is False
                ):
                    rest = handle.read()
                    if rest:
                        yield rest
                    return
                else:
                    time.sleep(0.3)


def _known_folder(manifest: Manifest, store: Store) -> Path | None:
    local = store.local_folder(manifest.sweep_id)
    if local is not None:
        return local
    folder = manifest.backend_state.get("sweep_dir")
    if folder and manifest.backend_state.get("host") == socket.gethostname():
        return Path(folder)
    return None


def _runner_alive(manifest: Manifest) -> bool | None:
    """True or False on the runner's own host; None elsewhere (we cannot tell)."""
    pid = manifest.backend_state.get("runner_pid")
    if not pid or manifest.backend_state.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody reaped is not running
        with open(f"/proc/{int(pid)}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------------------
# The runner process.


class _Runner:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.sweep_id: str = payload["sweep_id"]
        self.folder = Path(payload["sweep_dir"])
        self.store = open_store(payload["store_url"], endpoint_url=payload.get("endpoint_url"))
        self.upload: bool = payload["upload"]
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.done: set[str] = set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        trials: list[dict[str, Any]] = self.payload["trials"]
        cwd, problem = self._workdir()
        if problem is None and self.payload.get("setup"):
            problem = self._setup(cwd)
        if problem is not None:
            for trial in trials:
                self._finish(trial["trial_id"], "failed", 1, problem)
            return 1
        with ThreadPoolExecutor(max(1, int(self.payload["max_parallel"]))) as pool:
            list(pool.map(lambda t: self._trial(t, cwd), trials))
        return 0

    def _workdir(self) -> tuple[Path, str | None]:
        workdir = self.payload.get("workdir")
        if isinstance(workdir, dict):
            target = WORK_ROOT / self.sweep_id
            if (target / ".git").exists():
                return target, None
            command = ["git", "clone", "--depth", "1", workdir["url"], str(target)]
            if workdir.get("ref"):
                command[4:4] = ["--branch", workdir["ref"]]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return target, f"git clone of {workdir['url']} failed: {done.stderr.strip()}"
            return target, None
        return Path(workdir or os.getcwd()), None

    def _setup(self, cwd: Path) -> str | None:
        env = {**os.environ, **self.payload["setup_env"]}
        with (self.folder / "setup.log").open("wb") as log:
            code = subprocess.run(
                ["bash", "-c", self.payload["setup"]],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        if self.upload:
            self.store.put(
                join(self.sweep_id, "setup.log"), (self.folder / "setup.log").read_bytes()
            )
        return None if code == 0 else f"setup failed with exit code {code} (see setup.log)"

    def _trial(self, trial: dict[str, Any], cwd: Path) -> None:
        trial_id = trial["trial_id"]
        if self.stopping.is_set():
            return
        out = self.folder / "trials" / trial_id
        if self.upload:
            # The staging folder is only this machine's copy: a relaunched trial (retry,
            # resume) starts clean there, as it does in the store, where the previous attempt
            # was archived. Stale files would otherwise be uploaded again as this attempt's.
            shutil.rmtree(out, ignore_errors=True)
            (self.folder / "finished" / f"{trial_id}.json").unlink(missing_ok=True)
            (self.folder / "finished" / f"{trial_id}.upload-failed").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **trial["env"],
            "SKYSWEEP_OUTPUT_DIR": str(out),
            "SKYSWEEP_SWEEP_DIR": str(self.folder),
        }
        if self.upload:
            self.store.put(
                join(self.sweep_id, "trials", trial_id, "status.json"),
                json.dumps(
                    {"trial_id": trial_id, "state": "running", "started_at": now()}
                ).encode(),
            )
        with (out / "run.log").open("wb") as log:
            with self.lock:
                if self.stopping.is_set():
                    return
                child = subprocess.Popen(
                    ["bash", "-c", trial["run"]],
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self.children[trial_id] = child
            child.wait()
        with self.lock:
            self.children.pop(trial_id, None)
            if self.stopping.is_set() and child.returncode < 0:
                return  # recorded as cancelled by the stop handler
            self.done.add(trial_id)
        if not (self.folder / "finished" / f"{trial_id}.json").exists():
            # The wrapper did not get to write its record (killed, or bash missing).
            self._finish(
                trial_id,
                "failed",
                child.returncode,
                f"the job ended with code {child.returncode} before recording it",
            )
        elif self.upload:
            self._upload(trial_id)

    def _finish(self, trial_id: str, state: str, code: int | None, error: str | None) -> None:
        record = {
            "trial_id": trial_id,
            "state": state,
            "exit_code": code,
            "error": error,
            "finished_at": now(),
        }
        data = json.dumps(record).encode()
        folder = self.folder / "finished"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{trial_id}.json").write_bytes(data)
        if self.upload:
            self._upload(trial_id)

    def _upload(self, trial_id: str) -> None:
        """Copy a finished trial to the store. A failure is this trial's alone: it is logged,
        marked, and the other trials go on."""
        out = self.folder / "trials" / trial_id
        record = self.folder / "finished" / f"{trial_id}.json"
        try:
            if out.is_dir():
                self.store.upload_tree(out, join(self.sweep_id, "trials", trial_id))
            # The finished record goes last: readers take it as "everything else is there".
            self.store.put(join(self.sweep_id, "finished", f"{trial_id}.json"), record.read_bytes())
        except (StoreError, OSError) as exc:
            print(f"trial {trial_id}: upload to {self.store.url} failed: {exc}", flush=True)
            (self.folder / "finished" / f"{trial_id}.upload-failed").write_text(str(exc))

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping.set()
        with self.lock:
            running = dict(self.children)
        for child in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        for child in running.values():
            child.wait()
        for trial in self.payload["trials"]:
            if trial["trial_id"] not in self.done:
                self._finish(trial["trial_id"], "cancelled", None, "cancelled by skysweep down")
        os._exit(130)


def main() -> int:
    payload = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    return _Runner(payload).run()


if __name__ == "__main__":
    raise SystemExit(main())
