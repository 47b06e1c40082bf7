"""Transformer Lab jobs run unchanged: the real `lab` SDK (the `transformerlab` package) in a
job sees its trial's parameters, and what it reports is ranked.

The SDK's dependencies (wandb, s3fs, gcsfs, ... and their botocore and pytest-asyncio) would
change what skysweep itself runs on, so it lives in a virtualenv of its own, made once and
kept under ~/.cache/skysweep-test (``SKYSWEEP_TEST_CACHE`` moves it); the jobs run with its
``python`` first on PATH, as a Transformer Lab machine has the SDK.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import COMPAT, EXAMPLES, ROOT, CompletedCli, run_cli

LAB_VERSION = "0.1.46"
CACHE = Path(os.environ.get("SKYSWEEP_TEST_CACHE", Path.home() / ".cache" / "skysweep-test"))
FORM_FIELDS = ROOT / "tests" / "fixtures" / "tl-form-fields.yaml"

# In the style of the gallery's sample-task: parameters from lab.get_config(), progress and
# score through the SDK, nothing from skysweep. It prints what it was given, for the test.
SAMPLE_SCRIPT = """
import json, math, os
from lab import lab

lab.init()
config = lab.get_config()
print("CONFIG " + json.dumps(config, sort_keys=True), flush=True)
lr = float(config["lr"])
lab.log(f"training {config['model_name']} with lr={lr}")
loss = 1.0
for step in range(1, 4):
    loss = abs(math.log10(lr) + 3) + 1.0 / step
    lab.update_progress(step * 30, metrics={"train/loss": loss}, step=step)
lab.finish(score={"eval/loss": loss, "eval/accuracy": 1.0 / (1.0 + loss)})
"""

SAMPLE_TASK = """\
name: sample-task
resources:
  cpus: 1
run: python train.py
envs:
  PYTHONUNBUFFERED: "1"
parameters:
  model_name: "HuggingFaceTB/SmolLM-135M-Instruct"
  num_train_epochs: "1"
  prompts: [a red fox, "a cat, sleeping"]
sweeps:
  sweep_config:
    lr: [1e-2, 1e-3, 1e-4]
  sweep_metric: eval/loss
  lower_is_better: true
