"""Issue #2: a user mistake is one readable error, exit code 2, and nothing launched.

Every case goes through the real CLI in its own process, with an isolated HOME whose
default store must stay empty.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_cli

GOOD = "name: t\nrun: echo hi\nsweeps:\n  sweep_config:\n    lr: [1, 2]\n"


@dataclass(frozen=True)
class Mistake:
    id: str
    text: str | None
    """The task file's content; None: the path names no file (or a folder, see ``path``)."""
    expect: list[str]
    """Must all appear in the message: the place, what is wrong and the fix."""
    file: str = "task.yaml"
    args: list[str] = field(default_factory=list)
    command: str = "up"
    path: str | None = None
    """Replaces the task file argument (for a folder)."""


MISTAKES = [
    Mistake(
        "cpus-a-list",
        "name: t\nrun: echo\nresources:\n  cpus: [1, 2]\n",
        ["resources.cpus (line 4)", "got a list", "a number such as 4"],
    ),
    Mistake(
        "lower-is-better-maybe",
        "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: [1]\n  lower_is_better: maybe\n",
        ["sweeps.lower_is_better (line 6)", "'maybe'", "use true"],
    ),
    Mistake(
        "misspelled-top-level-key",
        "name: t\nressources:\n  cpus: 2\nrun: echo\n",
        ["ressources (line 2)", "unknown key 'ressources'", "did you mean 'resources'?"],
    ),
    Mistake(
        "misspelled-sweep-key",
        "name: t\nrun: echo\nsweeps:\n  sweep_metrc: eval/acc\n  sweep_config:\n    lr: [1, 2]\n",
        ["sweeps.sweep_metrc (line 4)", "did you mean 'sweep_metric'?"],
    ),
    Mistake(
        "unknown-top-level-key",
        "name: t\nrun: echo\ntimeout_minutes: 5\n",
        [
            "timeout_minutes (line 3)",
            "unknown key 'timeout_minutes'",
            "known keys:",
            "minutes_requested",
        ],
    ),
    Mistake(
        "empty-sweep-list",
        "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: []\n",
        ["sweeps.sweep_config (line 4)", "'lr' is empty", "give at least one value"],
    ),
    Mistake(
        "unknown-metric-direction",
        "name: t\nrun: echo\nsweeps:\n  direction: maximize\n  sweep_config:\n    lr: [1]\n",
        ["sweeps.direction (line 4)", "unknown key 'direction'", "lower_is_better"],
    ),
    Mistake(
        "parameter-not-an-env-name",
        "name: t\nrun: echo\nparameters:\n  learning-rate: 0.1\n",
        ["parameters (line 3)", "'learning-rate'", "e.g. 'learning_rate'"],
    ),
    Mistake(
        "reserved-parameter-name",
        "name: t\nrun: echo\nparameters:\n  SKYSWEEP_X: 1\n",
        ["parameters", "'SKYSWEEP_X'", "reserved prefix", "rename"],
    ),
    Mistake(
        "missing-run",
        "name: t\nparameters:\n  lr: 1\n",
        ["run", "required key 'run' is missing", "add 'run: <command>'"],
    ),
    Mistake(
        "blank-run",
        "name: t\nrun: '   '\n",
        ["run (line 2)", "the run command is empty", "python train.py"],
    ),
    Mistake(
        "missing-command-json",
        '{"name": "t", "cpus": 2}',
        ["command", "required key 'command' is missing", 'add "command"'],
        file="t.json",
    ),
    Mistake(
        "missing-secret",
        "name: t\nrun: echo\nenvs:\n  TOKEN: '{{secret.NOPE}}'\n",
        ["secret", "NOPE", "export NOPE=..."],
    ),
    Mistake(
        "mixed-forms",
        "name: t\nrun: echo hi\ncommand: echo hi\n",
        ["mixes the YAML form (run) with the flat JSON form (command)", "use one form"],
    ),
    Mistake(
        "yaml-syntax",
        "name: t\nrun: echo\nresources:\n  cpus: 2\n   memory: 4\n",
        ["line 5, column 10", "not valid YAML", "indentation"],
    ),
    Mistake(
        "yaml-unquoted-template",
        "name: t\nrun: echo\nenvs:\n  T: {{secret.X}}\n",
        ["line 4", "not valid YAML", "quoted"],
    ),
    Mistake(
        "json-syntax",
        '{\n  "name": "t",\n  "command": "echo"\n  "cpus": 2\n}\n',
        ["line 4, column 3", "not valid JSON", "missing comma"],
        file="t.json",
    ),
    Mistake("missing-file", None, ["no such task file", "check the path"], file="nope.yaml"),
    Mistake("a-folder", None, ["is a folder, not a task file", "task.yaml"], path="."),
    Mistake("empty-file", "", ["the file is empty", "'name' and 'run'"]),
    Mistake(
        "top-level-list",
        "- name: t\n  run: echo\n",
        ["the top level is a list", "start the file with keys"],
    ),
    Mistake(
        "run-sweeps-not-bool",
        '{"name": "t", "command": "echo", "run_sweeps": "yes", "sweep_config": {"a": [1]}}',
        ["run_sweeps", "expected true or false", "run_sweeps: true"],
        file="t.json",
    ),
    Mistake(
        "sweep-value-not-a-list",
        "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: 0.1\n",
        ["sweeps.sweep_config.lr (line 5)", "valid list", "list of values"],
    ),
    Mistake(
        "sweep-config-a-list",
        "name: t\nrun: echo\nsweeps:\n  sweep_config: [1, 2]\n",
        ["sweeps.sweep_config (line 4)", "valid dictionary", "map each parameter"],
    ),
    Mistake(
        "num-nodes-zero",
        "name: t\nrun: echo\nresources:\n  num_nodes: 0\n",
        ["resources.num_nodes (line 4)", "greater than or equal to 1"],
    ),
    Mistake(
        "parameter-form-without-default",
        "name: t\nrun: echo\nparameters:\n  depth:\n    type: int\n    min: 4\n",
        ["parameters (line 3)", "'depth'", "without a 'default'", "default:"],
    ),
    Mistake(
        "unsweepable-resource",
        "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    resources.gpus: [1, 2]\n",
        ["sweeps.sweep_config", "resources.gpus cannot be swept", "accelerators"],
    ),
    Mistake(
        "empty-infra-list",
        "name: t\nrun: echo\nresources:\n  infra: []\n",
        ["resources.infra (line 4)", "infra list is empty", "'aws'"],
    ),
    Mistake(
        "duplicate-key",
        "name: t\nrun: echo 1\nparameters:\n  lr: 1\nrun: echo 2\n",
        ["key 'run' appears twice: lines 2 and 5", "keep one of them"],
    ),
    Mistake(
        "duplicate-swept-parameter",
        "name: t\nrun: echo\nsweeps:\n  sweep_config:\n    lr: [1]\n    lr: [2]\n",
        ["sweeps.sweep_config: key 'lr' appears twice: lines 5 and 6", "keep one of them"],
    ),
    Mistake(
        "duplicate-key-json",
        '{\n  "name": "t",\n  "command": "echo",\n  "name": "u"\n}\n',
        ["key 'name' appears twice: lines 2 and 4", "keep one of them"],
        file="t.json",
    ),
    # command-line mistakes
    Mistake(
        "sweep-option-syntax",
        GOOD,
        ["--sweep lr is not NAME=V1,V2", "e.g. --sweep"],
        args=["--sweep", "lr"],
    ),
    Mistake(
        "sweep-option-bad-name",
        GOOD,
        ["--sweep learning-rate=1,2", "'learning-rate' cannot be an environment variable name"],
        args=["--sweep", "learning-rate=1,2"],
    ),
    Mistake(
        "unknown-store-scheme",
        GOOD,
        ["'ftp://x'", "unknown scheme 'ftp'", "s3://"],
        args=["--store", "ftp://x"],
    ),
]

