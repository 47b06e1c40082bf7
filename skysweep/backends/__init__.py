"""Backends run rendered trials somewhere. One small protocol, two implementations:
``local`` (subprocesses on this machine) and ``sky`` (SkyPilot managed jobs).

Only :mod:`skysweep.backends.sky` imports SkyPilot, and only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from skysweep.collect import BackendView
from skysweep.manifest import JobRecord, Manifest
from skysweep.render import RenderedTrial
from skysweep.store import Store
from skysweep.task import TaskSpec


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start some trials of one sweep."""

    manifest: Manifest
    store: Store
    task: TaskSpec
    trials: Sequence[RenderedTrial]
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Trial id → secret envs, resolved from the user's environment, held in memory only."""
    max_parallel: int = 1


class Backend(Protocol):
    name: str

    def submit(self, request: LaunchRequest) -> dict[str, JobRecord]:
        """Start the trials; one record per trial, with a job id or the submission error."""

    def status(self, manifest: Manifest, store: Store) -> dict[str, BackendView]:
        """What the backend knows of each launched trial that the store does not."""

    def cancel(self, manifest: Manifest, store: Store) -> list[str]:
        """Stop every job of this sweep and nothing else; returns what was cancelled."""

    def logs(self, manifest: Manifest, store: Store, trial_id: str, follow: bool) -> Iterator[str]:
        """One trial's log output."""


def get_backend(name: str) -> Backend:
    if name == "local":
        from skysweep.backends.local import LocalBackend

        return LocalBackend()
    if name == "sky":
        from skysweep.backends.sky import SkyBackend

        return SkyBackend()
    from skysweep.errors import UsageError

    raise UsageError(f"unknown backend {name!r}", hint="use 'local' or 'sky'")
