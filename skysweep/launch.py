"""Stage 4, launch: rendered trials become jobs, recorded in the sweep's manifest.

The manifest is written before the first job starts and again as job ids arrive, so an
interrupted ``up`` can be resumed: a trial is launched only if it never was.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from skysweep.backends import Backend, LaunchRequest
from skysweep.errors import UsageError
from skysweep.expand import Trial
from skysweep.manifest import Manifest, write_manifest
from skysweep.render import Placement, RenderedTrial, render, resolve_secrets
from skysweep.store import S3_SCHEMES, Store, join
from skysweep.task import TaskSpec

RELAUNCHABLE = frozenset({"pending", "lost", "submit_failed"})


def new_sweep_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "sweep"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{slug}-{stamp}-{secrets.token_hex(2)}"


def placement_for(backend_name: str, store: Store, sweep_id: str) -> Placement:
    if backend_name == "local":
        from skysweep.backends.local import sweep_folder

        return Placement(str(sweep_folder(store, sweep_id)[0]))
    scheme = store.url.split("://", 1)[0]
    if scheme not in S3_SCHEMES:
        raise UsageError(
            f"the sky backend needs an object store that cloud jobs can reach, not {store.url}",
            hint="pass --store s3://BUCKET/PREFIX (or r2://...), set SKYSWEEP_STORE, or run "
            "locally with --local",
        )
    return Placement.mounted(f"{store.url.rstrip('/')}/{sweep_id}")


def render_sweep(
    task: TaskSpec,
    trials: list[Trial],
    *,
    sweep_id: str,
    backend_name: str,
    store: Store,
    task_file: Path,
    spread: bool = False,
) -> list[RenderedTrial]:
    return render(
        task,
        trials,
        sweep_id=sweep_id,
        placement=placement_for(backend_name, store, sweep_id),
        task_dir=task_file.resolve().parent,
        spread=spread,
    )


@dataclass(frozen=True)
class LaunchOutcome:
    manifest: Manifest
    launched: list[str]
    skipped: list[str]
    """Trials not launched because they were launched before (resume)."""


def launch(
    manifest: Manifest,
    rendered: list[RenderedTrial],
    *,
    store: Store,
    backend: Backend,
    max_parallel: int,
    only: set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LaunchOutcome:
    """Submit the trials in ``only`` (default: every trial never launched)."""
    task = manifest.task_spec()
    env = dict(os.environ if environ is None else environ)
    if only is None:
        only = {r.trial.trial_id for r in rendered if r.trial.trial_id not in manifest.jobs}
    chosen = [r for r in rendered if r.trial.trial_id in only]
    skipped = [r.trial.trial_id for r in rendered if r.trial.trial_id not in only]
    secret_values = {r.trial.trial_id: resolve_secrets(r, env) for r in chosen}
    write_manifest(store, manifest)
    if not chosen:
        return LaunchOutcome(manifest, [], skipped)
    with ThreadPoolExecutor(min(16, len(chosen))) as pool:
        list(
            pool.map(
                lambda r: store.put(
                    join(manifest.sweep_id, "trials", r.trial.trial_id, "params.json"),
                    json.dumps(r.trial.params, sort_keys=True).encode(),
                ),
                chosen,
            )
        )
    records = backend.submit(
        LaunchRequest(
            manifest=manifest,
            store=store,
            task=task,
            trials=chosen,
            secrets=secret_values,
            max_parallel=max_parallel,
        )
    )
    manifest.jobs.update(records)
    write_manifest(store, manifest)
    return LaunchOutcome(manifest, [r.trial.trial_id for r in chosen], skipped)


def relaunchable(manifest: Manifest, states: Mapping[str, str]) -> set[str]:
    """Trials a resumed ``up`` may launch: never launched, never submitted, or lost with
    their runner before they finished. Never one that is running or done."""
    return {
        record.trial_id
        for record in manifest.trials
        if record.trial_id not in manifest.jobs
        or states.get(record.trial_id, "pending") in RELAUNCHABLE
    }


def next_wave(manifest: Manifest, states: Mapping[str, str], cap: int) -> set[str]:
    """Trials to launch now so that at most ``cap`` are in flight, in trial order."""
    in_flight = sum(1 for tid in manifest.jobs if states.get(tid) in ("submitted", "running"))
    room = cap - in_flight
    if room <= 0:
        return set()
    waiting = [
        r.trial_id
        for r in sorted(manifest.trials, key=lambda r: r.index)
        if r.trial_id not in manifest.jobs
    ]
    return set(waiting[:room])


def archive_attempt(store: Store, sweep_id: str, trial_id: str, attempt: int) -> None:
    """Move a finished attempt's files aside so a retry starts clean; nothing is deleted
    before it is copied."""
    base = join(sweep_id, "trials", trial_id)
    target = join(base, "attempts", str(attempt))
    for info in store.list(base):
        relative = info.key[len(base) + 1 :] if info.key.startswith(base + "/") else None
        if relative is None or relative.startswith("attempts/"):
            continue
        data = store.get(info.key)
        if data is not None:
            store.put(join(target, relative), data)
            store.delete(info.key)
    finished = join(sweep_id, "finished", f"{trial_id}.json")
    data = store.get(finished)
    if data is not None:
        store.put(join(target, "finished.json"), data)
        store.delete(finished)


def default_parallelism(task: TaskSpec, trial_count: int) -> int:
    cores = os.cpu_count() or 1
    per_trial = max(task.resources.requested_cpus(), 1.0)
    return max(1, min(trial_count, int(cores // per_trial) or 1))
