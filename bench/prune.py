"""Early stopping: the trial-steps ``asha`` and ``median`` save, and whether the best survives.

    python bench/prune.py [--step-seconds 0.2] [--parallel 4] [--runs 1] [--seed 0]

One sweep, run three times through the real CLI on the local backend, each in a fresh store:
``skysweep up --local --yes --output json`` without early stopping (the baseline), with
``--early-terminate asha`` and with ``--early-terminate median``. 24 trials (6 learning
rates x 4 widths) each report ``eval/loss`` once per step for 9 steps with
``skysweep.log``, sleeping a little per step as a training would; the curve is a
deterministic function of the parameters, so the best trial is known in advance
(learning_rate 0.01, width 64). The curves cross: larger learning rates fall faster at first
and end higher, so a rule that judges too early loses the best trial.

The order trials start in decides what any rule can save: a grid listed from the worst
learning rate to the best lets each new trial beat the ones before it, and nothing is pruned
(Optuna's pruners fed these curves in that order save about 10%). So each list is given in a
shuffled order (``--seed``, printed), as a user's random search would meet the trials; the
seeds differ by tens of percent, so compare rules at the same seed.

Printed for each run, side by side with the baseline's: the trial-steps spent (history lines
across all trials, counted in the store's files), the wall time of the whole CLI process, the
best value, and whether the known-best trial finished and ranked first. Targets (issue 9):
asha spends at most 50% and median at most 70% of the baseline's trial-steps, with the known
best finishing first. A run whose flag the CLI refuses (a build without early stopping) is
reported as such, with the CLI's own message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = 9
LEARNING_RATES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
WIDTHS = (16, 32, 64, 128)
BEST = {"learning_rate": 0.01, "width": 64}
METRIC = "eval/loss"
TARGETS = {"asha": 0.50, "median": 0.70}

JOB_PY = f'''\
"""A training's shape without the training: eval/loss per step, from the parameters."""
import math
import os
import time

import skysweep

lr, width = float(os.environ["learning_rate"]), int(os.environ["width"])
seconds = float(os.environ["BENCH_STEP_SECONDS"])
distance = math.log10(lr) + 2  # 0 at the best learning rate, 0.01
final = 0.2 + 0.25 * distance**2 + 0.04 * (math.log2(width) - 6) ** 2
speed = 0.45 * (1 + 0.25 * distance)  # larger rates fall faster, then end higher
for step in range(1, {STEPS} + 1):
    time.sleep(seconds)
    skysweep.log(step, {{"{METRIC}": final + (2.0 - final) * math.exp(-speed * step)}})
