"""Issue 8, the task file: search methods, budgets and W&B's distributions load, and each
mistake is one message naming the key, its line and the fix (exit 2 through the CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_cli

from skysweep.errors import TaskFileError
from skysweep.expand import expand
from skysweep.load import load
from skysweep.task import (
    Categorical,
    Constant,
    IntUniform,
    LogUniform,
    Normal,
    QUniform,
    Uniform,
    WrittenFloat,
)

HEAD = "name: t\nrun: echo\nsweeps:\n"


def _load(tmp_path: Path, sweeps: str) -> object:
    path = tmp_path / "task.yaml"
    path.write_text(HEAD + sweeps)
    return load(path)


@dataclass(frozen=True)
class Bad:
    id: str
    sweeps: str
    expect: list[str]
    """All must appear in the one message: the key with its line, what is wrong, the fix."""


SAMPLED = "  method: random\n  max_trials: 4\n  sweep_config:\n"
BAD = [
    Bad(
        "distribution-on-grid",
        "  sweep_config:\n    lr: {distribution: uniform, min: 0, max: 1}\n",
        ["sweeps.sweep_config.lr (line 5)", "method is grid", "method: random", "max_trials"],
    ),
    Bad(
        "random-without-max-trials",
        "  method: random\n  sweep_config:\n    lr: [1, 2]\n",
        ["sweeps (line 3)", "method random", "needs a trial count", "max_trials: N"],
    ),
    Bad(
        "bayes-without-max-trials",
        "  method: bayes\n  sweep_config:\n    lr: {distribution: uniform, min: 0, max: 1}\n",
        ["sweeps (line 3)", "method bayes", "max_trials"],
    ),
    Bad(
        "sobol-without-max-trials",
        "  method: sobol\n  sweep_config:\n    lr: [1, 2]\n",
        ["sweeps (line 3)", "method sobol", "max_trials"],
    ),
    Bad(
        "min-equals-max",
        SAMPLED + "    lr: {distribution: uniform, min: 1, max: 1}\n",
        ["sweeps.sweep_config.lr (line 7)", "min < max", "swap them"],
    ),
    Bad(
        "min-above-max",
        SAMPLED + "    n: {distribution: int_uniform, min: 5, max: 2}\n",
        ["sweeps.sweep_config.n (line 7)", "int_uniform needs min < max", "swap them"],
    ),
    Bad(
        "log-uniform-values-min-zero",
        SAMPLED + "    lr: {distribution: log_uniform_values, min: 0, max: 1}\n",
        ["sweeps.sweep_config.lr (line 7)", "min > 0", "min: 1.0e-6", "log_uniform"],
    ),
    Bad(
        "q-log-uniform-values-min-negative",
        SAMPLED + "    lr: {distribution: q_log_uniform_values, min: -1, max: 1, q: 0.1}\n",
        ["sweeps.sweep_config.lr (line 7)", "min > 0"],
    ),
    Bad(
        "q-zero",
        SAMPLED + "    d: {distribution: q_uniform, min: 0, max: 1, q: 0}\n",
        ["sweeps.sweep_config.d.q (line 7)", "must be > 0"],
    ),
    Bad(
        "q-negative",
        SAMPLED + "    d: {distribution: q_log_uniform_values, min: 1, max: 9, q: -2}\n",
        ["sweeps.sweep_config.d.q (line 7)", "must be > 0"],
    ),
    Bad(
        "unknown-distribution",
        SAMPLED + "    lr: {distribution: log_unifrom_values, min: 1.0e-5, max: 1}\n",
        [
            "sweeps.sweep_config.lr (line 7)",
            "unknown distribution 'log_unifrom_values'",
            "did you mean 'log_uniform_values'?",
        ],
    ),
    Bad(
        "int-uniform-fractional-bound",
        SAMPLED + "    n:\n      distribution: int_uniform\n      min: 0.5\n      max: 4\n",
        ["sweeps.sweep_config.n.min (line 9)", "whole-number", "min: 0"],
    ),
    Bad(
        "categorical-without-values",
        SAMPLED + "    opt: {values: []}\n",
        ["sweeps.sweep_config.opt.values (line 7)", "no values", "values: [adam, sgd]"],
    ),
    Bad(
        "categorical-distribution-without-values",
        SAMPLED + "    opt: {distribution: categorical}\n",
        ["sweeps.sweep_config.opt.values (line 7)", "required key 'values' is missing"],
    ),
    Bad(
        "max-trials-zero",
        "  method: random\n  max_trials: 0\n  sweep_config:\n    a: [1]\n",
        ["sweeps.max_trials (line 5)", ">= 1", "max_trials: 20"],
    ),
    Bad(
        "run-cap-and-max-trials",
        "  method: random\n  max_trials: 3\n  run_cap: 3\n  sweep_config:\n    a: [1]\n",
        ["sweeps (line 3)", "run_cap and max_trials", "keep one"],
    ),
    Bad(
        "metric-and-sweep-metric",
        "  metric: {name: acc, goal: maximize}\n  sweep_metric: acc\n  sweep_config:\n    a: [1]\n",
        ["sweeps (line 3)", "sweep_metric", "keep either metric"],
    ),
    Bad(
        "metric-goal-misspelled",
        "  metric: {name: acc, goal: maximise}\n  sweep_config:\n    a: [1]\n",
        ["sweeps (line 3)", "'maximise'", "minimize or maximize"],
    ),
    Bad(
        "unknown-method",
        "  method: bayesian\n  sweep_config:\n    a: [1]\n",
        ["sweeps.method (line 4)", "'bayesian'", "grid (the default), random, sobol or bayes"],
    ),
    Bad(
        "misspelled-key-in-a-distribution",
        SAMPLED + "    n: {distribution: normal, mu: 0, sigm: 1}\n",
        ["sweeps.sweep_config.n.sigm (line 7)", "unknown key 'sigm'", "did you mean 'sigma'?"],
    ),
    Bad(
        "mapping-without-distribution",
        SAMPLED + "    n: {low: 0, high: 1}\n",
        ["sweeps.sweep_config.n (line 7)", "needs 'distribution:'"],
    ),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_a_bad_search_space_is_one_message_with_its_fix(tmp_path: Path, bad: Bad) -> None:
    with pytest.raises(TaskFileError) as caught:
        _load(tmp_path, bad.sweeps)
    message = str(caught.value)
    assert "1 problem(s)" in message, message
    for part in bad.expect:
        assert part in message, f"{part!r} not in {message}"


@pytest.mark.parametrize(
    "bad", [b for b in BAD if b.id in {"distribution-on-grid", "random-without-max-trials",
                                       "unknown-distribution", "max-trials-zero"}],
    ids=lambda b: b.id,
)  # fmt: skip
def test_the_cli_refuses_a_bad_space_with_exit_2(
    tmp_path: Path, isolated_home: Path, bad: Bad
) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(HEAD + bad.sweeps)
    done = run_cli("up", str(path), "--local", "--yes", "--store", f"file://{tmp_path}/store")
    assert done.code == 2, done
    assert "Traceback" not in done.stderr
    for part in bad.expect:
        assert part in done.stderr, done
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("[relu, gelu]", ["relu", "gelu"]),
        ("{values: [adam, sgd]}", Categorical(values=["adam", "sgd"])),
        ("{value: 3}", Constant(value=3)),
        ("{min: 1, max: 4}", IntUniform(min=1, max=4)),
        ("{min: 0.0, max: 1}", Uniform(min=0.0, max=1.0)),
        ("{distribution: q_uniform, min: 0, max: 0.5, q: 0.05}", QUniform(min=0, max=0.5, q=0.05)),
        ("{distribution: log_uniform, min: -3, max: 0}", LogUniform(min=-3, max=0)),
        ("{distribution: normal}", Normal(mu=0.0, sigma=1.0)),
        ("{distribution: int_uniform, min: 1.0, max: 3}", IntUniform(min=1, max=3)),
    ],
)
def test_each_spelling_reads_as_w_and_b_means_it(
    tmp_path: Path, entry: str, expected: object
) -> None:
    task = _load(tmp_path, f"{SAMPLED}    x: {entry}\n")
    assert task.sweeps.sweep_config["x"] == expected  # type: ignore[attr-defined]


def test_w_and_b_keys_become_skysweep_keys(tmp_path: Path) -> None:
    task = _load(
        tmp_path,
        "  method: bayes\n  run_cap: 9\n  seed: 3\n  metric: {name: eval/acc, goal: maximize}\n"
        "  sweep_config:\n    x: [1]\n",
    )
    sweeps = task.sweeps  # type: ignore[attr-defined]
    assert (sweeps.method, sweeps.max_trials, sweeps.seed) == ("bayes", 9, 3)
    assert (sweeps.sweep_metric, sweeps.lower_is_better) == ("eval/acc", False)


def test_a_grid_takes_w_and_b_values_and_value_and_keeps_the_written_text(
    tmp_path: Path,
) -> None:
    plain = _load(tmp_path, "  sweep_config:\n    lr: [1.10, 2]\n    bs: [8]\n")
    spelled = _load(tmp_path, "  sweep_config:\n    lr: {values: [1.10, 2]}\n    bs: {value: 8}\n")
    ids = [t.trial_id for t in expand(plain)]  # type: ignore[arg-type]
    assert ids == [t.trial_id for t in expand(spelled)]  # type: ignore[arg-type]
    first = expand(spelled)[0].params["lr"]  # type: ignore[arg-type]
    assert isinstance(first, WrittenFloat) and first.text == "1.10"


def test_a_sampled_sweep_round_trips_through_its_stored_form(tmp_path: Path) -> None:
    from skysweep.task import TaskSpec

    task = _load(
        tmp_path,
        SAMPLED + "    lr: {distribution: log_uniform_values, min: 1.0e-6, max: 1}\n"
        "    opt: {values: [adam, 0.50]}\n    k: {value: 2}\n    act: [relu]\n",
    )
    dumped = task.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]
    again = TaskSpec.model_validate(dumped)
    assert again == task
    assert math.isclose(dumped["sweeps"]["sweep_config"]["lr"]["min"], 1e-6)
