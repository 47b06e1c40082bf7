"""Search quality: grid, random, sobol and bayes at the same trial budget, through the real CLI.

    python bench/search.py [--quick] [--methods grid,random,sobol,bayes] [--seeds 5]
                           [--budget 80] [--objectives synthetic,rosenbrock,quickstart]

Every run is the whole CLI on the local backend, ``skysweep up --local --yes --max-parallel 4
--output json --store file://...`` in a fresh store, so the samplers are asked for trials by
the real controller as slots free up, exactly as a user's sweep is. The task file is
Transformer Lab's grid (lists); the other methods get their distributions from a ``--search``
file and ``--method``/``--max-trials``/``--seed`` flags, as a Transformer Lab user would run
them. The best-so-far curve is read from ``results``' JSON (``best_so_far``: the best value
once k trials had finished, in finish order).

Objectives (near-zero runtime each, so the figures measure the search, not the training):

- ``synthetic``: a training loss of log learning rate (whose best value depends on the
  depth), integer depth, categorical activation and uniform dropout; optimum 0.1.
- ``rosenbrock``: the 3-dimensional Rosenbrock function on [-2, 2]^3; optimum 0.
- ``quickstart``: examples/quickstart/train.py, the README's training, over the space of
  examples/quickstart/random.yaml and bayes.yaml: log-scaled learning rate and weight decay,
  categorical batch size, uniform momentum; optimum unknown.

Printed: the median over seeds of the best value after 10/20/40/80 finished trials for each
method (grid has no seed: one run), the median wall time of a sweep beside random's, and the
target of issue #8: **bayes in 40 trials reaches a best value that random search does not
reach in 80** (median over seeds), with bayes' regret over random's as the ratio. ``--quick``
runs 2 seeds at a budget of 20 (the target then reads bayes at 10 against random at 20) on
the synthetic objective.

Each objective also gets its spread: the range and quartiles of every trial value seen, and
the *headroom* (random's median best after 10 trials minus the best value any run found, over
the interquartile range). Below 2% the objective is flagged FLAT: ten random trials already
sit on its plateau, so its verdict says nothing about the search. The quickstart's training
was such a landscape while it learnt from 1,500 examples of 8 features (every setting
converged to about the same eval loss; what separated the best was SGD's last steps); it now
learns from 300 examples of 24 features, 6 informative, so how it is trained shows in the loss.

``--replay N`` runs no CLI: it replays the controller's ask pattern in-process (4 asked, then
one more each time the oldest running trial finishes, its result reported) over N seeds from
100 (``--first-seed``), so a sampler setting can be checked on many seeds the CLI runs never
used. The whole run's time closes.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("grid", "random", "sobol", "bayes")

OBJECTIVES_PY = '''\
"""Benchmark objectives: read the trial's parameters, write metrics.json. No training."""
import json
import math
import os



def objective(p):
    name = p["objective"]
    if name == "synthetic":
        layers = int(p["layers"])
        best_log_lr = -2.0 - 0.1 * layers  # deeper nets want a smaller learning rate
        act = {"gelu": 0.0, "relu": 0.05, "tanh": 0.2, "sigmoid": 0.5}[p["activation"]]
        return (
            0.1
            + 0.3 * (math.log10(float(p["lr"])) - best_log_lr) ** 2
            + 0.02 * (layers - 8) ** 2
            + act
            + 1.5 * (float(p["dropout"]) - 0.1) ** 2
        )
    if name == "rosenbrock":
        x = [float(p["x1"]), float(p["x2"]), float(p["x3"])]
        return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(2))
    raise SystemExit(f"unknown objective {name!r}")


if __name__ == "__main__":
    value = objective(json.loads(os.environ["SKYSWEEP_PARAMS"]))
    out = os.environ["SKYSWEEP_OUTPUT_DIR"]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"loss": value}, f)
