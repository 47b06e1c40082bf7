"""Stage 1, load: both forms of Transformer Lab's sweep page, and its real task files."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from conftest import COMPAT, ROOT

from skysweep.errors import TaskFileError
from skysweep.expand import expand
from skysweep.load import load
from skysweep.task import Scalar, TaskSpec

REFERENCE_PAGE = ROOT.parent / "shared" / "reference" / "transformerlab-running-a-sweep.md"

# The two examples of the "Running a Sweep" page, exactly as printed there.
REFERENCE_JSON = """\
{
  "name": "my-sweep-task",
  "command": "python train.py",
  "cpus": 4,
  "memory": 8,
  "parameters": {
    "epochs": 10,
    "model_type": "gpt2"
  },
  "run_sweeps": true,
  "sweep_config": {
    "learning_rate": ["1e-5", "3e-5", "5e-5"],
    "batch_size": ["4", "8"]
  },
  "sweep_metric": "eval/loss",
  "lower_is_better": true
}
"""

REFERENCE_YAML = """\
name: my-sweep-task
resources:
  cpus: 4
  memory: 8
run: python train.py
setup: pip install -r requirements.txt
parameters:
  epochs: 10
  model_type: "gpt2"
sweeps:
  sweep_config:
    learning_rate:
      - 1e-5
      - 3e-5
      - 5e-5
    batch_size:
      - 4
      - 8
  sweep_metric: "eval/loss"
  lower_is_better: true
"""

COMPAT_FILES = sorted(COMPAT.glob("*.yaml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def reference_forms(tmp_path: Path) -> tuple[TaskSpec, TaskSpec]:
    return (
        load(write(tmp_path, "task.json", REFERENCE_JSON)),
        load(write(tmp_path, "task.yaml", REFERENCE_YAML)),
    )


def as_numbers(params: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """A parameter's meaning: "1e-5" in the JSON form and 1e-5 in the YAML form are one value."""
    out: dict[str, Scalar] = {}
    for name, value in params.items():
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


@pytest.mark.skipif(not REFERENCE_PAGE.exists(), reason="the reference page is not checked out")
def test_reference_examples_are_verbatim_copies_of_the_page() -> None:
    page = REFERENCE_PAGE.read_text()
    blocks = re.findall(r"```(?:json5|yaml)\n(.*?)\n\s*```", page, re.S)
    assert [b.rstrip() for b in blocks] == [REFERENCE_JSON.rstrip(), REFERENCE_YAML.rstrip()]


def test_both_reference_forms_mean_the_same_sweep(tmp_path: Path) -> None:
    flat, nested = reference_forms(tmp_path)
    assert flat.name == nested.name == "my-sweep-task"
    assert flat.run == nested.run == "python train.py"
    assert flat.resources == nested.resources
    assert (flat.resources.cpus, flat.resources.memory) == (4, 8)
    assert flat.parameters == nested.parameters == {"epochs": 10, "model_type": "gpt2"}
    assert flat.sweeps is not None and nested.sweeps is not None
    assert list(flat.sweeps.sweep_config) == list(nested.sweeps.sweep_config)
    assert (flat.sweeps.sweep_metric, flat.sweeps.lower_is_better) == ("eval/loss", True)
    assert (nested.sweeps.sweep_metric, nested.sweeps.lower_is_better) == ("eval/loss", True)
    # only the YAML example has a setup line
    assert flat.setup is None and nested.setup == "pip install -r requirements.txt"

    flat_trials, nested_trials = expand(flat), expand(nested)
    assert len(flat_trials) == len(nested_trials) == 6  # 3 learning rates x 2 batch sizes
    assert [as_numbers(t.params) for t in flat_trials] == [
        as_numbers(t.params) for t in nested_trials
    ]
    assert as_numbers(flat_trials[0].params) == {
        "epochs": 10.0,
        "model_type": "gpt2",
        "learning_rate": 1e-5,
        "batch_size": 4.0,
    }


def test_sweep_values_keep_their_written_type(tmp_path: Path) -> None:
    flat, nested = reference_forms(tmp_path)
    assert flat.sweeps is not None and nested.sweeps is not None
    assert flat.sweeps.sweep_config == {
        "learning_rate": ["1e-5", "3e-5", "5e-5"],
        "batch_size": ["4", "8"],
    }
    # YAML 1.1 would read 1e-5 as a string; users mean a number (YAML 1.2)
    assert nested.sweeps.sweep_config == {"learning_rate": [1e-5, 3e-5, 5e-5], "batch_size": [4, 8]}
    rates = nested.sweeps.sweep_config["learning_rate"]
    assert all(type(v) is float for v in rates)
    assert all(type(v) is int for v in nested.sweeps.sweep_config["batch_size"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-5", 1e-5),
        ("3E-4", 3e-4),
        ("-2.5e+3", -2500.0),
        ("1.0", 1.0),
        ("7", 7),
        ("'1e-5'", "1e-5"),
        ("true", True),
        ("gpt2", "gpt2"),
        (".5", 0.5),
    ],
)
def test_yaml_scalars_in_sweep_values(tmp_path: Path, text: str, expected: object) -> None:
    path = write(
        tmp_path, "t.yaml", f"name: t\nrun: echo\nsweeps:\n  sweep_config:\n    x: [{text}]\n"
    )
    task = load(path)
    assert task.sweeps is not None
    (value,) = task.sweeps.sweep_config["x"]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("path", COMPAT_FILES, ids=lambda p: p.stem)
def test_every_transformerlab_file_loads(path: Path) -> None:
    task = load(path)
    assert task.name and task.run.strip()
    assert len(expand(task)) == 1  # none of them sweeps


def test_compat_files_are_there() -> None:
    assert len(COMPAT_FILES) >= 12


