"""SkyPilot backend failure paths that the real API server cannot be made to produce here.

``FakeSkyPilot`` stands in for the SDK's *network* calls only (launch, get, queue, cancel,
api_info, enabled_clouds, optimize). Everything else is SkyPilot's own: ``sky.Task`` parses
every spec, ``api_info`` answers with SkyPilot's own ``APIHealthResponse`` and the exceptions
raised are SkyPilot's real exception classes. The happy paths and the unreachable-server
path run against the real API server in test_sky.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import handmade_ledger

from skysweep.backends import LaunchRequest
from skysweep.backends import sky as sky_backend
from skysweep.collect import Collector
from skysweep.errors import BackendError, BackendUnavailableError
from skysweep.expand import expand
from skysweep.launch import new_sweep_id
from skysweep.load import load
from skysweep.render import Placement, render
from skysweep.store import FileStore

sky = pytest.importorskip("sky")
from sky import exceptions  # noqa: E402
from sky.schemas.api import responses  # noqa: E402
from sky.server import common as server_common  # noqa: E402

NEW_SERVER = ("0.14.1", "62")
OLD_SERVER = ("0.12.3", "50")


class FakeSkyPilot:
    """Answers launch/get/queue/cancel like the API server, failing as a script says."""

    def __init__(
        self,
        launch_failures: Callable[[str, int], BaseException | None],
        server: tuple[str, str] = NEW_SERVER,
    ) -> None:
        self.Task = sky.Task
        self.task = sky.task
        self.Dag = sky.Dag
        self.launch_failures = launch_failures
        self.launched: list[tuple[str, int | None]] = []
        self.tasks: list[Any] = []
        self.cancelled: list[list[int]] = []
        self.queue_records: list[dict[str, Any]] = []
        self.clouds: list[str] = ["AWS"]
        self.server = server
        self.api_info_calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._ids = itertools.count(1)
        self._calls: dict[str, int] = {}
        self.jobs = SimpleNamespace(launch=self._launch, queue_v2=self._queue, cancel=self._cancel)
        self.client = SimpleNamespace(
            sdk=SimpleNamespace(enabled_clouds=lambda: ("clouds", None, None))
        )

    def _launch(self, task: Any, name: str, num_jobs: int | None = None) -> Any:
        assert isinstance(task, sky.Task)
        self._calls[name] = self._calls.get(name, 0) + 1
        failure = self.launch_failures(name, self._calls[name])
        self.launched.append((name, num_jobs))
        self.tasks.append(task)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return ("launch", failure, [next(self._ids) for _ in range(num_jobs or 1)])

    def _queue(self, **kwargs: Any) -> Any:
        return ("queue", None, self.queue_records)

    def _cancel(self, job_ids: list[int]) -> Any:
        self.cancelled.append(job_ids)
        return ("cancel", None, None)

    def api_info(self) -> Any:
        self.api_info_calls += 1
        version, api_version = self.server
        return responses.APIHealthResponse(
            status=server_common.ApiServerStatus.HEALTHY, api_version=api_version, version=version
        )

    def optimize(self, dag: Any) -> Any:
        return ("optimize", None, "CHOSEN\n m6i.large  0.10  ✔\n")

    def stream_and_get(self, request: Any, output_stream: Any) -> None:
        output_stream.write(self.get(request))

    def get(self, request: Any) -> Any:
        kind, failure, value = request
        if kind == "launch":
            self.in_flight -= 1
        if failure is not None:
            raise failure
        if kind == "launch":
            return value, None
        if kind == "queue":
            return value, len(value), {}, len(value)
        if kind == "clouds":
            return self.clouds
        return value


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test is the sweep of a fresh process: nothing known of the API server yet."""
    sky_backend.api_server.cache_clear()
    yield
    sky_backend.api_server.cache_clear()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setattr(sky_backend, "BACKOFF_SECONDS", 0.0)
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        "name: fails\nresources:\n  cpus: 2\n  infra: [aws/us-east-1, aws/us-west-2]\n"
        "run: python train.py\nsweeps:\n  sweep_config:\n    lr: [1, 2, 3, 4]\n"
    )

    def make(fake: FakeSkyPilot) -> tuple[LaunchRequest, list[Any]]:
        monkeypatch.setattr(sky_backend, "_sky", lambda: fake)
        task = load(task_file)
        trials = expand(task)
        sweep_id = new_sweep_id(task.name)
        rendered = render(
            task,
            trials,
            sweep_id=sweep_id,
            placement=Placement.mounted(f"s3://b/{sweep_id}"),
            task_dir=tmp_path,
            spread=True,  # two providers: two batches, so one can fail alone
        )
        store = FileStore(tmp_path / "store")
        return LaunchRequest(sweep_id, store, task, rendered), rendered

    return make