skysweep.finish()
'''


def curve(learning_rate: float, width: int, step: int) -> float:
    """The job's value at ``step``: the same formula, to name the known best and its value."""
    distance = math.log10(learning_rate) + 2
    final = 0.2 + 0.25 * distance**2 + 0.04 * (math.log2(width) - 6) ** 2
    return final + (2.0 - final) * math.exp(-0.45 * (1 + 0.25 * distance) * step)


@dataclass(frozen=True)
class Outcome:
    steps: int
    seconds: float
    best_value: float | None
    best_survived: bool
    pruned: int
    refused: str | None = None


def shuffled(seed: int) -> tuple[list[float], list[int]]:
    rng = random.Random(seed)
    rates, widths = list(LEARNING_RATES), list(WIDTHS)
    rng.shuffle(rates)
    rng.shuffle(widths)
    return rates, widths


def write_project(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "job.py").write_text(JOB_PY)
    rate_order, width_order = shuffled(seed)
    rates = ", ".join(str(r) for r in rate_order)
    widths = ", ".join(str(w) for w in width_order)
    run = f"{shlex.quote(sys.executable)} job.py"
    task = folder / "task.yaml"
    task.write_text(
        f"name: prune-bench\nrun: {json.dumps(run)}\n"
        f"sweeps:\n  sweep_config:\n    learning_rate: [{rates}]\n    width: [{widths}]\n"
        f"  sweep_metric: {METRIC}\n  lower_is_better: true\n"
    )
    return task


def sweep(root: Path, task: Path, rule: str | None, parallel: int, seconds: float) -> Outcome:
    store = root / f"store-{rule or 'none'}-{time.monotonic_ns()}"
    command = [
        sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes",
        "--max-parallel", str(parallel), "--output", "json", "--store", f"file://{store}",
    ]  # fmt: skip
    if rule is not None:
        command += ["--early-terminate", rule]
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        # The job imports this checkout's skysweep, whatever is installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "BENCH_STEP_SECONDS": str(seconds),
    }
    env.pop("SKYSWEEP_STORE", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    try:
        result = json.loads(done.stdout)
    except ValueError:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = " / ".join(lines[:2]) or "no output"
        return Outcome(0, elapsed, None, False, 0, refused=f"exit {done.returncode}: {why}")
    trials = store / result["sweep_id"] / "trials"
    steps = sum(
        sum(1 for line in path.read_text().splitlines() if line.strip())
        for path in trials.glob("*/history.jsonl")
    )
    known = [t for t in result["trials"] if t["params"] == {**t["params"], **BEST}]
    best = result.get("best") or {}
    survived = bool(
        known
        and known[0]["status"] == "succeeded"
        and known[0]["rank"] == 1
        and best.get("trial_id") == known[0]["trial_id"]
    )
    pruned = sum(1 for t in result["trials"] if t["status"] == "pruned")
    return Outcome(steps, elapsed, best.get("value"), survived, pruned)


def median_outcome(outcomes: list[Outcome]) -> Outcome:
    if any(o.refused for o in outcomes):
        return next(o for o in outcomes if o.refused)
    values = [o.best_value for o in outcomes if o.best_value is not None]
    return Outcome(
        int(statistics.median(o.steps for o in outcomes)),
        statistics.median(o.seconds for o in outcomes),
        statistics.median(values) if values else None,
        all(o.best_survived for o in outcomes),
        int(statistics.median(o.pruned for o in outcomes)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-seconds", type=float, default=0.2)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1, help="median of this many sweeps each")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the order of the lists")
    args = parser.parse_args()

    trials = len(LEARNING_RATES) * len(WIDTHS)
    known = curve(BEST["learning_rate"], BEST["width"], STEPS)
    print(
        f"{trials} trials x {STEPS} steps, {args.step_seconds} s a step, max_parallel "
        f"{args.parallel}, {os.cpu_count()} cores, median of {args.runs} run(s); known best: "
        f"learning_rate {BEST['learning_rate']} width {BEST['width']}, {METRIC} {known:.4f}"
    )
    rate_order, width_order = shuffled(args.seed)
    print(f"order (seed {args.seed}): learning_rate {rate_order} x width {width_order}")
    rules: list[str | None] = [None, "asha", "median"]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        task = write_project(root / "project", args.seed)
        outcomes = {}
        for rule in rules:
            seconds, parallel = args.step_seconds, args.parallel
            runs = [sweep(root, task, rule, parallel, seconds) for _ in range(args.runs)]
            outcomes[rule] = median_outcome(runs)
    base = outcomes[None]
    if base.refused:
        raise SystemExit(f"the baseline sweep did not run: {base.refused}")
    header = (
        f"{'early stopping':16}{'trial-steps':>12}{'vs none':>9}{'wall s':>9}{'vs none':>9}"
        f"{'pruned':>8}{'best value':>12}  known best finished first"
    )
    print(header)
    for rule, outcome in outcomes.items():
        name = rule or "none"
        if outcome.refused:
            print(f"{name:16}refused by the CLI: {outcome.refused}")
            continue
        value = "-" if outcome.best_value is None else f"{outcome.best_value:.4f}"
        print(
            f"{name:16}{outcome.steps:>12}{outcome.steps / base.steps:>8.0%} "
            f"{outcome.seconds:>9.2f}{outcome.seconds / base.seconds:>8.2f}x"
            f"{outcome.pruned:>8}{value:>12}  {'yes' if outcome.best_survived else 'NO'}"
        )
    for rule, target in TARGETS.items():
        outcome = outcomes[rule]
        if outcome.refused:
            print(f"target {rule} <= {target:.0%} of the baseline's trial-steps: not measured")
            continue
        share = outcome.steps / base.steps
        met = share <= target and outcome.best_survived
        print(
            f"target {rule} <= {target:.0%} of the baseline's trial-steps with the known best "
            f"first: {share:.0%}, {'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
