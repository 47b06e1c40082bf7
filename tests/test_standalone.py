"""The suite needs nothing beside the repository, and nothing imitated: its Transformer Lab
task files are in-tree, and the SkyPilot tests run the machine's real rsync."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import COMPAT, ROOT
from sky_api_server import require_rsync


def test_the_transformerlab_task_files_are_in_the_repository() -> None:
    assert COMPAT.is_relative_to(ROOT / "tests")
    assert len(sorted(COMPAT.glob("*.yaml"))) >= 12
    readme = (COMPAT / "README.md").read_text()
    assert "transformerlab/transformerlab-app" in readme and "Licence" in readme


def test_a_missing_rsync_is_named_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no rsync on PATH
    with pytest.raises(RuntimeError, match="apt-get install rsync"):
        require_rsync()
