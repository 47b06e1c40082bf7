"""Stage 3, render: trials become SkyPilot task specs that SkyPilot itself accepts.

Every spec here goes through the real ``sky.Task.from_yaml_config``; the job wrapper is
executed with bash exactly as a job would run it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import COMPAT, EXAMPLES, run_cli
from test_load import REFERENCE_JSON, REFERENCE_YAML

from skysweep.backends import get_backend
from skysweep.errors import UsageError
from skysweep.expand import Trial, expand
from skysweep.launch import render_sweep
from skysweep.load import load
from skysweep.render import Placement, RenderedTrial, render, resolve_secrets
from skysweep.store import FileStore
from skysweep.task import TaskSpec, parameter_text

BUCKET_SWEEP = "s3://bucket/sweeps/sid"
MOUNTED = Placement.mounted(BUCKET_SWEEP)


@pytest.fixture(scope="module")
def sky() -> Iterator[ModuleType]:
    import sky as sky_module  # ~2 s, once for the module

    yield sky_module


def accepted(sky: ModuleType, spec: dict[str, Any]) -> Any:
    """SkyPilot's own parser; it consumes the mapping, so give it a copy."""
    return sky.Task.from_yaml_config(copy.deepcopy(spec))


def task_of(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate({"name": "t", "run": "echo hi", **fields})


def render_task(
    task: TaskSpec, placement: Placement = MOUNTED, *, spread: bool = False, sweep_id: str = "sid"
) -> list[RenderedTrial]:
    return render(
        task,
        expand(task),
        sweep_id=sweep_id,
        placement=placement,
        task_dir=Path("/src/project"),
        spread=spread,
    )


def one_spec(task: TaskSpec, placement: Placement = MOUNTED) -> dict[str, Any]:
    (item,) = render_task(task, placement)
    return item.spec


def task_files(tmp_path: Path) -> list[Path]:
    (tmp_path / "ref").mkdir(exist_ok=True)
    ref_json = tmp_path / "ref" / "task.json"
    ref_yaml = tmp_path / "ref" / "task.yaml"
    ref_json.write_text(REFERENCE_JSON)
    ref_yaml.write_text(REFERENCE_YAML)
    return [
        *sorted(COMPAT.glob("*.yaml")),
        ref_json,
        ref_yaml,
        EXAMPLES / "quickstart" / "task.yaml",
        EXAMPLES / "quickstart" / "task.json",
    ]


# --- every real file renders into specs SkyPilot accepts -------------------------------


@pytest.mark.parametrize(
    "placement", [MOUNTED, Placement("/tmp/sweep-dir")], ids=["s3-mount", "local"]
)
def test_every_known_task_file_renders_into_valid_specs(
    sky: ModuleType, tmp_path: Path, placement: Placement
) -> None:
    files = task_files(tmp_path)
    assert len(files) >= 16
    for path in files:
        task = load(path)
        rendered = render_task(task, placement)
        assert len(rendered) == len(expand(task)) >= 1
        for item in rendered:
            parsed = accepted(sky, item.spec)
            assert parsed.name == f"sid-{item.trial.trial_id}", path
            assert parsed.envs["SKYSWEEP_TRIAL_ID"] == item.trial.trial_id
            # the YAML text we write is the same spec
            assert yaml.safe_load(item.to_yaml()) == item.spec, path


def test_render_sweep_for_both_backends(sky: ModuleType, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    task_file = EXAMPLES / "quickstart" / "task.yaml"
    task = load(task_file)
    task_dir = task_file.parent.resolve()
    rendered = render_sweep(
        task,
        expand(task),
        sweep_id="qs",
        backend=get_backend("local"),
        store=store,
        task_dir=task_dir,
    )
    assert len(rendered) == 9
    for item in rendered:
        accepted(sky, item.spec)
        assert item.spec["workdir"] == str(task_file.parent.resolve())
        assert item.spec["envs"]["SKYSWEEP_OUTPUT_DIR"] == str(
            tmp_path / "store" / "qs" / "trials" / item.trial.trial_id
        )
        assert "file_mounts" not in item.spec
    with pytest.raises(UsageError, match="needs an object store"):
        render_sweep(
            task,
            expand(task),
            sweep_id="qs",
            backend=get_backend("sky"),
            store=store,
            task_dir=task_dir,
        )


# --- the resource mapping ----------------------------------------------------------------


def test_resources_map_onto_skypilot_keys(sky: ModuleType) -> None:
    spec = one_spec(
        task_of(
            resources={
                "cpus": "4+",
                "memory": 16,
                "accelerators": "A100:2",
                "disk_space": "200GB",
                "use_spot": True,
                "image_id": "docker:python:3.11-slim",
                "num_nodes": 2,
            }
        )
    )
    assert spec["resources"] == {
        "cpus": "4+",
        "memory": 16,
        "accelerators": "A100:2",
        "use_spot": True,
        "image_id": "docker:python:3.11-slim",
        "disk_size": 200,
    }
    assert spec["num_nodes"] == 2
    parsed = accepted(sky, spec)
    (res,) = list(parsed.resources)
    assert (res.cpus, res.memory, res.accelerators) == ("4+", "16", {"A100": 2})
    assert (res.disk_size, res.use_spot, parsed.num_nodes) == (200, True, 2)
    assert res.image_id == {None: "docker:python:3.11-slim"}


def test_disk_space_as_a_number_and_instance_type(sky: ModuleType) -> None:
    spec = one_spec(task_of(resources={"disk_space": 64, "instance_type": "m6i.large"}))
    assert spec["resources"] == {"disk_size": 64, "instance_type": "m6i.large"}
    (res,) = list(accepted(sky, spec).resources)
    assert (res.disk_size, res.instance_type) == (64, "m6i.large")


@pytest.mark.parametrize(
    ("given", "infra", "where"),
    [
        ({"cloud": "aws"}, "aws", ("AWS", None, None)),
        (
            {"cloud": "gcp", "region": "us-central1"},
            "gcp/us-central1",
            ("GCP", "us-central1", None),
        ),
        (
            {"cloud": "gcp", "region": "us-central1", "zone": "us-central1-a"},
            "gcp/us-central1/us-central1-a",
            ("GCP", "us-central1", "us-central1-a"),
        ),
        ({"cloud": "aws", "zone": "us-east-1a"}, "aws/*/us-east-1a", ("AWS", None, "us-east-1a")),
        ({"region": "us-east-1"}, "*/us-east-1", (None, "us-east-1", None)),
    ],
)
def test_cloud_region_zone_become_infra(
    sky: ModuleType, given: dict[str, str], infra: str, where: tuple[str | None, ...]
) -> None:
    spec = one_spec(task_of(resources=given))
    assert spec["resources"] == {"infra": infra}
    (res,) = list(accepted(sky, spec).resources)
    cloud = type(res.cloud).__name__ if res.cloud is not None else None
    assert (cloud, res.region, res.zone) == where


def test_infra_list_is_failover_by_default(sky: ModuleType) -> None:
    spec = one_spec(task_of(resources={"infra": ["aws", "gcp", "k8s"], "cpus": 2}))
    assert spec["resources"] == {
        "cpus": 2,
        "any_of": [{"infra": "aws"}, {"infra": "gcp"}, {"infra": "k8s"}],
    }
    parsed = accepted(sky, spec)
    assert isinstance(parsed.resources, set) and len(parsed.resources) == 3


def test_infra_list_ordered_is_a_preference(sky: ModuleType) -> None:
    spec = one_spec(task_of(resources={"infra": ["gcp", "aws"], "infra_order": "ordered"}))
    assert spec["resources"] == {"ordered": [{"infra": "gcp"}, {"infra": "aws"}]}
    parsed = accepted(sky, spec)
    assert isinstance(parsed.resources, list)
    assert [type(r.cloud).__name__ for r in parsed.resources] == ["GCP", "AWS"]


def test_one_infra_is_plain(sky: ModuleType) -> None:
    assert one_spec(task_of(resources={"infra": ["k8s"]}))["resources"] == {"infra": "k8s"}
    assert one_spec(task_of(resources={"infra": "aws/us-east-1"}))["resources"] == {
        "infra": "aws/us-east-1"
    }


def test_spread_assigns_infra_round_robin(sky: ModuleType) -> None:
    task = task_of(
        resources={"infra": ["aws", "gcp", "k8s"]}, sweeps={"sweep_config": {"lr": [1, 2, 3, 4, 5]}}
    )
    rendered = render_task(task, spread=True)
    assert [r.spec["resources"] for r in rendered] == [
        {"infra": i} for i in ("aws", "gcp", "k8s", "aws", "gcp")
    ]
    for item in rendered:
        accepted(sky, item.spec)


def test_swept_accelerators_reach_each_spec(sky: ModuleType) -> None:
    task = task_of(
        resources={"cpus": 4, "accelerators": "T4:1"},
        sweeps={"sweep_config": {"resources.accelerators": ["A100:1", "H100:8"]}},
    )
    rendered = render_task(task)
    assert [r.spec["resources"] for r in rendered] == [
        {"cpus": 4, "accelerators": "A100:1"},
        {"cpus": 4, "accelerators": "H100:8"},
    ]
    assert [next(iter(accepted(sky, r.spec).resources)).accelerators for r in rendered] == [
        {"A100": 1},
        {"H100": 8},
    ]


def test_no_resources_is_skypilot_defaults(sky: ModuleType) -> None:
    spec = one_spec(task_of())
    assert "resources" not in spec and "num_nodes" not in spec
    assert accepted(sky, spec).num_nodes == 1


# --- the git checkout and the start folder ------------------------------------------------


def test_github_repo_becomes_workdir_and_start_folder(sky: ModuleType) -> None:
    spec = one_spec(load(COMPAT / "mnist-train.yaml"))
    assert spec["workdir"] == {"url": "https://github.com/transformerlab/transformerlab-app"}
    assert spec["setup"].startswith("cd api/transformerlab/galleries/examples\n")
    assert (
        "(\ncd api/transformerlab/galleries/examples\npython mnist-train/mnist_train.py\n)"
        in spec["run"]
    )
    parsed = accepted(sky, spec)
    assert parsed.workdir == {"url": "https://github.com/transformerlab/transformerlab-app"}

    branch = one_spec(
        task_of(
            github_repo_url="https://github.com/o/r",
            github_repo_branch="dev",
            github_repo_dir="mnist-train",
        )
    )
    assert branch["workdir"] == {"url": "https://github.com/o/r", "ref": "dev"}
    assert "cd " not in branch["run"]  # the folder is at the top of the checkout already
    assert accepted(sky, branch).workdir == {"url": "https://github.com/o/r", "ref": "dev"}


def test_without_a_repo_the_workdir_is_the_task_folder() -> None:
    spec = one_spec(task_of())
    assert spec["workdir"] == "/src/project"


def test_the_run_starts_in_the_parent_of_github_repo_dir(tmp_path: Path) -> None:
    """``python mnist-train/train.py`` resolves in a checkout, as in Transformer Lab."""
    checkout = tmp_path / "checkout"
    script = checkout / "api" / "examples" / "mnist-train" / "train.py"
    script.parent.mkdir(parents=True)
    script.write_text("import os\nopen('ran-here.txt', 'w').write(os.getcwd())\n")
    task = task_of(
        github_repo_url="https://github.com/o/r",
        github_repo_dir="api/examples/mnist-train",
        run="python3 mnist-train/train.py",
    )
    item = render_task(task, Placement(str(tmp_path / "sweep")))[0]
    done = run_job(item, cwd=checkout)
    assert done.returncode == 0, done.stderr
    assert (checkout / "api" / "examples" / "ran-here.txt").read_text() == str(
        checkout / "api" / "examples"
    )


# --- what a job sees ------------------------------------------------------------------------


def test_envs_hold_parameters_as_strings_and_the_contract(sky: ModuleType) -> None:
    task = task_of(
        envs={"PLAIN": "x"},
        parameters={"epochs": 10, "fp8": True, "lr": 1e-5},
        sweeps={"sweep_config": {"bs": [4, 8]}},
    )
    rendered = render_task(task, sweep_id="my-sweep")
    for item, bs in zip(rendered, ("4", "8"), strict=True):
        envs = item.spec["envs"]
        assert {k: envs[k] for k in ("PLAIN", "epochs", "fp8", "lr", "bs")} == {
            "PLAIN": "x",
            "epochs": "10",
            "fp8": "true",
            "lr": "1e-05",
            "bs": bs,
        }
        assert all(isinstance(v, str) for v in envs.values())
        assert json.loads(envs["SKYSWEEP_PARAMS"]) == item.trial.params
        assert envs["SKYSWEEP_SWEEP_ID"] == "my-sweep"
        assert envs["SKYSWEEP_TRIAL_ID"] == item.trial.trial_id
        assert envs["SKYSWEEP_OUTPUT_DIR"] == (
            f"/skysweep/store/sweeps/sid/trials/{item.trial.trial_id}"
        )
        assert accepted(sky, item.spec).envs["bs"] == bs


def test_secrets_are_references_only(sky: ModuleType) -> None:
    task = load(COMPAT / "trl-training-evals.yaml")
    (item,) = render_task(task)
    assert item.spec["secrets"] == {"HF_TOKEN": None, "WANDB_API_KEY": None}
    assert "HF_TOKEN" not in item.spec["envs"] and "WANDB_API_KEY" not in item.spec["envs"]
    assert item.spec["envs"]["WANDB_PROJECT"] == "trl-training-project"
    text = item.to_yaml()
    assert "{{" not in text and "secret." not in text
    parsed = accepted(sky, item.spec)
    assert "HF_TOKEN" not in parsed.envs


def test_resolve_secrets_from_the_environment() -> None:
    task = task_of(envs={"HF_TOKEN": "{{secret._HF_TOKEN}}", "AUTH": "Bearer {{ secret.API }}"})
    (item,) = render_task(task)
    text_before = item.to_yaml()
    values = resolve_secrets(item, {"HF_TOKEN": "hf-123", "API": "k-9"})
    assert values == {"HF_TOKEN": "hf-123", "AUTH": "Bearer k-9"}
    # the exact name wins over the name without underscores
    assert resolve_secrets(item, {"_HF_TOKEN": "a", "HF_TOKEN": "b", "API": "c"})["HF_TOKEN"] == "a"
    # filled in memory only: the spec still holds no value
    assert item.to_yaml() == text_before and "hf-123" not in text_before
    with pytest.raises(UsageError, match=r"secret 'API' \(for env AUTH\) is not set") as caught:
        resolve_secrets(item, {"HF_TOKEN": "hf-123"})
    assert caught.value.exit_code == 2
    assert "export API=" in str(caught.value)


def test_store_mount_for_an_s3_placement(sky: ModuleType) -> None:
    spec = one_spec(task_of())
    # SkyPilot mounts whole buckets only: the bucket is mounted, the job writes under the prefix
    assert spec["file_mounts"] == {
        "/skysweep/store": {"source": "s3://bucket", "mode": "MOUNT_CACHED"}
    }
    assert spec["envs"]["SKYSWEEP_SWEEP_DIR"] == "/skysweep/store/sweeps/sid"
    parsed = accepted(sky, spec)
    storage = parsed.storage_mounts["/skysweep/store"]
    assert storage.mode.name == "MOUNT_CACHED"
    assert storage.source == "s3://bucket"
    root = Placement.mounted("r2://bucket")
    assert (root.mount_source, root.sweep_dir) == ("r2://bucket", "/skysweep/store")
    assert "file_mounts" not in one_spec(task_of(), Placement("/tmp/x"))


# --- running the rendered job script ---------------------------------------------------------


def run_job(
    item: RenderedTrial, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the spec's ``run`` as SkyPilot does: a bash script with the spec's envs."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), **item.spec["envs"], **(extra_env or {})}
    return subprocess.run(
        ["bash", "-c", item.spec["run"]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED2`",
    "'; touch PWNED3; echo '",
    '" && touch PWNED4 && echo "',
    "line one\nline two\n$(touch PWNED5)",
    "{{ name }} ${HOME} $SKYSWEEP_TRIAL_ID \\ ; | & > out.txt",
    "",
]


def test_hostile_parameter_values_arrive_verbatim_and_run_nothing(
    sky: ModuleType, tmp_path: Path
) -> None:
    run = (
        'python3 -c \'import os, json; json.dump({"p": os.environ["p"], '
        '"all": json.loads(os.environ["SKYSWEEP_PARAMS"])}, '
        'open(os.environ["SKYSWEEP_TRIAL_ID"] + ".json", "w"))\''
    )
    task = task_of(
        name="hostile $(touch PWNED6)",
        run=run,
        parameters={"base": "$(id)"},
        sweeps={"sweep_config": {"p": HOSTILE}},
    )
    rendered = render_task(task, Placement(str(tmp_path / "sweep")))
    assert len(rendered) == len(HOSTILE)
    work = tmp_path / "work"
    work.mkdir()
    for item in rendered:
        accepted(sky, item.spec)
        # the YAML file a user would launch holds the same values
        reread = yaml.safe_load(item.to_yaml())
        assert reread["envs"]["p"] == item.trial.params["p"]
        assert item.trial.params["p"] not in reread["run"] or item.trial.params["p"] == ""
        done = run_job(RenderedTrial(item.trial, reread), cwd=work)
        assert done.returncode == 0, done.stderr
        seen = json.loads((work / f"{item.trial.trial_id}.json").read_text())
        assert seen == {
            "p": item.trial.params["p"],
            "all": {"base": "$(id)", "p": item.trial.params["p"]},
        }
    leaked = sorted(p.name for p in tmp_path.rglob("PWNED*"))
    assert leaked == []


def test_wrapper_records_success(tmp_path: Path) -> None:
    task = task_of(
        run='echo training\necho \'{"eval/loss": 0.5}\' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"'
    )
    sweep_dir = tmp_path / "sweep"
    (item,) = render_task(task, Placement(str(sweep_dir)))
    done = run_job(item, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "training" in done.stdout
    tid = item.trial.trial_id
    status = json.loads((sweep_dir / "trials" / tid / "status.json").read_text())
    assert status["trial_id"] == tid
    assert (status["state"], status["exit_code"]) == ("succeeded", 0)
    assert status["started_at"].endswith("Z") and status["finished_at"].endswith("Z")
    assert json.loads((sweep_dir / "finished" / f"{tid}.json").read_text()) == status
    assert json.loads((sweep_dir / "trials" / tid / "metrics.json").read_text()) == {
        "eval/loss": 0.5
    }
    assert not list(sweep_dir.rglob("*.tmp"))


@pytest.mark.parametrize("code", [1, 3, 42])
def test_wrapper_records_failure_with_its_exit_code(tmp_path: Path, code: int) -> None:
    task = task_of(run=f"echo about to fail >&2\nexit {code}\necho never")
    sweep_dir = tmp_path / "sweep"
    (item,) = render_task(task, Placement(str(sweep_dir)))
    done = run_job(item, cwd=tmp_path)
    assert done.returncode == code
    assert "never" not in done.stdout and "about to fail" in done.stderr
    tid = item.trial.trial_id
    status = json.loads((sweep_dir / "trials" / tid / "status.json").read_text())
    assert (status["state"], status["exit_code"]) == ("failed", code)
    assert json.loads((sweep_dir / "finished" / f"{tid}.json").read_text())["exit_code"] == code


def test_only_node_zero_of_a_multinode_trial_reports(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    (item,) = render_task(task_of(resources={"num_nodes": 2}), Placement(str(sweep_dir)))
    done = run_job(item, cwd=tmp_path, extra_env={"SKYPILOT_NODE_RANK": "1"})
    assert done.returncode == 0
    assert not sweep_dir.exists()
    assert run_job(item, cwd=tmp_path, extra_env={"SKYPILOT_NODE_RANK": "0"}).returncode == 0
    assert (sweep_dir / "finished" / f"{item.trial.trial_id}.json").exists()


def test_heredoc_run_of_the_multinode_example_runs(tmp_path: Path) -> None:
    task = load(COMPAT / "multinode-example.yaml").model_copy(
        update={"run": load(COMPAT / "multinode-example.yaml").run.replace("python ", "python3 ")}
    )
    (item,) = render_task(task, Placement(str(tmp_path / "sweep")))
    done = run_job(item, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "hostname:" in done.stdout and done.stdout.rstrip().endswith("done")


# --- the render command -------------------------------------------------------------------


def test_render_command_writes_one_valid_yaml_per_trial(
    sky: ModuleType, tmp_path: Path, isolated_home: Path
) -> None:
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        REFERENCE_YAML.replace(
            "run: python train.py", "run: python train.py\nenvs:\n  TOKEN: '{{secret.MY_TOKEN}}'"
        )
    )
    out = tmp_path / "specs"
    done = run_cli(
        "render", str(task_file), "--out", str(out), env={"MY_TOKEN": "very-secret-value"}
    )
    assert done.code == 0, done
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 6
    trials: list[Trial] = expand(load(task_file))
    assert [f.name.split("-", 1)[1] for f in files] == [f"{t.trial_id}.yaml" for t in trials]
    for path, trial in zip(files, trials, strict=True):
        text = path.read_text()
        assert "very-secret-value" not in text and "{{" not in text
        parsed = sky.Task.from_yaml(str(path))
        assert parsed.envs["SKYSWEEP_TRIAL_ID"] == trial.trial_id
        # the value as the file wrote it, not Python's repr (1e-05)
        assert parsed.envs["learning_rate"] == parameter_text(trial.params["learning_rate"])
        assert parsed.envs["learning_rate"] in ("1e-5", "3e-5", "5e-5")
        assert yaml.safe_load(text)["secrets"] == {"TOKEN": None}
    assert "6 trial spec(s) written" in done.stderr


# --- any Unicode, anywhere ----------------------------------------------------------------

# Beyond the BMP (JSON's surrogate pairs, which YAML rejects), YAML line breaks (U+2028,
# U+0085), characters YAML does not allow raw (DEL, C1, U+FFFE), a BOM, and plain accents.
UNICODE = [
    "rocket 🚀",
    "👩\u200d🔬 \U0001d518\U0001d52b\U0001d526",  # a ZWJ sequence, math letters
    "日本語 é ü ß",
    "sep\u2028nel\x85end",
    "del\x7f c1\x9b\ufeff\ufffe",
    "multi\nline 🚀\n",
]


def unicode_task_text(run: str) -> str:
    """A task file with non-ASCII text in every field a user writes."""
    return json.dumps(
        {
            "name": "räkete 🚀",
            "setup": "echo 'setup 🚀 ü'\necho done",
            "run": run,
            "envs": {"GREETING": "héllo 👋", "TOKEN": "{{secret.MY_TOKEN}}"},
            "parameters": {"base": "ü🚀"},
            "sweeps": {"sweep_config": {"p": UNICODE}},
        },
        ensure_ascii=False,
    )


DUMP_ENV = (
    "python3 -c 'import os, json; json.dump({k: os.environ[k] for k in "
    '("p", "base", "GREETING", "SKYSWEEP_PARAMS")}, '
    'open(os.environ["SKYSWEEP_OUTPUT_DIR"] + "/seen.json", "w"))\'\n'
    "echo '🚀 done'"
)


def test_any_unicode_renders_and_reaches_the_job(sky: ModuleType, tmp_path: Path) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(unicode_task_text(DUMP_ENV), encoding="utf-8")
    task = load(task_file)
    rendered = render_task(task, Placement(str(tmp_path / "sweep")))
    assert [r.spec["envs"]["p"] for r in rendered] == UNICODE
    for item in rendered:
        envs = item.spec["envs"]
        assert (envs["base"], envs["GREETING"]) == ("ü🚀", "héllo 👋")
        assert json.loads(envs["SKYSWEEP_PARAMS"]) == {"base": "ü🚀", "p": envs["p"]}
        assert item.spec["setup"] == "echo 'setup 🚀 ü'\necho done"
        assert "echo '🚀 done'" in item.spec["run"]
        parsed = accepted(sky, item.spec)
        assert parsed.envs["p"] == envs["p"]
        text = item.to_yaml()
        assert yaml.safe_load(text) == item.spec
        if "\x85" not in envs["p"]:  # (PyYAML's block writer breaks a value with U+0085)
            assert "\nrun: |" in text  # the script stays a readable block, emoji and all
        done = run_job(item, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("🚀 done\n")
        seen = json.loads(
            (tmp_path / "sweep" / "trials" / item.trial.trial_id / "seen.json").read_text()
        )
        assert seen == {k: envs[k] for k in ("p", "base", "GREETING", "SKYSWEEP_PARAMS")}


def test_render_command_writes_unicode_specs(
    sky: ModuleType, tmp_path: Path, isolated_home: Path
) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(unicode_task_text(DUMP_ENV), encoding="utf-8")
    out = tmp_path / "specs"
    done = run_cli("render", str(task_file), "--out", str(out), env={"MY_TOKEN": "x"})
    assert done.code == 0, done
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(UNICODE)
    for path, value in zip(files, UNICODE, strict=True):
        parsed = sky.Task.from_yaml(str(path))
        assert parsed.envs["p"] == value
        assert parsed.envs["GREETING"] == "héllo 👋"
        assert json.loads(parsed.envs["SKYSWEEP_PARAMS"]) == {"base": "ü🚀", "p": value}
        assert parsed.setup == "echo 'setup 🚀 ü'\necho done"
        assert "echo '🚀 done'" in parsed.run
        if "\x85" not in value:
            assert "run: |" in path.read_text(encoding="utf-8")  # readable, not escaped


def test_up_local_runs_unicode_values_exactly(tmp_path: Path, isolated_home: Path) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(
        unicode_task_text(
            DUMP_ENV + '\necho \'{"eval/loss": 1}\' > "$SKYSWEEP_OUTPUT_DIR/metrics.json"'
        ),
        encoding="utf-8",
    )
    store = tmp_path / "store"
    done = run_cli(
        "up",
        str(task_file),
        "--local",
        "--yes",
        "--store",
        f"file://{store}",
        "--output",
        "json",
        env={"MY_TOKEN": "x"},
    )
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert sorted(t["status"] for t in result["trials"]) == ["succeeded"] * len(UNICODE)
    seen = [
        json.loads(path.read_text())
        for path in (store / result["sweep_id"] / "trials").glob("*/seen.json")
    ]
    assert sorted(s["p"] for s in seen) == sorted(UNICODE)
    for s in seen:
        assert (s["base"], s["GREETING"]) == ("ü🚀", "héllo 👋")
        assert json.loads(s["SKYSWEEP_PARAMS"]) == {"base": "ü🚀", "p": s["p"]}


# --- the render command's output folder and what render returns -----------------------------


def test_render_out_that_is_a_file_is_a_usage_error(tmp_path: Path, isolated_home: Path) -> None:
    taken = tmp_path / "specs.yaml"
    taken.write_text("mine\n")
    done = run_cli("render", str(EXAMPLES / "quickstart" / "task.yaml"), "--out", str(taken))
    assert done.code == 2, done
    assert str(taken) in done.stderr and "is a file" in done.stderr
    assert "folder" in done.stderr and "Traceback" not in done.stderr
    assert taken.read_text() == "mine\n"
    below = run_cli(
        "render", str(EXAMPLES / "quickstart" / "task.yaml"), "--out", str(taken / "specs")
    )
    assert below.code == 2, below
    assert str(taken / "specs") in below.stderr and "Traceback" not in below.stderr


@pytest.mark.parametrize(
    "broken",
    [
        {"envs": {"bad-name": "x"}},
        {"envs": {"lr": None}},  # a name every trial has, with no value
    ],
    ids=["env-name", "env-none"],
)
def test_validate_rejects_what_skypilot_rejects_past_the_first_trial(
    sky: ModuleType, broken: dict[str, Any]
) -> None:
    from skysweep.backends.sky import validate

    rendered = render_task(task_of(sweeps={"sweep_config": {"lr": [1, 2, 3]}}))
    validate(rendered)
    last = rendered[-1]
    spec = {**last.spec, **broken, "envs": {**last.spec["envs"], **broken.get("envs", {})}}
    with pytest.raises(ValueError):  # SkyPilot itself rejects it...
        accepted(sky, spec)
    with pytest.raises(UsageError, match=rf"trial {last.trial.trial_id}.*SkyPilot rejects") as ours:
        validate([*rendered[:-1], RenderedTrial(last.trial, spec)])  # ...and so do we
    assert ours.value.exit_code == 2


def test_trials_of_one_shape_share_no_mutable_part() -> None:
    """Specs are filled from one parsed shape; changing one trial's spec changes no other."""
    task = task_of(
        resources={"infra": ["aws", "gcp"], "cpus": 2}, sweeps={"sweep_config": {"lr": [1, 2]}}
    )
    first, second = render_task(task)
    first.spec["envs"]["lr"] = "changed"
    first.spec["resources"]["any_of"][0]["infra"] = "k8s"
    first.spec["file_mounts"]["/skysweep/store"]["mode"] = "COPY"
    assert second.spec["envs"]["lr"] == "2"
    assert second.spec["resources"]["any_of"][0] == {"infra": "aws"}
    assert second.spec["file_mounts"]["/skysweep/store"]["mode"] == "MOUNT_CACHED"


# --- many specs at once: the same bytes, the same verdicts --------------------------------

# Values whose YAML style libyaml picks by their content (plain, quoted, escaped, folded at
# width 100), a key too long to be a simple key, and the values dump_specs leaves to dump_spec.
AWKWARD = [
    "plain",
    "3",
    "1e-5",
    "yes",
    "null",
    "",
    " lead",
    "trail ",
    "a: b",
    "#hash",
    "- dash",
    "it's",
    '"quoted"',
    "{json: 1}",
    "tab\there",
    "rocket 🚀",
    "sep\u2028nel\x85end",
    "del\x7f c1\x9b\ufeff\ufffe",
    "word " * 40,
    "x" * 150 + " tail",
    '{"lr": ' + "1, " * 60 + "}",
    "multi\nline\n",
    "keep\n\n",
]


def awkward_specs() -> list[dict[str, Any]]:
    task = task_of(
        run="echo ü\necho done",
        envs={"k" * 130: "long key", "PLAIN": "same"},
        sweeps={"sweep_config": {"p": AWKWARD}},
    )
    specs = [item.spec for item in render_task(task)]
    specs[1]["name"] = "123"
    specs[2]["envs"]["p"] = None  # not a string: dump_spec's own path
    specs[3]["envs"]["NUMBER"] = 7
    specs[4]["run"] = "echo 🚀\necho done"  # beyond the BMP in a script: dump_spec's path
    return specs


def test_dump_specs_writes_what_dump_spec_writes_byte_for_byte() -> None:
    from skysweep.render import _batchable, _BlockDumper, dump_spec, dump_specs

    specs = awkward_specs()
    # not batched: None, 7 and the two multi-line values (the emoji script is seen later)
    assert sum(map(_batchable, specs)) == len(specs) - 4
    many = [
        item.spec
        for item in render_task(task_of(sweeps={"sweep_config": {"i": list(range(1200))}}))
    ]
    for group in (specs, many, [*many[:700], *specs, *many[700:]]):
        texts = list(dump_specs(group))
        assert texts == [dump_spec(spec) for spec in group]
    for spec, text in zip(specs, dump_specs(specs), strict=True):
        assert yaml.safe_load(text) == spec
        if "🚀" not in spec["run"]:  # (that one takes the Python emitter: see dump_spec)
            whole = yaml.dump(
                spec, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100
            )
            assert text == whole  # entry by entry is the whole spec at once, "|+" included


def test_background_validation_rejects_as_validate_does(sky: ModuleType) -> None:
    from skysweep.backends.sky import BackgroundValidation, validate

    rendered = render_task(task_of(sweeps={"sweep_config": {"lr": [1, 2, 3]}}))
    with BackgroundValidation() as validation:
        validation.send(rendered)
        validation.check()  # accepted
    last = rendered[-1]
    broken = [*rendered[:-1], RenderedTrial(last.trial, {**last.spec, "name": "bad name!"})]
    with pytest.raises(UsageError) as here:
        validate(broken)
    with BackgroundValidation() as validation:
        validation.send(broken)
        with pytest.raises(UsageError) as there:
            validation.check()
        assert validation._child is not None and validation._child.returncode == 0  # it answered
    assert str(there.value) == str(here.value)
    assert f"trial {last.trial.trial_id}" in str(there.value)


def test_render_command_files_are_exactly_dump_spec(tmp_path: Path, isolated_home: Path) -> None:
    from skysweep.render import dump_spec

    task_file = tmp_path / "task.json"
    task_file.write_text(unicode_task_text("echo hi"), encoding="utf-8")
    out = tmp_path / "specs"
    done = run_cli("render", str(task_file), "--out", str(out), env={"MY_TOKEN": "x"})
    assert done.code == 0, done
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(UNICODE)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert dump_spec(yaml.load(text, Loader=yaml.CSafeLoader)) == text


def test_a_rejected_render_leaves_out_as_it_was(tmp_path: Path, isolated_home: Path) -> None:
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        "name: rejected\nrun: echo hi\nresources:\n  cpus: lots\n"
        "sweeps:\n  sweep_config:\n    lr: [1, 2, 3]\n"
    )
    fresh = tmp_path / "new" / "specs"
    done = run_cli("render", str(task_file), "--out", str(fresh))
    assert done.code == 2, done
    assert "SkyPilot rejects" in done.stderr and "cpus" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()  # the folders it made are gone too

    kept = tmp_path / "kept"
    kept.mkdir()
    first = expand(load(task_file))[0]
    same_name = kept / f"{first.index:04d}-{first.trial_id}.yaml"
    same_name.write_text("mine\n")
    (kept / "notes.txt").write_text("notes\n")
    done = run_cli("render", str(task_file), "--out", str(kept))
    assert done.code == 2, done
    assert sorted(p.name for p in kept.iterdir()) == sorted([same_name.name, "notes.txt"])
    assert same_name.read_text() == "mine\n"


def test_render_replaces_a_spec_already_in_out(tmp_path: Path, isolated_home: Path) -> None:
    task_file = EXAMPLES / "quickstart" / "task.yaml"
    out = tmp_path / "specs"
    out.mkdir()
    first = expand(load(task_file))[0]
    there = out / f"{first.index:04d}-{first.trial_id}.yaml"
    there.write_text("an old spec\n")
    done = run_cli("render", str(task_file), "--out", str(out))
    assert done.code == 0, done
    spec = yaml.safe_load(there.read_text())
    assert spec["envs"]["SKYSWEEP_TRIAL_ID"] == first.trial_id
    assert len(list(out.glob("*.yaml"))) == len(expand(load(task_file)))
