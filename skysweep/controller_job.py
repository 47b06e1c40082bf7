"""The controller's own SkyPilot job: the task that runs ``skysweep controller`` in the cloud.

A detached sweep (and, standing by, a watched one) is a SkyPilot job group named after the
sweep whose one task is this controller. Its spec is built here, with no SkyPilot import:

- the resources: ``sweeps.controller.resources``, else a small CPU instance (the optimizer
  takes the cheapest) among the sweep's providers, on demand;
- the skysweep that made the sweep, shipped with the job (the package folder as a file mount,
  templates included), so the controller runs exactly this version, published or not; its
  dependencies are installed at the versions installed here;
- the store's endpoint as an env and, unless they come from the cloud's own instance role,
  its credentials as SkyPilot ``secrets`` (held in memory for the launch request only).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from skysweep.render import templates_dir
from skysweep.task import Resources, TaskSpec

PACKAGE_MOUNT = "~/.skysweep/package"
VENV = "~/.skysweep/venv"
DEFAULT_RESOURCES: dict[str, Any] = {"cpus": "2+", "memory": "4+"}
"""Enough for Optuna's TPE over thousands of trials and boto3's connection pool; SkyPilot's
optimizer picks the cheapest instance that has it."""
FALLBACK_REQUIREMENTS = (
    "skypilot",
    "pyyaml",
    "pydantic",
    "typer",
    "boto3",
    "jinja2",
    "rich",
    "optuna",
    "scipy",
    "plotly",
)
"""skysweep's dependencies, for a source checkout run without installed metadata."""
RESTARTS_ON_ERRORS = 3
CLOUD_OWN_CREDENTIALS = ("iam-role", "container-role", "assume-role-with-web-identity")
"""boto3's names for credentials an instance gets from its cloud: never shipped."""


def resources(task: TaskSpec) -> dict[str, Any]:
    """The controller task's resources, as SkyPilot task YAML."""
    settings = task.sweeps.controller if task.sweeps else None
    if settings is not None and settings.resources is not None:
        given = settings.resources
    else:
        given = Resources.model_validate(DEFAULT_RESOURCES)
    out: dict[str, Any] = {
        key: value
        for key, value in given.model_dump(exclude_none=True).items()
        if key in ("cpus", "memory", "instance_type", "use_spot", "image_id", "disk_space")
    }
    if "disk_space" in out:
        out["disk_size"] = out.pop("disk_space")
    out.setdefault("use_spot", False)
    # SkyPilot restarts it after a preemption by itself; after a crash of its own too (a
    # store outage that outlived boto3's retries), since it continues from the store.
    out["job_recovery"] = {"max_restarts_on_errors": RESTARTS_ON_ERRORS}
    infra = given.infra if given.infra is not None else task.resources.infra
    if isinstance(infra, str):
        out["infra"] = infra
    elif infra:
        # The sweep's providers, any of them: the optimizer takes the cheapest.
        out["any_of"] = [{"infra": name} for name in infra]
    return out


def requirements() -> list[str]:
    """skysweep's dependencies pinned to the versions installed here."""
    try:
        declared = metadata.requires("skysweep") or []
        names = [
            _requirement_name(line) for line in declared if "extra ==" not in line.replace("'", '"')
        ]
    except metadata.PackageNotFoundError:
        names = list(FALLBACK_REQUIREMENTS)
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def _requirement_name(line: str) -> str:
    for stop in "<>=!~[ ;":
        line = line.split(stop, 1)[0]
    return line.strip()


def spec(
    task: TaskSpec,
    sweep_id: str,
    store_url: str,
    endpoint_url: str | None,
    package: Path,
    *,
    task_dir: tuple[str, str],
) -> dict[str, Any]:
    """The controller's SkyPilot task spec (no secrets: see :func:`store_secrets`).

    ``task_dir``: the task's folder here and where the controller finds it (it is the
    trials' workdir, uploaded again with each trial the controller launches)."""
    pins = " ".join(shlex.quote(r) for r in requirements())
    setup = "\n".join(
        [
            "set -e",
            f"if [ ! -x {VENV}/bin/python ]; then",
            f"  python3 -m venv {VENV} || {{ python3 -m pip install --user virtualenv && "
            f"python3 -m virtualenv {VENV}; }}",
            "fi",
            f"{VENV}/bin/python -m pip install --quiet --upgrade pip",
            f"{VENV}/bin/python -m pip install --quiet {pins}",
        ]
    )
    command = shlex.join(["controller", sweep_id, "--store", store_url])
    folder = task_dir[1].replace("~", "$HOME", 1)
    run = (
        f"export PYTHONPATH={PACKAGE_MOUNT}\n"
        f'exec {VENV}/bin/python -m skysweep {command} --task-dir "{folder}"'
    )
    envs = {"SKYSWEEP_S3_ENDPOINT_URL": endpoint_url} if endpoint_url else {}
    out: dict[str, Any] = {
        "name": sweep_id,
        "resources": resources(task),
        "file_mounts": {PACKAGE_MOUNT: str(package), task_dir[1]: task_dir[0]},
        "setup": setup,
        "run": run,
        # The controller launches the sweep's trials through the same API server.
        "api_server_access": True,
    }
    if envs:
        out["envs"] = envs
    return out


def store_secrets(store_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials the controller needs for an S3 or R2 store, unless they are the
    cloud's own (an instance role): the keys boto3 resolves here, from the environment, a
    profile or a credentials file."""
    if not store_url.startswith(("s3://", "r2://")):
        return {}
    environ = os.environ if environ is None else environ
    try:
        import boto3

        profile = environ.get("AWS_PROFILE")
        credentials = boto3.session.Session(profile_name=profile).get_credentials()
    except Exception:
        return {}
    if credentials is None or credentials.method in CLOUD_OWN_CREDENTIALS:
        return {}
    frozen = credentials.get_frozen_credentials()
    out: dict[str, str] = {
        "AWS_ACCESS_KEY_ID": str(frozen.access_key),
        "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key),
    }
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    return out


@contextmanager
def staged_package() -> Iterator[Path]:
    """A folder holding the running skysweep package with its templates, to mount on the
    controller's instance; removed when the launch request has uploaded it."""
    source = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="skysweep-package-") as folder:
        target = Path(folder) / "skysweep"
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        templates = target / "templates"
        if not templates.exists():
            shutil.copytree(templates_dir(), templates)
        yield Path(folder)
