"""The SkyPilot backend against SkyPilot's real API server on loopback (tests/sky_api_server.py).

AWS is "enabled" against a moto server, so SkyPilot accepts, queues and cancels managed jobs;
no VM ever boots, so jobs stay PENDING/STARTING until cancelled. Every SkyPilot call runs in
a subprocess with the server's environment, as a user's would: SkyPilot fixes HOME-derived
state when it is imported, and other tests in this session import it with the real HOME.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from conftest import CompletedCli, free_port
from test_labsdk import lab_bin_fixture  # noqa: F401 (the lab SDK's venv)

if TYPE_CHECKING:
    from skysweep.ledger import Ledger

pytestmark = pytest.mark.sky

BUCKET = "skysweep-sky-tests"

QUEUE = """
import json, sys, sky
ids = [int(i) for i in json.loads(sys.argv[1])]
records, *_ = sky.get(sky.jobs.queue_v2(refresh=False, job_ids=ids,
    fields=["job_id", "job_name", "status", "resources", "user_yaml"]))
out = []
for r in records:
    d = r.model_dump()
    d["status"] = getattr(d["status"], "value", str(d["status"]))
    out.append({k: d.get(k) for k in ("job_id", "job_name", "status", "resources", "user_yaml")})
print(json.dumps(out))
"""

ALL_JOBS = """
import json, sky
records, *_ = sky.get(sky.jobs.queue_v2(refresh=False, all_users=True,
    fields=["job_id", "job_name", "status", "parent_job_id", "root_job_id"]))
out = []
for r in records:
    d = r.model_dump()
    d["status"] = getattr(d["status"], "value", str(d["status"]))
    out.append({k: d.get(k) for k in ("job_id", "job_name", "status", "parent_job_id",
                                      "root_job_id")})
print(json.dumps(out))
"""

BYSTANDER = """
import sky
task = sky.Task(name="bystander", run="sleep 1000")
task.set_resources(sky.Resources(infra="aws", cpus=2))
ids, _ = sky.get(sky.jobs.launch(task, name="bystander", job_group=None))
print(ids[0])
"""

CANCEL = """
import json, sys, sky
sky.get(sky.jobs.cancel(job_ids=[int(i) for i in json.loads(sys.argv[1])]))
"""


@dataclass
class Sky:
    env: dict[str, str]
    store: str
    home: Path

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 180) -> CompletedCli:
        done = subprocess.run(
            [sys.executable, "-m", "skysweep", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CompletedCli(done.returncode, done.stdout, done.stderr)

    def sdk(self, script: str, *args: str) -> str:
        """The last line a SkyPilot SDK script prints, run in the server's environment."""
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=True,
        )
        lines = done.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def queue(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {str(r["job_id"]): r for r in json.loads(self.sdk(QUEUE, json.dumps(job_ids)))}

    def all_jobs(self) -> dict[str, dict[str, Any]]:
        """Every managed job on the server, by job id: name, status and its group links."""
        return {str(r["job_id"]): r for r in json.loads(self.sdk(ALL_JOBS))}

    def bystander(self) -> str:
        """A job of nobody's sweep, launched with the SDK: its id."""
        return self.sdk(BYSTANDER)

    def cancel(self, job_ids: list[str]) -> None:
        """`sky jobs cancel` of these jobs, through the SDK."""
        self.sdk(CANCEL, json.dumps(job_ids))

    def s3(self) -> Any:
        """A client of the test's S3 endpoint (moto), with its dummy credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def ledger(self, sweep_id: str) -> Ledger:
        """The sweep's records as the store holds them now."""
        from skysweep.ledger import Ledger
        from skysweep.store import S3Store

        store = S3Store(f"s3://{BUCKET}/sweeps", endpoint_url=self.env["AWS_ENDPOINT_URL"])
        store._client = self.s3()
        return Ledger.open(store, sweep_id)

    def put(self, key: str, text: str) -> None:
        """Write ``text`` at ``key`` under the sweeps' prefix, as a job's wrapper would."""
        self.s3().put_object(Bucket=BUCKET, Key=f"sweeps/{key}", Body=text.encode())

    def finish(self, sweep_id: str, trial_id: str, loss: float, **times: str) -> None:
        """What a trial's wrapper writes when it succeeds: its metrics, then its finished
        record (the jobs here never reach a VM)."""
        self.put(f"{sweep_id}/trials/{trial_id}/metrics.json", json.dumps({"eval/loss": loss}))
        record = {"trial_id": trial_id, "state": "succeeded", "exit_code": 0, **times}
        self.put(f"{sweep_id}/finished/{trial_id}.json", json.dumps(record))

    def watch(self, task: Path, *extra: str) -> subprocess.Popen[str]:
        """`skysweep up` following the sweep to its end, as a user runs it."""
        return subprocess.Popen(
            [
                sys.executable, "-m", "skysweep", "up", str(task), "--yes",
                "--store", self.store, "--output", "json", *extra,
            ],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def jobs_when(
        self, up: subprocess.Popen[str], name: str, count: int, timeout: float = 150
    ) -> tuple[str, dict[str, Any]]:
        """The id of the sweep ``up`` drives and its jobs, once it has submitted ``count``."""
        deadline = time.monotonic() + timeout
        sweep_id = None
        while True:
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, f"never {count} jobs"
            time.sleep(2)
            if sweep_id is None:
                listing = self.cli("list", "--store", self.store, "--output", "json")
                mine = [s for s in json.loads(listing.stdout or "[]") if s["name"] == name]
                if not mine:
                    continue
                sweep_id = mine[0]["sweep_id"]
            jobs = self.manifest(sweep_id)["jobs"]
            if len(jobs) >= count:
                return sweep_id, jobs

    def manifest(self, sweep_id: str) -> dict[str, Any]:
        """The sweep's trials and each one's latest job, read from its records in the store."""
        ledger = self.ledger(sweep_id)
        jobs = {}
        for trial_id in ledger.trials:
            attempt = ledger.latest(trial_id)
            if attempt is not None and attempt.job is not None:
                jobs[trial_id] = attempt.job.model_dump()
        return {
            "trials": [
                {"trial_id": t.trial_id, "index": t.index, "params": t.params}
                for t in ledger.ordered()
            ],
            "jobs": jobs,
        }


@pytest.fixture(scope="session")
def sky_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sky]:
    from sky_api_server import running_sky_api_server

    with running_sky_api_server(tmp_path_factory.mktemp("sky-api")) as info:
        env = {**info.env, "SKYSWEEP_S3_ENDPOINT_URL": info.moto_endpoint}
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')",
            ],
            env=env,
            check=True,
            timeout=60,
        )
        yield Sky(env, f"s3://{BUCKET}/sweeps", info.home)