"""


@pytest.fixture(scope="session", name="lab_bin")
def lab_bin_fixture() -> Path:
    """The bin folder of a virtualenv with the real ``transformerlab`` SDK."""
    venv = CACHE / f"labsdk-venv-{LAB_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    ready = venv / ".ready"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             f"transformerlab=={LAB_VERSION}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"pip install transformerlab failed:\n{done.stderr}"
        ready.write_text(LAB_VERSION)
    return venv / "bin"


def _env(lab_bin: Path) -> dict[str, str]:
    return {"PATH": f"{lab_bin}{os.pathsep}{os.environ['PATH']}"}


def _up(task: Path, store: str, lab_bin: Path, *extra: str) -> tuple[CompletedCli, dict]:
    done = run_cli(
        "up", str(task), "--local", "--yes", "--store", store, "--output", "json", *extra,
        env=_env(lab_bin), timeout=300,
    )  # fmt: skip
    assert done.code == 0, done
    return done, json.loads(done.stdout)


def _sample(folder: Path, script: str = SAMPLE_SCRIPT, task: str = SAMPLE_TASK) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(script)
    (folder / "task.yaml").write_text(task)
    return folder / "task.yaml"


def test_a_lab_sdk_job_gets_its_trials_parameters_and_is_ranked_by_its_score(
    tmp_path: Path, isolated_home: Path, lab_bin: Path
) -> None:
    store = (tmp_path / "store").as_uri()
    _, result = _up(_sample(tmp_path / "task"), store, lab_bin)
    sweep = result["sweep_id"]
    trials = {t["trial_id"]: t for t in result["trials"]}
    assert len(trials) == 3

    configs = {}
    for trial_id in trials:
        log = run_cli("logs", sweep, trial_id, "--store", store, "--no-follow")
        assert log.code == 0, log
        line = next(x for x in log.stdout.splitlines() if x.startswith("CONFIG "))
        configs[trial_id] = json.loads(line.removeprefix("CONFIG "))
        # lab.log lines are in the trial's log, with this trial's value
        lr = configs[trial_id]["lr"]
        assert f"training HuggingFaceTB/SmolLM-135M-Instruct with lr={float(lr)}" in log.stdout
    # three distinct parameter sets arrived, typed, structured values as structures
    assert sorted(c["lr"] for c in configs.values()) == [1e-4, 1e-3, 1e-2]
    for trial_id, config in configs.items():
        assert config["lr"] == trials[trial_id]["params"]["lr"]
        assert config["prompts"] == ["a red fox", "a cat, sleeping"]
        assert config["num_train_epochs"] == "1"

    # the ranking follows the lab.finish scores
    def expected(lr: float) -> float:
        return abs(math.log10(lr) + 3) + 1.0 / 3

    ranked = [t["params"]["lr"] for t in result["trials"]]
    assert ranked == sorted(ranked, key=expected)
    assert result["best"]["params"]["lr"] == 1e-3
    for trial in result["trials"]:
        assert trial["value"] == pytest.approx(expected(trial["params"]["lr"]))
        assert trial["status"] == "succeeded"

    # the history has the progress points; metrics.json holds the whole score
    for trial_id, trial in trials.items():
        folder = tmp_path / "store" / sweep / "trials" / trial_id
        history = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
        assert [p["step"] for p in history] == [1, 2, 3]
        lr = trial["params"]["lr"]
        assert history[-1]["train/loss"] == pytest.approx(expected(lr))
        metrics = json.loads((folder / "metrics.json").read_text())
        assert set(metrics) == {"eval/loss", "eval/accuracy"}


def test_the_jobs_own_metrics_json_wins_over_a_lab_score_and_the_log_says_so(
    tmp_path: Path, isolated_home: Path, lab_bin: Path
) -> None:
    script = SAMPLE_SCRIPT + (
        "\nimport pathlib\n"
        "pathlib.Path(os.environ['SKYSWEEP_OUTPUT_DIR'], 'metrics.json').write_text("
        "json.dumps({'eval/loss': lr * 1000}))\n"
    )
    store = (tmp_path / "store").as_uri()
    _, result = _up(_sample(tmp_path / "task", script), store, lab_bin)
    values = {t["params"]["lr"]: t["value"] for t in result["trials"]}
    assert values == {lr: pytest.approx(lr * 1000) for lr in (1e-2, 1e-3, 1e-4)}
    assert result["best"]["params"]["lr"] == 1e-4
    log = run_cli(
        "logs", result["sweep_id"], result["best"]["trial_id"], "--store", store, "--no-follow"
    )
    assert "wrote metrics.json itself; it is kept" in log.stdout


def test_the_transformerlab_example_runs_and_ranks_the_designed_best(
    tmp_path: Path, isolated_home: Path, lab_bin: Path
) -> None:
    store = (tmp_path / "store").as_uri()
    _, result = _up(EXAMPLES / "transformerlab" / "task.yaml", store, lab_bin)
    assert [t["status"] for t in result["trials"]] == ["succeeded"] * 3
    assert result["best"]["params"]["learning_rate"] == 3e-5
    log = run_cli(
        "logs", result["sweep_id"], result["best"]["trial_id"], "--store", store, "--no-follow"
    )
    assert "MODEL_NAME in the environment: HuggingFaceTB/SmolLM-135M-Instruct" in log.stdout


def _form_fields_task(tmp_path: Path) -> Path:
    """The form-field task in a folder of its own, with a job that keeps its environment
    (env.json) and reports a metric."""
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "task.yaml").write_text(FORM_FIELDS.read_text())
    (folder / "train.py").write_text(
        "import json, os, pathlib\n"
        "out = pathlib.Path(os.environ['SKYSWEEP_OUTPUT_DIR'])\n"
        "(out / 'env.json').write_text(json.dumps(dict(os.environ)))\n"
        "(out / 'metrics.json').write_text('{\"eval/loss\": 1}')\n"
    )
    return folder


def test_form_fields_reach_the_job_under_their_name_and_env_var(
    tmp_path: Path, isolated_home: Path
) -> None:
    folder = _form_fields_task(tmp_path)
    store = (tmp_path / "store").as_uri()
    done = run_cli(
        "up", str(folder / "task.yaml"), "--local", "--yes", "--store", store,
        "--output", "json", "--param", "model_name=gpt2", "--param", "hf_token=hf_s3cr3t",
    )  # fmt: skip
    assert done.code == 0, done
    result = json.loads(done.stdout)
    sweep_dir = tmp_path / "store" / result["sweep_id"]
    (trial,) = result["trials"]
    env = json.loads((sweep_dir / "trials" / trial["trial_id"] / "env.json").read_text())
    assert env["model_name"] == env["MODEL_NAME"] == "gpt2"
    assert env["dataset"] == "Trelis/touch-rugby-rules"
    assert env["epochs"] == "2"  # value wins over default
    assert env["hf_token"] == env["HF_TOKEN"] == "hf_s3cr3t"
    assert json.loads(env["SKYSWEEP_PARAMS"]) == {
        "model_name": "gpt2",
        "dataset": "Trelis/touch-rugby-rules",
        "epochs": 2,
    }
    # the password's value is nowhere in the store but the job's own output
    for path in sweep_dir.rglob("*"):
        if path.is_file() and path.name != "env.json":
            assert b"hf_s3cr3t" not in path.read_bytes(), path
    assert "hf_s3cr3t" not in done.stdout + done.stderr


def test_a_required_form_field_without_a_value_names_the_field_and_the_flag(
    tmp_path: Path, isolated_home: Path
) -> None:
    for command in (["render", str(FORM_FIELDS), "--out", str(tmp_path / "specs")],
                    ["up", str(FORM_FIELDS), "--local", "--yes", "--dry-run"]):  # fmt: skip
        done = run_cli(*command)
        assert done.code == 2, done
        assert "Traceback" not in done.stderr
        for part in ("'model_name'", "'Model'", "The Hugging Face model to fine-tune",
                     "--param model_name=VALUE"):  # fmt: skip
            assert part in done.stderr, (part, done.stderr)
    assert not (tmp_path / "specs").exists()


def test_given_with_param_a_form_field_task_renders_without_its_password(
    tmp_path: Path, isolated_home: Path
) -> None:
    out = tmp_path / "specs"
    done = run_cli(
        "render", str(FORM_FIELDS), "--out", str(out),
        "--param", "model_name=gpt2", "--param", "hf_token=hf_s3cr3t",
    )  # fmt: skip
    assert done.code == 0, done
    (spec_file,) = out.glob("*.yaml")
    text = spec_file.read_text()
    assert "hf_s3cr3t" not in text
    spec = yaml.safe_load(text)
    assert spec["envs"]["MODEL_NAME"] == spec["envs"]["model_name"] == "gpt2"
    assert spec["secrets"] == {"hf_token": None, "HF_TOKEN": None}


@pytest.mark.parametrize("path", sorted(COMPAT.glob("*.yaml")), ids=lambda p: p.stem)
def test_compat_files_with_required_fields_need_param(path: Path, tmp_path: Path) -> None:
    """Each Transformer Lab file renders; one with required form fields only with --param."""
    from skysweep.errors import UsageError
    from skysweep.load import load
    from skysweep.task import is_form_field

    raw = yaml.safe_load(path.read_text()).get("parameters") or {}
    required = [
        n
        for n, f in raw.items()
        if is_form_field(f) and f.get("required") and f.get("value", f.get("default")) in ("", None)
    ]
    if required:
        with pytest.raises(UsageError, match="--param"):
            load(path)
    given = {name: "x" for name in required}
    task = load(path, param_overrides=given, secret_values={})
    assert set(given) <= set(task.parameters) | set(task.envs)


def test_structured_values_keep_stable_trial_ids(tmp_path: Path) -> None:
    from skysweep.expand import expand
    from skysweep.load import load

    task = _sample(tmp_path / "task")
    first = [t.trial_id for t in expand(load(task))]
    again = [t.trial_id for t in expand(load(task))]
    assert first == again and len(set(first)) == 3
    reordered = SAMPLE_TASK.replace(
        '[a red fox, "a cat, sleeping"]', '["a cat, sleeping", a red fox]'
    )
    other = [t.trial_id for t in expand(load(_sample(tmp_path / "other", task=reordered)))]
    assert set(other).isdisjoint(first)  # a list's order is part of its value


def test_a_secret_in_run_and_setup_reaches_the_job_and_no_file(
    tmp_path: Path, isolated_home: Path
) -> None:
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "task.yaml").write_text(
        "name: secret-run\n"
        # The job shows a digest of what it got, so the value itself is in no file.
        'setup: printf %s "{{secret._API_TOKEN}}" | sha256sum > setup-saw\n'
        "run: |\n"
        '  printf %s "{{secret._API_TOKEN}}" | sha256sum > "$SKYSWEEP_OUTPUT_DIR/run-saw"\n'
        '  cp setup-saw "$SKYSWEEP_OUTPUT_DIR/setup-saw"\n'
        """  echo '{"eval/loss": 1}' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"\n"""
    )
    store = (tmp_path / "store").as_uri()
    token = "tok-" + os.urandom(8).hex()
    digest = hashlib.sha256(token.encode()).hexdigest()
    done = run_cli(
        "up", str(folder / "task.yaml"), "--local", "--yes", "--store", store, "--output",
        "json", env={"API_TOKEN": token},
    )  # fmt: skip
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert result["trials"][0]["status"] == "succeeded"
    sweep_dir = tmp_path / "store" / result["sweep_id"]
    out = sweep_dir / "trials" / result["trials"][0]["trial_id"]
    assert (out / "run-saw").read_text().split()[0] == digest
    assert (out / "setup-saw").read_text().split()[0] == digest
    for path in [*sweep_dir.rglob("*"), *(isolated_home / ".skysweep").rglob("*")]:
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path

    rendered = run_cli("render", str(folder / "task.yaml"), "--out", str(tmp_path / "specs"))
    assert rendered.code == 0, rendered
    (spec_file,) = (tmp_path / "specs").glob("*.yaml")
    spec = yaml.safe_load(spec_file.read_text())
    assert "${SKYSWEEP_SECRET__API_TOKEN}" in spec["run"] and token not in spec_file.read_text()
    assert spec["secrets"] == {"SKYSWEEP_SECRET__API_TOKEN": None}
    missing = run_cli("up", str(folder / "task.yaml"), "--local", "--yes", "--store", store)
    assert missing.code == 2 and "_API_TOKEN" in missing.stderr


