"""The one error hierarchy of skysweep.

Errors from pydantic, boto3 and SkyPilot are translated into these at the boundary
where they are raised, with the original kept as ``__cause__``. The CLI turns them into
a message and an exit code; a traceback is shown only for bugs.
"""

from __future__ import annotations

from dataclasses import dataclass


class SkysweepError(Exception):
    """Base of every error skysweep reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(SkysweepError):
    """Bad command-line arguments or a bad task file: nothing was launched."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a task file, with where it is and how to fix it."""

    location: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class TaskFileError(UsageError):
    """A task file that cannot be loaded; lists every problem found."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {len(problems)} problem(s) in the task file:"]
        lines += [f"  - {problem.render()}" for problem in problems]
        super().__init__("\n".join(lines))


class SecretMissingError(UsageError):
    """A ``{{secret.NAME}}`` reference with no value in the user's environment."""


class StoreError(SkysweepError):
    """Object storage could not be read or written (a transient or unknown failure)."""


class StoreSetupError(StoreError):
    """The store cannot be used as configured: a missing bucket, denied access, no
    credentials, an unreachable endpoint, a read-only folder. It says nothing about the trials,
    so it is exit 2 (fix the setup and run again), never 1 (a trial failed)."""

    exit_code = 2


class SweepNotFoundError(StoreError):
    exit_code = 2


class BackendError(SkysweepError):
    """The compute backend refused or failed a request."""


class BackendUnavailableError(BackendError):
    """The backend cannot be used at all (no API server, no cloud enabled)."""

    exit_code = 2


class WaitTimeoutError(SkysweepError):
    exit_code = 3
