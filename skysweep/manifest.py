"""The sweep manifest, ``<store>/<sweep_id>/sweep.json``: everything needed to follow a sweep
from any machine with read access (DESIGN.md §4). It never holds a secret's value."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from skysweep import __version__
from skysweep.errors import StoreError, SweepNotFoundError
from skysweep.expand import Trial
from skysweep.store import Store, join
from skysweep.task import Scalar, TaskSpec

MANIFEST = "sweep.json"


class JobRecord(BaseModel):
    """What the backend said about one trial's job."""

    job_id: str | None = None
    job_name: str | None = None
    submitted_at: str | None = None
    attempts: int = 0
    error: str | None = None
    """Why the last submission failed, when it did."""
    infra: str | None = None


class TrialRecord(BaseModel):
    trial_id: str
    index: int
    params: dict[str, Scalar]
    resources: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    sweep_id: str
    name: str
    created_at: str
    skysweep_version: str = __version__
    git_commit: str | None = None
    task_file: str
    task: dict[str, Any]
    metric: str
    lower_is_better: bool
    backend: str
    store_url: str
    max_parallel: int | None = None
    trials: list[TrialRecord]
    jobs: dict[str, JobRecord] = Field(default_factory=dict)
    backend_state: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        sweep_id: str,
        task: TaskSpec,
        task_file: Path,
        trials: list[Trial],
        backend: str,
        store_url: str,
        max_parallel: int | None,
    ) -> Manifest:
        sweeps = task.sweeps
        return cls(
            sweep_id=sweep_id,
            name=task.name,
            created_at=now(),
            git_commit=_git_commit(task_file.parent),
            task_file=str(task_file),
            task=task.model_dump(mode="json", exclude_none=True),
            metric=sweeps.sweep_metric if sweeps else "eval/loss",
            lower_is_better=sweeps.lower_is_better if sweeps else True,
            backend=backend,
            store_url=store_url,
            max_parallel=max_parallel,
            trials=[
                TrialRecord(
                    trial_id=t.trial_id, index=t.index, params=t.params, resources=t.resources
                )
                for t in trials
            ],
        )

    def task_spec(self) -> TaskSpec:
        return TaskSpec.model_validate(self.task)

    def trial_objects(self) -> list[Trial]:
        return [Trial(r.index, r.trial_id, dict(r.params), dict(r.resources)) for r in self.trials]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_manifest(store: Store, manifest: Manifest) -> None:
    store.put(join(manifest.sweep_id, MANIFEST), manifest.model_dump_json(indent=2).encode())


def read_manifest(store: Store, sweep_id: str) -> Manifest:
    data = store.get(join(sweep_id, MANIFEST))
    if data is None:
        raise SweepNotFoundError(
            f"no sweep '{sweep_id}' in {store.url}",
            hint="check the id with 'skysweep list --store URL', or pass the store the sweep "
            "was started with (--store or SKYSWEEP_STORE)",
        )
    try:
        return Manifest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise StoreError(
            f"{store.url}/{sweep_id}/{MANIFEST} is not a skysweep manifest: {exc}"
        ) from exc
