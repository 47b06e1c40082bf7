"""Shared fixtures: a real S3 endpoint on loopback (moto's server mode), isolated HOMEs."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COMPAT = ROOT / "tests" / "compat" / "transformerlab"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback, for the whole test session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME, so no test reads or writes the developer's own config or store."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "SKYSWEEP_STORE",
        "SKYSWEEP_CONFIG",
        "SKYSWEEP_S3_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def s3_env(
    moto_endpoint: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment for a process that talks to the moto endpoint, with dummy credentials."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SKYSWEEP_S3_ENDPOINT_URL": moto_endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str], moto_endpoint: str) -> str:
    """A fresh, empty bucket on the moto endpoint."""
    import uuid

    import boto3

    name = f"skysweep-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    stdin: str | None = None,
    prefix: Sequence[str] = (),
) -> CompletedCli:
    """Run ``skysweep`` as a user would: a separate process, its own stdout and stderr.
    ``prefix`` is a command that runs it (e.g. ``unshare ...`` for a read-only mount)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "skysweep", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=stdin if stdin is not None else "",
    )
    return CompletedCli(done.returncode, done.stdout, done.stderr)


class CompletedCli:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def handmade_ledger(
    store: Any, sweep_id: str, trial_ids: list[str], jobs: dict[str, str] | None = None
) -> Any:
    """A sweep's ledger built in memory (nothing written): trials ``{"i": index}`` and, for
    the trials in ``jobs``, a first attempt with that job id."""
    from skysweep.ledger import Ledger, SweepHeader
    from skysweep.trial import Attempt, JobHandle, Trial

    header = SweepHeader(
        sweep_id=sweep_id,
        name="handmade",
        created_at="2025-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={},
        metric="eval/loss",
        lower_is_better=True,
        backend="local",
        store_url=store.url,
    )
    ledger = Ledger(store, header)
    for index, trial_id in enumerate(trial_ids):
        ledger.trials[trial_id] = Trial(index, trial_id, {"i": index})
    for trial_id, job_id in (jobs or {}).items():
        ledger.attempts[trial_id] = [
            Attempt(
                trial_id=trial_id,
                number=1,
                submitted_at=header.created_at,
                job=JobHandle(backend="sky", job_id=job_id),
            )
        ]
    return ledger


# Debian's Chromium, for the tests of the HTML report (.ci/run installs it).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
