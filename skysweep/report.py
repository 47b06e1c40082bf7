"""Stage 7, report: a ranking as a terminal table, JSON, CSV or Markdown."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.box import HEAVY_HEAD
from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from skysweep.cost import usd
from skysweep.rank import BestSoFar, RankedTrial, Ranking
from skysweep.task import ParamValue, Scalar, parameter_text

STATE_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "submit_failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "submitted": "blue",
    "pending": "dim",
    "lost": "magenta",
    "pruned": "yellow",
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
    return [n for n in names if len({_identity(p.get(n)) for p in trials}) > 1]


def _identity(value: ParamValue | None) -> tuple[type, Scalar | None]:
    # Tells apart what JSON tells apart (1, 1.0 and True) at a tenth of json.dumps' cost;
    # NaN equals nothing, not even itself, so it gets one stand-in. A list or mapping is
    # unhashable: its JSON text stands for it.
    if isinstance(value, list | dict):
        return type(value), json.dumps(value, sort_keys=True)
    return type(value), value if value == value else "nan"


def _format_value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _param_text(value: ParamValue | None) -> str:
    return "" if value is None else parameter_text(value)


def _param_shown(value: ParamValue | None) -> str:
    """A value for people: a sampled float (0.07494036351680891) to 6 significant digits;
    what the user wrote, and every other value, as the job sees it. CSV and JSON keep all."""
    if type(value) is float:
        return f"{value:.6g}"
    return _param_text(value)


def checkpoints(finished: int) -> list[int]:
    """Numbers of finished trials at which the best-so-far line shows the best: doubling from
    10 (from 1 in a sweep of 10 or fewer), and all of them."""
    step = 10 if finished > 10 else 1
    points = []
    while step < finished:
        points.append(step)
        step *= 2
    return [*points, finished] if finished else []


def pruning_line(ranking: Ranking) -> str | None:
    """``2 trials pruned early, saving 14 of 54 trial-steps (26%)``; None when none was."""
    pruned = ranking.pruned
    if not pruned:
        return None
    line = f"{len(pruned)} trial(s) pruned early"
    saved = ranking.steps_saved()
    if saved is not None and saved[1]:
        line += f", saving {saved[0]} of {saved[1]} trial-steps ({saved[0] / saved[1]:.0%})"
    return line


def value_text(trial: RankedTrial) -> str:
    """A trial's value for the table; a pruned trial's is its last, at the step it reached."""
    text = _format_value(trial.value)
    return f"{text} @{trial.step}" if text and trial.step is not None else text


def best_so_far_line(ranking: Ranking) -> str | None:
    """``best eval/loss so far: 0.52 after 10, 0.31 after 20, 0.31 after 23 finished``."""
    curve = ranking.best_so_far
    if not curve.values:
        return None
    shown = [
        f"{_format_value(curve.after(n)) or 'none'} after {n}"
        for n in checkpoints(len(curve.values))
    ]
    return f"best {ranking.metric} so far: {', '.join(shown)} finished"


def trial_json(trial: RankedTrial, curve: BestSoFar | None = None) -> dict[str, Any]:
    r = trial.result
    place = curve.order.get(r.trial_id) if curve else None
    return {
        "trial_id": r.trial_id,
        "number": r.index,
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
        "cost_usd": r.cost_usd,
        "last_step": trial.step,
        "finish_order": place,
        "best_so_far": curve.of(r.trial_id) if curve else None,
    }


def ranking_json(ranking: Ranking, *, best_only: bool = False) -> dict[str, Any]:
    best = ranking.best
    curve = ranking.best_so_far
    if best_only:
        return {
            "sweep_id": ranking.sweep_id,
            "metric": ranking.metric,
            "lower_is_better": ranking.lower_is_better,
            **(trial_json(best, curve) if best else {"trial_id": None, "rank": None}),
        }
    return {
        "sweep_id": ranking.sweep_id,
        "metric": ranking.metric,
        "lower_is_better": ranking.lower_is_better,
        "best": trial_json(best, curve) if best else None,
        "counts": dict(Counter(str(t.result.state) for t in ranking.trials)),
        # best_so_far[k - 1]: the best value once k trials had finished (null: none had the
        # metric yet); each trial's finish_order and best_so_far are its point on this curve.
        "best_so_far": curve.values,
        "pruned": _pruned_json(ranking),
        "trials": [trial_json(t, curve) for t in ranking.trials],
    }


def _pruned_json(ranking: Ranking) -> dict[str, Any]:
    saved = ranking.steps_saved()
    return {
        "trials": len(ranking.pruned),
        "steps_saved": saved[0] if saved else None,
        "steps_without_stopping": saved[1] if saved else None,
    }


LARGE_TABLE = 50
"""Rows above which the table is measured once and drawn as one line per trial: rich's
``Table`` measures and wraps every cell, 5-10 s for 10,000 trials (bench/report.py)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _flat(text: str) -> str:
    """One line of text: a newline or an escape code would break the table's rows."""
    return text if text.isprintable() else _CONTROL.sub(" ", text)