def _task(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("print('training')\n")
    path = folder / "task.yaml"
    path.write_text(text)
    return path


GRID = """
name: {name}
resources:
  cpus: 2
  infra: aws
envs:
  WANDB_PROJECT: demo
run: python train.py
parameters:
  epochs: 1
sweeps:
  sweep_config:
    learning_rate: [0.1, 0.01]
    batch_size: [8, 16]
"""


def _submit(sky: Sky, task: Path, *extra: str) -> dict[str, Any]:
    done = sky.cli(
        "up", str(task), "--yes", "--detach", "--output", "json", "--store", sky.store, *extra
    )
    assert done.code == 0, done
    return dict(json.loads(done.stdout))


def _rank_env(user_yaml: str, rank: int) -> dict[str, str]:
    """Run the job's own run-script prelude with a rank, and read the env it exports."""
    spec = list(yaml.safe_load_all(user_yaml))[-1]
    prelude = spec["run"].split("esac\n", 1)[0] + "esac\n"
    script = prelude + 'python3 -c "import json, os; print(json.dumps(dict(os.environ)))"'
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"SKYPILOT_JOB_RANK": str(rank), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return {**spec["envs"], **json.loads(done.stdout)}


def _down(sky: Sky, sweep_id: str) -> CompletedCli:
    done = sky.cli("down", sweep_id, "--store", sky.store)
    assert done.code == 0, done
    return done


def test_each_trial_is_a_job_with_its_name_envs_and_resources(
    sky_server: Sky, tmp_path: Path
) -> None:
    task = _task(tmp_path, GRID.format(name="grid"))
    out = _submit(sky_server, task)
    sweep_id = out["sweep_id"]
    assert out["store_url"] == f"{sky_server.store}/{sweep_id}"
    assert len(out["launched"]) == 4
    # Every trial launched at once, nothing left to decide: no controller job, no group.
    assert out["controller_job_id"] is None
    assert not [j for j in sky_server.all_jobs().values() if j["job_name"] == sweep_id]
    manifest = sky_server.manifest(sweep_id)
    jobs = manifest["jobs"]
    assert set(jobs) == {t["trial_id"] for t in manifest["trials"]}
    ids = [jobs[t]["job_id"] for t in out["launched"]]
    assert all(ids) and len(set(ids)) == 4

    queue = sky_server.queue(ids)
    assert set(queue) == set(ids)
    params_of = {t["trial_id"]: t["params"] for t in manifest["trials"]}
    # One request, four jobs: they share a batch name; rank r runs trial r of the batch.
    ordered = sorted(out["launched"], key=lambda tid: int(jobs[tid]["job_id"]))
    for rank, trial_id in enumerate(ordered):
        record = queue[jobs[trial_id]["job_id"]]
        assert record["job_name"] == f"{sweep_id}-batch0"
        assert record["status"] in ("PENDING", "STARTING", "SUBMITTED")
        assert record["resources"] == "1x[CPU:2]"
        assert jobs[trial_id]["job_name"] == f"{sweep_id}-{trial_id}"
        env = _rank_env(record["user_yaml"], rank)
        params = params_of[trial_id]
        assert env["learning_rate"] == str(params["learning_rate"])
        assert env["batch_size"] == str(params["batch_size"])
        assert env["epochs"] == "1" and env["WANDB_PROJECT"] == "demo"
        assert json.loads(env["SKYSWEEP_PARAMS"]) == params
        assert env["SKYSWEEP_TRIAL_ID"] == trial_id and env["SKYSWEEP_SWEEP_ID"] == sweep_id
        assert env["SKYSWEEP_OUTPUT_DIR"].endswith(f"/sweeps/{sweep_id}/trials/{trial_id}")
        spec = list(yaml.safe_load_all(record["user_yaml"]))[-1]
        assert spec["file_mounts"]["/skysweep/store"] == {
            "source": f"s3://{BUCKET}",
            "mode": "MOUNT_CACHED",
        }

    status = sky_server.cli("status", sweep_id, "--store", sky_server.store, "--output", "json")
    assert status.code == 0, status
    trials = json.loads(status.stdout)["trials"]
    assert {t["status"] for t in trials} == {"submitted"}
    assert all(t["backend_status"].startswith("SkyPilot ") for t in trials)
    _down(sky_server, sweep_id)


def test_down_cancels_exactly_the_sweeps_jobs_and_is_safe_twice(
    sky_server: Sky, tmp_path: Path
) -> None:
    first = _submit(sky_server, _task(tmp_path / "a", GRID.format(name="first")))
    second = _submit(sky_server, _task(tmp_path / "b", GRID.format(name="second")))
    first_ids = [j["job_id"] for j in sky_server.manifest(first["sweep_id"])["jobs"].values()]
    second_ids = [j["job_id"] for j in sky_server.manifest(second["sweep_id"])["jobs"].values()]

    down = _down(sky_server, first["sweep_id"])
    assert "cancelled 4 job(s)" in down.stderr
    deadline = time.monotonic() + 90
    while True:
        queue = sky_server.queue(first_ids + second_ids)
        if all(queue[i]["status"] == "CANCELLED" for i in first_ids):
            break
        assert time.monotonic() < deadline, queue
        time.sleep(3)
    assert all(queue[i]["status"] not in ("CANCELLING", "CANCELLED") for i in second_ids)

    again = _down(sky_server, first["sweep_id"])
    assert "nothing was running" in again.stderr
    results = sky_server.cli(
        "results", first["sweep_id"], "--store", sky_server.store, "--format", "json"
    )
    assert results.code == 1
    assert {t["status"] for t in json.loads(results.stdout)["trials"]} == {"cancelled"}
    _down(sky_server, second["sweep_id"])


def test_spread_assigns_providers_round_robin(sky_server: Sky, tmp_path: Path) -> None:
    text = GRID.format(name="spread").replace("  infra: aws", "  infra: [aws/us-east-1, aws]")
    task = _task(tmp_path, text)
    rendered = sky_server.cli("render", str(task), "--out", str(tmp_path / "out"), "--spread")
    assert rendered.code == 0, rendered
    specs = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "out").glob("*.yaml"))]
    assert [s["resources"]["infra"] for s in specs] == [
        "aws/us-east-1",
        "aws",
        "aws/us-east-1",
        "aws",
    ]

    out = _submit(sky_server, task, "--spread")
    manifest = sky_server.manifest(out["sweep_id"])
    by_index = {t["index"]: t["trial_id"] for t in manifest["trials"]}
    infra = [manifest["jobs"][by_index[i]]["infra"] for i in range(4)]
    assert infra == ["aws/us-east-1", "aws", "aws/us-east-1", "aws"]
    ids = [manifest["jobs"][by_index[i]]["job_id"] for i in range(4)]
    queue = sky_server.queue(ids)
    # two providers, two launch requests: one batch per provider
    assert {queue[i]["job_name"] for i in ids} == {
        f"{out['sweep_id']}-batch0",
        f"{out['sweep_id']}-batch1",
    }
    _down(sky_server, out["sweep_id"])


