"""Benchmark: CLI start time; rendering, validating and writing sweeps of 1k to 100k trials.

    python bench/render.py [--runs 7] [--trials 1000] [--sizes 1000,10000,100000]
                           [--sample 500] [--profile] [--importtime]

Prints, side by side in one run:
- ``skysweep --help`` wall time (median of ``--runs`` subprocess runs of the console script)
  against ``python -c pass`` (the interpreter's own start, the floor); target <= 0.3 s;
- load + expand + render of a ``--trials`` grid; target (render + validation) <= 3 s;
- ``import sky``, measured apart from validation;
- validation of every spec with ``sky.Task.from_yaml_config`` (the baseline), and
  skysweep's own ``validate`` (one full SkyPilot validation per distinct spec structure; the
  per-trial part, the name, checked with SkyPilot's own name rule), each with its per-trial
  cost;
- for each of ``--sizes`` (each in a fresh process, for its peak memory): what
  ``skysweep render --out`` does, stage by stage (load + expand + render, validate, YAML
  files written), wall and CPU seconds and peak RSS, beside the BASELINE: the approach
  before (the template rendered and its text parsed per trial, pure-Python ``yaml.dump``,
  SkyPilot's env schema run per trial), measured on ``--sample`` trials and scaled linearly.
``--profile`` adds the top of a cProfile of the full validation; ``--importtime`` the
heaviest imports of ``skysweep --help`` (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import math
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from skysweep.backends.sky import validate
from skysweep.expand import expand
from skysweep.load import load
from skysweep.render import (
    LAB_WORKSPACE,
    Placement,
    RenderedTrial,
    _FastLoader,
    _infra_list,
    _PyBlockDumper,
    _resources,
    _start_dir_command,
    _template,
    dump_specs,
    render,
)
from skysweep.task import SECRET_REFERENCE, TaskSpec, parameter_text

TARGET_HELP_S = 0.3
TARGET_RENDER_S = 3.0


def median_wall(command: Sequence[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def console_script() -> str:
    """The installed ``skysweep`` entry point itself (not a pyenv/asdf shim in front of it)."""
    script = Path(sysconfig.get_path("scripts")) / "skysweep"
    if not script.exists():
        sys.exit(f"no console script at {script}; pip install -e . first")
    return str(script)


def grid_task(folder: Path, trials: int) -> Path:
    """A task file whose sweep is a grid of about ``trials`` points over 3 parameters."""
    side = max(1, round(trials ** (1 / 3)))
    last = max(1, math.ceil(trials / (side * side)))
    path = folder / "grid.yaml"
    path.write_text(
        "name: bench-grid\nresources:\n  cpus: 4\n  memory: 16\n  accelerators: A100:1\n"
        "setup: pip install -r requirements.txt\nrun: python train.py\n"
        "envs:\n  WANDB_PROJECT: bench\n  HF_TOKEN: '{{secret.HF_TOKEN}}'\n"
        "parameters:\n  epochs: 3\n  model: gpt2\n"
        "sweeps:\n  sweep_config:\n"
        f"    learning_rate: {json.dumps([round(1e-5 * (i + 1), 8) for i in range(side)])}\n"
        f"    batch_size: {json.dumps([4 * (i + 1) for i in range(side)])}\n"
        f"    seed: {json.dumps(list(range(last)))}\n"
    )
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def validate_all(sky: Any, rendered: list[RenderedTrial]) -> None:
    """What skysweep does today: SkyPilot parses every spec."""
    for item in rendered:
        sky.Task.from_yaml_config(copy.deepcopy(item.spec))


def fast_path_is_faithful(
    sky: Any, validate: Callable[[list[RenderedTrial]], None], rendered: list[RenderedTrial]
) -> bool:
    """Both paths reject what SkyPilot rejects, in a trial past the first."""
    item = rendered[-1]
    broken = [
        {**item.spec, "envs": {**item.spec["envs"], "bad-name": "x"}},
        {**item.spec, "envs": {**item.spec["envs"], "lr": None}},
        {**item.spec, "envs": {**item.spec["envs"], "9lives": "x"}},
        {**item.spec, "envs": {**item.spec["envs"], "seed": None}},  # a name every trial has
    ]
    for spec in broken:
        trials = [*rendered[:-1], RenderedTrial(item.trial, spec, item.secret_envs)]
        try:
            sky.Task.from_yaml_config(copy.deepcopy(spec))
        except Exception:  # SkyPilot rejects it...
            try:
                validate(trials)
            except Exception:  # ...and so does the fast path
                continue
            return False
        else:
            return False  # the broken spec was not broken: the check itself is wrong
    return True


def heaviest_imports(command: Sequence[str], top: int) -> list[tuple[int, int, str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command], capture_output=True, text=True, check=True
    )
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            rows.append((int(match.group(2)), depth, match.group(4)))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument(
        "--whole", default="1000,10000", help="sizes for `skysweep render` as a whole process"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.sample)))
        return

    script = console_script()
    baseline = median_wall([sys.executable, "-c", "pass"], args.runs)
    help_time = median_wall([script, "--help"], args.runs)
    import_cli = median_wall([sys.executable, "-c", "import skysweep.cli"], args.runs)

    with tempfile.TemporaryDirectory() as folder:
        path = grid_task(Path(folder), args.trials)
        t_load, task = timed(lambda: load(path))
        t_expand, trials = timed(lambda: expand(task))
        t_render, rendered = timed(
            lambda: render(
                task,
                trials,
                sweep_id="bench-grid-20260101-000000-abcd",
                placement=Placement.mounted("s3://bucket/sweeps/bench-grid-20260101-000000-abcd"),
                task_dir=Path(folder),
            )
        )
    n = len(rendered)

    t_import, sky = timed(lambda: __import__("sky"))
    t_validate, _ = timed(lambda: validate_all(sky, rendered))
    t_fast, _ = timed(lambda: validate(rendered))
    full_checks = len(
        {
            json.dumps(
                {k: v for k, v in r.spec.items() if k not in ("name", "envs")}, sort_keys=True
            )
            for r in rendered
        }
    )
    faithful = fast_path_is_faithful(sky, validate, rendered)

    ms = 1000.0
    ours = t_load + t_expand + t_render
    rows = [
        ("python -c pass (floor)", baseline, None, None),
        ("skysweep --help", help_time, TARGET_HELP_S, None),
        ("  of which over the floor", help_time - baseline, None, None),
        ("python -c 'import skysweep.cli'", import_cli, None, None),
        (f"load ({n} trials)", t_load, None, None),
        ("expand", t_expand, None, t_expand / n),
        ("render", t_render, None, t_render / n),
        ("import sky (once)", t_import, None, None),
        ("validate all: sky.Task.from_yaml_config", t_validate, None, t_validate / n),
        (f"skysweep's validate ({full_checks} full)", t_fast, None, t_fast / n),
        ("render + validate all (no import)", ours + t_validate, TARGET_RENDER_S, None),
        ("render + skysweep's validate (no import)", ours + t_fast, TARGET_RENDER_S, None),
        ("render + validate all + import sky", ours + t_validate + t_import, TARGET_RENDER_S, None),
        (
            "render + skysweep's validate + import sky",
            ours + t_fast + t_import,
            TARGET_RENDER_S,
            None,
        ),
    ]
    print(f"{'measure':<44} {'seconds':>9} {'target':>8} {'per trial':>11}  ")
    for name, value, target, per in rows:
        verdict = "" if target is None else ("ok" if value <= target else "OVER")
        print(
            f"{name:<44} {value:9.3f} {'' if target is None else f'{target:8.1f}':>8} "
            f"{'' if per is None else f'{per * ms:8.3f} ms':>11}  {verdict}"
        )
    print(f"skysweep's validate rejects what SkyPilot rejects: {'yes' if faithful else 'NO'}")
    if args.sizes:
        scale_table([int(size) for size in args.sizes.split(",")], args.sample)
    if args.whole:
        whole_table([int(size) for size in args.whole.split(",")], max(1, args.runs // 2))

    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        validate_all(sky, rendered[:200])
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(14)
        print("\ncProfile of sky.Task.from_yaml_config x 200 (cumulative):")
        print(
            "\n".join(
                line
                for line in out.getvalue().splitlines()
                if "site-packages" in line or "ncalls" in line
            )
        )
    if args.importtime:
        print("\nheaviest imports of `skysweep --help` (cumulative us, depth, module):")
        for cumulative, depth, module in heaviest_imports(["-m", "skysweep", "--help"], 15):
            print(f"{cumulative:>9} {depth:>3}  {module}")


# --- sweeps of 1k to 100k trials, each size in a fresh process ---------------------------

SWEEP_ID = "bench-grid-20260101-000000-abcd"
PLACEMENT = Placement.mounted(f"s3://bucket/sweeps/{SWEEP_ID}")


def write_specs(rendered: list[RenderedTrial], out: Path, to_yaml: Callable[..., str]) -> None:
    """BASELINE: as ``skysweep render --out`` did: one YAML file per trial, by pathlib."""
    out.mkdir(parents=True, exist_ok=True)
    for item in rendered:
        path = out / f"{item.trial.index:04d}-{item.trial.trial_id}.yaml"
        path.write_text(to_yaml(item.spec), encoding="utf-8")


def write_specs_now(rendered: list[RenderedTrial], out: Path) -> None:
    """As ``skysweep render --out`` does: ``dump_specs``, one ``os.open`` a file."""
    out.mkdir(parents=True, exist_ok=True)
    folder = str(out)
    for item, text in zip(rendered, dump_specs(r.spec for r in rendered), strict=True):
        path = os.path.join(folder, f"{item.trial.index:04d}-{item.trial.trial_id}.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)


def render_before(task: TaskSpec, trials: list[Any], task_dir: Path) -> list[RenderedTrial]:
    """BASELINE: render as before this change: the whole template per trial, then parsed."""
    template = _template("task.yaml.j2")
    enter = _start_dir_command(task)
    secret_envs = {k: v for k, v in task.envs.items() if SECRET_REFERENCE.search(v)}
    plain_envs = {k: v for k, v in task.envs.items() if k not in secret_envs}
    wrapped_run = _template("run_wrapper.sh.j2").render(
        enter_start_dir=enter, run=task.run.rstrip("\n"), lab_workspace=LAB_WORKSPACE
    )
    infra_list = _infra_list(task)
    out = []
    for trial in trials:
        sweep_dir = PLACEMENT.sweep_dir
        envs = {
            **plain_envs,
            **{name: parameter_text(value) for name, value in trial.params.items()},
            "SKYSWEEP_PARAMS": json.dumps(trial.params, sort_keys=True),
            "SKYSWEEP_SWEEP_ID": SWEEP_ID,
            "SKYSWEEP_TRIAL_ID": trial.trial_id,
            "SKYSWEEP_SWEEP_DIR": sweep_dir,
            "SKYSWEEP_OUTPUT_DIR": f"{sweep_dir}/trials/{trial.trial_id}",
        }
        text = template.render(
            job_name=f"{SWEEP_ID}-{trial.trial_id}",
            workdir_git=None,
            workdir=str(task_dir),
            num_nodes=trial.resources.get("num_nodes", task.resources.num_nodes),
            resources=_resources(task, trial, infra_list, False),
            envs=envs,
            secrets=list(secret_envs),
            mount_source=PLACEMENT.mount_source,
            mount_point=PLACEMENT.mount_point,
            setup=task.setup,
            enter_start_dir=enter,
            wrapped_run=wrapped_run,
        )
        out.append(RenderedTrial(trial, yaml.load(text, Loader=_FastLoader), secret_envs))
    return out


def validate_before(rendered: list[RenderedTrial]) -> None:
    """BASELINE: the validation before this change: SkyPilot's env schema run per trial."""
    import jsonschema
    import sky
    from sky.utils import schemas

    envs_schema = schemas.get_task_schema()["properties"]["envs"]
    envs_validator = jsonschema.validators.validator_for(envs_schema)(envs_schema)
    checked: set[str] = set()
    for item in rendered:
        spec = item.spec
        shape = {k: v for k, v in spec.items() if k not in ("name", "envs")}
        key = json.dumps({**shape, "envs": sorted(spec["envs"])}, sort_keys=True, default=str)
        if key not in checked:
            sky.Task.from_yaml_config(copy.deepcopy(spec))
            checked.add(key)
            continue
        problem = jsonschema.exceptions.best_match(envs_validator.iter_errors(spec["envs"]))
        assert problem is None and sky.task._is_valid_name(spec["name"])


