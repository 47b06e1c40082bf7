"""Issue 8, the behaviour: random, Sobol and Bayesian sources through Optuna, rebuilt from the
store; real sweeps through `skysweep up` on the local backend, killed and resumed elsewhere."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import run_cli

from skysweep.search import Outcome, source_for
from skysweep.search.bayes import STARTUP_TRIALS
from skysweep.search.space import Space
from skysweep.search.study import SampledSource, optuna_state, rebuild
from skysweep.task import TaskSpec
from skysweep.trial import Trial, TrialState

SOBOL = pytest.param(
    "sobol",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("scipy") is None,
        reason="sobol draws with scipy (a dependency in pyproject.toml): pip install scipy",
    ),
)
SPACE: dict[str, Any] = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1.0},
    "layers": {"distribution": "int_uniform", "min": 1, "max": 12},
    "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.05},
    "act": ["relu", "gelu", "tanh"],
    "opt": {"values": ["adam", "sgd"]},
    "noise": {"distribution": "normal", "mu": 1.0, "sigma": 2.0},
    "expo": {"distribution": "log_uniform", "min": -3, "max": 0},
    "width": {"distribution": "q_log_uniform_values", "min": 8, "max": 512, "q": 8},
    "plain": {"distribution": "uniform", "min": -1, "max": 1},
    "fixed": {"value": 5},
}


def task_of(method: str, config: dict[str, Any] | None = None, **sweeps: Any) -> TaskSpec:
    body = {"method": method, "max_trials": 20, "seed": 11, "sweep_config": config or SPACE}
    return TaskSpec.model_validate(
        {"name": "t", "run": "true", "parameters": {"base": 1}, "sweeps": body | sweeps}
    )


def ask_all(source: Any, count: int, step: int = 3) -> list[Trial]:
    known: dict[str, Trial] = {}
    while len(known) < count:
        for trial in source.next(min(step, count - len(known)), known):
            known[trial.trial_id] = trial
    return sorted(known.values(), key=lambda t: t.index)


# -- the space in Optuna's terms --------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind, bounds",
    [
        ("lr", optuna.distributions.FloatDistribution, (1e-6, 1.0, True)),
        ("layers", optuna.distributions.IntDistribution, (1, 12, False)),
        ("dropout", optuna.distributions.IntDistribution, (0, 10, False)),  # multiples of q
        ("noise", optuna.distributions.FloatDistribution, (0.0, 1.0, False)),  # its quantile
        ("expo", optuna.distributions.FloatDistribution, (math.exp(-3), 1.0, True)),
        ("width", optuna.distributions.FloatDistribution, (8, 512, True)),
        ("plain", optuna.distributions.FloatDistribution, (-1, 1, False)),
    ],
)
def test_each_distribution_becomes_an_optuna_distribution(
    name: str, kind: type, bounds: tuple[float, float, bool]
) -> None:
    dist = Space(task_of("random")).distributions[name]
    assert isinstance(dist, kind)
    assert (dist.low, dist.high, dist.log) == pytest.approx(bounds)  # type: ignore[attr-defined]


def test_categoricals_and_constants() -> None:
    space = Space(task_of("random"))
    act = space.distributions["act"]
    assert isinstance(act, optuna.distributions.CategoricalDistribution)
    assert act.choices == ("relu", "gelu", "tanh")
    assert space.distributions["opt"].choices == ("adam", "sgd")  # type: ignore[attr-defined]
    assert "fixed" not in space.distributions and space.fixed == {"fixed": 5}


@pytest.mark.parametrize(
    "name, internal, value",
    [
        ("dropout", 3, 0.15),  # k * q, tidied
        ("width", 61.0, 64.0),  # W&B's round(x / q) * q
        ("noise", 0.5, 1.0),  # the median of N(1, 2)
        ("noise", 0.8413447460685429, 3.0),  # one sigma above
        ("layers", 7, 7),
        ("act", "gelu", "gelu"),
    ],
)
def test_internal_values_map_to_what_the_job_gets_and_back(
    name: str, internal: Any, value: Any
) -> None:
    param = Space(task_of("random")).params[name]
    assert param.to_value(internal) == pytest.approx(value)
    back = param.to_internal(param.to_value(internal))
    assert param.to_value(back) == pytest.approx(value)


@pytest.mark.parametrize("method", ["random", SOBOL, "bayes"])
def test_suggestions_lie_in_the_space(method: str) -> None:
    trials = ask_all(source_for(task_of(method, max_trials=40)), 40)
    assert [t.index for t in trials] == list(range(40))
    assert len({t.trial_id for t in trials}) == 40
    for trial in trials:
        p = trial.params
        assert trial.suggested_by.startswith(f"{method}:")
        assert p["base"] == 1 and p["fixed"] == 5
        assert 1e-6 <= p["lr"] <= 1.0 and isinstance(p["layers"], int) and 1 <= p["layers"] <= 12
        assert 0 <= p["dropout"] <= 0.5 and round(p["dropout"] / 0.05, 9).is_integer()
        assert p["act"] in ("relu", "gelu", "tanh") and p["opt"] in ("adam", "sgd")
        assert math.exp(-3) <= p["expo"] <= 1.0 and -1 <= p["plain"] <= 1
        assert p["width"] % 8 == 0 and 8 <= p["width"] <= 512
        assert math.isfinite(p["noise"])


@pytest.mark.parametrize("method", ["random", SOBOL, "bayes"])
def test_same_seed_same_suggestions_other_seed_others(method: str) -> None:
    first = ask_all(source_for(task_of(method)), 8)
    again = ask_all(source_for(task_of(method)), 8, step=5)
    other = ask_all(source_for(task_of(method, seed=12)), 8)
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.params for t in first] != [t.params for t in other]


@pytest.mark.parametrize("method", ["random", SOBOL])
def test_a_resumed_source_continues_the_sequence(method: str) -> None:
    whole = ask_all(source_for(task_of(method)), 10)
    known = {t.trial_id: t for t in whole[:6]}
    later = source_for(task_of(method)).next(4, known)  # a new controller, same store
    assert [t.params for t in later] == [t.params for t in whole[6:]]


def test_unseeded_sweeps_draw_by_sweep_id() -> None:
    task = task_of("random", seed=None)
    one = source_for(task, "sweep-a").next(3, {})
    assert [t.params for t in one] == [t.params for t in source_for(task, "sweep-a").next(3, {})]
    assert [t.params for t in one] != [t.params for t in source_for(task, "sweep-b").next(3, {})]


def test_equal_suggestions_are_distinct_trials() -> None:
    source = source_for(task_of("random", {"a": ["only"]}, max_trials=3))
    trials = ask_all(source, 3)
    assert {t.params["a"] for t in trials} == {"only"}
    assert len({t.trial_id for t in trials}) == 3
    assert source.exhausted and source.next(5, {t.trial_id: t for t in trials}) == []


def test_the_budget_bounds_what_is_given() -> None:
    source = source_for(task_of("bayes", max_trials=5))
    assert source.expected == 5 and not source.exhausted
    got = source.next(10, {})
    assert len(got) == 5 and source.exhausted


# -- the study rebuilt from the store ---------------------------------------------------------


COMPLETE, FAIL, RUNNING = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.RUNNING,
)


@pytest.mark.parametrize(
    "outcome, expected",
    [
        ((TrialState.succeeded, 0.5), (COMPLETE, 0.5)),
        ((TrialState.succeeded, None), (FAIL, None)),  # no metric: failed, never a value
        ((TrialState.failed, None), (FAIL, None)),
        ((TrialState.failed, 3.0), (FAIL, None)),  # a failed trial's metric is not evidence
        ((TrialState.cancelled, None), (FAIL, None)),
        ((TrialState.lost, None), (FAIL, None)),
        ((TrialState.submit_failed, None), (FAIL, None)),
        ((TrialState.running, None), (RUNNING, None)),
        ((TrialState.submitted, None), (RUNNING, None)),
        ((TrialState.pending, None), (RUNNING, None)),
        (None, (RUNNING, None)),  # in the ledger, not looked at yet
    ],
)
def test_outcomes_become_optuna_states(
    outcome: Outcome | None, expected: tuple[optuna.trial.TrialState, float | None]
) -> None:
    assert optuna_state(outcome) == expected


@pytest.mark.parametrize("lower_is_better, best_x", [(True, 0.1), (False, 0.9)])
def test_the_rebuilt_study_holds_the_store_s_trials(lower_is_better: bool, best_x: float) -> None:
    config = {"x": {"distribution": "uniform", "min": 0, "max": 1}, "k": ["a", "b"]}
    task = task_of("bayes", config, lower_is_better=lower_is_better)
    space = Space(task)
    rows = [(0.1, TrialState.succeeded, 0.1), (0.5, TrialState.failed, None),
            (0.9, TrialState.succeeded, 0.9), (0.3, TrialState.running, None),
            (0.7, TrialState.succeeded, None)]  # fmt: skip
    known, outcomes = {}, {}
    for index, (x, state, value) in enumerate(rows):
        trial = Trial(index, f"t{index}", {"base": 1, "x": x, "k": "b"}, {}, "bayes:TPESampler")
        known[trial.trial_id] = trial
        outcomes[trial.trial_id] = (state, value)
    # a record outside the space (hand-written) is left out, not a crash
    known["odd"] = Trial(9, "odd", {"base": 1, "x": 7.0, "k": "b"}, {}, "bayes:TPESampler")
    study = rebuild(space, known, outcomes)
    got = [(t.params["x"], t.state, t.value) for t in study.trials]
    assert got == [(0.1, COMPLETE, 0.1), (0.5, FAIL, None), (0.9, COMPLETE, 0.9),
                   (0.3, RUNNING, None), (0.7, FAIL, None)]  # fmt: skip
    assert study.best_trial.params["x"] == best_x


def test_bayes_starts_with_the_sobol_points_then_models() -> None:
    """Bayes' first STARTUP_TRIALS trials are the Sobol points method sobol draws for the
    same numbers with the same seed, whatever has completed; from then on TPE suggests, from
    the results (and its records say which sampler suggested each trial)."""
    config = {"x": {"distribution": "uniform", "min": 0, "max": 1}, "k": ["a", "b", "c"]}
    sobol = ask_all(source_for(task_of("sobol", config, max_trials=40)), STARTUP_TRIALS + 1)
    history = sobol[:STARTUP_TRIALS]
    known = {t.trial_id: t for t in history}
    outcomes: dict[str, Outcome] = {  # all completed: it still draws the Sobol points first
        t.trial_id: (TrialState.succeeded, (float(t.params["x"]) - 0.8) ** 2) for t in history
    }
    bayes = source_for(task_of("bayes", config, max_trials=40))
    for n in (0, 5, STARTUP_TRIALS - 1):
        earlier = {t.trial_id: t for t in history[:n]}
        (drawn,) = bayes.next(1, earlier, {k: outcomes[k] for k in earlier})
        assert (drawn.index, drawn.params) == (n, history[n].params)
        assert drawn.suggested_by == "bayes:QMCSampler"
    (modelled,) = bayes.next(1, known, outcomes)
    assert modelled.index == STARTUP_TRIALS
    assert modelled.params != sobol[STARTUP_TRIALS].params  # the sequence's next point
    assert modelled.suggested_by == "bayes:TPESampler"


def test_bayes_learns_from_the_outcomes() -> None:
    """With 30 results of (x - 0.8)^2 recorded, TPE's next suggestions sit nearer 0.8 than
    the random ones the same seed gives with no results."""
    config = {"x": {"distribution": "uniform", "min": 0, "max": 1}}
    history = ask_all(source_for(task_of("random", config, max_trials=40)), 30)
    known = {t.trial_id: t for t in history}
    outcomes: dict[str, Outcome] = {
        t.trial_id: (TrialState.succeeded, (float(t.params["x"]) - 0.8) ** 2) for t in history
    }
    bayes = source_for(task_of("bayes", config, max_trials=40))
    learned = bayes.next(8, known, outcomes)
    blind = source_for(task_of("random", config, max_trials=40)).next(8, known)
    assert [t.index for t in learned] == list(range(30, 38))

    def distance(trials: list[Trial]) -> float:
        return sum(abs(float(t.params["x"]) - 0.8) for t in trials) / len(trials)

    assert distance(learned) < distance(blind) / 2, (distance(learned), distance(blind))


def test_a_bare_sampled_source_needs_a_budget() -> None:
    task = task_of("grid", {"x": [1]}, max_trials=None)
    with pytest.raises(ValueError, match="max_trials"):
        SampledSource(task)


# -- through `skysweep up` on the local backend -----------------------------------------------


OBJECTIVE = """\
import json, math, os, sys, time
marks = sys.argv[1]
trial = os.environ["SKYSWEEP_TRIAL_ID"]
with open(os.path.join(marks, trial), "a") as f:
    f.write(f"start {time.time()}\\npid {os.getpid()}\\n")
