"""What git knows about a folder: its commit, its files.

Git is asked only when the folder is inside a repository: a sweep started from a plain
folder would otherwise pay for a ``git`` process that can only fail (~15 ms each)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def repository(folder: Path) -> Path | None:
    """The top of the repository ``folder`` is in (``.git`` a folder, or a file in a
    worktree or submodule), or None."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def head_commit(folder: Path) -> str | None:
    if repository(folder.resolve()) is None:
        return None
    out = _git(folder, "rev-parse", "HEAD")
    return out.decode().strip() or None if out is not None else None


def listed_files(folder: Path) -> list[str] | None:
    """The files git would keep (tracked, or untracked and not ignored), relative to
    ``folder``; None when ``folder`` is not in a repository."""
    if repository(folder.resolve()) is None:
        return None
    out = _git(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if out is None:
        return None
    return [p for p in out.decode(errors="surrogateescape").split("\0") if p]


def _git(folder: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None