def dump_before(spec: dict[str, Any]) -> str:
    """BASELINE: the pure-Python emitter."""
    return yaml.dump(spec, Dumper=_PyBlockDumper, sort_keys=False, allow_unicode=True, width=100)


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def one_size(trials: int, sample: int) -> dict[str, Any]:
    """Run in a child process: the stages for one size, now and (sampled) before."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        task = load(grid_task(Path(folder), trials))
        t_import = cpu_timed(lambda: __import__("sky"))
        result["import sky"] = t_import[:2]
        if sample:
            every = expand(task)
            n = len(every)
            part = every[:sample]
            scale = n / len(part)
            wall, cpu, rendered = cpu_timed(lambda: render_before(task, part, Path(folder)))
            result["expand + render"] = (wall * scale, cpu * scale)
            wall, cpu, _ = cpu_timed(lambda: validate_before(rendered))
            result["validate"] = (wall * scale, cpu * scale)
            wall, cpu, _ = cpu_timed(
                lambda: write_specs(rendered, Path(folder) / "out", dump_before)
            )
            result["write YAML files"] = (wall * scale, cpu * scale)
            result["trials"] = n
            result["peak_rss_mb"] = None
            return result
        wall, cpu, rendered = cpu_timed(
            lambda: render(
                task, expand(task), sweep_id=SWEEP_ID, placement=PLACEMENT, task_dir=Path(folder)
            )
        )
        result["expand + render"] = (wall, cpu)
        result["validate"] = cpu_timed(lambda: validate(rendered))[:2]
        result["write YAML files"] = cpu_timed(
            lambda: write_specs_now(rendered, Path(folder) / "out")
        )[:2]
        result["trials"] = len(rendered)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def scale_table(sizes: list[int], sample: int) -> None:
    stages = ["expand + render", "validate", "write YAML files"]
    print(
        f"\nskysweep render --out, by sweep size (each a fresh process; BASELINE = before, "
        f"measured on {sample} trials and scaled; wall | cpu seconds; import sky apart)"
    )
    print(
        f"{'trials':>7} {'stage':<24} {'now wall':>9} {'now cpu':>8} "
        f"{'BASE wall':>10} {'BASE cpu':>9} {'ratio (cpu)':>11}"
    )
    for size in sizes:
        runs = {}
        for label, sampled in (("now", 0), ("before", sample)):
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--sample", str(sampled)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
        now, before = runs["now"], runs["before"]
        totals = [0.0, 0.0, 0.0, 0.0]
        for stage in stages:
            (nw, nc), (bw, bc) = now[stage], before[stage]
            totals = [totals[0] + nw, totals[1] + nc, totals[2] + bw, totals[3] + bc]
            print(
                f"{now['trials']:>7} {stage:<24} {nw:9.2f} {nc:8.2f} {bw:10.2f} {bc:9.2f} "
                f"{bc / nc:10.1f}x"
            )
        nw, nc, bw, bc = totals
        verdict = "ok" if nw <= TARGET_RENDER_S else "OVER"
        print(
            f"{now['trials']:>7} {'total':<24} {nw:9.2f} {nc:8.2f} {bw:10.2f} {bc:9.2f} "
            f"{bc / nc:10.1f}x  target {TARGET_RENDER_S:.0f} s wall at 10k: {verdict}"
        )
        iw, ic = now["import sky"]
        print(
            f"{'':>7} {'+ import sky':<24} {iw:9.2f} {ic:8.2f}   peak RSS now: "
            f"{now['peak_rss_mb']:.0f} MB"
        )


# --- `skysweep render` as a whole process ------------------------------------------------

# BASELINE: the render command's body before this change: SkyPilot imported and every spec
# checked before any file is written, then one dump_spec and one pathlib write a trial.
RENDER_BEFORE = """
import sys
from pathlib import Path
import skysweep.cli  # what the command pays for before its body runs
from skysweep.backends import get_backend
from skysweep.backends.sky import validate
from skysweep.expand import expand
from skysweep.launch import new_sweep_id, render_sweep
from skysweep.load import load
from skysweep.render import dump_spec
from skysweep.settings import store_for
task_file, out = Path(sys.argv[1]), Path(sys.argv[2])
task = load(task_file)
rendered = render_sweep(task, expand(task), sweep_id=new_sweep_id(task.name),
    backend=get_backend("local"), store=store_for(None), task_dir=task_file.resolve().parent)