def test_failover_list_renders_any_of_and_plan_shows_the_optimizer(
    sky_server: Sky, tmp_path: Path
) -> None:
    text = GRID.format(name="plan").replace("  infra: aws", "  infra: [aws/us-east-1, aws]")
    task = _task(tmp_path, text)
    dry = sky_server.cli("up", str(task), "--yes", "--dry-run", "--store", sky_server.store)
    assert dry.code == 0, dry
    assert "4 trial(s)" in dry.stderr and "any_of" in dry.stderr
    assert "m6i.large" in dry.stderr and "COST" in dry.stderr  # SkyPilot's optimizer table
    assert "dry run: nothing launched" in dry.stderr


def test_watching_up_holds_the_cap_and_ctrl_c_leaves_jobs(sky_server: Sky, tmp_path: Path) -> None:
    task = _task(tmp_path, GRID.format(name="capped"))
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skysweep",
            "up",
            str(task),
            "--yes",
            "--max-parallel",
            "1",
            "--store",
            sky_server.store,
        ],
        env=sky_server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        sweep_id = None
        while sweep_id is None:
            assert up.poll() is None and time.monotonic() < deadline
            time.sleep(2)
            listing = sky_server.cli("list", "--store", sky_server.store, "--output", "json")
            capped = [s for s in json.loads(listing.stdout or "[]") if s["name"] == "capped"]
            if capped and sky_server.manifest(capped[0]["sweep_id"])["jobs"]:
                sweep_id = capped[0]["sweep_id"]
        time.sleep(8)  # a few watch loops: the cap must hold while the first job is pending
        assert len(sky_server.manifest(sweep_id)["jobs"]) == 1
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 130, err
    assert "keep running" in err and f"skysweep down {sky_server.store}/{sweep_id}" in err
    assert "first 1" in err
    job_id = next(iter(sky_server.manifest(sweep_id)["jobs"].values()))["job_id"]
    assert sky_server.queue([job_id])[job_id]["status"] in ("PENDING", "STARTING")
    assert "cancelled 1 job(s)" in _down(sky_server, sweep_id).stderr