def test_a_password_field_comes_from_the_environment_and_is_never_swept(
    tmp_path: Path, isolated_home: Path
) -> None:
    folder = _form_fields_task(tmp_path)
    task = str(folder / "task.yaml")
    missing = run_cli("up", task, "--local", "--yes", "--dry-run", "--param", "model_name=gpt2")
    assert missing.code == 2, missing
    assert "'Hugging Face token'" in missing.stderr
    assert "set HF_TOKEN in the environment" in missing.stderr
    assert "--sweep hf_token" not in missing.stderr  # a swept value is written in the records
    store = (tmp_path / "store").as_uri()
    done = run_cli(
        "up", task, "--local", "--yes", "--store", store, "--output", "json",
        "--param", "model_name=gpt2", env={"HF_TOKEN": "hf_fr0m_env"},
    )  # fmt: skip
    assert done.code == 0, done
    result = json.loads(done.stdout)
    sweep_dir = tmp_path / "store" / result["sweep_id"]
    (trial,) = result["trials"]
    env = json.loads((sweep_dir / "trials" / trial["trial_id"] / "env.json").read_text())
    assert env["hf_token"] == env["HF_TOKEN"] == "hf_fr0m_env"
    for path in sweep_dir.rglob("*"):
        if path.is_file() and path.name != "env.json":
            assert b"hf_fr0m_env" not in path.read_bytes(), path
