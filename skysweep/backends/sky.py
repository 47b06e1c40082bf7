"""The SkyPilot backend: trials as SkyPilot managed jobs, through the Python SDK.

The only module that imports ``sky``, and only inside functions, so the CLI starts fast.

Fast submission: trials whose specs differ only in their per-trial envs are one *batch*,
submitted as one ``sky.jobs.launch(task, num_jobs=k)`` request. Each of the k jobs sees
``SKYPILOT_JOB_RANK`` and a small prelude exports that rank's trial parameters (quoted as
data, never spliced into shell text). The requests of all batches are sent before any is
awaited, so the API server works on them together.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import pickle
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from skysweep.collect import BackendView
from skysweep.cost import Price, resource_key
from skysweep.errors import BackendError, BackendUnavailableError, UsageError
from skysweep.render import Placement, RenderedTrial
from skysweep.store import S3_SCHEMES, Store
from skysweep.trial import Attempt, JobHandle, TrialState

from . import LaunchRequest, Plan, Submission

SUBMIT_ATTEMPTS = 3
# ``num_jobs`` without a ``pool``: SkyPilot 0.12.x API servers (API versions up to 50) refuse
# it ("Cannot specify num_jobs without pool.", in sky/jobs/server/core.py); 0.13.0, API
# version 56, is the first release that takes it (skypilot-org/skypilot#9997 removed the
# guards). Nightlies in between are not told apart, so they get the path that works on all.
NUM_JOBS_WITHOUT_POOL_API_VERSION = 56
NUM_JOBS_WITHOUT_POOL_RELEASE = "0.13.0"
# Job groups that accept jobs attached after launch (``sky.jobs.launch(job_group=...)``):
# API version 61 (SkyPilot 0.14), sky/server/constants.py MIN_JOBS_PARENT_LINK_API_VERSION.
JOB_GROUP_API_VERSION = 61
JOB_GROUP_RELEASE = "0.14.0"
BACKOFF_SECONDS = 1.0
TRIAL_ENVS = ("SKYSWEEP_PARAMS", "SKYSWEEP_TRIAL_ID", "SKYSWEEP_OUTPUT_DIR")
STATE_OF = {
    "PENDING": TrialState.submitted,
    "SUBMITTED": TrialState.submitted,
    "STARTING": TrialState.submitted,
    "RUNNING": TrialState.running,
    "RECOVERING": TrialState.running,
    "WINDING_DOWN": TrialState.running,
    "SUCCEEDED": TrialState.succeeded,
    "CANCELLING": TrialState.cancelled,
    "CANCELLED": TrialState.cancelled,
}


def _sky() -> Any:
    import sky

    return sky


def validate(rendered: Sequence[RenderedTrial]) -> None:
    """Check every spec against SkyPilot's own rules.

    Trials of a sweep differ only in their name and env values. One spec of each distinct
    structure (everything but the name and the env values, plus each env value's type) goes
    through ``sky.Task.from_yaml_config`` (~3 ms each, most of it SkyPilot re-dumping the
    spec to YAML); the others differ from a checked one only in their name, checked with
    SkyPilot's own name rule, and in env values of the same types: SkyPilot's env schema
    constrains only the names and the types of the values. A spec whose mounts or workdir
    could substitute an env value always gets the full check.
    """
    found = _first_rejection(_sky(), [item.spec for item in rendered])
    if found is not None:
        index, exc = found
        raise _rejected(rendered[index], _describe(exc)) from exc


def _first_rejection(sky: Any, specs: Sequence[dict[str, Any]]) -> tuple[int, Exception] | None:
    checked: set[str] = set()
    for index, spec in enumerate(specs):
        shape = {k: v for k, v in spec.items() if k not in ("name", "envs")}
        envs = spec.get("envs") or {}
        shape["envs"] = [(k, type(v).__name__) for k, v in envs.items()]
        key = json.dumps(shape, sort_keys=True, default=str)
        substitutes = "$" in json.dumps([spec.get("file_mounts"), spec.get("workdir")])
        try:
            if key not in checked or substitutes:
                sky.Task.from_yaml_config(copy.deepcopy(spec))
                checked.add(key)
            elif not sky.task._is_valid_name(spec["name"]):
                raise ValueError(f"invalid task name {spec['name']!r}")
        except Exception as exc:
            return index, exc
    return None


def _rejected(item: RenderedTrial, description: str) -> UsageError:
    return UsageError(
        f"trial {item.trial.trial_id} ({item.trial.params}): SkyPilot rejects the "
        f"rendered task: {description}",
        hint="check the resources in the task file (cpus, memory, accelerators, infra)",
    )


class BackgroundValidation:
    """``validate`` in a child process, started before the sweep is rendered.

    ``import sky`` costs ~1.5 s of CPU, more than rendering, dumping and writing 10,000
    specs. The child imports it on the other core while this process renders and writes;
    the specs reach it pickled (strings the specs share are pickled once). If the child
    fails in any way, ``validate`` runs here instead, so errors read as they always do.
    Use as a context manager: leaving it early ends the child.
    """

    _CHILD = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from skysweep.backends.sky import _validate_in_child; _validate_in_child()"
    )

    def __init__(self) -> None:
        self._rendered: Sequence[RenderedTrial] = []
        self._sender: threading.Thread | None = None
        package_root = str(Path(__file__).resolve().parent.parent.parent)
        try:
            self._child: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-c", self._CHILD, package_root],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._child = None

    def __enter__(self) -> BackgroundValidation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        if self._sender is not None:
            self._sender.join()

    def send(self, rendered: Sequence[RenderedTrial]) -> None:
        """Hand the specs over; returns at once (a thread feeds the child's pipe)."""
        self._rendered = rendered
        if self._child is None:
            return
        payload = pickle.dumps([item.spec for item in rendered], pickle.HIGHEST_PROTOCOL)
        self._sender = threading.Thread(target=self._feed, args=(payload,), daemon=True)
        self._sender.start()

    def _feed(self, payload: bytes) -> None:
        assert self._child is not None and self._child.stdin is not None
        try:
            self._child.stdin.write(payload)
            self._child.stdin.close()
        except OSError:
            pass  # the child is gone: check() validates here

    def check(self) -> None:
        """Wait for the child's verdict; raise as ``validate`` does."""
        verdict: Any = "failed"
        if self._child is not None:
            if self._sender is not None:
                self._sender.join()  # it closes the child's stdin: the child reads to its end
            assert self._child.stdout is not None
            out = self._child.stdout.read()
            self._child.wait()
            lines = out.decode("utf-8", "replace").splitlines()
            if self._child.returncode == 0 and lines:
                with contextlib.suppress(ValueError):
                    verdict = json.loads(lines[-1])
        if verdict is None:
            return
        if isinstance(verdict, list) and len(verdict) == 2:
            index, description = verdict
            if isinstance(index, int) and 0 <= index < len(self._rendered):
                raise _rejected(self._rendered[index], str(description))
        validate(self._rendered)


def _validate_in_child() -> None:
    """The child's side of ``BackgroundValidation``: import sky, read the specs, answer
    ``null`` or ``[index, description]`` of the first rejected spec on the last line."""
    sky = _sky()
    specs = pickle.load(sys.stdin.buffer)
    found = _first_rejection(sky, specs)
    answer = None if found is None else [found[0], _describe(found[1])]
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


# ---------------------------------------------------------------------------------------
# Batching: pure.


@dataclass(frozen=True)
class Batch:
    trials: list[RenderedTrial]
    spec: dict[str, Any]
    """One spec for all the batch's trials; rank r runs ``trials[r]``."""

    @property
    def name(self) -> str:
        return str(self.spec["name"])


def _per_trial_env_names(item: RenderedTrial) -> list[str]:
    return [*item.trial.params, *TRIAL_ENVS]


def _shape(item: RenderedTrial) -> str:
    """What must be equal for trials to share one launch request."""
    spec = dict(item.spec)
    spec.pop("name", None)
    trial_envs = set(_per_trial_env_names(item))
    spec["envs"] = {k: v for k, v in spec.get("envs", {}).items() if k not in trial_envs}
    return json.dumps(spec, sort_keys=True)


def batches(rendered: Sequence[RenderedTrial], sweep_id: str) -> list[Batch]:
    """Group trials that share everything but their parameters into batches."""
    groups: dict[str, list[RenderedTrial]] = {}
    for item in rendered:
        groups.setdefault(_shape(item), []).append(item)
    out: list[Batch] = []
    for number, members in enumerate(groups.values()):
        if len(members) == 1:
            out.append(Batch(members, copy.deepcopy(members[0].spec)))
            continue
        spec = copy.deepcopy(members[0].spec)
        trial_envs = set(_per_trial_env_names(members[0]))
        spec["envs"] = {k: v for k, v in spec["envs"].items() if k not in trial_envs}
        spec["name"] = f"{sweep_id}-batch{number}"
        prelude = _rank_prelude(members)
        spec["run"] = prelude + spec["run"]
        if spec.get("setup"):
            spec["setup"] = prelude + spec["setup"]
        out.append(Batch(members, spec))
    return out


def _rank_prelude(members: Sequence[RenderedTrial]) -> str:
    lines = [
        "# skysweep: this job's trial, chosen by its rank in the batch.",
        'case "${SKYPILOT_JOB_RANK:-0}" in',
    ]
    for rank, item in enumerate(members):
        envs = item.spec["envs"]
        exports = " ".join(
            f"{name}={shlex.quote(envs[name])}" for name in _per_trial_env_names(item)
        )
        lines.append(f"  {rank}) export {exports} ;;")
    lines.append(
        '  *) echo "skysweep: unexpected SKYPILOT_JOB_RANK=$SKYPILOT_JOB_RANK" >&2; exit 97 ;;'
    )
    lines.append("esac")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Error translation.


def _retryable(exc: BaseException) -> bool:
    from sky import exceptions

    return isinstance(
        exc,
        exceptions.ApiServerConnectionError
        | exceptions.ServerTemporarilyUnavailableError
        | exceptions.RequestInterruptedError
        | exceptions.ResourcesUnavailableError
        | ConnectionError
        | TimeoutError,
    )


def _attach_refused(exc: BaseException) -> bool:
    """SkyPilot refused to attach a job to a group: the group is no longer running, or the
    server keeps managed jobs on a separate controller (sky/jobs/server/core.py)."""
    from sky import exceptions

    text = str(exc)
    return (isinstance(exc, exceptions.NotSupportedError) and "job group" in text) or (
        isinstance(exc, ValueError) and text.startswith("Cannot attach to job")
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _unreachable(exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot reach the SkyPilot API server: {_describe(exc)}",
        hint="start a local one with 'sky api start', or point at your team's with "
        "'sky api login -e URL'; 'sky api info' shows which one is used",
    )


def _server_failed(exc: BaseException) -> BackendError:
    """A failed API-server call as our error: the server unreachable, or what it said."""
    if _is_unreachable(exc):
        return _unreachable(exc)
    return BackendError(f"the SkyPilot API server failed: {_describe(exc)}")


def _is_unreachable(exc: BaseException) -> bool:
    import requests
    from sky import exceptions

    # sky.api_info() raises requests' ConnectionError; other SDK calls raise SkyPilot's own.
    return isinstance(
        exc,
        exceptions.ApiServerConnectionError | requests.exceptions.ConnectionError | ConnectionError,
    )


def _job_ids(jobs: Mapping[str, JobHandle]) -> dict[int, str]:
    """SkyPilot job id → trial id, for the trials that have a job."""
    return {int(j.job_id): tid for tid, j in jobs.items() if j.job_id.isdigit()}


@dataclass(frozen=True)
class ApiServer:
    """The API server's versions, as ``sky.api_info()`` reports them."""

    version: str
    api_version: int | None
    """None when the server does not say (older than any that takes num_jobs without a pool)."""

    @classmethod
    def of(cls, info: Any) -> ApiServer:
        raw = str(getattr(info, "api_version", "") or "")
        return cls(
            version=str(getattr(info, "version", "") or "unknown"),
            api_version=int(raw) if raw.isdigit() else None,
        )

    @property
    def batches(self) -> bool:
        """Whether trials that differ only in parameters can share one num_jobs request."""
        return (
            self.api_version is not None and self.api_version >= NUM_JOBS_WITHOUT_POOL_API_VERSION
        )

    @property
    def groups(self) -> bool:
        """Whether a sweep's jobs can be attached to a job group after it is launched."""
        return self.api_version is not None and self.api_version >= JOB_GROUP_API_VERSION

    def plan_line(self, trials: int, requests: int) -> str:
        head = f"SkyPilot API server {self.version} (API version {self.api_version or '?'})"
        if self.batches:
            return (
                f"{head}: trials that differ only in parameters go out as one request per "
                f"batch (num_jobs): {trials} trial(s) in {requests} request(s)"
            )
        return (
            f"{head}: one request per trial, {trials} sent together (this server predates "
            f"num_jobs without a pool, SkyPilot {NUM_JOBS_WITHOUT_POOL_RELEASE})"
        )


@functools.cache
def api_server() -> ApiServer:
    """The API server's versions, asked once per process.

    A process drives one sweep against the one API server `sky api info` shows, so the plan
    (preflight) asks and every later submit of the sweep (waves, retries) reads this answer.
    A failed ask is not cached.
    """
    try:
        return ApiServer.of(_sky().api_info())
    except Exception as exc:
        raise _server_failed(exc) from exc


def one_per_trial(rendered: Sequence[RenderedTrial]) -> list[Batch]:
    """Each trial its own request, for API servers that refuse num_jobs without a pool."""
    return [Batch([item], copy.deepcopy(item.spec)) for item in rendered]


def _preflight(rendered: Sequence[RenderedTrial]) -> tuple[Plan, list[str]]:
    """Before launching: the specs, the API server, an enabled cloud, and what it costs.

    The plan says which submission path the API server allows, then shows SkyPilot's
    optimizer table and the price per hour of its choice for each distinct resource set, and
    holds those prices by the trials' :func:`~skysweep.cost.resource_key`. Also returns the
    clouds the API server has enabled.
    """
    sky = _sky()
    from sky import exceptions

    validate(rendered)
    server = api_server()
    counts: dict[str, int] = {}
    first: dict[str, RenderedTrial] = {}
    for item in rendered:
        key = json.dumps(item.spec.get("resources", {}), sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, item)
    # Every request goes out before any is awaited, so the server works on them together;
    # an optimizer request that fails to send is reported after the enabled-cloud check.
    estimates: dict[str, Any] = {}
    try:
        clouds_request = sky.client.sdk.enabled_clouds()
        for key in counts:
            task = sky.Task.from_yaml_config(copy.deepcopy(first[key].spec))
            try:
                estimates[key] = sky.optimize(_dag_of(sky, task))
            except Exception as exc:
                estimates[key] = exc
        clouds = sky.get(clouds_request)
    except Exception as exc:
        raise _server_failed(exc) from exc
    if not clouds:
        raise BackendUnavailableError(
            "no cloud is enabled on the SkyPilot API server",
            hint="run 'sky check' to see why and enable one (credentials for AWS, GCP, "
            "Kubernetes, ...)",
        )
    requests = len({_shape(item) for item in rendered}) if server.batches else len(rendered)
    lines = [server.plan_line(len(rendered), requests)]
    prices: dict[str, Price | None] = {}
    for key, count in counts.items():
        lines.append(f"SkyPilot's choice for {count} trial(s) with resources {key}:")
        try:
            price = price_of(sky, sky.Task.from_yaml_config(copy.deepcopy(first[key].spec)), clouds)
        except Exception as exc:  # a price is a courtesy: the launch does not need it
            price = None
            lines.append(f"  (no price: {_describe(exc)})")
        if price is not None:
            lines.append(f"  price per hour: {price.describe()}")
        for item in rendered:
            if json.dumps(item.spec.get("resources", {}), sort_keys=True) != key:
                continue
            trial_key = resource_key(item.trial.resources)
            known = prices.get(trial_key, price)
            # --spread may price one trial key at several providers: keep the dearest.
            prices[trial_key] = (
                None
                if known is None or price is None
                else max(known, price, key=lambda p: p.trial_hourly_usd)
            )
        captured = io.StringIO()
        try:
            if isinstance(estimates[key], BaseException):
                raise estimates[key]
            # The optimizer's result comes back as its table, the one `sky launch` shows.
            sky.stream_and_get(estimates[key], output_stream=captured)
        except (exceptions.ResourcesUnavailableError, exceptions.NoCloudAccessError) as exc:
            raise BackendError(
                f"no enabled cloud offers the resources {key}: {_describe(exc)}",
                hint="relax the resources, or enable another cloud ('sky check')",
            ) from exc
        except Exception as exc:  # an estimate is a courtesy: never block a launch on it
            lines.append(f"  (no estimate: {_describe(exc)})")
            continue
        lines += [f"  {line}" for line in _optimizer_table(captured.getvalue())]
    return Plan(lines, prices), list(clouds)


def price_of(sky: Any, task: Any, enabled: Sequence[str]) -> Price | None:
    """The price per hour of what SkyPilot's optimizer chooses for ``task``; None when no
    enabled cloud offers its resources.

    The optimize request runs on the API server and answers with its printed table only
    (``/optimize`` is scheduled with ``ignore_return_value``), so the choice is made again
    here with the optimizer's own steps for one task: each resource set of the task is
    validated, each cloud (the set's own, else the server's enabled clouds) lists its
    feasible launchable resources cheapest first, the cheapest is expanded to its regions and
    zones, and the one with the lowest ``Resources.get_cost`` is chosen (``ordered``: the
    first set that any cloud offers). Prices come from SkyPilot's catalog; spot prices when
    the resources ask for ``use_spot``.
    """
    from sky.utils import registry as sky_registry
    from sky.utils import resources_utils

    registry = sky_registry.CLOUD_REGISTRY
    candidates: list[tuple[float, Any]] = []
    for resources in task.resources:
        resources.validate()
        clouds = (
            [resources.cloud]
            if resources.cloud is not None
            else [c for c in (registry.from_str(name) for name in enabled) if c is not None]
        )
        found: list[tuple[float, Any]] = []
        for cloud in clouds:
            feasible = cloud.get_feasible_launchable_resources(resources, task.num_nodes)
            if not feasible.resources_list:
                continue
            for launchable in resources_utils.make_launchables_for_valid_region_zones(
                feasible.resources_list[0]
            ):
                found.append((float(launchable.get_cost(3600)), launchable))
        candidates += found
        if found and isinstance(task.resources, list):
            break  # ordered: the first set offered is the one used
    if not candidates:
        return None
    hourly, best = min(candidates, key=lambda c: c[0])
    where = f" ({best.region})" if best.region else ""
    return Price(
        hourly_usd=hourly,
        nodes=int(task.num_nodes or 1),
        spot=bool(best.use_spot),
        choice=f"{best.cloud} {best.instance_type}{where}",
    )


def _optimizer_table(text: str) -> list[str]:
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    rows = [line.rstrip() for line in plain.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(rows) if "INFRA" in line or "CLOUD" in line), None)
    return rows[start:] if start is not None else rows[-6:]


def _dag_of(sky: Any, task: Any) -> Any:
    with sky.Dag() as dag:
        dag.add(task)
    return dag


class SkyBackend:
    name = "sky"
    runs_here = False

    def __init__(self) -> None:
        self.group: int | None = None
        """The sweep's job group: every trial is attached to it (None: SkyPilot's default,
        which attaches to the surrounding group when launched from inside one)."""
        self.group_cancelled = False
        """A launch was refused because the sweep's group was cancelled."""
        self.notes: list[str] = []
        """What went differently than asked, for the driver to show (e.g. a group that
        could not take more jobs)."""
        self._clouds: list[str] | None = None
        """The API server's enabled clouds, once asked."""

    def placement(self, store: Store, sweep_id: str) -> Placement:
        scheme = store.url.split("://", 1)[0]
        if scheme not in S3_SCHEMES:
            raise UsageError(
                f"the sky backend needs an object store that cloud jobs can reach, not {store.url}",
                hint="pass --store s3://BUCKET/PREFIX (or r2://...), set SKYSWEEP_STORE, or run "
                "locally with --local",
            )
        return Placement.mounted(f"{store.url.rstrip('/')}/{sweep_id}")

    def plan(self, rendered: Sequence[RenderedTrial]) -> Plan:
        plan, self._clouds = _preflight(rendered)
        return plan

    def price(self, resources: Mapping[str, Any]) -> Price | None:
        """The price per hour of what SkyPilot would choose for ``resources`` (task YAML's
        ``resources``), from the catalog; None when no enabled cloud offers them. Asks the
        API server for its enabled clouds unless :meth:`plan` already did."""
        sky = _sky()
        if self._clouds is None:
            try:
                self._clouds = list(sky.get(sky.client.sdk.enabled_clouds()))
            except Exception as exc:
                raise _server_failed(exc) from exc
        task = sky.Task.from_yaml_config({"run": "true", "resources": dict(resources)})
        return price_of(sky, task, self._clouds)

    def submit(self, request: LaunchRequest) -> dict[str, Submission]:
        """Submit every batch; retry what failed in a way worth retrying, with backoff.

        A batch is one num_jobs request when the API server takes num_jobs without a pool,
        else one request per trial (the version was asked once, by the plan). Each round
        sends the requests of all the batches still to go before awaiting any, so the API
        server works on them together. A batch that keeps failing is recorded on its trials
        and never stops the others.
        """
        sky = _sky()
        groups = (
            batches(request.trials, request.sweep_id)
            if api_server().batches
            else one_per_trial(request.trials)
        )
        tasks = [self._task(sky, batch, request) for batch in groups]
        attempts = [0] * len(groups)
        job_ids: dict[int, list[Any]] = {}
        errors: dict[int, BaseException] = {}
        remaining = list(range(len(groups)))
        for round_ in range(SUBMIT_ATTEMPTS):
            if round_:
                time.sleep(BACKOFF_SECONDS * 2 ** (round_ - 1))
            sent: list[tuple[int, Any]] = []
            for i in remaining:
                attempts[i] += 1
                count = len(groups[i].trials)
                try:
                    sent.append((i, self._launch(sky, tasks[i], groups[i].name, count)))
                except Exception as exc:
                    errors[i] = exc
            for i, request_id in sent:
                try:
                    ids, _ = sky.get(request_id)
                    job_ids[i] = list(ids or [])
                    errors.pop(i, None)
                except Exception as exc:
                    errors[i] = exc
            refused = [i for i, exc in errors.items() if _attach_refused(exc)]
            if refused and self.group is not None and self.group_view().cancelled:
                # Someone cancelled the sweep's group: its trials are not launched elsewhere.
                self.group_cancelled = True
                refused = []
            elif refused and self.group is not None:
                # The group ended, or this server runs its jobs controller apart (no dynamic
                # groups): the trials still run, as jobs of their own.
                self.notes.append(
                    f"SkyPilot would not attach trials to the sweep's job group "
                    f"{self.group} ({_describe(errors[refused[0]])}); they are launched as "
                    "jobs of their own"
                )
                self.group = None
            remaining = [i for i, exc in errors.items() if _retryable(exc) or i in refused]
            if not remaining:
                break
        if errors and not job_ids and all(_is_unreachable(e) for e in errors.values()):
            raise _unreachable(next(iter(errors.values())))
        records: dict[str, Submission] = {}
        for i, batch in enumerate(groups):
            ids = job_ids.get(i, [])
            error = errors.get(i)
            for rank, item in enumerate(batch.trials):
                job_id = ids[rank] if rank < len(ids) else None
                records[item.trial.trial_id] = Submission(
                    job=None
                    if job_id is None
                    else JobHandle(
                        backend=self.name,
                        job_id=str(job_id),
                        job_name=item.job_name,
                        infra=item.spec.get("resources", {}).get("infra"),
                    ),
                    tries=attempts[i],
                    error=_describe(error)
                    if error is not None
                    else None
                    if job_id is not None
                    else "SkyPilot returned no job id",
                )
        return records

    def _launch(self, sky: Any, task: Any, name: str, count: int) -> Any:
        num_jobs = count if count > 1 else None
        if self.group is None:
            return sky.jobs.launch(task, name=name, num_jobs=num_jobs)
        return sky.jobs.launch(task, name=name, num_jobs=num_jobs, job_group=self.group)

    @staticmethod
    def _task(sky: Any, batch: Batch, request: LaunchRequest) -> Any:
        spec = copy.deepcopy(batch.spec)
        secrets = request.secrets.get(batch.trials[0].trial.trial_id, {})
        if secrets:
            spec["secrets"] = dict(secrets)  # in memory only, for this request
        return sky.Task.from_yaml_config(spec)

    def poll(
        self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]
    ) -> dict[str, BackendView]:
        ids = _job_ids(jobs)
        if not ids:
            return {}
        records = _queue(
            sorted(ids), ["job_id", "job_name", "status", "failure_reason", "details", "start_at"]
        )
        views: dict[str, BackendView] = {}
        for record in records:
            job_id = int(_field(record, "job_id"))
            if job_id not in ids:
                continue
            status = _status(record)
            reason = _field(record, "failure_reason")
            state = STATE_OF.get(
                status,
                TrialState.failed if status.startswith("FAILED") else TrialState.submitted,
            )
            detail = f"SkyPilot {status}" + (f": {reason}" if reason else "")
            views[ids[job_id]] = BackendView(state, detail, _iso(_field(record, "start_at")))
        return views

    def find(
        self, store: Store, sweep_id: str, attempt: Attempt
    ) -> JobHandle | Literal["unknown"] | None:
        """The job of an attempt whose driver stopped while submitting it, among the jobs
        attached to the sweep's group since the attempt's intent was written.

        Only a group's members can be told apart from other jobs with certainty: a trial's
        job carries its trial id in its envs, or in the rank prelude of its batch (rank r
        of a batch is the r-th lowest job id of the batch). Without a group: "unknown".
        """
        if self.group is None:
            return "unknown"
        since = datetime.fromisoformat(attempt.submitted_at).timestamp() - SUBMITTED_SLACK_SECONDS
        try:
            members = self._members(since)
        except Exception:
            return "unknown"
        return _job_of(members, attempt.trial_id) or None

    def _members(self, since: float) -> list[dict[str, Any]]:
        """The jobs attached to the sweep's group submitted at or after ``since``."""
        sky = _sky()
        records, *_ = sky.get(
            sky.jobs.queue_v2(
                refresh=False,
                all_users=False,
                submitted_after=since,
                fields=["job_id", "job_name", "status", "root_job_id", "user_yaml"],
            )
        )
        return [
            {
                "job_id": int(_field(r, "job_id")),
                "job_name": _field(r, "job_name"),
                "user_yaml": _field(r, "user_yaml") or "",
            }
            for r in records
            if _field(r, "root_job_id") == self.group
        ]

    def group_view(self) -> GroupView:
        """The state of the sweep's group job (its controller task)."""
        if self.group is None:
            return GroupView("none", "the sweep has no job group")
        # A teammate's group counts too: attaching goes by workspace, not by user.
        records = _queue(
            [self.group], ["job_id", "status", "failure_reason", "root_job_id"], all_users=True
        )
        for record in records:
            if _field(record, "job_id") == self.group and _field(record, "root_job_id") in (
                None,
                self.group,
            ):
                return GroupView.of(_status(record), _field(record, "failure_reason"))
        return GroupView("gone", f"SkyPilot has no job {self.group}")

    def launch_group(self, spec: dict[str, Any], secrets: Mapping[str, str]) -> int:
        """Launch the sweep's job group: one managed job named after the sweep whose DAG runs
        in parallel (a group) and whose one task is ``spec``; later trials attach to it."""
        sky = _sky()
        from sky.dag import DagExecution

        spec = copy.deepcopy(spec)
        if secrets:
            spec["secrets"] = dict(secrets)  # in memory only, for this request
        name = str(spec["name"])
        try:
            task = sky.Task.from_yaml_config(spec)
            with sky.Dag() as dag:
                dag.add(task)
            dag.set_execution(DagExecution.PARALLEL)
            dag.name = name
            ids, _ = sky.get(sky.jobs.launch(dag, name=name, job_group=None))
        except Exception as exc:
            if _is_unreachable(exc):
                raise _unreachable(exc) from exc
            raise BackendError(
                f"SkyPilot did not launch the sweep's controller job: {_describe(exc)}"
            ) from exc
        if not ids:
            raise BackendError("SkyPilot returned no job id for the sweep's controller job")
        self.group = int(ids[0])
        return self.group

    def cancel_group(self) -> bool:
        """Cancel the sweep's group: its controller and every job attached to it (SkyPilot
        cancels a group's members with it). False when it had already ended."""
        if self.group is None or not self.group_view().live:
            return False
        _cancel([self.group])
        return True

    def cancel(self, store: Store, sweep_id: str, jobs: Mapping[str, JobHandle]) -> list[str]:
        views = self.poll(store, sweep_id, jobs)
        live = {
            job_id: tid
            for job_id, tid in _job_ids(jobs).items()
            if views.get(tid, BackendView(TrialState.submitted)).state.in_flight
        }
        if not live:
            return []
        _cancel(sorted(live))
        return sorted(live.values())

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def logs(
        self, store: Store, sweep_id: str, trial_id: str, job: JobHandle | None, follow: bool
    ) -> Iterator[str]:
        if job is None or not job.job_id.isdigit():
            raise BackendError(
                f"trial {trial_id} has no SkyPilot job yet", hint="see 'skysweep status' for why"
            )
        sky = _sky()
        lines = sky.jobs.tail_logs(job_id=int(job.job_id), follow=follow, preload_content=False)
        for line in lines:
            if line is not None:
                yield line


SUBMITTED_SLACK_SECONDS = 120.0
"""How far the API server's clock may lag this machine's when finding an attempt's job."""


GroupState = Literal[
    "starting", "running", "recovering", "cancelled", "ended", "failed", "gone", "none"
]


@dataclass(frozen=True)
class GroupView:
    """The sweep's group job as SkyPilot reports it, in words a user reads in ``status``."""

    state: GroupState
    detail: str

    @classmethod
    def of(cls, status: str, reason: str | None = None) -> GroupView:
        detail = f"SkyPilot {status}" + (f": {reason}" if reason else "")
        if status in ("PENDING", "SUBMITTED", "STARTING"):
            return cls("starting", detail)
        if status in ("RUNNING", "WINDING_DOWN"):
            return cls("running", detail)
        if status == "RECOVERING":
            return cls("recovering", detail)
        if status in ("CANCELLING", "CANCELLED"):
            return cls("cancelled", detail)
        if status == "SUCCEEDED":
            return cls("ended", detail)
        return cls("failed", detail)

    @property
    def live(self) -> bool:
        return self.state in ("starting", "running", "recovering")

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


def _job_of(members: Sequence[Mapping[str, Any]], trial_id: str) -> JobHandle | None:
    """The member job that runs ``trial_id``: its own job, or its rank's job in a batch."""
    import yaml

    marker = f"SKYSWEEP_TRIAL_ID={shlex.quote(trial_id)}"
    by_yaml: dict[tuple[str, str], list[int]] = {}
    for member in members:
        by_yaml.setdefault((str(member["job_name"]), member["user_yaml"]), []).append(
            member["job_id"]
        )
    for (name, text), ids in sorted(by_yaml.items(), key=lambda kv: min(kv[1])):
        try:
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
        spec = docs[-1] if docs else {}
        infra = (spec.get("resources") or {}).get("infra")
        infra = infra if isinstance(infra, str) else None
        if (spec.get("envs") or {}).get("SKYSWEEP_TRIAL_ID") == trial_id:
            return JobHandle(backend="sky", job_id=str(min(ids)), job_name=name, infra=infra)
        rank = _rank_of(str(spec.get("run") or ""), marker)
        if rank is not None and rank < len(ids):
            job_id = str(sorted(ids)[rank])
            return JobHandle(backend="sky", job_id=job_id, job_name=name, infra=infra)
    return None


def _rank_of(text: str, marker: str) -> int | None:
    for line in text.splitlines():
        if marker in line:
            head = line.strip().split(")", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def _queue(job_ids: list[int], fields: list[str], *, all_users: bool = False) -> list[Any]:
    """SkyPilot's records of these managed jobs, with these fields."""
    sky = _sky()
    try:
        records, *_ = sky.get(
            sky.jobs.queue_v2(refresh=False, all_users=all_users, job_ids=job_ids, fields=fields)
        )
    except Exception as exc:
        if _is_unreachable(exc):
            raise _unreachable(exc) from exc
        raise
    return list(records)


def _cancel(job_ids: list[int]) -> None:
    """Cancel these managed jobs (a group's members go with it)."""
    sky = _sky()
    try:
        sky.get(sky.jobs.cancel(job_ids=job_ids))
    except Exception as exc:
        if _is_unreachable(exc):
            raise _unreachable(exc) from exc
        raise


def _status(record: Any) -> str:
    raw = _field(record, "status")
    return str(getattr(raw, "value", raw))


def _iso(epoch: Any) -> str | None:
    """SkyPilot's epoch seconds as the ISO 8601 time the job wrapper writes; None when the
    job has not started (SkyPilot leaves it unset or 0)."""
    if not isinstance(epoch, int | float) or epoch <= 0:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _field(record: Any, name: str) -> Any:
    if isinstance(record, dict):
        return record.get(name)
    return getattr(record, name, None)