validate(rendered)
out.mkdir(parents=True, exist_ok=True)
for item in rendered:
    path = out / f"{item.trial.index:04d}-{item.trial.trial_id}.yaml"
    path.write_text(dump_spec(item.spec), encoding="utf-8")
"""

# Runs a command and prints its wall seconds, CPU seconds and peak RSS (MB) with those of
# every process it waited for (skysweep's SkyPilot check runs in a child): a fresh process
# per run, so the peak is this run's.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
wall = time.perf_counter() - start
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([wall, used.ru_utime + used.ru_stime, used.ru_maxrss / 1024]))
"""


def measure(command: list[str]) -> tuple[float, float, float]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    )
    wall, cpu, rss = json.loads(done.stdout)
    return wall, cpu, rss


def whole_table(sizes: list[int], runs: int) -> None:
    print(
        f"\n`skysweep render TASK --out DIR` as a whole process (median of {runs}, interleaved "
        "with the BASELINE: the command before, SkyPilot checked first, then pathlib writes)"
    )
    print(
        f"{'trials':>7} {'now wall':>9} {'now cpu':>8} {'now MB':>7} "
        f"{'BASE wall':>10} {'BASE cpu':>9} {'BASE MB':>8} {'ratio (wall)':>12}"
    )
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            task = grid_task(Path(folder), size)
            results: dict[str, list[tuple[float, float, float]]] = {"now": [], "before": []}
            for run in range(runs):
                for label in ("now", "before"):
                    out = Path(folder) / f"{label}-{run}"
                    if label == "now":
                        command = [sys.executable, "-m", "skysweep", "render", str(task)]
                        command += ["--out", str(out)]
                    else:
                        command = [sys.executable, "-c", RENDER_BEFORE, str(task), str(out)]
                    results[label].append(measure(command))
            trials = len(list((Path(folder) / "now-0").iterdir()))
        (nw, nc, nm), (bw, bc, bm) = (
            tuple(statistics.median(r[i] for r in results[label]) for i in range(3))
            for label in ("now", "before")
        )
        verdict = "ok" if nw <= TARGET_RENDER_S else "OVER"
        print(
            f"{trials:>7} {nw:9.2f} {nc:8.2f} {nm:7.0f} {bw:10.2f} {bc:9.2f} {bm:8.0f} "
            f"{bw / nw:11.1f}x  target {TARGET_RENDER_S:.0f} s wall: {verdict}"
        )


if __name__ == "__main__":
    main()
