"""Search settings from the command line: ``--method``, ``--max-trials``, ``--seed`` and
``--search FILE`` over the task file's ``sweeps`` section (flags > --search file > task file),
merged before validation so the task file can stay as Transformer Lab accepts it.

Tests marked ``needs_core`` use keys the search schema adds (``method``, ``max_trials``,
distributions; the search-core branch): they are skipped until ``Sweep`` knows ``method``,
and run as soon as it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from skysweep.errors import UsageError
from skysweep.expand import expand
from skysweep.load import (
    SEARCH_METHODS,
    SearchFileError,
    SearchOverrides,
    load,
    merge_sweeps,
    read_search_file,
)
from skysweep.task import Sweep, WrittenFloat

needs_core = pytest.mark.skipif(
    "method" not in Sweep.model_fields,
    reason="needs the search schema of the search-core branch (sweeps.method)",
)

GRID_TASK = """\
name: grid
run: echo hi
sweeps:
  sweep_config:
    lr: [0.1, 0.2]
"""


@pytest.mark.parametrize(
    ("base", "layers", "merged"),
    [
        pytest.param(None, [{"method": "random"}], {"method": "random"}, id="no-sweeps-section"),
        pytest.param(
            {"sweep_config": {"lr": [1, 2]}, "sweep_metric": "loss"},
            [{"sweep_config": {"bs": [8]}}],
            {"sweep_config": {"lr": [1, 2], "bs": [8]}, "sweep_metric": "loss"},
            id="config-entry-added",
        ),
        pytest.param(
            {"sweep_config": {"lr": [1, 2], "bs": [8]}},
            [{"sweep_config": {"lr": {"distribution": "uniform", "min": 0, "max": 1}}}],
            {"sweep_config": {"lr": {"distribution": "uniform", "min": 0, "max": 1}, "bs": [8]}},
            id="config-entry-replaced-whole",
        ),
        pytest.param(
            {"method": "grid", "seed": 1},
            [{"method": "random", "seed": 2}, {"method": "bayes"}],
            {"method": "bayes", "seed": 2},
            id="flags-over-file-over-task",
        ),
        pytest.param(
            {"max_trials": 10}, [{"run_cap": 5}], {"run_cap": 5}, id="run_cap-replaces-max_trials"
        ),
        pytest.param(
            {"run_cap": 10}, [{"max_trials": 5}], {"max_trials": 5}, id="max_trials-over-run_cap"
        ),
        pytest.param(
            {"sweep_metric": "acc", "lower_is_better": False},
            [{"metric": {"name": "loss", "goal": "minimize"}}],
            {"metric": {"name": "loss", "goal": "minimize"}},
            id="wandb-metric-replaces-both",
        ),
        pytest.param(
            {"metric": {"name": "acc", "goal": "maximize"}},
            [{"lower_is_better": True}],
            {"sweep_metric": "acc", "lower_is_better": True},
            id="direction-only-keeps-the-metric-name",
        ),
        pytest.param(
            {"metric": {"name": "acc", "goal": "maximize"}},
            [{"sweep_metric": "f1"}],
            {"sweep_metric": "f1", "lower_is_better": False},
            id="name-only-keeps-the-direction",
        ),
        pytest.param(
            {"sweep_config": ["lr"]},
            [{"sweep_config": {"bs": [8]}}],
            {"sweep_config": ["lr"]},
            id="malformed-config-left-for-its-error",
        ),
        pytest.param({"max_parallel": 2}, [], {"max_parallel": 2}, id="no-layers"),
    ],
)
def test_merge_sweeps(
    base: dict[str, Any] | None, layers: list[dict[str, Any]], merged: dict[str, Any]
) -> None:
    before = repr(base)
    assert merge_sweeps(base, *layers) == merged
    assert repr(base) == before, "the task file's mapping is not changed in place"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_search_file_keeps_the_written_numbers_and_the_lines(tmp_path: Path) -> None:
    search = write(tmp_path, "s.yaml", "max_parallel: 3\nsweep_config:\n  lr: [1.10, 1e-5]\n")
    layer = read_search_file(search)
    values = layer.values["sweep_config"]["lr"]
    assert [v.text for v in values if isinstance(v, WrittenFloat)] == ["1.10", "1e-5"]
    assert layer.origins == {"max_parallel": str(search), "sweep_config.lr": str(search)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_parallel: 2\nmax_parallel: 3\n", ["key 'max_parallel' appears twice: lines 1 and 2"]),
        ("sweep_config:\n  lr: [1, 2\n", ["line 3, column 1: not valid YAML"]),
        ("max_trial: 5\n", ["max_trial (line 1): unknown key", "did you mean 'max_trials'?"]),
        ("sweeps:\n  method: random\n", ["sweeps (line 1): unknown key", "without 'sweeps:'"]),
        ("run: python train.py\n", ["'run' belongs in the task file"]),
        ("sweep_config: [lr]\n", ["sweep_config (line 1): expected a mapping"]),
        ("", ["the file is empty"]),
        ("- method\n", ["the file is a list"]),
    ],
)
def test_a_bad_search_file_names_itself_the_line_and_the_fix(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    search = write(tmp_path, "search.yaml", text)
    with pytest.raises(SearchFileError) as caught:
        read_search_file(search)
    message = str(caught.value)
    assert message.startswith(f"{search}: ") and "in the --search file" in message
    for part in expected:
        assert part in message


def test_a_missing_search_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--search .*nope\.yaml: no such file"):
        read_search_file(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a folder"):
        read_search_file(tmp_path)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"method": "bayesian"}, "did you mean '--method bayes'?"),
        ({"method": "hyperband"}, "use one of grid, random, sobol, bayes"),
        ({"max_trials": 0}, "--max-trials 0: a sweep runs at least one trial"),
    ],
)
def test_bad_flag_values(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        SearchOverrides(**given)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_flags_repeat_as_words_for_a_resume_command() -> None:
    overrides = SearchOverrides("sobol", 12, 7, Path("s.yaml"))
    assert overrides.flags() == [
        "--search",
        "s.yaml",
        "--method",
        "sobol",
        "--max-trials",
        "12",
        "--seed",
        "7",
    ]
    assert SearchOverrides().flags() == []


def test_a_search_file_extends_and_replaces_the_grid(tmp_path: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    search = write(tmp_path, "s.yaml", "sweep_config:\n  bs: [8, 16]\n  lr: [1.10]\n")
    loaded = load(task, search=SearchOverrides(search_file=search))
    assert [(t.params["lr"], t.params["bs"]) for t in expand(loaded)] == [(1.1, 8), (1.1, 16)]
    lr = expand(loaded)[0].params["lr"]
    assert isinstance(lr, WrittenFloat) and lr.text == "1.10"
    # --sweep is a flag: it wins over the --search file for the same parameter.
    flagged = load(task, sweep_overrides={"lr": [0.5]}, search=SearchOverrides(search_file=search))
    assert {t.params["lr"] for t in expand(flagged)} == {0.5}


def test_a_task_without_a_sweeps_section_gets_one_from_the_search_file(tmp_path: Path) -> None:
    task = write(tmp_path, "task.yaml", "name: t\nrun: echo hi\n")
    search = write(tmp_path, "s.yaml", "max_parallel: 2\nsweep_config:\n  x: [1, 2, 3]\n")
    loaded = load(task, search=SearchOverrides(search_file=search))
    assert loaded.sweeps is not None and loaded.sweeps.max_parallel == 2
    assert len(expand(loaded)) == 3
    assert load(task).sweeps is None


def test_a_bad_value_from_the_search_file_is_placed_in_it(tmp_path: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    search = write(tmp_path, "s.yaml", "sweep_config:\n  bs: [8]\nmax_parallel: 0\n")
    with pytest.raises(UsageError) as caught:
        load(task, search=SearchOverrides(search_file=search))
    assert f"{search}: max_parallel (line 3): " in str(caught.value)


def test_the_flat_json_form_takes_a_search_file(tmp_path: Path) -> None:
    task = write(
        tmp_path,
        "task.json",
        '{"name": "t", "command": "echo hi", "sweep_config": {"lr": [0.1]}, "run_sweeps": true}',
    )
    search = write(tmp_path, "s.yaml", "sweep_config:\n  bs: [8, 16]\n")
    loaded = load(task, search=SearchOverrides(search_file=search))
    assert [t.params for t in expand(loaded)] == [{"lr": 0.1, "bs": 8}, {"lr": 0.1, "bs": 16}]


# Through the real command line.


def test_cli_render_and_dry_run_take_the_search_file(tmp_path: Path, isolated_home: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    search = write(tmp_path, "s.yaml", "sweep_config:\n  bs: [8, 16]\n")
    out = tmp_path / "specs"
    rendered = run_cli("render", str(task), "--out", str(out), "--search", str(search))
    assert rendered.code == 0, rendered
    specs = sorted(out.glob("*.yaml"))
    assert len(specs) == 4
    assert any("bs: '16'" in p.read_text() or 'bs: "16"' in p.read_text() for p in specs)
    dry = run_cli("up", str(task), "--local", "--dry-run", "--search", str(search))
    assert dry.code == 0, dry
    assert "4 trial(s) over lr, bs" in dry.stderr


@pytest.mark.parametrize("command", ["render", "up"])
def test_cli_search_file_errors_exit_2_naming_it(
    tmp_path: Path, isolated_home: Path, command: str
) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    extra = ["--out", str(tmp_path / "o")] if command == "render" else ["--local", "--dry-run"]
    missing = run_cli(command, str(task), *extra, "--search", str(tmp_path / "nope.yaml"))
    assert missing.code == 2, missing
    assert "nope.yaml: no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad = write(tmp_path, "bad.yaml", "max_trials: 4\nsweep_config:\n  lr: [0.1, 0.2\n")
    broken = run_cli(command, str(task), *extra, "--search", str(bad))
    assert broken.code == 2, broken
    assert f"{bad}: 1 problem(s) in the --search file" in broken.stderr
    assert "line 4, column 1: not valid YAML" in broken.stderr
    assert not (tmp_path / "o").exists(), "nothing rendered"


def test_cli_flag_values_are_checked(tmp_path: Path, isolated_home: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    method = run_cli("up", str(task), "--local", "--dry-run", "--method", "anneal")
    assert method.code == 2, method
    assert "use one of " + ", ".join(SEARCH_METHODS) in method.stderr
    for flag in ("--max-trials", "--seed"):
        words = run_cli("up", str(task), "--local", "--dry-run", flag, "ten")
        assert words.code == 2 and "integer" in words.stderr, words
    zero = run_cli("render", str(task), "--out", str(tmp_path / "o"), "--max-trials", "0")
    assert zero.code == 2 and "at least one trial" in zero.stderr, zero


# Below: the search schema's own keys (search-core branch).


@needs_core
def test_cli_method_grid_flag_on_a_grid_task(tmp_path: Path, isolated_home: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    dry = run_cli("up", str(task), "--local", "--dry-run", "--method", "grid")
    assert dry.code == 0, dry
    assert "2 trial(s) over lr" in dry.stderr


@needs_core
def test_a_transformer_lab_task_searched_by_a_file_and_flags(tmp_path: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    search = write(
        tmp_path,
        "s.yaml",
        "method: random\nmax_trials: 12\nseed: 3\n"
        "metric: {name: eval/accuracy, goal: maximize}\n"
        "sweep_config:\n  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-1}\n",
    )
    loaded = load(task, search=SearchOverrides(search_file=search))
    sweeps: Any = loaded.sweeps
    assert (sweeps.method, sweeps.max_trials, sweeps.seed) == ("random", 12, 3)
    assert (sweeps.sweep_metric, sweeps.lower_is_better) == ("eval/accuracy", False)
    flagged: Any = load(
        task, search=SearchOverrides(method="bayes", max_trials=5, seed=9, search_file=search)
    ).sweeps
    assert (flagged.method, flagged.max_trials, flagged.seed) == ("bayes", 5, 9)


@needs_core
def test_max_trials_flag_over_a_run_cap_in_the_task_file(tmp_path: Path) -> None:
    task = write(
        tmp_path,
        "task.yaml",
        "name: t\nrun: echo hi\nsweeps:\n  method: random\n  run_cap: 30\n"
        "  sweep_config:\n    lr: {distribution: uniform, min: 0.0, max: 1.0}\n",
    )
    sweeps: Any = load(task, search=SearchOverrides(max_trials=4)).sweeps
    assert sweeps.max_trials == 4


@needs_core
def test_cli_dry_run_of_a_random_search_from_flags(tmp_path: Path, isolated_home: Path) -> None:
    task = write(tmp_path, "task.yaml", GRID_TASK)
    search = write(
        tmp_path, "s.yaml", "sweep_config:\n  lr: {distribution: uniform, min: 0.0, max: 1.0}\n"
    )
    dry = run_cli(
        "up", str(task), "--local", "--dry-run", "--search", str(search),
        "--method", "random", "--max-trials", "7", "--seed", "1",
    )  # fmt: skip
    assert dry.code == 0, dry
    assert "random" in dry.stderr and "7" in dry.stderr
    grid_with_distribution = run_cli(
        "up", str(task), "--local", "--dry-run", "--search", str(search)
    )
    assert grid_with_distribution.code == 2, grid_with_distribution
    assert str(search) in grid_with_distribution.stderr, "the distribution's file is named"