def east(name: str) -> bool:
    return name.endswith("batch0")


def test_a_transient_failure_is_retried_and_recorded(setup: Callable[..., Any]) -> None:
    fake = FakeSkyPilot(
        lambda name, call: (
            exceptions.ServerTemporarilyUnavailableError("busy")
            if east(name) and call <= 2
            else None
        )
    )
    request, _ = setup(fake)
    records = sky_backend.SkyBackend().submit(request)
    assert all(r.job for r in records.values()) and len(records) == 4
    tries = {r.job.infra: r.tries for r in records.values() if r.job}
    assert tries == {"aws/us-east-1": 3, "aws/us-west-2": 1}
    assert [n for n, _ in fake.launched].count(f"{request.sweep_id}-batch0") == 3


def test_a_failing_batch_is_recorded_and_never_stops_the_others(
    setup: Callable[..., Any],
) -> None:
    fake = FakeSkyPilot(
        lambda name, call: (
            exceptions.ResourcesUnavailableError("FAILED_NO_RESOURCE: quota")
            if east(name)
            else None
        )
    )
    request, rendered = setup(fake)
    infra_of = {r.trial.trial_id: r.spec["resources"]["infra"] for r in rendered}
    records = sky_backend.SkyBackend().submit(request)
    failed = {t: r for t, r in records.items() if infra_of[t] == "aws/us-east-1"}
    fine = {t: r for t, r in records.items() if infra_of[t] == "aws/us-west-2"}
    assert len(failed) == 2 and len(fine) == 2
    assert all(r.job is None and r.tries == 3 for r in failed.values())
    assert all("ResourcesUnavailableError" in (r.error or "") for r in failed.values())
    assert all(r.job and r.error is None for r in fine.values())


def test_a_permanent_error_is_not_retried(setup: Callable[..., Any]) -> None:
    fake = FakeSkyPilot(
        lambda name, call: exceptions.NotSupportedError("no") if east(name) else None
    )
    request, _ = setup(fake)
    records = sky_backend.SkyBackend().submit(request)
    assert {r.tries for r in records.values() if r.job is None} == {1}


def test_an_unreachable_server_for_every_batch_is_one_clear_error(
    setup: Callable[..., Any],
) -> None:
    fake = FakeSkyPilot(lambda name, call: exceptions.ApiServerConnectionError("http://x"))
    request, _ = setup(fake)
    with pytest.raises(BackendUnavailableError, match="cannot reach the SkyPilot API server"):
        sky_backend.SkyBackend().submit(request)


def test_status_shows_skypilots_state_and_reason(setup: Callable[..., Any]) -> None:
    fake = FakeSkyPilot(lambda name, call: None)
    request, rendered = setup(fake)
    trial_ids = [r.trial.trial_id for r in rendered]
    ledger = handmade_ledger(
        request.store,
        request.sweep_id,
        trial_ids,
        {t: str(number) for number, t in enumerate(trial_ids, start=1)},
    )
    jobs = {t: a[-1].job for t, a in ledger.attempts.items()}
    backend = sky_backend.SkyBackend()
    status = sky.jobs.ManagedJobStatus
    fake.queue_records = [
        {"job_id": 1, "status": status.FAILED_PRECHECKS, "failure_reason": "bad mount"},
        {"job_id": 2, "status": status.RUNNING, "failure_reason": None},
        {"job_id": 3, "status": status.CANCELLED, "failure_reason": None},
        {"job_id": 4, "status": status.FAILED_NO_RESOURCE, "failure_reason": "no capacity"},
    ]
    views = backend.poll(request.store, request.sweep_id, jobs)
    assert views[trial_ids[0]].state == "failed"
    assert views[trial_ids[0]].detail == "SkyPilot FAILED_PRECHECKS: bad mount"
    assert views[trial_ids[1]].state == "running"
    assert views[trial_ids[2]].state == "cancelled"
    assert views[trial_ids[3]].detail == "SkyPilot FAILED_NO_RESOURCE: no capacity"

    fake.queue_records[1] = {"job_id": 2, "status": status.SUCCEEDED, "failure_reason": None}
    results = Collector(request.store, request.sweep_id).collect(
        ledger, backend.poll(request.store, request.sweep_id, jobs)
    )
    lonely = next(r for r in results if r.trial_id == trial_ids[1])
    assert lonely.finished and "left no record in the store" in (lonely.problem or "")
    fake.queue_records[1] = {"job_id": 2, "status": status.RUNNING, "failure_reason": None}

    cancelled = backend.cancel(request.store, request.sweep_id, jobs)
    # only the live job of this sweep
    assert cancelled == [trial_ids[1]] and fake.cancelled == [[2]]


