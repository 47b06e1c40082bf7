"""The controller's SkyPilot job and the sweep's job group, in their pure parts: the task spec
(checked by SkyPilot's own schema), the credentials it ships, how a group job's state reads,
which API servers hold job groups, and how a restarted controller finds a trial's job among
the group's members."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from skysweep import controller_job
from skysweep.backends import sky as sky_backend
from skysweep.load import load

sky = pytest.importorskip("sky")


def _task(tmp_path: Path, extra: str = "", infra: str = "aws") -> Any:
    path = tmp_path / "task.yaml"
    path.write_text(
        f"name: demo\nresources:\n  cpus: 4\n  infra: {infra}\nrun: python train.py\n"
        f"sweeps:\n  sweep_config:\n    lr: [0.1, 0.01]\n{extra}"
    )
    return load(path)


@pytest.mark.parametrize(
    ("infra", "extra", "expected"),
    [
        # The sweep's provider, a small on-demand CPU instance.
        ("aws", "", {"cpus": "2+", "memory": "4+", "use_spot": False, "infra": "aws"}),
        # Several providers: any of them, the optimizer takes the cheapest.
        (
            "[aws, gcp]",
            "",
            {
                "cpus": "2+",
                "memory": "4+",
                "use_spot": False,
                "any_of": [{"infra": "aws"}, {"infra": "gcp"}],
            },
        ),
        # sweeps.controller.resources says otherwise, spot included.
        (
            "aws",
            "  controller:\n    resources:\n      cpus: 8\n      use_spot: true\n"
            "      infra: gcp\n",
            {"cpus": 8, "use_spot": True, "infra": "gcp"},
        ),
    ],
)
def test_controller_resources(tmp_path: Path, infra: str, extra: str, expected: Any) -> None:
    restarts = {"job_recovery": {"max_restarts_on_errors": controller_job.RESTARTS_ON_ERRORS}}
    assert controller_job.resources(_task(tmp_path, extra, infra)) == {**expected, **restarts}


def test_the_controller_spec_is_a_task_skypilot_accepts(tmp_path: Path) -> None:
    task = _task(tmp_path)
    spec = controller_job.spec(
        task,
        "demo-1",
        "s3://bucket/sweeps",
        "http://127.0.0.1:9000",
        Path("/tmp/pkg"),
        task_dir=(str(tmp_path), "~/.skysweep/task"),
    )
    parsed = sky.Task.from_yaml_config(copy.deepcopy(spec))
    assert parsed.name == "demo-1"
    assert parsed.envs == {"SKYSWEEP_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    assert parsed.file_mounts == {
        controller_job.PACKAGE_MOUNT: "/tmp/pkg",
        "~/.skysweep/task": str(tmp_path),
    }
    assert "skysweep controller demo-1 --store s3://bucket/sweeps" in spec["run"]
    assert '--task-dir "$HOME/.skysweep/task"' in spec["run"]
    # The dependencies it installs are the versions installed here.
    from importlib.metadata import version

    assert f"pydantic=={version('pydantic')}" in spec["setup"]
    assert f"skypilot=={version('skypilot')}" in spec["setup"]


def test_the_shipped_package_runs_as_skysweep_with_its_templates(tmp_path: Path) -> None:
    with controller_job.staged_package() as folder:
        assert (folder / "skysweep" / "templates" / "task.yaml.j2").is_file()
        assert not list(folder.rglob("__pycache__"))
        done = subprocess.run(
            [sys.executable, "-m", "skysweep", "--version"],
            env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        from skysweep import __version__

        assert done.stdout.strip() == f"skysweep {__version__}"
    assert not folder.exists()


def test_store_credentials_ship_unless_they_are_the_clouds_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    assert controller_job.store_secrets("s3://bucket/x") == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-example",
    }
    assert controller_job.store_secrets("file:///tmp/store") == {}


@pytest.mark.parametrize(
    ("status", "state", "live"),
    [
        ("PENDING", "starting", True),
        ("STARTING", "starting", True),
        ("RUNNING", "running", True),
        ("RECOVERING", "recovering", True),
        ("CANCELLING", "cancelled", False),
        ("CANCELLED", "cancelled", False),
        ("SUCCEEDED", "ended", False),
        ("FAILED_CONTROLLER", "failed", False),
        ("FAILED_SETUP", "failed", False),
    ],
)
def test_group_states(status: str, state: str, live: bool) -> None:
    view = sky_backend.GroupView.of(status)
    assert (view.state, view.live) == (state, live)


@pytest.mark.parametrize(
    ("api_version", "groups"), [(None, False), (56, False), (60, False), (61, True), (62, True)]
)
def test_which_api_servers_hold_job_groups(api_version: int | None, groups: bool) -> None:
    assert sky_backend.ApiServer("x", api_version).groups is groups


def _member(job_id: int, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, "job_name": name, "user_yaml": yaml.safe_dump(spec)}


def test_a_trials_job_is_found_among_the_groups_members() -> None:
    alone = {"name": "s-aaa", "run": "python train.py", "envs": {"SKYSWEEP_TRIAL_ID": "aaa"}}
    batch = {
        "name": "s-batch0",
        "run": 'case "${SKYPILOT_JOB_RANK:-0}" in\n'
        "  0) export lr=0.1 SKYSWEEP_TRIAL_ID=bbb ;;\n"
        "  1) export lr=0.01 SKYSWEEP_TRIAL_ID=ccc ;;\n"
        "esac\npython train.py\n",
        "envs": {},
    }
    members = [
        _member(12, "s-batch0", batch),
        _member(11, "s-batch0", batch),
        _member(10, "s-aaa", alone),
    ]
    find = sky_backend._job_of
    assert (h := find(members, "aaa")) is not None and h.job_id == "10"
    # Rank r of a batch is its r-th lowest job id.
    assert (h := find(members, "bbb")) is not None and h.job_id == "11"
    assert (h := find(members, "ccc")) is not None and h.job_id == "12"
    assert find(members, "ddd") is None
    assert find([], "aaa") is None
    # A member whose YAML cannot be read is skipped, not taken for the trial's.
    assert find([{"job_id": 9, "job_name": "x", "user_yaml": "{: bad"}], "aaa") is None
    assert json.dumps(members)  # the members are plain data, as the queue gives them
