"""Stage 7, report: a ranking as a terminal table, JSON, CSV or Markdown."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from skysweep.rank import RankedTrial, Ranking
from skysweep.task import Scalar, parameter_text

STATE_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "submit_failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "submitted": "blue",
    "pending": "dim",
}


def state_counts(ranking: Ranking, separator: str = ", ") -> str:
    """How many trials are in each state, e.g. ``2 running, 7 succeeded``."""
    return state_counts_of(Counter(str(t.result.state) for t in ranking.trials), separator)


def state_counts_of(counts: Mapping[str, int], separator: str = ", ") -> str:
    return separator.join(f"{n} {state}" for state, n in sorted(counts.items()) if n)


def varying_params(ranking: Ranking) -> list[str]:
    """The parameters that differ between trials (all of them for a one-trial sweep)."""
    trials = [t.result.params for t in ranking.trials]
    names: list[str] = []
    for params in trials:
        names += [n for n in params if n not in names]
    if len(trials) <= 1:
        return names
    return [n for n in names if len({json.dumps(p.get(n)) for p in trials}) > 1]


def _format_value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _param_text(value: Scalar | None) -> str:
    return "" if value is None else parameter_text(value)


def trial_json(trial: RankedTrial) -> dict[str, Any]:
    r = trial.result
    return {
        "trial_id": r.trial_id,
        "rank": trial.rank,
        "status": r.state,
        "params": r.params,
        "metrics": r.metrics,
        "value": trial.value,
        "reason": trial.reason,
        "exit_code": r.exit_code,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "job_id": r.job_id,
        "backend_status": r.backend_status,
    }


def ranking_json(ranking: Ranking, *, best_only: bool = False) -> dict[str, Any]:
    best = ranking.best
    if best_only:
        return {
            "sweep_id": ranking.sweep_id,
            "metric": ranking.metric,
            "lower_is_better": ranking.lower_is_better,
            **(trial_json(best) if best else {"trial_id": None, "rank": None}),
        }
    return {
        "sweep_id": ranking.sweep_id,
        "metric": ranking.metric,
        "lower_is_better": ranking.lower_is_better,
        "best": trial_json(best) if best else None,
        "counts": dict(Counter(str(t.result.state) for t in ranking.trials)),
        "trials": [trial_json(t) for t in ranking.trials],
    }


def ranking_table(ranking: Ranking, *, title: str | None = None, jobs: bool = False) -> Table:
    """The ranking for people; ``jobs`` adds each trial's backend job id and state."""
    params = varying_params(ranking)
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    table = Table(
        title=title or f"{ranking.sweep_id}: ranked by {ranking.metric} ({direction})",
        title_justify="left",
    )
    says = jobs and any(t.result.backend_status for t in ranking.trials)
    table.add_column("rank", justify="right")
    table.add_column("trial", min_width=12, no_wrap=True)
    table.add_column("status", min_width=9, no_wrap=True)
    if jobs:
        table.add_column("job", justify="right", no_wrap=True)
    if says:
        table.add_column("backend says", overflow="fold")
    table.add_column(ranking.metric, justify="right", min_width=min(len(ranking.metric), 10))
    for name in params:
        table.add_column(name, justify="right", min_width=min(len(name), 13))
    table.add_column("note", overflow="fold")
    for trial in ranking.trials:
        r = trial.result
        style = "bold green" if trial.rank == 1 else None
        table.add_row(
            str(trial.rank) if trial.rank else "-",
            r.trial_id,
            Text(r.state, style=STATE_STYLES.get(r.state, "")),
            *((r.job_id or "",) if jobs else ()),
            *((r.backend_status or "",) if says else ()),
            _format_value(trial.value),
            *(_param_text(r.params.get(n)) for n in params),
            trial.reason or "",
            style=style,
        )
    return table


def ranking_csv(ranking: Ranking) -> str:
    params: list[str] = []
    for t in ranking.trials:
        params += [n for n in t.result.params if n not in params]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "trial_id", "status", ranking.metric, *params, "reason"])
    for t in ranking.trials:
        writer.writerow(
            [
                t.rank or "",
                t.result.trial_id,
                t.result.state,
                _format_value(t.value),
                *(_param_text(t.result.params.get(n)) for n in params),
                t.reason or "",
            ]
        )
    return out.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ranking_markdown(ranking: Ranking) -> str:
    params = varying_params(ranking)
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    lines = [f"### Sweep `{ranking.sweep_id}`", ""]
    best = ranking.best
    if best:
        chosen = (
            ", ".join(
                f"`{k}={_param_text(v)}`" for k, v in best.result.params.items() if k in params
            )
            or "(no swept parameters)"
        )
        lines += [
            f"**Best:** trial `{best.result.trial_id}`, {ranking.metric} = "
            f"**{_format_value(best.value)}** with {chosen}",
            "",
        ]
    else:
        lines += ["**No trial has a usable result yet.**", ""]
    lines += [
        f"{len(ranking.trials)} trials: "
        + state_counts(ranking)
        + f". Ranked by `{ranking.metric}` ({direction}).",
        "",
    ]
    header = ["rank", "trial", "status", ranking.metric, *params, "note"]
    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    lines.append("|" + "|".join("---:" if i in (0, 3) else "---" for i in range(len(header))) + "|")
    for t in ranking.trials:
        row = [
            str(t.rank or "-"),
            f"`{t.result.trial_id}`",
            t.result.state,
            _format_value(t.value),
            *(_param_text(t.result.params.get(n)) for n in params),
            t.reason or "",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def render_ranking(ranking: Ranking, fmt: str, *, best_only: bool = False) -> str | Table:
    if fmt == "json":
        return json.dumps(ranking_json(ranking, best_only=best_only), indent=2)
    if best_only:
        best = ranking.best
        ranking = Ranking(
            ranking.sweep_id, ranking.metric, ranking.lower_is_better, [best] if best else []
        )
    if fmt == "csv":
        return ranking_csv(ranking)
    if fmt == "markdown":
        return ranking_markdown(ranking)
    return ranking_table(ranking)
