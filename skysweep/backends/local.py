"""The local backend: every trial a process of its own on this machine.

Each trial runs in a session of its own (so it outlives an interrupted ``up`` as a managed
job outlives a laptop on SkyPilot), in a working directory of its own: a copy of the task's
folder (or of its git repository) made once per sweep, where the task's ``setup`` has run
once. Its handle names the host, the pid and the process's start time, so any later look on
this machine can tell "still running" from "gone" even after the pid is reused, and cancel
exactly that trial.

With an ``s3://`` store the trial writes to a staging folder and a small companion process
(``python -m skysweep.backends.local``, in the trial's session) uploads it when it ends, so
results arrive even when nobody is watching. Secrets reach that process on a pipe, never a
file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from skysweep.collect import BackendView
from skysweep.cost import FREE, resource_key
from skysweep.errors import BackendError, StoreError
from skysweep.git import listed_files
from skysweep.process import running, start_module, start_time
from skysweep.render import Placement, RenderedTrial, lab_job_folder
from skysweep.store import FileStore, Store, join, open_store
from skysweep.trial import Attempt, JobHandle, TrialState

from . import LaunchRequest, Plan, Submission

STAGING_ROOT = Path("~/.skysweep/staging").expanduser()
WORK_ROOT = Path("~/.skysweep/work").expanduser()
CANCEL_GRACE_SECONDS = 5.0
_HAS_PIDFD = hasattr(os, "pidfd_open")


@functools.cache
def _bash() -> str:
    """bash's path, found once: exec with a bare name tries each folder of PATH in turn."""
    return shutil.which("bash") or "bash"


def sweep_folder(store: Store, sweep_id: str) -> tuple[Path, bool]:
    """Where the trials write on this machine, and whether it must be uploaded."""
    local = store.local_folder(sweep_id)
    if local is not None:
        return local, False
    return STAGING_ROOT / sweep_id, True


def work_folder(sweep_id: str) -> Path:
    """Where the sweep's working directories are on this machine."""
    return WORK_ROOT / sweep_id


