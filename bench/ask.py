"""The controller's cost of asking for one trial when 1,000 trials have finished.

Targets (issue 8): <= 50 ms for random and sobol, <= 1 s for bayes. The baseline, measured
in the same run, is the grid source asking for its next point of a 1,001-point grid with the
same 1,000 trials known.

    python bench/ask.py [--finished 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable

from skysweep.search import Outcome, TrialSource, source_for
from skysweep.task import TaskSpec
from skysweep.trial import Trial, TrialState

SPACE = {
    "learning_rate": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1.0},
    "weight_decay": {"distribution": "log_uniform_values", "min": 1e-7, "max": 0.1},
    "layers": {"distribution": "int_uniform", "min": 1, "max": 12},
    "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.05},
    "activation": ["relu", "gelu", "tanh"],
}


def task(method: str, finished: int) -> TaskSpec:
    config: dict[str, object] = dict(SPACE)
    if method == "grid":
        config = {"x": list(range(finished + 1))}
    sweeps: dict[str, object] = {"method": method, "sweep_config": config}
    if method != "grid":
        sweeps |= {"max_trials": finished + 10, "seed": 1}
    return TaskSpec.model_validate({"name": "bench", "run": "true", "sweeps": sweeps})


def history(method: str, finished: int) -> tuple[TaskSpec, dict[str, Trial], dict[str, Outcome]]:
    """``finished`` trials as the store would hold them: suggested by the method's own
    source (random points for bayes, as TPE's history would be), most with a metric, some
    failed, a few still running."""
    spec = task(method, finished)
    source = source_for(task("random" if method == "bayes" else method, finished), "bench")
    known: dict[str, Trial] = {}
    for trial in source.next(finished, {}):
        known[trial.trial_id] = trial
    rng = random.Random(0)
    outcomes: dict[str, Outcome] = {}
    for trial in known.values():
        draw = rng.random()
        if draw < 0.05:
            outcomes[trial.trial_id] = (TrialState.failed, None)
        elif draw < 0.08:
            outcomes[trial.trial_id] = (TrialState.running, None)
        else:
            lr = float(trial.params.get("learning_rate", 1e-3))
            outcomes[trial.trial_id] = (TrialState.succeeded, (math.log10(lr) + 3) ** 2)
    return spec, known, outcomes


def ask_once(
    make: Callable[[], TrialSource], known: dict[str, Trial], outcomes: dict[str, Outcome]
) -> float:
    source = make()  # a controller that starts: nothing carried over
    start = time.perf_counter()
    got = source.next(1, known, outcomes)
    elapsed = time.perf_counter() - start
    assert len(got) == 1 and got[0].trial_id not in known
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--finished", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    for method in ("grid", "random", "sobol", "bayes"):
        spec, known, outcomes = history(method, args.finished)
        ask_once(lambda s=spec: source_for(s, "bench"), known, outcomes)  # imports, caches
        times = [
            ask_once(lambda s=spec: source_for(s, "bench"), known, outcomes)
            for _ in range(args.repeat)
        ]
        figures[method] = statistics.median(times)
    base = figures["grid"]
    limits = {"grid": None, "random": 0.05, "sobol": 0.05, "bayes": 1.0}
    print(f"ask for 1 trial with {args.finished} known, median of {args.repeat}:")
    for method, seconds in figures.items():
        limit = limits[method]
        verdict = "" if limit is None else ("  ok" if seconds <= limit else "  OVER")
        target = "" if limit is None else f" (target <= {limit * 1000:.0f} ms)"
        print(
            f"  {method:6s} {seconds * 1000:8.1f} ms  {seconds / base:7.2f}x grid{target}{verdict}"
        )


if __name__ == "__main__":
    main()
