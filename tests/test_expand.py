"""Stage 2, expand: the Cartesian product, in a fixed order, with stable trial ids."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skysweep.expand import expand, trial_id_for
from skysweep.load import load
from skysweep.task import TaskSpec, WrittenFloat, parameter_text


def task_with(
    sweep_config: dict[str, list[Any]], parameters: dict[str, Any] | None = None, **extra: Any
) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "name": "t",
            "run": "echo",
            "parameters": parameters or {},
            "sweeps": {"sweep_config": sweep_config},
            **extra,
        }
    )


def test_count_is_the_product_of_the_value_lists() -> None:
    config: dict[str, list[Any]] = {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.1, 0.2, 0.3, 0.4]}
    trials = expand(task_with(config))
    assert len(trials) == 3 * 2 * 4
    assert len({t.trial_id for t in trials}) == 24
    assert [t.index for t in trials] == list(range(24))


def test_order_is_file_order_with_the_last_key_fastest() -> None:
    config: dict[str, list[Any]] = {"lr": [1e-5, 3e-5], "bs": [4, 8, 16]}
    trials = expand(task_with(config))
    expected = [{"lr": lr, "bs": bs} for lr, bs in itertools.product(config["lr"], config["bs"])]
    assert [t.params for t in trials] == expected
    assert [t.params for t in expand(task_with(config))] == expected  # and again


def test_base_parameters_are_overlaid_by_the_swept_point() -> None:
    trials = expand(task_with({"lr": [0.1, 0.2]}, {"epochs": 10, "lr": 0.5, "model": "gpt2"}))
    assert [t.params for t in trials] == [
        {"epochs": 10, "lr": 0.1, "model": "gpt2"},
        {"epochs": 10, "lr": 0.2, "model": "gpt2"},
    ]


def test_no_sweep_is_one_trial_of_the_base_parameters() -> None:
    task = TaskSpec.model_validate({"name": "t", "run": "echo", "parameters": {"a": 1}})
    (trial,) = expand(task)
    assert trial.params == {"a": 1} and trial.resources == {} and trial.index == 0


def test_a_value_listed_twice_is_one_trial() -> None:
    trials = expand(task_with({"lr": [0.1, 0.1, 0.2]}))
    assert [t.params["lr"] for t in trials] == [0.1, 0.2]
    assert [t.index for t in trials] == [0, 1]


def test_trial_id_is_independent_of_key_order() -> None:
    one = expand(task_with({"lr": [0.1], "bs": [8]}, {"epochs": 3, "model": "m"}))
    two = expand(task_with({"bs": [8], "lr": [0.1]}, {"model": "m", "epochs": 3}))
    assert one[0].trial_id == two[0].trial_id
    assert trial_id_for({"a": 1, "b": 2}, {}) == trial_id_for({"b": 2, "a": 1}, {})


def test_trial_id_changes_with_any_value() -> None:
    base = trial_id_for({"lr": 0.1, "bs": 8}, {})
    assert trial_id_for({"lr": 0.2, "bs": 8}, {}) != base
    assert trial_id_for({"lr": 0.1, "bs": 16}, {}) != base
    assert trial_id_for({"lr": 0.1, "bs": 8, "x": 1}, {}) != base
    assert trial_id_for({"lr": 0.1, "bs": 8}, {"accelerators": "A100:1"}) != base
    # the type is part of the value: the string "8" is not the number 8
    assert trial_id_for({"lr": 0.1, "bs": "8"}, {}) != base


def test_trial_id_is_the_same_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """The same file maps to the same trials on every run and machine (resume relies on it)."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nrun: echo\nparameters:\n  epochs: 3\n"
        "sweeps:\n  sweep_config:\n    lr: [1e-5, 3e-5]\n    bs: [4, 8]\n"
    )
    here = [t.trial_id for t in expand(load(path))]
    code = (
        "import sys; from skysweep.load import load; from skysweep.expand import expand; "
        "print(' '.join(t.trial_id for t in expand(load(sys.argv[1]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert done.stdout.split() == here
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in here)


def test_trial_ids_are_pinned() -> None:
    """A change of the id scheme orphans every stored sweep: it must be deliberate."""
    assert trial_id_for({}, {}) == "2699b7dfb888"  # sha256 of {"params":{},"resources":{}}
    assert trial_id_for({"lr": 0.1, "bs": 8}, {}) == "b33021b4afa1"


def test_resource_sweep_goes_to_trial_resources() -> None:
    task = task_with({"resources.accelerators": ["A100:1", "H100:1"], "lr": [0.1, 0.2]})
    trials = expand(task)
    assert len(trials) == 4
    assert [t.resources for t in trials] == [{"accelerators": "A100:1"}] * 2 + [
        {"accelerators": "H100:1"}
    ] * 2
    assert all(
        "resources.accelerators" not in t.params and "accelerators" not in t.params for t in trials
    )
    assert [t.params for t in trials[:2]] == [{"lr": 0.1}, {"lr": 0.2}]
    assert len({t.trial_id for t in trials}) == 4


def test_unknown_resource_key_cannot_be_swept() -> None:
    with pytest.raises(ValueError, match=r"resources\.gpus cannot be swept"):
        task_with({"resources.gpus": [1, 2]})


def test_a_number_written_two_ways_is_one_trial_that_keeps_the_first_text() -> None:
    """``1.10`` and ``1.1`` are one value: one trial, one id; the job sees the first text."""
    task = task_with({"lr": [WrittenFloat("1.10"), WrittenFloat("1.1"), WrittenFloat("2.50")]})
    trials = expand(task)
    assert [parameter_text(t.params["lr"]) for t in trials] == ["1.10", "2.50"]
    assert [t.trial_id for t in trials] == [
        trial_id_for({"lr": 1.1}, {}),
        trial_id_for({"lr": 2.5}, {}),
    ]
