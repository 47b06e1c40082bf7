"""The SkyPilot backend: trials as SkyPilot managed jobs. The only module that imports ``sky``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from skysweep.collect import BackendView
from skysweep.errors import BackendError, UsageError
from skysweep.manifest import JobRecord, Manifest
from skysweep.render import RenderedTrial
from skysweep.store import Store

from . import LaunchRequest


def _sky() -> Any:
    import sky

    return sky


def validate(rendered: list[RenderedTrial]) -> None:
    """Check every spec with SkyPilot's own ``sky.Task.from_yaml_config``."""
    sky = _sky()
    for item in rendered:
        try:
            sky.Task.from_yaml_config(item.spec)
        except Exception as exc:
            raise UsageError(
                f"trial {item.trial.trial_id} ({item.trial.params}): SkyPilot rejects the "
                f"rendered task: {exc}",
                hint="check the resources in the task file (cpus, memory, accelerators, infra)",
            ) from exc


def preflight(rendered: list[RenderedTrial]) -> list[str]:
    validate(rendered)
    return []


class SkyBackend:
    name = "sky"

    def submit(self, request: LaunchRequest) -> dict[str, JobRecord]:
        raise BackendError("the sky backend is not available yet")

    def status(self, manifest: Manifest, store: Store) -> dict[str, BackendView]:
        return {}

    def cancel(self, manifest: Manifest, store: Store) -> list[str]:
        return []

    def logs(self, manifest: Manifest, store: Store, trial_id: str,
             follow: bool) -> Iterator[str]:
        raise BackendError("the sky backend is not available yet")
