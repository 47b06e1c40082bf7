"""``sweeps.early_terminate`` and ``--early-terminate``: the schema, W&B's spelling, and bad
values as one clear exit-2 message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli

from skysweep.errors import TaskFileError, UsageError
from skysweep.load import SearchOverrides, load


def _task(tmp_path: Path, early: Any, name: str = "task.yaml") -> Path:
    sweeps: dict[str, Any] = {"sweep_config": {"lr": [0.1, 0.2]}, "sweep_metric": "eval/acc"}
    sweeps["lower_is_better"] = False
    if early is not None:
        sweeps["early_terminate"] = early
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "t", "run": "echo hi", "sweeps": sweeps}))
    return path


@pytest.mark.parametrize(
    ("early", "expected"),
    [
        pytest.param(
            {"type": "asha"},
            {"type": "asha", "min_steps": 1, "eta": 3, "max_steps": None, "metric": None},
            id="defaults",
        ),
        pytest.param(
            {"type": "median", "min_steps": 2, "metric": "eval/loss"},
            {"type": "median", "min_steps": 2, "eta": 3, "max_steps": None, "metric": "eval/loss"},
            id="median-own-metric",
        ),
        pytest.param(
            {"type": "hyperband", "min_iter": 3, "eta": 2},
            {"type": "hyperband", "min_steps": 3, "eta": 2, "max_steps": None, "metric": None},
            id="wandb-min_iter",
        ),
        pytest.param(
            {"type": "hyperband", "min_iter": 1, "max_iter": 27},
            {"type": "hyperband", "min_steps": 1, "eta": 3, "max_steps": 27, "metric": None},
            id="wandb-max_iter",
        ),
    ],
)
def test_early_terminate_reads(tmp_path: Path, early: dict[str, Any], expected: Any) -> None:
    task = load(_task(tmp_path, early))
    assert task.sweeps is not None and task.sweeps.early_terminate is not None
    assert task.sweeps.early_terminate.model_dump() == expected
    default_metric = expected["metric"] or "eval/acc"
    assert task.sweeps.stopping_metric == default_metric


@pytest.mark.parametrize(
    ("early", "wanted"),
    [
        pytest.param({"type": "ashaa"}, ["'ashaa'", "did you mean 'asha'?"], id="typo"),
        pytest.param({"type": "bandit"}, ["use one of median, asha, hyperband"], id="unknown"),
        pytest.param({"type": "asha", "eta": 1}, ["early_terminate.eta", ">= 2"], id="eta"),
        pytest.param(
            {"type": "median", "min_steps": 0}, ["early_terminate.min_steps", ">= 1"], id="min"
        ),
        pytest.param(
            {"type": "hyperband", "min_iter": 2, "min_steps": 2},
            ["min_iter and min_steps are the same key"],
            id="both-spellings",
        ),
        pytest.param(
            {"type": "hyperband", "min_steps": 4, "max_steps": 2},
            ["max_steps (2) is below min_steps (4)"],
            id="max-below-min",
        ),
        pytest.param({"type": "asha", "etaa": 3}, ["did you mean 'eta'?"], id="unknown-key"),
        pytest.param("asha", ["early_terminate"], id="not-a-mapping"),
    ],
)
def test_early_terminate_refuses(tmp_path: Path, early: Any, wanted: list[str]) -> None:
    with pytest.raises(TaskFileError) as caught:
        load(_task(tmp_path, early))
    message = str(caught.value).replace("greater than or equal to ", ">= ")
    for part in wanted:
        assert part in message, message
    assert "line " in message


@pytest.mark.parametrize(
    ("file_rule", "flag", "expected"),
    [
        pytest.param(None, "median", {"type": "median", "min_steps": 1}, id="flag-only"),
        pytest.param(
            {"type": "median", "min_steps": 2}, "asha", {"type": "asha", "min_steps": 2}, id="over"
        ),
        pytest.param(
            {"type": "hyperband", "min_iter": 4},
            "asha",
            {"type": "asha", "min_steps": 4},
            id="over-wandb",
        ),
    ],
)
def test_early_terminate_flag(
    tmp_path: Path, file_rule: Any, flag: str, expected: dict[str, Any]
) -> None:
    task = load(_task(tmp_path, file_rule), search=SearchOverrides(early_terminate=flag))
    assert task.sweeps is not None and task.sweeps.early_terminate is not None
    got = task.sweeps.early_terminate.model_dump()
    assert {k: got[k] for k in expected} == expected
    assert SearchOverrides(early_terminate=flag).flags() == ["--early-terminate", flag]


def test_early_terminate_flag_typo() -> None:
    with pytest.raises(UsageError) as caught:
        SearchOverrides(early_terminate="hyperbnd")
    assert "did you mean '--early-terminate hyperband'?" in str(caught.value.hint)


def test_cli_bad_early_terminate_is_exit_2(tmp_path: Path, isolated_home: Path) -> None:
    task = _task(tmp_path, {"type": "asha", "eta": 1})
    bad = run_cli("up", str(task), "--local", "--dry-run")
    assert bad.code == 2, bad
    assert "sweeps.early_terminate.eta (line" in bad.stderr
    assert "Traceback" not in bad.stderr
    flag = run_cli(
        "up",
        str(_task(tmp_path, None, "plain.yaml")),
        "--local",
        "--dry-run",
        "--early-terminate",
        "mediam",
    )
    assert flag.code == 2, flag
    assert "did you mean '--early-terminate median'?" in flag.stderr
    good = run_cli("up", str(task), "--local", "--dry-run", "--early-terminate", "asha")
    assert good.code == 2  # the flag sets the type; the file's eta is still wrong
    ok = run_cli(
        "up",
        str(_task(tmp_path, None, "plain.yaml")),
        "--local",
        "--dry-run",
        "--early-terminate",
        "asha",
    )
    assert ok.code == 0, ok
    assert "early stopping: asha (min_steps 1, eta 3) on " in ok.stderr  # the plan says so