class LocalBackend:
    name = "local"
    runs_here = True

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._ended = threading.Event()
        # Linux tells of a child's end on a pidfd, so one poll() waits for all of them; a
        # thread per child (elsewhere) costs a millisecond to start, per trial.
        self._pidfds: dict[int, int] = {}

    def sleep(self, seconds: float) -> None:
        # A trial this process started ends: look now rather than after the backoff, so a
        # free slot is filled at once.
        if not self._pidfds or self._ended.is_set():
            if self._ended.wait(seconds):
                self._ended.clear()
            return
        poller = select.poll()
        by_fd = {fd: pid for pid, fd in self._pidfds.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(max(0.0, seconds) * 1000):
            # Told once: the next look reaps the child through its Popen.
            self._pidfds.pop(by_fd[fd], None)
            os.close(fd)

    def _watch(self, process: subprocess.Popen[bytes]) -> str | None:
        """Be woken when the child ends. Its start time when it had to be read now (a
        thread that waits for the child reaps it, and its /proc entry with it); else None,
        read later by ``submit``: nothing reaps it before the next poll."""
        if _HAS_PIDFD:
            try:
                self._pidfds[process.pid] = os.pidfd_open(process.pid)
                return None
            except OSError:  # pidfd_open needs Linux 5.3; ENOSYS in some sandboxes
                pass
        start = start_time(process.pid)
        threading.Thread(target=self._wait, args=(process,), daemon=True).start()
        return start

    def _forget(self, pid: int) -> None:
        self._children.pop(pid, None)
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def _wait(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self._ended.set()

    def placement(self, store: Store, sweep_id: str) -> Placement:
        return Placement(str(sweep_folder(store, sweep_id)[0]))

    def plan(self, rendered: Sequence[RenderedTrial]) -> Plan:
        # Trials run on this machine: they cost nothing, whatever their resources.
        return Plan([], {resource_key(item.trial.resources): FREE for item in rendered})

    # -- submit ----------------------------------------------------------------------------

    def submit(self, request: LaunchRequest) -> dict[str, Submission]:
        folder, upload = sweep_folder(request.store, request.sweep_id)
        (folder / "finished").mkdir(parents=True, exist_ok=True)
        first = request.trials[0].spec if request.trials else {}
        skip = {folder, WORK_ROOT, STAGING_ROOT}
        local_store = request.store.local_folder("")
        if local_store is not None:
            skip.add(local_store)
        base, problem = _base_workdir(request.sweep_id, first.get("workdir"), skip)
        if problem is None and first.get("setup"):
            setup_env = {
                **request.task.envs,
                **next(iter(request.secrets.values()), {}),
                "SKYSWEEP_SWEEP_ID": request.sweep_id,
                "SKYSWEEP_SWEEP_DIR": str(folder),
            }
            problem = _setup(base, first["setup"], setup_env, folder, request.store, upload)
        out: dict[str, Submission] = {}
        started: list[JobHandle] = []
        # Read once per batch: os.environ decodes every variable on each read.
        environ = dict(os.environ)
        for item in request.trials:
            trial_id = item.trial.trial_id
            if problem is not None:
                out[trial_id] = Submission(None, 1, problem)
                continue
            try:
                job = self._start(request, item, base, folder, upload, environ)
            except (OSError, StoreError) as exc:
                out[trial_id] = Submission(None, 1, f"cannot start the trial's process: {exc}")
                continue
            out[trial_id] = Submission(job, 1, None)
            started.append(job)
        # Start times are read once the batch is started: /proc/PID/stat of a process that
        # is still loading its program waits for it (~0.5 ms a trial on 2 busy cores). An
        # ended one is a zombie until the next poll reaps it, and keeps its start time.
        for job in started:
            if job.locator["start"] is None:
                job.locator["start"] = start_time(int(job.locator["pid"]))
        return out

    def _start(
        self,
        request: LaunchRequest,
        item: RenderedTrial,
        base: Path,
        folder: Path,
        upload: bool,
        environ: Mapping[str, str],
    ) -> JobHandle:
        trial_id = item.trial.trial_id
        attempt = request.attempts.get(trial_id, 1)
        cwd = _trial_workdir(base, request.sweep_id, trial_id, attempt)
        lab_job_folder(cwd, request.sweep_id, trial_id).mkdir(parents=True, exist_ok=True)
        out = folder / "trials" / trial_id
        if upload:
            # The staging folder is only this machine's copy: a relaunched trial starts clean
            # there, as it does in the store, where the previous attempt was archived.
            shutil.rmtree(out, ignore_errors=True)
            for suffix in (".json", ".upload-failed"):
                (folder / "finished" / f"{trial_id}{suffix}").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        env = {
            **environ,
            **item.spec["envs"],
            **request.secrets.get(trial_id, {}),
            "SKYSWEEP_OUTPUT_DIR": str(out),
            "SKYSWEEP_SWEEP_DIR": str(folder),
        }
        with (out / "run.log").open("wb") as log:
            if upload:
                work = {
                    "run": item.spec["run"],
                    "env": env,
                    "trial_id": trial_id,
                    "sweep_id": request.sweep_id,
                    "sweep_dir": str(folder),
                    "store_url": request.store.url,
                    "endpoint_url": getattr(request.store, "endpoint_url", None),
                }
                process = start_module("skysweep.backends.local", work, log, cwd)
            else:
                process = subprocess.Popen(
                    [_bash(), "-c", item.spec["run"]],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
        self._children[process.pid] = process
        start = self._watch(process)
        return JobHandle(
            backend=self.name,
            job_id=f"local-{process.pid}",
            job_name=item.job_name,
            locator={
                "host": socket.gethostname(),
                "pid": process.pid,
                "start": start,  # None: read by submit, once the whole batch is started
                "sweep_dir": str(folder),
                "workdir": str(cwd),
                "upload": upload,
            },
        )

    # -- find ------------------------------------------------------------------------------

    def find(
        self, store: Store, sweep_id: str, attempt: Attempt
    ) -> JobHandle | Literal["unknown"] | None:
        """The trial's process on this machine, found by the sweep and trial ids in its
        environment; else, if it already ended, a handle the store's records explain; else
        None: nothing started. The previous attempt's records were archived before this
        attempt's intent was written, so any record found is this attempt's."""
        if not Path("/proc/self/environ").exists():
            return "unknown"  # no /proc to look in: "nothing started" cannot be told
        trial_id = attempt.trial_id
        folder, upload = sweep_folder(store, sweep_id)
        locator: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": None,
            "start": None,
            "sweep_dir": str(folder),
            "workdir": str(work_folder(sweep_id) / "trials" / trial_id),
            "upload": upload,
        }
        leader = _trial_session(sweep_id, trial_id, folder)
        if leader is not None:
            pid, start, cwd = leader
            locator.update(pid=pid, start=start, workdir=cwd or locator["workdir"])
            return JobHandle(backend=self.name, job_id=f"local-{pid}", locator=locator)
        started = any(
            store.get(key) is not None
            for key in (
                join(sweep_id, "finished", f"{trial_id}.json"),
                join(sweep_id, "trials", trial_id, "status.json"),
            )
        )
        if not started:
            return None
        return JobHandle(backend=self.name, job_id="local-ended", locator=locator)

    # -- poll ------------------------------------------------------------------------------

    def poll(
        self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]
    ) -> dict[str, BackendView]:
        views: dict[str, BackendView] = {}
        for trial_id, job in jobs.items():
            view = self._view(store, sweep_id, trial_id, job)
            if view is not None:
                views[trial_id] = view
        return views

    def _view(
        self, store: Store, sweep_id: str, trial_id: str, job: JobHandle
    ) -> BackendView | None:
        where = job.locator
        if where.get("host") != socket.gethostname():
            return None  # another machine's process: the store alone tells
        if where.get("legacy"):  # skysweep 0.1: one runner process for the whole sweep
            return (
                BackendView(TrialState.running)
                if running(where.get("pid"), None)
                else BackendView(TrialState.lost, "the local runner stopped before it finished")
            )
        pid = where.get("pid")
        child = self._children.get(pid) if isinstance(pid, int) else None
        if child is not None and child.poll() is not None:
            self._forget(child.pid)  # reaped: it no longer holds its pid
        alive = running(pid, where.get("start"))
        folder = Path(str(where.get("sweep_dir")))
        failed_upload = folder / "finished" / f"{trial_id}.upload-failed"
        if failed_upload.exists():
            return BackendView(
                TrialState.failed,
                "finished here, but its upload to the store failed: "
                f"{failed_upload.read_text().splitlines()[0]} (files in {folder})",
            )
        if alive:
            return BackendView(TrialState.running)
        record = folder / "finished" / f"{trial_id}.json"
        if child is not None and child.returncode is not None and not record.exists():
            # Our own child ended without its wrapper recording it (killed, or no bash).
            _record_once(
                record,
                {
                    "trial_id": trial_id,
                    "state": "failed",
                    "exit_code": child.returncode,
                    "error": f"the job ended with code {child.returncode} before recording it",
                },
            )
        if record.exists():
            if (
                where.get("upload")
                and store.get(join(sweep_id, "finished", f"{trial_id}.json")) is None
            ):
                _upload(store, sweep_id, folder, trial_id)  # its uploader was stopped first
            return None  # ended and recorded: the store tells how
        return BackendView(
            TrialState.lost, "its process ended without recording how (was it killed?)"
        )

    # -- cancel ----------------------------------------------------------------------------

    def cancel(self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]) -> list[str]:
        here = socket.gethostname()
        elsewhere = sorted({str(j.locator.get("host")) for j in jobs.values()} - {here})
        if elsewhere:
            raise BackendError(
                f"sweep {sweep_id} has trials running on host {', '.join(elsewhere)}",
                hint="run 'skysweep down' on that machine",
            )
        stopping = {
            trial_id: job
            for trial_id, job in jobs.items()
            if running(job.locator.get("pid"), job.locator.get("start"))
        }
        for job in stopping.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(job.locator["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for job in stopping.values():
            pid, start = job.locator.get("pid"), job.locator.get("start")
            while running(pid, start) and time.monotonic() < deadline:
                self._reap(pid)
                time.sleep(0.05)
            if isinstance(pid, int) and running(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            self._reap(pid)
        for trial_id, job in stopping.items():
            folder = Path(str(job.locator.get("sweep_dir")))
            record = {
                "trial_id": trial_id,
                "state": "cancelled",
                "exit_code": None,
                "error": "cancelled by skysweep",
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _record_once(folder / "finished" / f"{trial_id}.json", record)
            if job.locator.get("upload"):
                _upload(store, sweep_id, folder, trial_id)
        return sorted(stopping)

    def _reap(self, pid: Any) -> None:
        child = self._children.get(pid) if isinstance(pid, int) else None
        if child is not None and child.poll() is not None:
            self._forget(child.pid)

    # -- logs ------------------------------------------------------------------------------

    def logs(
        self, store: Store, sweep_id: str, trial_id: str, job: JobHandle | None, follow: bool
    ) -> Iterator[str]:
        where = job.locator if job is not None else {}
        folder = store.local_folder(sweep_id)
        if folder is None and where.get("host") == socket.gethostname():
            folder = Path(str(where.get("sweep_dir")))
        path = folder / "trials" / trial_id / "run.log" if folder else None
        if path is None or not path.exists():
            data = store.get(join(sweep_id, "trials", trial_id, "run.log"))
            if data is None:
                raise BackendError(
                    f"no log yet for trial {trial_id}",
                    hint="it may not have started; see 'skysweep status'",
                )
            yield data.decode(errors="replace")
            return
        assert folder is not None
        finished = folder / "finished" / f"{trial_id}.json"
        with path.open(errors="replace") as handle:
            while True:
                chunk = handle.read()
                if chunk:
                    yield chunk
                elif (
                    not follow
                    or finished.exists()
                    or not running(where.get("pid"), where.get("start"))
                ):
                    rest = handle.read()
                    if rest:
                        yield rest
                    return
                else:
                    time.sleep(0.3)


# ---------------------------------------------------------------------------------------
# Processes.


def _trial_session(
    sweep_id: str, trial_id: str, folder: Path
) -> tuple[int, str | None, str | None] | None:
    """The running session (pid, start time, working directory) of a trial of this user
    on this machine: the process whose environment names the sweep, the trial and the
    sweep's folder (the command, or under an uploader its child) leads to its session, which
    ``_start`` made and which is what a handle names and cancel stops. The folder tells
    apart two sweeps of one id and one task file in two stores (or two HOMEs), whose trials
    have the same ids."""
    wanted = {
        f"SKYSWEEP_SWEEP_ID={sweep_id}".encode(),
        f"SKYSWEEP_TRIAL_ID={trial_id}".encode(),
        f"SKYSWEEP_SWEEP_DIR={folder}".encode(),
    }
    uid = os.getuid()
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = set(handle.read().split(b"\0"))
            session = os.getsid(pid)
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if not wanted <= environ or session == os.getsid(0):
            continue
        start = start_time(session)
        if not running(session, start):
            continue
        try:
            cwd: str | None = os.readlink(f"/proc/{session}/cwd")
        except OSError:
            cwd = None
        return session, start, cwd
    return None


# ---------------------------------------------------------------------------------------
# Working directories.


def _base_workdir(sweep_id: str, workdir: Any, skip: set[Path]) -> tuple[Path, str | None]:
    """The sweep's working directory on this machine, made once: a copy of the task's folder
    or a clone of its repository."""
    base = work_folder(sweep_id) / "base"
    ready = base / ".skysweep-ready"
    if ready.exists():
        return base, None
    shutil.rmtree(base, ignore_errors=True)
    base.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(workdir, dict):
        command = ["git", "clone", "--depth", "1", str(workdir["url"]), str(base)]
        if workdir.get("ref"):
            command[4:4] = ["--branch", str(workdir["ref"])]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return base, f"git clone of {workdir['url']} failed: {done.stderr.strip()}"
    else:
        source = Path(workdir or os.getcwd())
        try:
            copy_workdir(source, base, skip={p.resolve() for p in skip})
        except OSError as exc:
            return base, f"cannot copy the working directory {source}: {exc}"
    ready.write_text("")
    return base, None


def copy_workdir(source: Path, target: Path, *, skip: Collection[Path] = ()) -> None:
    """Copy what SkyPilot would upload as the workdir: everything but what ``.skyignore``
    (or, without one, git) ignores. Folders in ``skip`` (the store, skysweep's own) stay out."""
    files = _workdir_files(source)
    target.mkdir(parents=True, exist_ok=True)
    for relative in files:
        path = source / relative
        if any(parent in skip for parent in (path, *path.parents)) or not path.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination, follow_symlinks=False)


def _workdir_files(source: Path) -> list[str]:
    skyignore = source / ".skyignore"
    if not skyignore.exists():
        listed = listed_files(source)
        if listed is not None:
            return listed
    import fnmatch

    patterns = []
    if skyignore.exists():
        patterns = [
            line.strip().strip("/")
            for line in skyignore.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    files: list[str] = []
    for directory, dirs, names in os.walk(source):
        relative_dir = Path(directory).relative_to(source)
        dirs[:] = [
            d
            for d in dirs
            if d not in (".git", ".skysweep")
            and not any(
                fnmatch.fnmatch(str(relative_dir / d), p) or fnmatch.fnmatch(d, p) for p in patterns
            )
        ]
        for name in names:
            relative = str(relative_dir / name)
            if not any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in patterns):
                files.append(relative)
    return files


def _trial_workdir(base: Path, sweep_id: str, trial_id: str, attempt: int) -> Path:
    """A fresh copy of the sweep's working directory for one attempt of one trial."""
    target = work_folder(sweep_id) / "trials" / trial_id
    if target.exists():  # an earlier attempt's: keep it beside, never delete what it wrote
        target.rename(target.with_name(f"{trial_id}.attempt-{attempt - 1}-{time.time_ns()}"))
    shutil.copytree(base, target, symlinks=True, ignore=shutil.ignore_patterns(".skysweep-*"))
    return target


def _setup(
    base: Path, setup: str, env: dict[str, str], folder: Path, store: Store, upload: bool
) -> str | None:
    """Run the task's setup once per sweep on this machine, in the sweep's working directory."""
    done = base / ".skysweep-setup"
    if done.exists():
        code = int(done.read_text() or 0)
    else:
        with (folder / "setup.log").open("wb") as log:
            code = subprocess.run(
                ["bash", "-c", setup],
                cwd=base,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        done.write_text(str(code))
        if upload:
            with contextlib.suppress(StoreError):
                store.put(
                    join(env["SKYSWEEP_SWEEP_ID"], "setup.log"), (folder / "setup.log").read_bytes()
                )
    return None if code == 0 else f"setup failed with exit code {code} (see setup.log)"


# ---------------------------------------------------------------------------------------
# Records and uploads.


def _record_once(path: Path, record: dict[str, Any]) -> bool:
    """Write a finished record unless the trial already wrote one (it ended first)."""
    return FileStore(path.parent).put_if_absent(path.name, json.dumps(record).encode())


def _upload(store: Store, sweep_id: str, folder: Path, trial_id: str) -> None:
    """Copy a finished trial to the store. A failure is this trial's alone: it is marked,
    and the other trials go on."""
    out = folder / "trials" / trial_id
    record = folder / "finished" / f"{trial_id}.json"
    try:
        if out.is_dir():
            store.upload_tree(out, join(sweep_id, "trials", trial_id))
        # The finished record goes last: readers take it as "everything else is there".
        store.put(join(sweep_id, "finished", f"{trial_id}.json"), record.read_bytes())
    except (StoreError, OSError) as exc:
        print(f"trial {trial_id}: upload to {store.url} failed: {exc}", flush=True)
        (folder / "finished" / f"{trial_id}.upload-failed").write_text(str(exc))


def _run_and_upload(payload: dict[str, Any]) -> int:
    """The companion of one trial with an ``s3://`` store: run it, then upload its files."""
    folder = Path(payload["sweep_dir"])
    trial_id = payload["trial_id"]
    store = open_store(payload["store_url"], endpoint_url=payload.get("endpoint_url"))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(StoreError):  # a courtesy for readers elsewhere: it has started
        store.put(
            join(payload["sweep_id"], "trials", trial_id, "status.json"),
            json.dumps({"trial_id": trial_id, "state": "running", "started_at": started}).encode(),
        )
    child = subprocess.Popen(["bash", "-c", payload["run"]], env=payload["env"])
    code = child.wait()
    record = folder / "finished" / f"{trial_id}.json"
    if not record.exists():  # the wrapper did not get to write it (killed, or no bash)
        _record_once(
            record,
            {
                "trial_id": trial_id,
                "state": "failed",
                "exit_code": code,
                "error": f"the job ended with code {code} before recording it",
            },
        )
    _upload(store, payload["sweep_id"], folder, trial_id)
    return code


def main() -> int:
    payload = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    return _run_and_upload(payload)


if __name__ == "__main__":
    raise SystemExit(main())