def test_preflight_stops_when_no_cloud_is_enabled(setup: Callable[..., Any]) -> None:
    fake = FakeSkyPilot(lambda name, call: None)
    fake.clouds = []
    _, rendered = setup(fake)
    with pytest.raises(BackendUnavailableError, match="no cloud is enabled") as caught:
        sky_backend.SkyBackend().plan(rendered)
    assert "sky check" in str(caught.value)
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, BackendError)


# ---------------------------------------------------------------------------------------
# API servers of every supported version: num_jobs without a pool, or one request a trial.
# The setup's 4 trials spread over two providers: two batches of two.


@pytest.mark.parametrize(
    ("server", "requests", "num_jobs"),
    [
        pytest.param(("0.12.3", "50"), 4, {None}, id="0.12.3 refuses num_jobs without pool"),
        pytest.param(("1.0.0-dev0", "55"), 4, {None}, id="a nightly before 0.13.0"),
        pytest.param(("0.11.0", ""), 4, {None}, id="no API version reported"),
        pytest.param(("0.13.0", "56"), 2, {2}, id="0.13.0 takes it"),
        pytest.param(("0.14.1", "62"), 2, {2}, id="0.14.1 takes it"),
    ],
)
def test_the_servers_api_version_picks_one_request_per_batch_or_per_trial(
    setup: Callable[..., Any], server: tuple[str, str], requests: int, num_jobs: set[int | None]
) -> None:
    fake = FakeSkyPilot(lambda name, call: None, server=server)
    request, rendered = setup(fake)
    records = sky_backend.SkyBackend().submit(request)
    assert len(fake.launched) == requests
    assert {n for _, n in fake.launched} == num_jobs
    assert fake.most_in_flight == requests  # every request sent before any is awaited
    job_ids = [r.job.job_id if r.job else None for r in records.values()]
    assert len(records) == 4 and all(job_ids) and len(set(job_ids)) == 4
    assert all(r.error is None and r.tries == 1 for r in records.values())
    if requests == len(rendered):  # one request a trial: the trial's own name and envs
        assert sorted(n for n, _ in fake.launched) == sorted(r.job_name for r in rendered)
        by_name = {r.job_name: r.trial.trial_id for r in rendered}
        assert all(t.envs["SKYSWEEP_TRIAL_ID"] == by_name[t.name] for t in fake.tasks)
        launched_id = {t.name: str(i) for t, i in zip(fake.tasks, range(1, 5), strict=True)}
        assert {tid: getattr(records[tid].job, "job_id", None) for tid in by_name.values()} == {
            tid: launched_id[name] for name, tid in by_name.items()
        }


@pytest.mark.parametrize("server", [OLD_SERVER, NEW_SERVER], ids=["old", "new"])
@pytest.mark.parametrize("planned", [True, False], ids=["after the plan", "no plan (retry)"])
def test_the_version_is_asked_once_per_sweep(
    setup: Callable[..., Any], server: tuple[str, str], planned: bool
) -> None:
    # Every request fails twice first: three rounds, in each of two waves.
    fake = FakeSkyPilot(
        lambda name, call: (
            exceptions.ServerTemporarilyUnavailableError("busy") if call <= 2 else None
        ),
        server=server,
    )
    request, rendered = setup(fake)
    if planned:
        sky_backend.SkyBackend().plan(rendered)
    backend = sky_backend.SkyBackend()
    first = backend.submit(dataclasses.replace(request, trials=rendered[:2]))
    second = backend.submit(dataclasses.replace(request, trials=rendered[2:]))
    assert all(r.job and r.tries == 3 for r in [*first.values(), *second.values()])
    assert len(fake.launched) >= 6  # at least two waves of three rounds
    assert fake.api_info_calls == 1


@pytest.mark.parametrize(
    ("server", "line"),
    [
        (
            NEW_SERVER,
            "SkyPilot API server 0.14.1 (API version 62): trials that differ only in "
            "parameters go out as one request per batch (num_jobs): 4 trial(s) in 2 request(s)",
        ),
        (
            OLD_SERVER,
            "SkyPilot API server 0.12.3 (API version 50): one request per trial, 4 sent "
            "together (this server predates num_jobs without a pool, SkyPilot 0.13.0)",
        ),
    ],
    ids=["new", "old"],
)
def test_the_plan_says_which_path_submission_takes(
    setup: Callable[..., Any], server: tuple[str, str], line: str
) -> None:
    fake = FakeSkyPilot(lambda name, call: None, server=server)
    _, rendered = setup(fake)
    lines = sky_backend.SkyBackend().plan(rendered).lines
    assert lines[0] == line
    assert any("m6i.large" in shown for shown in lines[1:])  # the optimizer's table follows