# ---------------------------------------------------------------------------------------
# The sweep's job group: `up --detach` leaves the sweep to its controller job.

LIVE = {"PENDING", "SUBMITTED", "STARTING", "RUNNING", "RECOVERING"}


def _controller(sky: Sky, sweep_id: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    """`skysweep controller` as SkyPilot starts it as the group's task: in the group's
    environment (its job id as the managed job and as the tree's root)."""
    env = {**sky.env, "SKYPILOT_MANAGED_JOB_ID": group, "SKYPILOT_ROOT_JOB_ID": group}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "skysweep", "controller", sweep_id, "--store", sky.store],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _jobs_when(
    sky: Sky, sweep_id: str, count: int, finished: set[str], cap: int, timeout: float = 150
) -> dict[str, Any]:
    """The sweep's trial jobs once ``count`` are submitted; never more than ``cap`` live."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = sky.manifest(sweep_id)["jobs"]
        assert len(jobs.keys() - finished) <= cap, (jobs, finished)
        if len(jobs) >= count:
            return jobs
        assert time.monotonic() < deadline, f"never {count} jobs: {jobs}"
        time.sleep(2)


def _when_group_ended(
    sky: Sky, group: str, timeout: float = 90
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Every job on the server and the group's own, once none of the group's is live
    (SkyPilot cancels them in the background after the cancel request returns)."""
    deadline = time.monotonic() + timeout
    while True:
        after = sky.all_jobs()
        mine = [j for j in after.values() if int(group) in (j["job_id"], j["root_job_id"])]
        live = [j for j in mine if j["status"] in LIVE]
        if not live:
            return after, mine
        assert time.monotonic() < deadline, live
        time.sleep(3)