@dataclass(frozen=True)
class _Column:
    header: str
    right: bool = False
    floor: int | None = None
    """Narrowest this column shrinks to (ending its cells in an ellipsis) when the console is
    too narrow; None: it keeps its width."""
    keep: int = 0
    """Among the shrinkable columns, the one with the lowest ``keep`` is hidden first when even
    their floors do not fit."""


def _columns(ranking: Ranking, params: list[str], jobs: bool, says: bool) -> list[_Column]:
    return [
        _Column("rank", right=True),
        _Column("#", right=True),
        _Column("trial"),
        _Column("status"),
        *((_Column("job", right=True),) if jobs else ()),
        *((_Column("backend says", floor=12, keep=0),) if says else ()),
        _Column(ranking.metric, right=True),
        *((_Column("cost", right=True),) if _has_cost(ranking) else ()),
        *(
            _Column(name, right=True, floor=max(min(cell_len(name), 13), 6), keep=len(params) - i)
            for i, name in enumerate(params)
        ),
        # The reason a trial failed is what a reader of a failed sweep looks for first.
        _Column("note", floor=16, keep=len(params) + 1),
    ]


def _cells(ranking: Ranking, params: list[str], jobs: bool, says: bool) -> list[list[str]]:
    """The table's cells, row by row, as the people reading it see them."""
    cost = _has_cost(ranking)
    rows = []
    for trial in ranking.trials:
        r = trial.result
        rows.append(
            [
                str(trial.rank) if trial.rank else "-",
                str(r.index),
                r.trial_id,
                r.state,
                *((r.job_id or "",) if jobs else ()),
                *((_flat(r.backend_status or ""),) if says else ()),
                value_text(trial),
                *((usd(r.cost_usd) if r.cost_usd is not None else "",) if cost else ()),
                *(_flat(_param_shown(r.params.get(n))) for n in params),
                _flat(trial.reason or ""),
            ]
        )
    return rows


def _has_cost(ranking: Ranking) -> bool:
    """A cost column only when some trial costs something: on the local backend every cell
    would read $0.00, which the line under the table says once."""
    return any(t.result.cost_usd for t in ranking.trials)


def _share(naturals: list[int], floors: list[int], room: int) -> list[int]:
    """Widths for columns that share ``room`` cells: the narrow ones keep their width, the wide
    ones get equal shares, none below its floor (the caller checks the floors fit)."""

    def capped(cap: int) -> list[int]:
        return [min(n, max(f, cap)) for n, f in zip(naturals, floors, strict=True)]

    low, high = 0, max(naturals, default=0)
    while low < high:  # the widest cap that fits
        cap = (low + high + 1) // 2
        if sum(capped(cap)) <= room:
            low = cap
        else:
            high = cap - 1
    return capped(low)


@dataclass(frozen=True)
class _Layout:
    shown: list[int]
    """Indexes of the columns drawn."""
    widths: list[int]
    """Cells of each column drawn, without padding."""
    pad: int
    """Spaces each side of a cell."""

    @property
    def width(self) -> int:
        return sum(self.widths) + (2 * self.pad + 1) * len(self.widths) + 1


