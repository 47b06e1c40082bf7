"""Following a sweep until it ends: collect and rank in a loop, cheaply (see collect.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from skysweep.backends import Backend
from skysweep.collect import BackendView, Collector
from skysweep.errors import BackendUnavailableError, WaitTimeoutError
from skysweep.manifest import Manifest, read_manifest
from skysweep.rank import Ranking, rank
from skysweep.store import Store


def look(
    store: Store,
    manifest: Manifest,
    backend: Backend | None,
    collector: Collector | None = None,
    on_unavailable: Callable[[BackendUnavailableError], None] | None = None,
) -> Ranking:
    """One look at a sweep: what the store and the backend say, ranked.

    When the backend cannot be reached (a CI runner with read access to the store only),
    the store alone answers and ``on_unavailable`` is told why.
    """
    collector = collector or Collector(store, manifest.sweep_id)
    views: dict[str, BackendView] = {}
    if backend is not None:
        try:
            views = backend.status(manifest, store)
        except BackendUnavailableError as exc:
            if on_unavailable is not None:
                on_unavailable(exc)
    results = collector.collect(manifest, views)
    return rank(manifest.sweep_id, results, manifest.metric, manifest.lower_is_better)


def follow(
    store: Store,
    manifest: Manifest,
    backend: Backend | None,
    *,
    timeout: float | None = None,
    interval: float = 1.0,
    on_look: Callable[[Ranking], None] | None = None,
    reload_manifest: bool = False,
    on_unavailable: Callable[[BackendUnavailableError], None] | None = None,
) -> Ranking:
    """Look until every trial has finished. Raises :class:`WaitTimeoutError` on timeout."""
    collector = Collector(store, manifest.sweep_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if reload_manifest:
            manifest = read_manifest(store, manifest.sweep_id)
        ranking = look(store, manifest, backend, collector, on_unavailable)
        if on_look:
            on_look(ranking)
        if ranking.all_finished:
            return ranking
        if deadline is not None and time.monotonic() >= deadline:
            unfinished = sum(not t.result.finished for t in ranking.trials)
            raise WaitTimeoutError(
                f"sweep {manifest.sweep_id}: {unfinished} of {len(ranking.trials)} trials "
                f"still unfinished after {timeout:g} s",
                hint="wait again, or see 'skysweep status " + manifest.sweep_id + "'",
            )
        time.sleep(
            interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
        )
