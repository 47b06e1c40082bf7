"""Stage 1, load: both forms of Transformer Lab's sweep page, and its real task files."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from conftest import COMPAT, ROOT, run_cli

from skysweep.errors import TaskFileError, UsageError
from skysweep.expand import expand, trial_id_for
from skysweep.load import load, parse_sweep_overrides
from skysweep.task import Scalar, TaskSpec, WrittenFloat, parameter_text

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
    assert all(isinstance(v, float) for v in rates)
    assert [parameter_text(v) for v in rates] == ["1e-5", "3e-5", "5e-5"]  # as written
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
    assert value == expected
    # a float keeps its text (a float subclass); every other kind is exactly its type
    assert isinstance(value, float) if type(expected) is float else type(value) is type(expected)


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


# --- YAML 1.2 core schema: each YAML 1.1 trap, as the job sees it (issue 7) ---------------

NULL = object()


@pytest.mark.parametrize(
    ("text", "expected", "job_sees"),
    [
        # YAML 1.1 booleans that YAML 1.2 reads as strings
        *[(word, word, word) for word in ["no", "off", "on", "yes", "y", "n", "Yes", "NO", "Off"]],
        ("true", True, "true"),
        ("True", True, "true"),
        ("TRUE", True, "true"),
        ("false", False, "false"),
        ("FALSE", False, "false"),
        # numbers keep the text they were written in
        ("1.10", 1.1, "1.10"),
        ("2.50", 2.5, "2.50"),
        ("1e-5", 1e-5, "1e-5"),
        ("1E5", 1e5, "1E5"),
        (".5", 0.5, ".5"),
        ("-0.0", -0.0, "-0.0"),
        ("0.1", 0.1, "0.1"),
        # integers reach the job in decimal, which every language reads back
        ("0o17", 15, "15"),
        ("0x1F", 31, "31"),
        ("+1", 1, "1"),
        ("017", 17, "17"),  # YAML 1.1: octal 15
        (".inf", math.inf, "inf"),
        ("-.Inf", -math.inf, "-inf"),
        # YAML 1.1 numbers, dates and sexagesimals that YAML 1.2 reads as strings
        ("1_000", "1_000", "1_000"),
        ("1:30", "1:30", "1:30"),
        ("0b101", "0b101", "0b101"),
        ("2024-01-01", "2024-01-01", "2024-01-01"),
        ("'1.10'", "1.10", "1.10"),
        ("~", NULL, None),
        ("null", NULL, None),
        ("Null", NULL, None),
    ],
)
def test_yaml_1_2_core_schema(tmp_path: Path, text: str, expected: object, job_sees: str) -> None:
    path = write(
        tmp_path, "t.yaml", f"name: t\nrun: echo\nsweeps:\n  sweep_config:\n    x: [{text}]\n"
    )
    if expected is NULL:
        with pytest.raises(TaskFileError) as caught:
            load(path)
        assert "got None" in str(caught.value)
        # and a null where one is allowed is None
        described = load(write(tmp_path, "d.yaml", f"name: t\nrun: echo\ndescription: {text}\n"))
        assert described.description is None
        return
    task = load(path)
    assert task.sweeps is not None
    (value,) = task.sweeps.sweep_config["x"]
    assert value == expected
    assert isinstance(value, bool) == isinstance(expected, bool)
    assert isinstance(value, str) == isinstance(expected, str)
    assert isinstance(value, float) == isinstance(expected, float)
    (trial,) = expand(task)
    assert parameter_text(trial.params["x"]) == job_sees


def test_a_language_list_keeps_norway(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.yaml", "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lang: [en, no, de]\n"
    )
    assert [t.params["lang"] for t in expand(load(path))] == ["en", "no", "de"]


def test_merge_keys_still_merge_and_may_be_overridden(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        "name: t\nrun: echo\nparameters:\n  <<: {a: 1, b: 2}\n  b: 3\n",
    )
    assert load(path).parameters == {"a": 1, "b": 3}


def test_written_float_survives_pydantic_in_python_mode(tmp_path: Path) -> None:
    task = load(
        write(
            tmp_path,
            "t.yaml",
            "name: t\nrun: echo\nparameters:\n  lr: 1.10\nenvs:\n  E: 2.50\n"
            "sweeps:\n  sweep_config:\n    wd: [1e-5]\n",
        )
    )
    assert task.envs == {"E": "2.50"}
    for again in (
        task,
        TaskSpec.model_validate(task.model_dump()),
        task.model_copy(deep=True),
        TaskSpec(**task.model_dump()),
    ):
        assert isinstance(again.parameters["lr"], WrittenFloat)
        assert parameter_text(again.parameters["lr"]) == "1.10"
        assert again.sweeps is not None
        assert parameter_text(again.sweeps.sweep_config["wd"][0]) == "1e-5"


def test_json_mode_round_trip_keeps_the_number_and_the_trial_ids(tmp_path: Path) -> None:
    """The manifest stores ``model_dump(mode="json")``: JSON has no place for "1.10" as a
    number, so the number survives (1.1) but not its text; the trial ids do not change."""
    task = load(
        write(tmp_path, "t.yaml", "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: [1.10]\n")
    )
    dumped = task.model_dump(mode="json")
    assert json.loads(json.dumps(dumped))["sweeps"]["sweep_config"]["lr"] == [1.1]
    again = TaskSpec.model_validate(dumped)
    assert again.sweeps is not None
    (value,) = again.sweeps.sweep_config["lr"]
    assert type(value) is float and parameter_text(value) == "1.1"
    assert [t.trial_id for t in expand(again)] == [t.trial_id for t in expand(task)]


def _todays_trial_id(params: dict[str, object]) -> str:
    """The id scheme as it was before values kept their text: sha256 of the sorted JSON."""
    canonical = json.dumps(
        {"params": params, "resources": {}}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("written", "plain"),
    [("0.1", 0.1), ("8", 8), ('"gpt2"', "gpt2"), ("1e-5", 1e-05), ("1.10", 1.1), ("true", True)],
)
def test_trial_ids_hash_the_value_not_its_text(tmp_path: Path, written: str, plain: object) -> None:
    task = load(
        write(
            tmp_path,
            "t.yaml",
            f"name: t\nrun: echo\nsweeps:\n  sweep_config:\n    x: [{written}]\n",
        )
    )
    (trial,) = expand(task)
    assert trial.trial_id == _todays_trial_id({"x": plain}) == trial_id_for({"x": plain}, {})
    assert trial.trial_id == expand(load(tmp_path / "t.yaml"))[0].trial_id  # stable


def test_json_numbers_keep_their_text_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.json",
        '{"name": "t", "command": "echo", "parameters": {"lr": 1.10, "n": 3},'
        ' "sweep_config": {"wd": [1e-5, 0.50]}}',
    )
    trials = expand(load(path))
    assert [parameter_text(t.params["wd"]) for t in trials] == ["1e-5", "0.50"]
    assert parameter_text(trials[0].params["lr"]) == "1.10"
    assert type(trials[0].params["n"]) is int


# --- duplicate keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        (
            "t.yaml",
            "name: t\nrun: a\nsetup: x\nrun: b\n",
            ["key 'run' appears twice: lines 2 and 4"],
        ),
        (
            "t.yaml",
            "name: t\nrun: a\nsweeps:\n  sweep_config:\n    lr: [1]\n    bs: [2]\n    lr: [3]\n"
            "    lr: [4]\n",
            ["sweeps.sweep_config: key 'lr' appears 3 times: lines 5, 7 and 8"],
        ),
        (
            "t.yaml",
            "name: t\nrun: a\nparameters: {a: 1, a: 2}\n",
            ["parameters: key 'a' appears twice: line 3 column 14 and line 3 column 20"],
        ),
        (
            "t.yaml",
            "name: t\nrun: a\nname: u\nparameters:\n  1: x\n  +1: y\n",
            ["key 'name' appears twice: lines 1 and 3", "key '1' appears twice: lines 5 and 6"],
        ),
        (
            "t.json",
            '{\n  "name": "t",\n  "command": "a",\n  "sweep_config": {\n    "lr": [1],\n'
            '    "lr": [2]\n  },\n  "command": "b"\n}\n',
            [
                "key 'command' appears twice: lines 3 and 8",
                "sweep_config: key 'lr' appears twice: lines 5 and 6",
            ],
        ),
        # YAML cannot read tab-indented JSON: the keys are still named, without lines
        (
            "t.json",
            '{\n\t"name": "t",\n\t"command": "a",\n\t"name": "u"\n}\n',
            ["key 'name' appears"],
        ),
    ],
)
def test_a_duplicate_key_is_an_error_naming_its_lines(
    tmp_path: Path, file: str, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, file, text)
    with pytest.raises(TaskFileError) as caught:
        load(path)
    rendered = [p.render() for p in caught.value.problems]
    assert len(rendered) == len(expected), rendered
    for problem, part in zip(rendered, expected, strict=True):
        assert part in problem and "keep one of them" in problem
    assert str(path) in str(caught.value)


# --- --sweep values -----------------------------------------------------------------------


def test_sweep_flag_values_follow_the_core_schema() -> None:
    parsed = parse_sweep_overrides(
        ["lang=en,no,de", "lr= 1.10 ,1e-5", "n=0x1F,7", "flag=true,off", "s='1','no'"]
    )
    assert parsed == {
        "lang": ["en", "no", "de"],
        "lr": [1.1, 1e-5],
        "n": [31, 7],
        "flag": [True, "off"],
        "s": ["1", "no"],
    }
    assert [parameter_text(v) for v in parsed["lr"]] == ["1.10", "1e-5"]
    assert parse_sweep_overrides(["resources.cpus=1,2"]) == {"resources.cpus": [1, 2]}


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("lr=[1,2]", "without brackets: --sweep lr=1,2"),
        ("lr=@x", "starts with '@'"),
        ("lr", "is not NAME=V1,V2"),
        ("lr=1,,2", "empty value between commas"),
        ("lr=~", "is null"),
        ("lr=a: b", "YAML mapping"),
        ("lr='a", "not a plain value"),
    ],
)
def test_bad_sweep_flags_are_usage_errors(flag: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_sweep_overrides([flag])
    assert expected in str(caught.value) and "--sweep" in str(caught.value)


# --- through the real CLI: what the job sees ----------------------------------------------

_ECHO_JOB = (
    "run: |\n"
    f"  {sys.executable} -c 'import json, os; "
    'json.dump({"eval/loss": 1.0, "seen": {k: os.environ[k] for k in json.loads('
    'os.environ["SKYSWEEP_PARAMS"])}, "params": json.loads(os.environ["SKYSWEEP_PARAMS"])}, '
    'open(os.environ["SKYSWEEP_OUTPUT_DIR"] + "/metrics.json", "w"))\'\n'
)


def _job_metrics(tmp_path: Path, task: Path, *flags: str) -> list[dict[str, object]]:
    store = tmp_path / "store"
    done = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--store",
        f"file://{store}",
        "--output",
        "json",
        *flags,
    )
    assert done.code == 0, done
    result = json.loads(done.stdout)
    by_id = {t["trial_id"]: t for t in result["trials"]}
    trials = store / result["sweep_id"] / "trials"
    records = [
        json.loads(path.read_text())
        for path in (store / result["sweep_id"] / "records").glob("*/trial.json")
    ]
    return [
        json.loads((trials / record["trial_id"] / "metrics.json").read_text())
        for record in sorted(records, key=lambda r: r["index"])
        if record["trial_id"] in by_id
    ]


def test_the_job_sees_what_the_user_wrote(tmp_path: Path, isolated_home: Path) -> None:
    task = write(
        tmp_path,
        "task.yaml",
        "name: written\n" + _ECHO_JOB + "sweeps:\n  sweep_config:\n"
        "    lang: [en, no, de]\n    lr: [1.10]\n",
    )
    metrics = _job_metrics(tmp_path, task)
    assert [m["seen"] for m in metrics] == [
        {"lang": "en", "lr": "1.10"},
        {"lang": "no", "lr": "1.10"},
        {"lang": "de", "lr": "1.10"},
    ]
    # SKYSWEEP_PARAMS keeps the number a number
    assert [m["params"] for m in metrics] == [
        {"lang": "en", "lr": 1.1},
        {"lang": "no", "lr": 1.1},
        {"lang": "de", "lr": 1.1},
    ]


def test_sweep_flag_values_reach_the_job_as_written(tmp_path: Path, isolated_home: Path) -> None:
    task = write(tmp_path, "task.yaml", "name: flags\n" + _ECHO_JOB)
    metrics = _job_metrics(tmp_path, task, "--sweep", "lang=en,no", "--sweep", "lr=2.50")
    assert [m["seen"] for m in metrics] == [
        {"lang": "en", "lr": "2.50"},
        {"lang": "no", "lr": "2.50"},
    ]