class LargeTable:
    """A ranking table of many rows, drawn like rich's ``Table`` (same box, title, header, row
    and status styles) but with every column measured once and every trial on one line.

    To fit the console: cells of the shrinkable columns (parameters, note, backend says) end
    in an ellipsis; if that is not enough, cells lose their padding; then the least useful
    shrinkable columns are hidden, and a line under the table names them."""

    def __init__(
        self,
        title: str,
        columns: list[_Column],
        rows: list[list[str]],
        status_column: int,
        row_styles: dict[int, str],
        caption: str | None = None,
    ) -> None:
        self.title = title
        self.caption = caption
        self.columns = columns
        self.rows = rows
        self.status_column = status_column
        self.row_styles = row_styles
        # Measured once: the widths of the columns and the padding of every cell come from it.
        self.sizes = [[_width(text) for text in row] for row in rows]
        self.naturals = [
            max(cell_len(column.header), *(sizes[i] for sizes in self.sizes), 1)
            for i, column in enumerate(columns)
        ]

    def _fit(self, shown: list[int], pad: int, max_width: int) -> _Layout | None:
        shrink = [i for i in shown if self.columns[i].floor is not None]
        fixed = sum(self.naturals[i] for i in shown if i not in shrink)
        room = max_width - fixed - (2 * pad + 1) * len(shown) - 1
        floors = [min(self.naturals[i], self.columns[i].floor or 1) for i in shrink]
        if sum(floors) > room:
            return None
        shared = _share([self.naturals[i] for i in shrink], floors, room)
        widths = dict(zip(shrink, shared, strict=True))
        return _Layout(shown, [widths.get(i, self.naturals[i]) for i in shown], pad)

    def layout(self, max_width: int) -> _Layout:
        shown = list(range(len(self.columns)))
        for pad in (1, 0):
            fitted = self._fit(shown, pad, max_width)
            if fitted is not None:
                return fitted
        by_use = sorted(
            (i for i, c in enumerate(self.columns) if c.floor is not None),
            key=lambda i: self.columns[i].keep,
        )
        for hidden in by_use:
            shown.remove(hidden)
            fitted = self._fit(shown, 0, max_width)
            if fitted is not None:
                return fitted
        # Even the fixed columns are wider than the console: let the terminal wrap.
        return _Layout(shown, [self.naturals[i] for i in shown], 0)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.layout(0).width, self.layout(options.max_width).width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = self.layout(options.max_width)
        widths, pad = layout.widths, " " * layout.pad
        columns = [self.columns[i] for i in layout.shown]
        box = HEAVY_HEAD.substitute(options)
        boxed = [w + 2 * layout.pad for w in widths]
        yield from console.render(
            Text(self.title, style="table.title", justify="left"),
            options.update_width(layout.width),
        )
        header_style = console.get_style("table.header")
        yield Segment(box.get_top(boxed) + "\n")
        yield Segment(box.head_left)
        for n, (column, width) in enumerate(zip(columns, widths, strict=True)):
            yield Segment(pad + _cell(column.header, width, column.right) + pad, header_style)
            yield Segment(box.head_right if n == len(columns) - 1 else box.head_vertical)
        yield Segment("\n" + box.get_row(boxed, "head") + "\n")
        # A row is three segments (before, at and after the coloured status), so 10,000 rows
        # cost a string join each rather than a rich layout per cell.
        mid = pad + box.mid_vertical + pad
        left, right = box.mid_left + pad, pad + box.mid_right + "\n"
        at = layout.shown.index(self.status_column)
        rights = [c.right for c in columns]
        status_styles = {state: Style.parse(style) for state, style in STATE_STYLES.items()}
        for index, (row, sizes) in enumerate(zip(self.rows, self.sizes, strict=True)):
            cells = [
                _cell(row[i], w, r, sizes[i])
                for i, w, r in zip(layout.shown, widths, rights, strict=True)
            ]
            status = status_styles.get(row[self.status_column], Style.null())
            row_style = self.row_styles.get(index)
            if row_style is None:
                yield Segment(left + mid.join(cells[:at]) + mid)
                yield Segment(cells[at], status)
                yield Segment(mid + mid.join(cells[at + 1 :]) + right)
                continue
            style = Style.parse(row_style)
            yield Segment(box.mid_left)
            for n, text in enumerate(cells):
                yield Segment(pad, style)
                yield Segment(text, style + status if n == at else style)
                yield Segment(pad, style)
                yield Segment(box.mid_right if n == len(cells) - 1 else box.mid_vertical)
            yield Segment.line()
        yield Segment(box.get_bottom(boxed) + "\n")
        if self.caption:
            yield Segment(_flat(self.caption) + "\n", console.get_style("table.caption"))
        hidden = [c.header for i, c in enumerate(self.columns) if i not in layout.shown]
        if hidden:
            yield Segment(
                f"not shown in {options.max_width} columns: {', '.join(hidden)} "
                "(a wider terminal or the JSON output shows them)\n",
                console.get_style("dim"),
            )


def _width(text: str) -> int:
    # Cells hold no control characters (_flat), so ASCII is one cell a character; the test is
    # C-fast where cell_len's cache lookup is not.
    return len(text) if text.isascii() else cell_len(text)


def _cell(text: str, width: int, right: bool, size: int | None = None) -> str:
    """``text`` (``size`` cells wide) in exactly ``width`` cells: padded, or cut with an
    ellipsis."""
    size = _width(text) if size is None else size
    if size > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = " " * (width - size)
    return pad + text if right else text + pad