# Each ``--sweep`` value that is not NAME=V1,V2 of plain values: the flag and value named,
# and the fix. None of them is a traceback.
SWEEP_FLAG_MISTAKES = [
    Mistake(
        "sweep-brackets",
        GOOD,
        ["--sweep 'lr=[1,2]'", "without brackets", "--sweep lr=1,2"],
        args=["--sweep", "lr=[1,2]"],
    ),
    Mistake(
        "sweep-brackets-spaced",
        GOOD,
        ["--sweep 'lr=[1, 2]'", "without brackets", "--sweep 'lr=1, 2'"],
        args=["--sweep", "lr=[1, 2]"],
    ),
    Mistake("sweep-no-equals", GOOD, ["--sweep lr", "NAME=V1,V2"], args=["--sweep", "lr"]),
    Mistake("sweep-no-name", GOOD, ["--sweep =1,2", "NAME=V1,V2"], args=["--sweep", "=1,2"]),
    Mistake(
        "sweep-no-values",
        GOOD,
        ["--sweep lr=", "no values", "--sweep lr=1,2"],
        args=["--sweep", "lr="],
    ),
    Mistake(
        "sweep-empty-between-commas",
        GOOD,
        ["--sweep lr=1,,2", "empty value between commas", "--sweep lr=1,2"],
        args=["--sweep", "lr=1,,2"],
    ),
    Mistake(
        "sweep-trailing-comma",
        GOOD,
        ["--sweep lr=1,", "empty value between commas", "--sweep lr=1"],
        args=["--sweep", "lr=1,"],
    ),
    Mistake(
        "sweep-name-with-space",
        GOOD,
        ["'learning rate' cannot be an environment variable name"],
        args=["--sweep", "learning rate=1"],
    ),
    Mistake(
        "sweep-name-digit",
        GOOD,
        ["'1lr' cannot be an environment variable name", "not starting with a digit"],
        args=["--sweep", "1lr=1"],
    ),
    *[
        Mistake(
            f"sweep-value-starts-with-{label}",
            GOOD,
            [f"the value '{value}' starts with '{value[0]}'", "YAML reserves", "quote it"],
            args=["--sweep", f"lr={value}"],
        )
        for label, value in [
            ("at", "@x"),
            ("backtick", "`x`"),
            ("percent", "%x"),
            ("star", "*x"),
            ("ampersand", "&x"),
            ("bang", "!x"),
            ("brace", "{a: 1}"),
            ("pipe", "|x"),
            ("hash", "#x"),
        ]
    ],
    Mistake(
        "sweep-value-a-mapping",
        GOOD,
        ["'a: b' reads as a YAML mapping", "quote it"],
        args=["--sweep", "lr=a: b"],
    ),
    Mistake(
        "sweep-value-a-list",
        GOOD,
        ["'- x' reads as a YAML list", "quote it"],
        args=["--sweep", "lr=- x"],
    ),
    Mistake(
        "sweep-value-null", GOOD, ["'null' is null", "quote it"], args=["--sweep", "lr=1,null"]
    ),
    Mistake(
        "sweep-value-unclosed-quote",
        GOOD,
        ["--sweep", "is not a plain value", "quote it"],
        args=["--sweep", "lr='abc"],
    ),
    Mistake(
        "sweep-name-twice",
        GOOD,
        ["--sweep lr=3", "already swept by an earlier --sweep", "one flag"],
        args=["--sweep", "lr=1,2", "--sweep", "lr=3"],
    ),
]