def test_a_detached_sweep_is_one_job_group_its_controller_drives(
    sky_server: Sky, tmp_path: Path
) -> None:
    bystander = sky_server.bystander()
    task = _task(tmp_path, GRID.format(name="grouped"))
    started = time.monotonic()
    out = _submit(sky_server, task, "--max-parallel", "2")
    submitted = time.monotonic() - started
    sweep_id, group = out["sweep_id"], str(out["controller_job_id"])
    print(f"up --detach: controller job queued and 2 trials submitted in {submitted:.1f} s")
    everything = sky_server.all_jobs()
    assert everything[group]["job_name"] == sweep_id
    assert everything[group]["parent_job_id"] is None
    assert [j for j in everything.values() if j["job_name"] == sweep_id] == [everything[group]]
    assert len(out["launched"]) == 2
    first = _jobs_when(sky_server, sweep_id, 2, set(), 2)
    for job in first.values():  # the trials are members of the sweep's group
        member = everything[job["job_id"]]
        assert (member["parent_job_id"], member["root_job_id"]) == (int(group), int(group))

    # As if `up` had been killed between a trial's job starting and its record: the
    # attempt reads "being submitted"; the controller finds its job in the group.
    adopted, adopted_job = next(iter(first.items()))
    intent = sky_server.ledger(sweep_id).attempts[adopted][-1]
    intent = intent.model_copy(update={"job": None, "submitting": True, "submit_tries": 0})
    sky_server.put(f"{sweep_id}/records/{adopted}/attempt-1.json", intent.model_dump_json())
    assert adopted not in sky_server.manifest(sweep_id)["jobs"]

    log = tmp_path / "controller.log"
    controller = _controller(sky_server, sweep_id, group, log)
    try:
        deadline = time.monotonic() + 120
        while adopted not in sky_server.manifest(sweep_id)["jobs"]:
            assert controller.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(2)
        time.sleep(6)  # both slots are taken: the controller launches nothing
        found = sky_server.manifest(sweep_id)["jobs"]
        assert found.keys() == first.keys()
        assert found[adopted]["job_id"] == adopted_job["job_id"]  # found, not run again
        finished = set()
        for trial_id in list(first)[:1]:
            sky_server.finish(sweep_id, trial_id, 0.5)
            finished.add(trial_id)
        third = _jobs_when(sky_server, sweep_id, 3, finished, 2)

        # A controller killed and started again launches nothing twice.
        controller.kill()
        controller.wait()
        controller = _controller(sky_server, sweep_id, group, log)
        for trial_id in list(third.keys() - finished)[:1]:
            sky_server.finish(sweep_id, trial_id, 0.4)
            finished.add(trial_id)
        every = _jobs_when(sky_server, sweep_id, 4, finished, 2)
        time.sleep(6)
        ledger = sky_server.ledger(sweep_id)
        assert {t: [a.number for a in ledger.attempts[t]] for t in ledger.trials} == {
            t: [1] for t in every
        }
        members = [j for j in sky_server.all_jobs().values() if j["root_job_id"] == int(group)]
        assert sorted(str(j["job_id"]) for j in members) == sorted(
            j["job_id"] for j in every.values()
        )

        status = sky_server.cli("status", sweep_id, "--store", sky_server.store, "--output", "json")
        assert status.code == 0, status
        driver = json.loads(status.stdout)["controller"]
        assert driver["job_id"] == int(group) and driver["state"] == "starting", driver
        assert driver["driver"] is not None and f"pid {controller.pid} " in driver["driver"]

        down = _down(sky_server, sweep_id)
        assert f"cancelled its job group (SkyPilot job {group})" in down.stderr
        assert controller.wait(timeout=90) == 0, log.read_text()
    finally:
        _stop(controller)
    text = log.read_text()
    assert "launched" in text and "asked to stop (skysweep down)" in text
    after, mine = _when_group_ended(sky_server, group)
    assert len(mine) == 5
    assert after[bystander]["status"] in LIVE
    sky_server.cancel([bystander])


def test_cancelling_the_group_with_sky_stops_the_sweep(sky_server: Sky, tmp_path: Path) -> None:
    bystander = sky_server.bystander()
    task = _task(tmp_path, GRID.format(name="skycancel"))
    out = _submit(sky_server, task, "--max-parallel", "1")
    sweep_id, group = out["sweep_id"], str(out["controller_job_id"])
    log = tmp_path / "controller.log"
    controller = _controller(sky_server, sweep_id, group, log)
    try:
        time.sleep(5)
        sky_server.cancel([group])  # `sky jobs cancel GROUP`: its members go with it
        assert controller.wait(timeout=120) == 0, log.read_text()
    finally:
        _stop(controller)
    assert "the sweep's job group was cancelled" in log.read_text() or (
        "asked to stop" in log.read_text()
    )
    after, mine = _when_group_ended(sky_server, group)
    assert mine
    assert not [j for j in after.values() if sweep_id in str(j["job_name"]) and j["status"] in LIVE]
    assert after[bystander]["status"] in LIVE
    sky_server.cancel([bystander])


