"""Benchmark: CLI start time, and rendering plus SkyPilot validation of a 1,000-trial grid.

    python bench/render.py [--runs 7] [--trials 1000] [--profile] [--importtime]

Prints, side by side in one run:
- ``skysweep --help`` wall time (median of ``--runs`` subprocess runs of the console script)
  against ``python -c pass`` (the interpreter's own start, the floor); target <= 0.3 s;
- load + expand + render of a ``--trials`` grid; target (render + validation) <= 3 s;
- ``import sky``, measured apart from validation;
- validation of every spec with ``sky.Task.from_yaml_config`` (the baseline), and
  skysweep's own ``validate`` (one full SkyPilot validation per distinct spec structure; the
  per-trial parts, name and env values, checked against SkyPilot's own env schema and name
  rule), each with its per-trial cost.
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
import pstats
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skysweep.backends.sky import validate
from skysweep.expand import expand
from skysweep.load import load
from skysweep.render import Placement, RenderedTrial, render

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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