def ranking_table(
    ranking: Ranking, *, title: str | None = None, jobs: bool = False, curve: bool = False
) -> Table | LargeTable:
    """The ranking for people; ``jobs`` adds each trial's backend job id and state, ``curve``
    the best-so-far line under the table.

    Up to :data:`LARGE_TABLE` trials a rich ``Table`` that wraps long notes; above, a
    :class:`LargeTable` that looks the same with one line per trial."""
    params = varying_params(ranking)
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    title = title or f"{ranking.sweep_id}: ranked by {ranking.metric} ({direction})"
    says = jobs and any(t.result.backend_status for t in ranking.trials)
    rows = _cells(ranking, params, jobs, says)
    best = {i: "bold green" for i, t in enumerate(ranking.trials) if t.rank == 1}
    caption = (
        "\n".join(line for line in (best_so_far_line(ranking), pruning_line(ranking)) if line)
        or None
        if curve
        else None
    )
    if len(rows) > LARGE_TABLE:
        return LargeTable(title, _columns(ranking, params, jobs, says), rows, 3, best, caption)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("#", justify="right")
    table.add_column("trial", min_width=12, no_wrap=True)
    table.add_column("status", min_width=9, no_wrap=True)
    if jobs:
        table.add_column("job", justify="right", no_wrap=True)
    if says:
        table.add_column("backend says", overflow="fold")
    table.add_column(ranking.metric, justify="right", min_width=min(len(ranking.metric), 10))
    if _has_cost(ranking):
        table.add_column("cost", justify="right", no_wrap=True)
    for name in params:
        table.add_column(name, justify="right", min_width=min(len(name), 13))
    table.add_column("note", overflow="fold")
    for index, row in enumerate(rows):
        # Text, not str: a reason or a parameter value is never read as console markup.
        cells = [Text(cell) for cell in row]
        cells[3].stylize(STATE_STYLES.get(row[3], ""))
        table.add_row(*cells, style=best.get(index))
    return table


def ranking_csv(ranking: Ranking) -> str:
    params: list[str] = []
    for t in ranking.trials:
        params += [n for n in t.result.params if n not in params]
    curve = ranking.best_so_far
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "number",
            "trial_id",
            "status",
            ranking.metric,
            *params,
            "reason",
            "finish_order",
            "best_so_far",
        ]
    )
    for t in ranking.trials:
        writer.writerow(
            [
                t.rank or "",
                t.result.index,
                t.result.trial_id,
                t.result.state,
                _format_value(t.value),
                *(_param_text(t.result.params.get(n)) for n in params),
                t.reason or "",
                curve.order.get(t.result.trial_id, ""),
                _format_value(curve.of(t.result.trial_id)),
            ]
        )
    return out.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


MARKDOWN_ROWS = 10
"""Rows of the Markdown table: it is a summary (``$GITHUB_STEP_SUMMARY``); the HTML report and
the CSV have every trial."""


def ranking_markdown(ranking: Ranking, cost: Sequence[str] = ()) -> str:
    """The compact summary for $GITHUB_STEP_SUMMARY: the best trial, counts, the best-so-far
    curve, pruning, ``cost`` (the sweep's cost lines) and the top rows."""
    params = varying_params(ranking)
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    lines = [f"### Sweep `{ranking.sweep_id}`", ""]
    best = ranking.best
    if best:
        chosen = (
            ", ".join(
                f"`{k}={_param_shown(v)}`" for k, v in best.result.params.items() if k in params
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
    curve = best_so_far_line(ranking)
    if curve:
        lines += [curve[0].upper() + curve[1:] + ".", ""]
    pruning = pruning_line(ranking)
    if pruning:
        lines += [pruning[0].upper() + pruning[1:] + ".", ""]
    for line in cost:
        # GitHub reads $...$ as math: a dollar amount is escaped.
        lines += [_md_cell(line[0].upper() + line[1:]).replace("$", "\\$"), ""]
    header = ["rank", "#", "trial", "status", ranking.metric, *params, "note"]
    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    right = (0, 1, 4)
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|")
    for t in ranking.trials[:MARKDOWN_ROWS]:
        row = [
            str(t.rank or "-"),
            str(t.result.index),
            f"`{t.result.trial_id}`",
            t.result.state,
            value_text(t),
            *(_param_shown(t.result.params.get(n)) for n in params),
            t.reason or "",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    more = len(ranking.trials) - MARKDOWN_ROWS
    if more > 0:
        lines += [
            "",
            f"… and {more} more trials: the sweep's HTML report (`skysweep report`) has all "
            "of them, as does `--format csv`.",
        ]
    return "\n".join(lines) + "\n"


def render_ranking(
    ranking: Ranking, fmt: str, *, best_only: bool = False, cost: Sequence[str] = ()
) -> str | Table | LargeTable:
    if fmt == "json":
        return json.dumps(ranking_json(ranking, best_only=best_only), indent=2)
    if best_only:
        best = ranking.best
        ranking = Ranking(
            ranking.sweep_id,
            ranking.metric,
            ranking.lower_is_better,
            [best] if best else [],
            ranking.best_so_far,  # the whole sweep's curve: a best trial's place is in it
        )
    if fmt == "csv":
        return ranking_csv(ranking)
    if fmt == "markdown":
        return ranking_markdown(ranking, cost)
    return ranking_table(ranking, curve=not best_only)
