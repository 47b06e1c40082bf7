"""The plan `up` prints before it launches: the trials, the search space, early stopping and
what the sweep is expected to cost."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from skysweep.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from skysweep.search.space import Space
    from skysweep.task import TaskSpec


def show_plan(
    err: Console,
    task: TaskSpec,
    count: int,
    backend: str,
    store: str,
    sweep_id: str,
    parallel: int,
    rendered: list[Any],
) -> None:
    from rich.markup import escape

    names = list(task.sweeps.sweep_config) if task.sweeps else []
    resources = {json.dumps(r.spec.get("resources", {}), sort_keys=True) for r in rendered}
    err.print(
        f"[bold]{escape(task.name)}[/]: {count} trial(s)"
        + (f" over {escape(', '.join(names))}" if names else "")
        + f" on the {backend} backend, at most {parallel} at once"
    )
    for item in sorted(resources):
        err.print(f"  resources: {item if item != '{}' else '(SkyPilot defaults)'}", markup=False)
    err.print(f"  sweep {sweep_id} in {store}", markup=False)


def show_space(err: Console, space: Space, parallel: int, first: list[Any]) -> None:
    """A sampled sweep's plan is its space and budget, not a list of trials."""
    err.print(
        f"  search: {space.method}, max_trials {space.max_trials}, max_parallel {parallel}"
        + (f", seed {space.seed}" if space.seed is not None else ""),
        markup=False,
    )
    for line in space.describe():
        err.print(f"    {line}", markup=False)
    # Only a seeded random or Sobol sweep draws these again when launched.
    if space.seed is not None and space.method in ("random", "sobol") and first:
        err.print(f"  first {len(first)} suggestion(s):", markup=False)
        for trial in first:
            chosen = {**trial.params, **{f"resources.{k}": v for k, v in trial.resources.items()}}
            chosen = {n: chosen.get(n) for n in space.order}
            err.print(f"    #{trial.index}: {json.dumps(chosen, default=str)}", markup=False)


def show_stopping(err: Console, task: TaskSpec) -> None:
    rule = task.sweeps.early_terminate if task.sweeps else None
    if rule is None or task.sweeps is None:
        return
    details = f"min_steps {rule.min_steps}"
    if rule.type != "median":
        details += f", eta {rule.eta}"
    if rule.type == "hyperband" and rule.max_steps is not None:
        details += f", max_steps {rule.max_steps}"
    err.print(
        f"  early stopping: {rule.type} ({details}) on {task.sweeps.stopping_metric}, "
        "judged from each trial's history.jsonl",
        markup=False,
    )


def show_estimate(
    err: Console,
    plan: Any,
    rendered: list[Any],
    minutes: float | None,
    budget: float | None,
) -> dict[str, Any]:
    """Print what the sweep is expected to cost; refuse a budget that cannot be held (no
    price, or no expected length). Returns the figures for ``--output json``."""
    from skysweep import cost

    prices = [plan.prices.get(cost.resource_key(item.trial.resources)) for item in rendered]
    estimates = [cost.trial_estimate(p, minutes) for p in prices]
    total = cost.sweep_estimate(prices, minutes)
    known_prices = [p for p in prices if p is not None]
    dearest = max(known_prices, key=lambda p: p.trial_hourly_usd) if known_prices else None
    per_trial = (
        None
        if not estimates or any(e is None for e in estimates)
        else max(e or 0.0 for e in estimates)
    )
    free = bool(prices) and all(p is not None and p.free for p in prices)
    if free:
        err.print(f"  cost: $0.00 ({cost.FREE_NOTE})", markup=False)
    elif total is not None:
        err.print(
            f"  estimated cost: {cost.usd(total)} for {len(rendered)} trial(s) of {minutes:g} "
            f"min ({cost.ESTIMATE_NOTE})",
            markup=False,
        )
    else:
        missing = (
            "no expected trial length: pass --expected-minutes N or set minutes_requested "
            "in the task file"
            if minutes is None
            else "the backend could not price every resource set"
        )
        err.print(f"  estimated cost: unknown ({missing})", markup=False)
    if budget is not None and (minutes is None or per_trial is None):
        # Minutes are asked for on every backend, the free one too, so a task file that
        # passes a local try passes on the cloud.
        raise UsageError(
            f"a budget of {cost.usd(budget)} (--max-cost or sweeps.budget.max_cost_usd) needs "
            "an estimate of each trial's cost, and "
            + (
                "no expected trial length was given"
                if minutes is None
                else "the backend could not price every resource set"
            ),
            hint="pass --expected-minutes N (or set minutes_requested: N in the task file)"
            if minutes is None
            else "check the resources SkyPilot could not price (see the plan above), or "
            "drop --max-cost / sweeps.budget",
        )
    if budget is not None:
        err.print(
            f"  budget: {cost.usd(budget)}; trials launch while spent + expected stays within it",
            markup=False,
        )
    return {
        "estimated_cost_usd": total,
        "estimated_cost_per_trial_usd": per_trial,
        "price_per_hour_usd": dearest.trial_hourly_usd if dearest else None,
        "prices": {
            key: (p.model_dump() | {"trial_hourly_usd": p.trial_hourly_usd}) if p else None
            for key, p in plan.prices.items()
        },
        "expected_minutes": minutes,
        "max_cost_usd": budget,
        "cost_note": cost.FREE_NOTE if free else cost.ESTIMATE_NOTE,
    }


def unpriced_controller() -> dict[str, Any]:
    """The controller's figures for ``--output json`` when there is none, or no price."""
    return {"controller_price_per_hour_usd": None, "controller_estimated_cost_usd": None}


def show_controller_cost(
    err: Console,
    price: Any,
    expected: int,
    parallel: int,
    minutes: float | None,
) -> dict[str, Any]:
    """Print what the sweep's controller job is expected to cost: its instance runs while the
    sweep does, about one trial's length per wave of ``parallel`` trials (less when a budget
    or early stopping ends the sweep sooner). Not part of the trials' estimate or the budget,
    which count trials. Returns the figures for ``--output json``."""
    from skysweep import cost

    if price is None:
        err.print(
            "  controller job: no price (no enabled cloud offers its resources in the catalog)",
            markup=False,
        )
        return unpriced_controller()
    waves = math.ceil(expected / max(1, parallel))
    hours = None if minutes is None else waves * minutes / 60.0
    total = None if hours is None else price.trial_hourly_usd * hours
    length = (
        f"for about {hours:.3g} h ({waves} wave(s) of {parallel} trial(s), {minutes:g} min each)"
        if hours is not None
        else "for as long as the sweep runs (pass --expected-minutes N for a figure)"
    )
    err.print(
        f"  controller job: {cost.usd(total) + ' ' if total is not None else ''}"
        f"on {price.describe()} {length}; not in the trials' estimate or the budget",
        markup=False,
    )
    return {
        "controller_price_per_hour_usd": price.trial_hourly_usd,
        "controller_estimated_cost_usd": total,
    }