'''


@dataclass(frozen=True)
class Dim:
    kind: str  # log | int | uniform | cat
    low: float = 0.0
    high: float = 0.0
    values: tuple[str | int, ...] = ()

    def distribution(self) -> Any:
        if self.kind == "cat":
            return list(self.values)
        name = {"log": "log_uniform_values", "int": "int_uniform", "uniform": "uniform"}
        low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return {"distribution": name[self.kind], "min": low, "max": high}

    def size(self) -> int:
        """Most grid points this dimension can have."""
        if self.kind == "cat":
            return len(self.values)
        return int(self.high - self.low) + 1 if self.kind == "int" else 10**6

    def grid(self, n: int) -> list[Any]:
        """``n`` values at the centres of ``n`` equal cells (in log space for ``log``)."""
        if self.kind == "cat":
            return list(self.values)
        if self.kind == "int":
            step = (self.high - self.low + 1) / n
            return sorted({int(self.low + (i + 0.5) * step) for i in range(n)})
        low, high = (math.log(self.low), math.log(self.high)) if self.kind == "log" else (
            self.low, self.high)  # fmt: skip
        points = [low + (i + 0.5) * (high - low) / n for i in range(n)]
        return [float(f"{math.exp(x) if self.kind == 'log' else x:.4g}") for x in points]


@dataclass(frozen=True)
class Objective:
    name: str
    run: str
    metric: str
    space: dict[str, Dim]
    optimum: float | None
    parameters: dict[str, Any]
    files: tuple[tuple[str, str], ...]
    """(name, text) written into the task's folder."""


OBJECTIVES = {
    "synthetic": Objective(
        "synthetic",
        "python3 objectives.py",
        "loss",
        {
            "lr": Dim("log", 1e-5, 1.0),
            "layers": Dim("int", 1, 12),
            "activation": Dim("cat", values=("relu", "gelu", "tanh", "sigmoid")),
            "dropout": Dim("uniform", 0.0, 0.5),
        },
        0.1,
        {"objective": "synthetic"},
        (("objectives.py", OBJECTIVES_PY),),
    ),
    "rosenbrock": Objective(
        "rosenbrock",
        "python3 objectives.py",
        "loss",
        {name: Dim("uniform", -2.0, 2.0) for name in ("x1", "x2", "x3")},
        0.0,
        {"objective": "rosenbrock"},
        (("objectives.py", OBJECTIVES_PY),),
    ),
    "quickstart": Objective(
        "quickstart",
        "python3 train.py",
        "eval/loss",
        {
            # The space of examples/quickstart/random.yaml and bayes.yaml, checked by
            # `same_space_as_the_examples` before the runs.
            "learning_rate": Dim("log", 1e-3, 3.0),
            "batch_size": Dim("cat", values=(8, 16, 32, 64, 128)),
            "momentum": Dim("uniform", 0.0, 0.99),
            "weight_decay": Dim("log", 1e-6, 0.1),
        },
        None,
        {"epochs": 3},
        (("train.py", (ROOT / "examples" / "quickstart" / "train.py").read_text()),),
    ),
}


def same_space_as_the_examples(objective: Objective) -> None:
    """The quickstart objective must search what the quickstart's random and Bayesian examples
    search, or its figures describe another sweep."""
    import yaml

    folder = ROOT / "examples" / "quickstart"
    wanted = {n: d.distribution() for n, d in objective.space.items()}
    for name in ("random.yaml", "bayes.yaml"):
        task = yaml.safe_load((folder / name).read_text())
        # W&B's {values: [...]} is the same categorical as a plain list.
        found = {
            n: v["values"] if isinstance(v, dict) and list(v) == ["values"] else v
            for n, v in task["sweeps"]["sweep_config"].items()
        }
        if found != wanted or task["parameters"] != objective.parameters:
            raise SystemExit(
                f"bench/search.py's quickstart objective searches {wanted} with "
                f"{objective.parameters}; {folder / name} searches {found} with "
                f"{task['parameters']}: make them the same"
            )


def grid_counts(space: dict[str, Dim], budget: int) -> dict[str, int]:
    """Points per dimension for a grid of at most ``budget`` trials: every category, and the
    rest shared by the numeric dimensions, the one with the fewest points grown first."""
    counts = {name: dim.size() if dim.kind == "cat" else 1 for name, dim in space.items()}
    while True:
        growable = [n for n, d in space.items() if d.kind != "cat" and counts[n] < d.size()]
        growable.sort(key=lambda n: counts[n])
        for name in growable:
            if math.prod(counts.values()) // counts[name] * (counts[name] + 1) <= budget:
                counts[name] += 1
                break
        else:
            return counts


def write_project(folder: Path, objective: Objective, budget: int) -> tuple[Path, Path, int]:
    """The task file (Transformer Lab's grid at ``budget`` trials at most) and the --search
    file (the distributions); returns them and the grid's size."""
    folder.mkdir(parents=True)
    for name, text in objective.files:
        (folder / name).write_text(text)
    counts = grid_counts(objective.space, budget)
    grid = {name: dim.grid(counts[name]) for name, dim in objective.space.items()}
    task = {
        "name": f"bench-{objective.name}",
        "run": objective.run,
        "parameters": objective.parameters,
        "sweeps": {
            "sweep_config": grid,
            "sweep_metric": objective.metric,
            "lower_is_better": True,
        },
    }
    search = {"sweep_config": {n: d.distribution() for n, d in objective.space.items()}}
    # JSON is YAML: the task and search files are written as flow mappings.
    (folder / "task.yaml").write_text(json.dumps(task, indent=2) + "\n")
    (folder / "search.yaml").write_text(json.dumps(search, indent=2) + "\n")
    return folder / "task.yaml", folder / "search.yaml", math.prod(len(v) for v in grid.values())


@dataclass(frozen=True)
class Run:
    curve: list[float | None]
    seconds: float
    values: list[float]
    """Every trial's metric value, for the spread of the objective's landscape."""

    def best_after(self, finished: int) -> float:
        """The best value once ``finished`` trials had finished (all of them, if fewer ran);
        infinity while none had the metric."""
        if not self.curve:
            return math.inf
        value = self.curve[min(finished, len(self.curve)) - 1]
        return math.inf if value is None else value


def sweep(
    root: Path, task: Path, search: Path, method: str, budget: int, seed: int | None, number: int
) -> Run:
    command = [
        sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes",
        "--max-parallel", "4", "--output", "json", "--store", f"file://{root}/store-{number}",
    ]  # fmt: skip
    if method != "grid":
        command += ["--search", str(search), "--method", method, "--max-trials", str(budget)]
        command += ["--seed", str(seed)] if seed is not None else []
    env = {**os.environ, "HOME": str(root / "home")}
    env.pop("SKYSWEEP_STORE", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(
            f"{' '.join(command)}\nexited {done.returncode} without a JSON ranking:\n"
            f"{done.stderr[-3000:]}"
        ) from None
    shutil.rmtree(root / f"store-{number}", ignore_errors=True)
    values = [t["value"] for t in data["trials"] if isinstance(t.get("value"), int | float)]
    return Run(list(data["best_so_far"]), seconds, values)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def show(value: float, digits: int = 4) -> str:
    return "-" if math.isinf(value) or math.isnan(value) else f"{value:.{digits}g}"


FLAT = 0.02
"""Headroom (see ``spread``) below which an objective cannot rank search methods."""


@dataclass(frozen=True)
class Verdict:
    met: bool
    flat: bool


def spread(runs: dict[str, list[Run]]) -> tuple[str, bool]:
    """The objective's landscape as the runs saw it, and whether it is flat at the top: the
    headroom is how far random search's median best after 10 trials still is from the best
    value any run found, as a share of the interquartile range of all trial values. Near 0,
    ten random draws already sit on the plateau, and what separates the methods afterwards is
    the last digits of the value, not the search."""
    values = sorted(v for done in runs.values() for r in done for v in r.values)
    if len(values) < 4:
        return "spread: too few values", False
    quartiles = statistics.quantiles(values, n=4)
    iqr = quartiles[2] - quartiles[0]
    best = values[0]
    text = (
        f"spread: {len(values)} trial values {values[0]:.5g}..{values[-1]:.5g} "
        f"(quartiles {quartiles[0]:.4g}..{quartiles[2]:.4g}); best found {best:.6g}"
    )
    if "random" not in runs or iqr <= 0:
        return text, False
    early = median([r.best_after(10) for r in runs["random"]])
    headroom = (early - best) / iqr
    finals = [median([r.best_after(10**9) for r in done]) for done in runs.values()]
    text += (
        f"; random's best@10 is {early - best:.3g} above it, headroom {headroom:.1%} of the "
        f"interquartile range; every method's final median lies in "
        f"{min(finals):.6g}..{max(finals):.6g}"
    )
    return text, headroom < FLAT


def bench(
    objective: Objective, methods: list[str], seeds: list[int], budget: int, root: Path
) -> Verdict | None:
    start = time.perf_counter()
    task, search, grid_size = write_project(root / objective.name, objective, budget)
    points = [n for n in (10, 20, 40, 80) if n <= budget]
    optimum = "unknown" if objective.optimum is None else f"{objective.optimum:g}"
    print(
        f"\n{objective.name}: {len(objective.space)} parameters, optimum {optimum}; "
        f"budget {budget} trials (grid: {grid_size}), max_parallel 4, seeds {seeds}"
    )
    runs: dict[str, list[Run]] = {}
    number = 0
    for method in methods:
        for seed in [None] if method == "grid" else seeds:
            number += 1
            runs.setdefault(method, []).append(
                sweep(root, task, search, method, budget, seed, number)
            )
    header = f"{'method':8}" + "".join(f"{'best@' + str(n):>11}" for n in points)
    print(header + f"{'sweep s':>10}{'vs random':>11}")
    base = median([r.seconds for r in runs.get("random", [])])
    for method, done in runs.items():
        cells = "".join(f"{show(median([r.best_after(n) for r in done])):>11}" for n in points)
        seconds = median([r.seconds for r in done])
        ratio = f"{seconds / base:.2f}x" if base == base else ""
        print(f"{method:8}{cells}{seconds:>10.1f}{ratio:>11}")
    landscape, flat = spread(runs)
    print(landscape)
    print(f"{objective.name}: {sum(len(d) for d in runs.values())} sweeps in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if "bayes" not in runs or "random" not in runs:
        return None
    half = budget // 2
    ours = median([r.best_after(half) for r in runs["bayes"]])
    theirs = median([r.best_after(budget) for r in runs["random"]])
    met = ours < theirs
    digits = 4 if show(ours) != show(theirs) else 7  # a flat objective differs further down
    line = (
        f"target: bayes in {half} trials ({show(ours, digits)}) better than random in {budget} "
        f"({show(theirs, digits)}), medians over {len(seeds)} seeds: "
        f"{'MET' if met else 'NOT MET'}"
    )
    if objective.optimum is not None and theirs - objective.optimum > 0:
        regret = (ours - objective.optimum) / (theirs - objective.optimum)
        line += f"; bayes' regret is {regret:.2f}x random's"
    line += (
        f"\n  per seed: bayes@{half} "
        + " ".join(show(r.best_after(half), digits) for r in runs["bayes"])
        + f" | random@{budget} "
        + " ".join(show(r.best_after(budget), digits) for r in runs["random"])
    )
    if flat:
        line += (
            f"\n  FLAT: headroom below {FLAT:.0%}: every method is on the plateau within 10 "
            "trials, so this verdict is decided by digits the search cannot aim at"
        )
    print(line)
    return Verdict(met, flat)


@functools.cache
def evaluator(name: str) -> Any:
    """The objective as a function of a trial's parameters, in this process: what a trial's
    job would report, without the job."""
    if name == "quickstart":
        import importlib.util

        path = ROOT / "examples" / "quickstart" / "train.py"
        spec = importlib.util.spec_from_file_location("quickstart_train", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def train(p: dict[str, Any]) -> float:
            runs = module.train(
                float(p["learning_rate"]), int(p["batch_size"]), int(p["epochs"]),
                float(p.get("momentum", 0.0)), float(p.get("weight_decay", 0.0)),
            )  # fmt: skip
            return float([loss for _, loss, _, _ in runs][-1])

        return train
    namespace: dict[str, Any] = {"__name__": "bench_objectives"}
    exec(OBJECTIVES_PY, namespace)
    return namespace["objective"]


def replay_one(
    task: Path, search: Path, method: str, budget: int, seed: int, name: str, parallel: int = 4
) -> list[float]:
    """One sweep's best-so-far curve with the controller's ask pattern replayed in-process:
    ``parallel`` trials asked for at the start, then, as the oldest running trial finishes
    (trials of equal length finish in launch order), its result reported and one more asked
    for with the others still running, until ``budget`` trials have finished."""
    from collections import deque

    from skysweep.load import SearchOverrides, load
    from skysweep.search import Outcome, source_for
    from skysweep.trial import Trial, TrialState

    spec = load(task, search=SearchOverrides(method, budget, seed, search))
    source = source_for(spec, "replay")
    known: dict[str, Trial] = {}
    outcomes: dict[str, Outcome] = {}
    running: deque[Trial] = deque()
    curve: list[float] = []
    while True:
        for trial in source.next(parallel - len(running), known, outcomes):
            known[trial.trial_id] = trial
            running.append(trial)
        if not running:
            return curve
        trial = running.popleft()
        result = float(evaluator(name)(dict(trial.params)))
        outcomes[trial.trial_id] = (TrialState.succeeded, result)
        curve.append(min(result, curve[-1]) if curve else result)


def replay(
    objective: Objective, methods: list[str], seeds: list[int], budget: int, root: Path
) -> None:
    """bench()'s figures from the replayed ask pattern (no CLI, no processes): cheap enough
    for many seeds, so a setting can be checked on seeds the CLI runs never used."""
    start = time.perf_counter()
    task, search, _ = write_project(root / f"replay-{objective.name}", objective, budget)
    points = [n for n in (10, 20, 40, 80) if n <= budget]
    print(
        f"\n{objective.name} (replayed in-process, max_parallel 4): budget {budget}, "
        f"{len(seeds)} seeds {seeds[0]}..{seeds[-1]}"
    )
    print(f"{'method':8}" + "".join(f"{'best@' + str(n):>11}" for n in points))
    curves: dict[str, list[list[float]]] = {}
    for method in [m for m in methods if m in ("random", "sobol", "bayes")]:
        jobs = [(task, search, method, budget, seed, objective.name) for seed in seeds]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            curves[method] = list(pool.map(replay_one, *zip(*jobs, strict=True)))
        cells = "".join(
            f"{show(median([c[min(n, len(c)) - 1] for c in curves[method]]), 5):>11}"
            for n in points
        )
        print(f"{method:8}{cells}")
    if "bayes" in curves and "random" in curves:
        half = budget // 2
        ours = [c[half - 1] for c in curves["bayes"]]
        theirs = [c[budget - 1] for c in curves["random"]]
        met = median(ours) < median(theirs)
        print(
            f"target: bayes@{half} {show(median(ours), 6)} vs random@{budget} "
            f"{show(median(theirs), 6)}: {'MET' if met else 'NOT MET'}; bayes@{half} beats "
            f"random@{budget}'s median on {sum(o < median(theirs) for o in ours)} of "
            f"{len(ours)} seeds"
        )
    print(f"{objective.name}: replayed in {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, budget 20, synthetic")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds (default 5)")
    parser.add_argument("--budget", type=int, default=None, help="trials per sweep (default 80)")
    parser.add_argument("--objectives", default=None, help=", ".join(OBJECTIVES))
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="instead of CLI runs, replay the controller's asks in-process over N seeds",
    )
    parser.add_argument(
        "--first-seed", type=int, default=None, help="first seed (default 0; 100 with --replay)"
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    first = args.first_seed if args.first_seed is not None else (100 if args.replay else 0)
    count = args.replay or args.seeds or (2 if args.quick else 5)
    seeds = list(range(first, first + count))
    budget = args.budget or (20 if args.quick else 80)
    names = (args.objectives or ("synthetic" if args.quick else ",".join(OBJECTIVES))).split(",")
    print(f"on {os.cpu_count()} cores; each sweep is `skysweep up --local` in a fresh store")
    results: list[Verdict | None] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            if name not in OBJECTIVES:
                parser.error(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
            if name == "quickstart":
                same_space_as_the_examples(OBJECTIVES[name])
            if args.replay:
                replay(OBJECTIVES[name], methods, seeds, budget, Path(folder))
                results.append(None)
                continue
            results.append(bench(OBJECTIVES[name], methods, seeds, budget, Path(folder)))
    checked = [(name, r) for name, r in zip(names, results, strict=True) if r is not None]
    if checked:
        each = ", ".join(
            f"{name} {'MET' if r.met else 'NOT MET'}" + (" (flat: no measure of search)" * r.flat)
            for name, r in checked
        )
        print(f"\ntarget met on {sum(r.met for _, r in checked)} of {len(checked)}: {each}")
    print(f"whole run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