def test_nanochat_parameter_forms_take_their_default() -> None:
    task = load(COMPAT / "nanochat.yaml")
    assert task.parameters["nproc_per_node"] == 8
    assert task.parameters["enable_fp8"] is True
    assert task.parameters["wandb_run_name"] == "nanochat-speedrun"
    assert task.parameters["target_param_data_ratio"] == 8.25
    assert task.parameters["model_tag"] == ""
    assert task.parameters["tokenizer_max_chars"] == 2_000_000_000
    raw = yaml.safe_load((COMPAT / "nanochat.yaml").read_text())["parameters"]
    assert task.parameters == {name: form["default"] for name, form in raw.items()}
    assert task.description and task.description.startswith("Train your own GPT-2")


def test_transformerlab_keys_are_kept() -> None:
    task = load(COMPAT / "mnist-train.yaml")
    assert task.github_repo_url == "https://github.com/transformerlab/transformerlab-app"
    assert task.github_repo_dir == "api/transformerlab/galleries/examples/mnist-train"
    assert task.envs["WANDB_API_KEY"] == "{{secret._WANDB_API_KEY}}"
    assert task.secret_names() == ["_WANDB_API_KEY"]
    assert task.parameters["learning_rate"] == "0.01"
    multinode = load(COMPAT / "multinode-example.yaml")
    assert multinode.resources.num_nodes == 2
    assert "<<'PY'" in multinode.run
    gpu = load(COMPAT / "lora-trainer-multi-gpu.yaml")
    assert gpu.resources.accelerators == "RTX3090:2"
    assert gpu.parameters == {}


def test_interactive_jupyter_empty_parameters_are_an_empty_mapping() -> None:
    assert "\nparameters:\n" in (COMPAT / "interactive-jupyter.yaml").read_text() + "\n"
    task = load(COMPAT / "interactive-jupyter.yaml")
    assert task.parameters == {}
    (trial,) = expand(task)
    assert trial.params == {}


def test_defaults_metric_and_direction(tmp_path: Path) -> None:
    task = load(
        write(tmp_path, "t.yaml", "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: [1, 2]\n")
    )
    assert task.sweeps is not None
    assert task.sweeps.sweep_metric == "eval/loss"
    assert task.sweeps.lower_is_better is True
    flat = load(
        write(
            tmp_path,
            "t.json",
            json.dumps(
                {"name": "t", "command": "echo", "run_sweeps": True, "sweep_config": {"lr": [1, 2]}}
            ),
        )
    )
    assert flat.sweeps is not None
    assert (flat.sweeps.sweep_metric, flat.sweeps.lower_is_better) == ("eval/loss", True)
    assert len(expand(flat)) == 2


def test_run_sweeps_false_is_one_trial(tmp_path: Path) -> None:
    data = json.loads(REFERENCE_JSON)
    data["run_sweeps"] = False
    task = load(write(tmp_path, "off.json", json.dumps(data)))
    (trial,) = expand(task)
    assert trial.params == {"epochs": 10, "model_type": "gpt2"}
    # the metric settings still hold, for ranking the single trial
    assert task.sweeps is not None and task.sweeps.sweep_metric == "eval/loss"


def test_no_sweep_section_is_one_trial(tmp_path: Path) -> None:
    task = load(write(tmp_path, "plain.yaml", "name: t\nrun: echo\nparameters:\n  a: 1\n"))
    assert task.sweeps is None
    (trial,) = expand(task)
    assert trial.params == {"a": 1}


def test_flat_form_without_run_sweeps_sweeps_when_it_has_a_config(tmp_path: Path) -> None:
    task = load(
        write(
            tmp_path,
            "t.json",
            json.dumps({"name": "t", "command": "echo", "sweep_config": {"lr": ["1", "2", "3"]}}),
        )
    )
    assert len(expand(task)) == 3


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    task = load(write(tmp_path, "my-task.yaml", "run: echo\n"))
    assert task.name == "my-task"


def test_numeric_envs_become_strings(tmp_path: Path) -> None:
    task = load(write(tmp_path, "t.yaml", "name: t\nrun: echo\nenvs:\n  A: 1\n  B: true\n"))
    assert task.envs == {"A": "1", "B": "true"}


def test_cli_overrides_add_a_sweep(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: t\nrun: echo\nparameters:\n  lr: 1\n")
    task = load(path, sweep_overrides={"lr": [0.1, 0.2], "bs": [8]})
    assert [t.params for t in expand(task)] == [{"lr": 0.1, "bs": 8}, {"lr": 0.2, "bs": 8}]


def test_every_problem_is_listed_with_its_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        "name: t\nressources:\n  cpus: 2\nrun: echo\nsweeps:\n  sweep_metrc: x\n",
    )
    with pytest.raises(TaskFileError) as caught:
        load(path)
    rendered = [p.render() for p in caught.value.problems]
    assert len(rendered) == 2
    assert any("ressources (line 2)" in r and "did you mean 'resources'" in r for r in rendered)
    assert any(
        "sweeps.sweep_metrc (line 6)" in r and "did you mean 'sweep_metric'" in r for r in rendered
    )
    assert str(path) in str(caught.value)


def test_a_union_mismatch_is_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: t\nrun: echo\nresources:\n  cpus: [1, 2]\n")
    with pytest.raises(TaskFileError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert problem.location == "resources.cpus (line 4)"
    assert "got a list" in problem.message


def test_flat_form_errors_use_flat_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.json",
        json.dumps(
            {"name": "t", "command": "echo", "cpus": [1], "lower_is_better": "maybe"}, indent=1
        ),
    )
    with pytest.raises(TaskFileError) as caught:
        load(path)
    where = sorted(p.location.split(" ")[0] for p in caught.value.problems)
    assert where == ["cpus", "lower_is_better"]