def test_unreachable_api_server_is_a_clear_error(sky_server: Sky, tmp_path: Path) -> None:
    task = _task(tmp_path, GRID.format(name="nowhere"))
    env = {
        **sky_server.env,
        "SKYPILOT_API_SERVER_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "skysweep", "up", str(task), "--yes", "--store", sky_server.store],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert "cannot reach the SkyPilot API server" in done.stderr and "sky api" in done.stderr
    assert "Traceback" not in done.stderr


def test_sky_backend_needs_an_object_store(sky_server: Sky, tmp_path: Path) -> None:
    task = _task(tmp_path, GRID.format(name="filestore"))
    done = sky_server.cli("up", str(task), "--yes", "--store", f"file://{tmp_path}/store")
    assert done.code == 2 and "s3://" in done.stderr, done


# ---------------------------------------------------------------------------------------
# Cost: prices from the test catalog, through the real API server.

TWELVE = """
name: {name}
resources:
  cpus: 2
  infra: aws
run: python train.py
sweeps:
  sweep_config:
    seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
"""


def _catalog_price(instance: str) -> float:
    """The on-demand price of ``instance`` in the catalog the test server reads."""
    from sky_api_server import VMS_CSV_ROWS

    prices = {float(r.split(",")[6]) for r in VMS_CSV_ROWS if r.split(",")[0] == instance}
    assert len(prices) == 1, prices
    return prices.pop()


def _cheapest(cpus: float, memory: float) -> str:
    """The cheapest CPU instance with at least ``cpus`` vCPUs and ``memory`` GiB."""
    from sky_api_server import VMS_CSV_ROWS

    rows = [
        r.split(",")
        for r in VMS_CSV_ROWS
        if '"' not in r and float(r.split(",")[3]) >= cpus and float(r.split(",")[4]) >= memory
    ]
    return min(rows, key=lambda r: float(r[6]))[0]


def _cheapest_two_cpu() -> str:
    from sky_api_server import VMS_CSV_ROWS

    rows = [r.split(",") for r in VMS_CSV_ROWS if '"' not in r and float(r.split(",")[3]) == 2]
    return min(rows, key=lambda r: float(r[6]))[0]


def test_plan_prices_the_optimizers_choice_and_estimates_the_sweep(
    sky_server: Sky, tmp_path: Path
) -> None:
    task = _task(tmp_path, TWELVE.format(name="priced"))
    dry = sky_server.cli(
        "up", str(task), "--dry-run", "--output", "json", "--expected-minutes", "30",
        "--store", sky_server.store,
    )  # fmt: skip
    assert dry.code == 0, dry
    plan = json.loads(dry.stdout)
    instance = _cheapest_two_cpu()
    price = _catalog_price(instance)
    (priced,) = plan["prices"].values()
    assert instance in priced["choice"] and priced["hourly_usd"] == pytest.approx(price)
    assert plan["price_per_hour_usd"] == pytest.approx(price)
    assert plan["estimated_cost_per_trial_usd"] == pytest.approx(price * 0.5)
    assert plan["estimated_cost_usd"] == pytest.approx(12 * 0.5 * price)  # 0.576 at $0.096/h
    assert f"${price:.3g}/h" in dry.stderr and "estimate from catalog prices" in dry.stderr
    unknown = sky_server.cli(
        "up", str(task), "--dry-run", "--output", "json", "--store", sky_server.store
    )
    assert unknown.code == 0, unknown
    assert json.loads(unknown.stdout)["estimated_cost_usd"] is None
    assert "unknown" in unknown.stderr and "--expected-minutes" in unknown.stderr

    # Every trial at once: no controller job. Four at a time: its instance (2+ CPUs, 4+ GB,
    # on demand) runs for the sweep's three waves of 30 minutes, priced beside the trials.
    assert plan["controller_estimated_cost_usd"] is None and "controller: none" in dry.stderr
    capped = sky_server.cli(
        "up", str(task), "--dry-run", "--output", "json", "--expected-minutes", "30",
        "--max-parallel", "4", "--store", sky_server.store,
    )  # fmt: skip
    assert capped.code == 0, capped
    figures = json.loads(capped.stdout)
    controller = _catalog_price(_cheapest(cpus=2, memory=4))
    assert figures["controller_price_per_hour_usd"] == pytest.approx(controller)
    assert figures["controller_estimated_cost_usd"] == pytest.approx(3 * 0.5 * controller)
    assert figures["estimated_cost_usd"] == plan["estimated_cost_usd"]  # trials alone
    assert f"controller job: ${3 * 0.5 * controller:.3g} on " in capped.stderr


def test_budget_launches_what_fits_then_ends_the_sweep(sky_server: Sky, tmp_path: Path) -> None:
    price = _catalog_price(_cheapest_two_cpu())
    budget = 0.25
    fits = int(budget // (price * 0.5))  # 5 at $0.096/h: 5 x 0.048 = 0.24 <= 0.25
    task = _task(tmp_path, TWELVE.format(name="budgeted"))
    up = sky_server.watch(task, "--expected-minutes", "30", "--max-cost", str(budget))
    try:
        sweep_id, _ = sky_server.jobs_when(up, "budgeted", 1)
        time.sleep(6)  # a few looks: the budget must hold while the jobs are pending
        jobs = sky_server.manifest(sweep_id)["jobs"]
        assert len(jobs) == fits
        for trial_id in jobs:  # 30 minutes each
            sky_server.finish(
                sweep_id, trial_id, 0.5,
                started_at="2026-01-01T10:00:00+00:00", finished_at="2026-01-01T10:30:00+00:00",
            )  # fmt: skip
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err  # a budget stop is not a failure
    assert "sweep ended by its budget" in err
    assert len(sky_server.manifest(sweep_id)["jobs"]) == fits
    ranked = json.loads(out)
    assert [t["cost_usd"] for t in ranked["trials"]] == pytest.approx([price * 0.5] * fits)
    assert ranked["cost"]["total_usd"] == pytest.approx(fits * price * 0.5)
    assert ranked["cost"]["budget_reached"] is True
    assert ranked["cost"]["not_launched"] == 12 - fits
    status = sky_server.cli("status", sweep_id, "--store", sky_server.store)
    assert (
        f"budget reached: ${fits * price * 0.5:.3g} of ${budget:.2f} spent or committed; "
        f"{12 - fits} trial(s) not launched"
    ) in status.stdout
    _down(sky_server, sweep_id)


def test_a_lab_sdk_job_runs_as_submitted_and_reports_its_score(
    sky_server: Sky, tmp_path: Path, lab_bin: Path
) -> None:
    """The run command SkyPilot holds prepares the `lab` SDK's workspace itself: run here as
    the VM would run it (the bucket mounted at its mount point, a folder here), the real SDK
    gets each trial's parameters and its score becomes the trial's metrics.json."""
    import shutil

    from test_labsdk import SAMPLE_SCRIPT, SAMPLE_TASK

    from skysweep.render import MOUNT_POINT_ON_VM

    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "train.py").write_text(SAMPLE_SCRIPT)
    task = folder / "task.yaml"
    task.write_text(SAMPLE_TASK.replace("  cpus: 1\n", "  cpus: 2\n  infra: aws\n"))
    out = _submit(sky_server, task)
    sweep_id = out["sweep_id"]
    manifest = sky_server.manifest(sweep_id)
    jobs = manifest["jobs"]
    params_of = {t["trial_id"]: t["params"] for t in manifest["trials"]}
    queue = sky_server.queue([jobs[t]["job_id"] for t in out["launched"]])
    mount = tmp_path / "bucket"
    ordered = sorted(out["launched"], key=lambda tid: int(jobs[tid]["job_id"]))
    for rank, trial_id in enumerate(ordered):
        spec = list(yaml.safe_load_all(queue[jobs[trial_id]["job_id"]]["user_yaml"]))[-1]
        envs = {k: str(v).replace(MOUNT_POINT_ON_VM, str(mount)) for k, v in spec["envs"].items()}
        workdir = tmp_path / f"vm{rank}"
        shutil.copytree(folder, workdir)
        done = subprocess.run(
            ["bash", "-c", spec["run"].replace(MOUNT_POINT_ON_VM, str(mount))],
            env={**envs, "SKYPILOT_JOB_RANK": str(rank), "HOME": str(tmp_path),
                 "PATH": f"{lab_bin}:/usr/bin:/bin"},
            cwd=workdir, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        config = json.loads(done.stdout.split("CONFIG ", 1)[1].splitlines()[0])
        assert config["lr"] == params_of[trial_id]["lr"]
        assert config["prompts"] == ["a red fox", "a cat, sleeping"]
        trial_dir = mount / "sweeps" / sweep_id / "trials" / trial_id
        metrics = json.loads((trial_dir / "metrics.json").read_text())
        expected = abs(math.log10(config["lr"]) + 3) + 1.0 / 3
        assert metrics["eval/loss"] == pytest.approx(expected)
        assert len((trial_dir / "history.jsonl").read_text().splitlines()) == 3
        assert (mount / "sweeps" / sweep_id / "finished" / f"{trial_id}.json").exists()
    _down(sky_server, sweep_id)


# ---------------------------------------------------------------------------------------
# Search: a Bayesian sweep on SkyPilot asks for trials as slots free up.

BAYES = """
name: {name}
resources:
  cpus: 2
  infra: aws
run: python train.py
sweeps:
  method: bayes
  max_trials: 4
  max_parallel: 2
  seed: 3
  sweep_config:
    learning_rate: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0}}
    layers: {{distribution: int_uniform, min: 1, max: 8}}
"""


def test_a_bayes_sweep_submits_each_trial_as_a_slot_frees(sky_server: Sky, tmp_path: Path) -> None:
    task = _task(tmp_path, BAYES.format(name="searched"))
    up = sky_server.watch(task)
    try:
        sweep_id, first = sky_server.jobs_when(up, "searched", 2)
        time.sleep(6)  # a few looks: nothing more is submitted while both slots are taken
        assert sky_server.manifest(sweep_id)["jobs"].keys() == first.keys()
        for n, trial_id in enumerate(first):
            sky_server.finish(sweep_id, trial_id, 1.0 + n)
        _, every = sky_server.jobs_when(up, "searched", 4)
        assert len(every) == 4 and first.keys() < every.keys()
        for n, trial_id in enumerate(every.keys() - first.keys()):
            sky_server.finish(sweep_id, trial_id, 0.5 + n)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err
    ranked = json.loads(out)
    assert len(ranked["trials"]) == 4
    manifest = sky_server.manifest(sweep_id)
    assert sorted(t["index"] for t in manifest["trials"]) == [0, 1, 2, 3]
    for trial in manifest["trials"]:
        assert 1e-4 <= float(trial["params"]["learning_rate"]) <= 1.0
        assert int(trial["params"]["layers"]) in range(1, 9)
    # Each trial is a job of its own, submitted in two rounds of two.
    job_ids = {str(j["job_id"]) for j in manifest["jobs"].values()}
    assert len(job_ids) == 4 and sky_server.queue(sorted(job_ids)).keys() == job_ids
    _down(sky_server, sweep_id)


# ---------------------------------------------------------------------------------------
# Early stopping: the controller cancels the one job whose history is losing.

PRUNED = """
name: {name}
resources:
  cpus: 2
  infra: aws
run: python train.py
sweeps:
  max_parallel: 4
  sweep_config:
    learning_rate: [0.1, 0.01]
    batch_size: [8, 16]
  early_terminate:
    type: median
    min_steps: 1
"""


def test_a_losing_history_cancels_exactly_that_job(sky_server: Sky, tmp_path: Path) -> None:
    from skysweep.stopping.median import MIN_TRIALS

    task = _task(tmp_path, PRUNED.format(name="pruning"))
    up = sky_server.watch(task)
    try:
        deadline = time.monotonic() + 150
        sweep_id, jobs = sky_server.jobs_when(up, "pruning", 4)
        job_of = {t: str(j["job_id"]) for t, j in jobs.items()}
        # The jobs never reach a VM: write the histories their wrappers would. Three trials
        # tie at step 1; the loser's line comes last, so when it is judged the median rule
        # has the MIN_TRIALS others it needs at that step, and the ties are never worse than
        # their median.
        assert len(jobs) - 1 == MIN_TRIALS
        *winners, loser = sorted(jobs)
        for trial_id in winners:
            history = '{"step": 1, "eval/loss": 0.5}\n'
            sky_server.put(f"{sweep_id}/trials/{trial_id}/history.jsonl", history)
        time.sleep(3)  # a look or two with the winners alone: none of them is judged losing
        sky_server.put(
            f"{sweep_id}/trials/{loser}/history.jsonl", '{"step": 1, "eval/loss": 2.0}\n'
        )

        ledger = None
        while True:
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline + 60, "the losing trial was never pruned"
            time.sleep(2)
            ledger = sky_server.ledger(sweep_id)
            pruned = {t for t in ledger.trials if (a := ledger.latest(t)) and a.pruned}
            if pruned:
                break
        assert pruned == {loser}
        attempt = ledger.latest(loser)
        assert attempt is not None and attempt.pruned is not None and attempt.number == 1
        record = attempt.pruned
        assert (record.rule, record.metric, record.step, record.value) == (
            "median",
            "eval/loss",
            1,
            2.0,
        )
        assert record.reason == (
            "step 1: eval/loss 2 is worse than the median 0.5 of 3 other trials at this step"
        )
        # Exactly that job id is cancelled; the other jobs of its batch stay queued.
        queue: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline + 120:
            queue = sky_server.queue(list(job_of.values()))
            if queue[job_of[loser]]["status"] in ("CANCELLING", "CANCELLED"):
                break
            time.sleep(2)
        assert queue[job_of[loser]]["status"] in ("CANCELLING", "CANCELLED"), queue
        for trial_id in winners:
            assert queue[job_of[trial_id]]["status"] in ("PENDING", "STARTING", "SUBMITTED")

        for n, trial_id in enumerate(winners):
            sky_server.finish(sweep_id, trial_id, 0.4 + n / 10)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, err  # pruning is what the sweep asked for, not a failure
    ranked = json.loads(out)
    assert [t["trial_id"] for t in ranked["trials"]][-1] == loser
    assert [t["status"] for t in ranked["trials"]] == ["succeeded"] * 3 + ["pruned"]
    assert [t["trial_id"] for t in ranked["trials"][:3]] == winners
    last = ranked["trials"][-1]
    assert last["rank"] is None and last["reason"] == f"pruned by median at {record.reason}"
    assert ranked["pruned"]["trials"] == 1
    # Nothing was relaunched: one attempt per trial, the same job ids as submitted.
    assert {t: str(j["job_id"]) for t, j in sky_server.manifest(sweep_id)["jobs"].items()} == job_of
    _down(sky_server, sweep_id)