p = json.loads(os.environ["SKYSWEEP_PARAMS"])
time.sleep(float(os.environ.get("NAP", "0.3")))
loss = (math.log10(p["lr"]) + 3) ** 2 + p["dropout"] + 0.01 * p["layers"]
with open(os.path.join(os.environ["SKYSWEEP_OUTPUT_DIR"], "metrics.json"), "w") as f:
    json.dump({"eval/loss": loss}, f)
with open(os.path.join(marks, trial), "a") as f:
    f.write(f"end {time.time()}\\n")
"""


def sweep_task(tmp_path: Path, method: str, max_trials: int, parallel: int) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    path = tmp_path / "task.yaml"
    path.write_text(
        f"""\
name: search-{method}
run: {sys.executable} objective.py {marks}
sweeps:
  method: {method}
  max_trials: {max_trials}
  seed: 5
  max_parallel: {parallel}
  sweep_config:
    lr: {{distribution: log_uniform_values, min: 1.0e-6, max: 1.0}}
    layers: {{distribution: int_uniform, min: 1, max: 12}}
    dropout: {{distribution: q_uniform, min: 0.0, max: 0.5, q: 0.05}}
    act: [relu, gelu]
  metric: {{name: eval/loss, goal: minimize}}
"""
    )
    return path


def peak_parallel(marks: Path) -> int:
    events = []
    for path in marks.iterdir():
        lines = dict(line.split() for line in path.read_text().splitlines())
        events += [(float(lines["start"]), 1), (float(lines["end"]), -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


def records(store: Path, sweep_id: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (store / sweep_id).glob("records/*/trial.json")]


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_a_sampled_sweep_runs_its_budget_through_up(
    tmp_path: Path, isolated_home: Path, method: str
) -> None:
    task = sweep_task(tmp_path, method, max_trials=7, parallel=2)
    store = tmp_path / "store"
    done = run_cli(
        "up", str(task), "--local", "--yes", "--store", f"file://{store}", "--output", "json",
        cwd=tmp_path, env={"NAP": "0.3"},
    )  # fmt: skip
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert len(result["trials"]) == 7
    assert {t["status"] for t in result["trials"]} == {"succeeded"}
    assert len({t["trial_id"] for t in result["trials"]}) == 7
    for t in result["trials"]:
        p = t["params"]
        assert 1e-6 <= p["lr"] <= 1.0 and 1 <= p["layers"] <= 12 and 0 <= p["dropout"] <= 0.5
        assert p["act"] in ("relu", "gelu")
    saved = records(store, result["sweep_id"])
    assert sorted(r["index"] for r in saved) == list(range(7))
    assert {r["suggested_by"] for r in saved} == {
        # 7 trials: all of bayes' are its Sobol start
        {"random": "random:RandomSampler", "bayes": "bayes:QMCSampler"}[method]
    }
    assert len(list((tmp_path / "marks").iterdir())) == 7  # each launched once
    assert 1 <= peak_parallel(tmp_path / "marks") <= 2
    header = json.loads((store / result["sweep_id"] / "sweep.json").read_text())
    assert (header["source"], header["expected_trials"]) == (method, 7)


def test_dry_run_shows_the_space_and_budget_not_trials(tmp_path: Path, isolated_home: Path) -> None:
    task = sweep_task(tmp_path, "random", max_trials=30, parallel=3)
    done = run_cli("up", str(task), "--local", "--dry-run", "--store", f"file://{tmp_path}/s")
    assert done.code == 0, done
    err = done.stderr
    assert "search: random, max_trials 30, max_parallel 3, seed 5" in err
    assert "lr: log_uniform_values(min=1e-06, max=1.0)" in err
    assert "dropout: q_uniform(min=0.0, max=0.5, q=0.05)" in err
    assert "act: categorical(relu, gelu)" in err
    assert "first 3 suggestion(s):" in err and "#2:" in err and "#3:" not in err
    again = run_cli("up", str(task), "--local", "--dry-run", "--store", f"file://{tmp_path}/s")
    first = [line for line in err.splitlines() if line.strip().startswith("#")]
    assert first == [line for line in again.stderr.splitlines() if line.strip().startswith("#")]
    assert not (tmp_path / "s").exists()

    bayes = sweep_task(tmp_path, "bayes", max_trials=30, parallel=3)
    shown = run_cli("up", str(bayes), "--local", "--dry-run", "--store", f"file://{tmp_path}/s")
    assert shown.code == 0 and "search: bayes, max_trials 30" in shown.stderr
    assert "suggestion" not in shown.stderr  # TPE's suggestions depend on results to come


def test_a_killed_bayes_sweep_resumed_from_another_home_finishes_its_budget(
    tmp_path: Path, isolated_home: Path
) -> None:
    budget = 8
    task = sweep_task(tmp_path, "bayes", max_trials=budget, parallel=2)
    store = tmp_path / "store"
    up = subprocess.Popen(
        [sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes",
         "--store", f"file://{store}", "--output", "json"],
        cwd=tmp_path, env={**os.environ, "NAP": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        sweep_dirs: list[Path] = []
        while not sweep_dirs or len(list(sweep_dirs[0].glob("finished/*.json"))) < 2:
            assert time.monotonic() < deadline and up.poll() is None, up.communicate()
            time.sleep(0.1)
            sweep_dirs = list(store.glob("search-bayes-*")) if store.exists() else []
        sweep_dir = sweep_dirs[0]
        # A crash: `up` dies without a word, then so do the trials it had started (a job
        # started in the instant before its attempt was recorded included: each job notes
        # its pid when it starts).
        up.send_signal(signal.SIGKILL)
        up.communicate(timeout=10)
        time.sleep(2)
        for mark in (tmp_path / "marks").iterdir():
            text = mark.read_text()
            if "end" not in text:
                pid = int(text.split("pid ")[1].split()[0])
                with contextlib.suppress(ProcessLookupError):
                    group = os.getpgid(pid)
                    assert group != os.getpgid(0)  # jobs run in sessions of their own
                    os.killpg(group, signal.SIGKILL)
    finally:
        if up.poll() is None:
            up.kill()
    before = records(store, sweep_dir.name)
    assert 2 <= len(before) < budget

    other_home = tmp_path / "other-home"
    other_home.mkdir()
    resumed = run_cli(
        "up", str(task), "--local", "--yes", "--sweep-id", sweep_dir.name,
        "--store", f"file://{store}", "--output", "json",
        cwd=tmp_path, env={"HOME": str(other_home), "NAP": "0.2"},
    )  # fmt: skip
    assert resumed.code == 0, resumed
    trials = json.loads(resumed.stdout)["trials"]
    after = records(store, sweep_dir.name)
    assert len(after) == len(trials) == budget  # none lost, none beyond the budget
    assert sorted(r["index"] for r in after) == list(range(budget))  # none repeated
    assert len({r["trial_id"] for r in after}) == budget
    assert {t["status"] for t in trials} == {"succeeded"}
    # the trials recorded before the kill kept their parameters
    kept = {r["trial_id"]: r["params"] for r in after}
    assert all(kept[r["trial_id"]] == r["params"] for r in before)
    # every trial ran to its end exactly once; those killed were run again
    marks = tmp_path / "marks"
    assert sorted(p.name for p in marks.iterdir()) == sorted(r["trial_id"] for r in after)
    ends = {p.name: p.read_text().count("end ") for p in marks.iterdir()}
    assert set(ends.values()) == {1}, ends


def test_render_writes_a_seeded_random_sweep_and_refuses_a_bayes_one(
    tmp_path: Path, isolated_home: Path
) -> None:
    task = sweep_task(tmp_path, "random", max_trials=4, parallel=2)
    out = tmp_path / "specs"
    done = run_cli("render", str(task), "--out", str(out))
    assert done.code == 0, done
    assert len(list(out.glob("*.yaml"))) == 4
    bayes = sweep_task(tmp_path, "bayes", max_trials=4, parallel=2)
    refused = run_cli("render", str(bayes), "--out", str(tmp_path / "other"))
    assert refused.code == 2 and "skysweep up" in refused.stderr, refused