MORE_MISTAKES = [
    Mistake("max-parallel-zero", GOOD, ["--max-parallel", "1"], args=["--max-parallel", "0"]),
    Mistake("unknown-option", GOOD, ["--bogus"], args=["--bogus"]),
    Mistake(
        "sweep-id-escapes-the-store",
        GOOD,
        ["--sweep-id", "../escape"],
        args=["--sweep-id", "../escape", "--detach"],
    ),
]


def store_root(home: Path) -> Path:
    return home / ".skysweep"


def assert_one_clean_error(done: object, expect: list[str], file: str | None) -> str:
    code, stdout, stderr = done.code, done.stdout, done.stderr  # type: ignore[attr-defined]
    assert code == 2, done
    assert "Traceback" not in stderr and "Traceback" not in stdout, done
    assert stdout == "", done
    # rich wraps long lines; the message reads the same once joined
    message = " ".join(stderr.split())
    assert message.startswith("error: "), done
    assert message.count("error:") == 1, done
    if file is not None:
        assert file in message, done
    for part in expect:
        assert part in message, f"{part!r} not in: {message}"
    return message


@pytest.mark.parametrize(
    "mistake",
    [pytest.param(m, id=m.id) for m in [*MISTAKES, *SWEEP_FLAG_MISTAKES, *MORE_MISTAKES]],
)
def test_a_mistake_is_one_clean_error_and_launches_nothing(
    mistake: Mistake, tmp_path: Path, isolated_home: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if mistake.text is not None:
        (work / mistake.file).write_text(mistake.text)
    target = mistake.path or mistake.file
    done = run_cli(mistake.command, target, "--local", "--yes", *mistake.args, cwd=work)
    named = None if mistake.path or mistake.args else mistake.file
    assert_one_clean_error(done, mistake.expect, named)
    assert not store_root(isolated_home).exists(), "something was launched or stored"


def test_there_are_enough_distinct_mistakes() -> None:
    assert len({m.id for m in MISTAKES}) == len(MISTAKES) >= 15
    every = [*MISTAKES, *SWEEP_FLAG_MISTAKES, *MORE_MISTAKES]
    assert len({m.id for m in every}) == len(every)


def test_problems_found_together_are_reported_together(tmp_path: Path, isolated_home: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "name: t\nressources:\n  cpus: [1]\nrun: echo\nparameters:\n"
        "  learning-rate: 1\nsweeps:\n  sweep_metrc: x\n  lower_is_better: maybe\n"
        "  sweep_config:\n    lr: []\n"
    )
    done = run_cli("up", str(path), "--local", "--yes")
    message = assert_one_clean_error(
        done,
        [
            "5 problem(s)",
            "unknown key 'ressources'",
            "did you mean 'resources'?",
            "parameters (line 5)",
            "'learning-rate'",
            "sweeps.sweep_metrc (line 8)",
            "did you mean 'sweep_metric'?",
            "sweeps.lower_is_better (line 9)",
            "sweeps.sweep_config (line 10)",
            "'lr' is empty",
        ],
        "many.yaml",
    )
    assert message.count(" - ") == 5
    assert not store_root(isolated_home).exists()


def test_flat_json_problems_use_the_flat_names(tmp_path: Path, isolated_home: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text(
        json.dumps(
            {"name": "t", "command": "", "cpus": [2], "sweep_metrc": "x", "lower_is_better": 3},
            indent=2,
        )
    )
    done = run_cli("up", str(path), "--local", "--yes")
    assert_one_clean_error(
        done,
        [
            "4 problem(s)",
            "command (line 3)",
            "cpus (line 4)",
            "sweep_metrc (line 7)",
            "did you mean 'sweep_metric'?",
            "lower_is_better (line 8)",
        ],
        "flat.json",
    )


def test_results_of_an_unknown_sweep(tmp_path: Path, isolated_home: Path) -> None:
    done = run_cli("results", "no-such-sweep", "--store", f"file://{tmp_path / 'store'}")
    assert_one_clean_error(done, ["no sweep 'no-such-sweep'", "skysweep list"], None)
    done = run_cli("status", "no-such-sweep")
    assert_one_clean_error(done, ["no sweep 'no-such-sweep'"], None)


def test_results_of_a_malformed_sweep_reference(isolated_home: Path) -> None:
    done = run_cli("results", "a/b")
    assert_one_clean_error(done, ["'a/b' is not a sweep id", "store URL"], None)


def test_sweep_id_of_an_unknown_sweep_starts_that_sweep(
    tmp_path: Path, isolated_home: Path
) -> None:
    """``--sweep-id`` names the sweep: unknown, it is started under that id (so a CI job can
    pick its own id and re-run the same command to resume)."""
    task = tmp_path / "task.yaml"
    task.write_text(GOOD)
    store = tmp_path / "store"
    plan = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--store",
        f"file://{store}",
        "--sweep-id",
        "chosen-id",
        "--dry-run",
        "--output",
        "json",
    )
    assert plan.code == 0, plan
    assert json.loads(plan.stdout)["sweep_id"] == "chosen-id"
    assert not store.exists()

    done = run_cli(
        "up",
        str(task),
        "--local",
        "--yes",
        "--store",
        f"file://{store}",
        "--sweep-id",
        "chosen-id",
        "--output",
        "json",
    )
    assert done.code == 1, done  # ran; "echo hi" writes no metrics, so not all succeeded
    header = json.loads((store / "chosen-id" / "sweep.json").read_text())
    assert header["sweep_id"] == "chosen-id" and header["expected_trials"] == 2
    assert len(list((store / "chosen-id" / "records").glob("*/trial.json"))) == 2
    assert sorted(p.name for p in store.iterdir()) == ["chosen-id"]


def test_a_boolean_metric_is_not_ranked(tmp_path: Path, isolated_home: Path) -> None:
    """A job that reports ``"eval/loss": true`` did not report a number: JSON's true is not 1."""
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: flags\nrun: |\n"
        f"  {sys.executable} -c 'import json, os; json.dump("
        '{"eval/loss": json.loads(os.environ["v"])}, '
        'open(os.environ["SKYSWEEP_OUTPUT_DIR"] + "/metrics.json", "w"))\'\n'
        "sweeps:\n  sweep_config:\n    v: [true, '0.5', false]\n"
    )
    store = f"file://{tmp_path / 'store'}"
    done = run_cli("up", str(task), "--local", "--yes", "--store", store, "--output", "json")
    assert "Traceback" not in done.stderr, done
    result = json.loads(done.stdout)
    by_value = {t["params"]["v"]: t for t in result["trials"]}
    assert by_value["0.5"]["rank"] == 1 and by_value["0.5"]["value"] == 0.5
    assert by_value[True]["rank"] is None
    assert by_value[True]["reason"] == "'eval/loss' is true, not a number"
    assert by_value[False]["rank"] is None
    assert by_value[False]["reason"] == "'eval/loss' is false, not a number"
    assert result["best"]["trial_id"] == by_value["0.5"]["trial_id"]
