"""Processes of this machine: whether one that was started is still running.

Pids are reused and an ended child lingers as a zombie until its parent reaps it (a detached
process's new parent may never do so in a container), so "the pid answers a signal" is not
enough: the process must not be a zombie and, when its start time was recorded, must have
started then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, from /proc (Linux); None elsewhere."""
    fields = _stat(pid)
    return fields[19] if fields else None


def running(pid: object, start: object = None) -> bool:
    """Whether ``pid`` runs and is the process that started at ``start`` (when given)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc here: the signal answered, that is all we can tell
    if fields[0] == "Z":
        return False
    return start is None or fields[19] == start


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_module(
    module: str, work: dict[str, Any], log: IO[bytes], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``python -m module`` in a session of its own (it outlives this process and a Ctrl-C
    in its terminal), given its work as JSON on a pipe: secrets never touch a file."""
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(work).encode())
    process.stdin.close()
    return process
