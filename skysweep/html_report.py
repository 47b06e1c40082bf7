"""The sweep as one self-contained HTML page: the ranked table (sortable), a parallel-coordinates
plot, the metric against each parameter, learning curves, the best-so-far curve, parameter
importance and the sweep's provenance.

Everything the page needs is inside it (Plotly's JS from the installed ``plotly`` package, the
styles, the data), and a Content-Security-Policy forbids it to load anything else, so it works
as a CI artifact and offline. Figures are built here as plain Plotly JSON, not through
``plotly.graph_objects``, whose validation costs seconds for a 1,000-trial sweep.
"""

from __future__ import annotations

import contextlib
import functools
import html
import importlib.util
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from skysweep import __version__
from skysweep.collect import metric_value
from skysweep.cost import ESTIMATE_NOTE, SweepCost
from skysweep.errors import UsageError
from skysweep.ledger import SweepHeader, now
from skysweep.rank import RankedTrial, Ranking
from skysweep.report import state_counts, varying_params
from skysweep.store import Store, concurrently, join
from skysweep.task import ParamValue, parameter_text

if TYPE_CHECKING:
    from skysweep.ledger import Ledger

TEMPLATE = "report.html.j2"
HISTORY = "history.jsonl"
HISTORY_WORKERS = 32
LOG_RATIO = 100.0
"""A positive numeric parameter whose largest value is this many times its smallest is drawn
on a log scale (learning rates, weight decays), as a person would plot it."""
IMPORTANCE_TOP = 5
"""PED-ANOVA compares the best trials with all of them; Optuna advises at least 5 in the top
quantile for a stable answer, so the quantile is widened (up to half) for small sweeps."""

Point = dict[str, Any]
Figure = dict[str, Any]

STATE_MARKERS = {
    "succeeded": ("circle", "#1f77b4"),
    "failed": ("x", "#d62728"),
    "submit_failed": ("x", "#d62728"),
    "lost": ("x-open", "#9467bd"),
    "cancelled": ("square-open", "#ff7f0e"),
    "pruned": ("diamond", "#8c564b"),
    "running": ("triangle-up-open", "#17becf"),
    "submitted": ("triangle-up-open", "#7f7f7f"),
    "pending": ("circle-open", "#7f7f7f"),
}


@dataclass(frozen=True)
class Costs:
    """What each trial cost, when something knows (``None``: not known for that trial)."""

    per_trial: Mapping[str, float | None]
    total: float | None
    note: str = ESTIMATE_NOTE

    @classmethod
    def of(cls, ranking: Ranking, summary: SweepCost) -> Costs:
        return cls(
            {t.result.trial_id: t.result.cost_usd for t in ranking.trials}, summary.total_usd
        )


@dataclass(frozen=True)
class Axis:
    """How one parameter is drawn: as categories, or on a linear or log scale."""

    name: str
    kind: Literal["categorical", "linear", "log"]
    categories: list[str] = field(default_factory=list)
    """The labels, in the order first seen (categorical only)."""

    def label(self, value: ParamValue | None) -> str:
        return "—" if value is None else parameter_text(value)

    def position(self, value: ParamValue | None) -> float:
        """Where ``value`` sits on the parallel-coordinates axis."""
        if self.kind == "categorical":
            return float(self.categories.index(self.label(value)))
        number = float(value)  # type: ignore[arg-type]  # numeric axes hold only numbers
        return math.log10(number) if self.kind == "log" else number

    def scatter_x(self, value: ParamValue | None) -> Any:
        return _text(self.label(value)) if self.kind == "categorical" else value


def infer_axis(name: str, values: Sequence[ParamValue | None]) -> Axis:
    """Categorical for strings, booleans, missing or mixed values; log for positive numbers
    spanning :data:`LOG_RATIO` or more; linear otherwise."""
    numeric = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    if not numeric or not values:
        labels: list[str] = []
        for value in values:
            text = "—" if value is None else parameter_text(value)
            if text not in labels:
                labels.append(text)
        return Axis(name, "categorical", labels)
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    low, high = min(numbers), max(numbers)
    if low > 0 and high / low >= LOG_RATIO:
        return Axis(name, "log")
    return Axis(name, "linear")


def parse_history(data: bytes) -> list[Point]:
    """The points of a ``history.jsonl``; a line that is not a JSON object (the partial last
    line of an upload in progress, a stray print) is skipped."""
    points = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict):
            points.append(point)
    return points


def read_histories(store: Store, sweep_id: str, trial_ids: Sequence[str]) -> dict[str, list[Point]]:
    """Each trial's history points, for the trials that wrote any."""

    def read(trial_id: str) -> bytes | None:
        return store.get(join(sweep_id, "trials", trial_id, HISTORY))

    found = concurrently(store, read, list(trial_ids), HISTORY_WORKERS)
    histories = {}
    for trial_id, data in zip(trial_ids, found, strict=True):
        points = parse_history(data) if data else []
        if points:
            histories[trial_id] = points
    return histories


def default_report_path(sweep_id: str) -> Path:
    """Where ``skysweep report`` writes without ``--out``: ``<sweep id>.html`` here."""
    return Path(f"{sweep_id}.html")


def up_report_path(sweep_id: str) -> Path:
    """Where a foreground ``up`` leaves the report: ``~/.skysweep/reports/<sweep id>.html``."""
    return Path("~/.skysweep/reports").expanduser() / f"{sweep_id}.html"


def write_report(
    ledger: Ledger,
    ranking: Ranking,
    out: Path,
    *,
    costs: Costs | None = None,
) -> Path:
    """Read the trials' histories, build the page and write it to ``out``."""
    histories = read_histories(
        ledger.store, ledger.sweep_id, [t.result.trial_id for t in ranking.trials]
    )
    head, tail = _page_around_plotly(ranking, ledger.header, histories=histories, costs=costs)
    try:
        if out.parent != Path():
            out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        # Plotly's 4.8 MB go from its file to the page as bytes: through a str they would be
        # decoded, copied into the template's output and encoded again (~40 ms a report).
        with temporary.open("wb") as page:
            page.write(head.encode("utf-8", errors="replace"))
            page.write(_plotly_js_bytes())
            page.write(tail.encode("utf-8", errors="replace"))
        os.replace(temporary, out)
    except OSError as exc:
        raise UsageError(
            f"--out {out}: cannot write the report there: {exc.strerror or exc}",
            hint="pass a file in a folder you can write to, e.g. --out report.html",
        ) from exc
    return out


# ----------------------------------------------------------------------------------------------
# The page


def build_html(
    ranking: Ranking,
    header: SweepHeader,
    *,
    histories: Mapping[str, list[Point]] | None = None,
    costs: Costs | None = None,
    generated_at: str | None = None,
) -> str:
    """The whole report as one HTML document."""
    head, tail = _page_around_plotly(
        ranking, header, histories=histories, costs=costs, generated_at=generated_at
    )
    return head + _plotly_js_bytes().decode("utf-8") + tail


_PLOTLY_SLOT = "skysweep-plotly-js-goes-here"


def _page_around_plotly(
    ranking: Ranking,
    header: SweepHeader,
    *,
    histories: Mapping[str, list[Point]] | None = None,
    costs: Costs | None = None,
    generated_at: str | None = None,
) -> tuple[str, str]:
    """The report's text before and after Plotly's script."""
    import jinja2

    from skysweep.render import bytecode_cache, templates_dir

    histories = histories or {}
    params = varying_params(ranking)
    axes = [infer_axis(n, [t.result.params.get(n) for t in ranking.trials]) for n in params]
    free = header.backend == "local"
    figures: list[Figure] = []
    notes: dict[str, str] = {}
    if ranking.trials:
        figures.append(_parallel(ranking, axes))
        figures += [_against(ranking, axis, i) for i, axis in enumerate(axes)]
    curves = _learning_curves(ranking, histories)
    if curves is not None:
        figures.append(curves)
    elif histories:
        notes["curves"] = f"The trials' histories hold no '{ranking.metric}'."
    if any(t.result.finished for t in ranking.trials):
        figures.append(_best_so_far(ranking))
    importance, why_not = _importance(ranking, axes)
    if importance is not None:
        figures.append(importance)
    else:
        notes["importance"] = why_not
    columns = _columns(ranking, params, free, costs)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        bytecode_cache=bytecode_cache(),
    )
    direction = "lower is better" if ranking.lower_is_better else "higher is better"
    constant = {
        name: parameter_text(value)
        for name, value in (ranking.trials[0].result.params.items() if ranking.trials else ())
        if name not in params
    }
    page = environment.get_template(TEMPLATE).render(
        title=f"{ranking.sweep_id}: sweep report",
        ranking=ranking,
        direction=direction,
        counts=state_counts(ranking),
        best=ranking.best,
        best_params=[
            (n, parameter_text(v))
            for n, v in (ranking.best.result.params.items() if ranking.best else ())
            if n in params
        ],
        params=params,
        constant=constant,
        columns=columns,
        body=table_body(columns, [_row(t, params, free, costs) for t in ranking.trials]),
        figure_ids={f["id"] for f in figures},
        param_figures=[f"against-{i}" for i in range(len(axes))],
        notes=notes,
        provenance=_provenance(header, ranking, free, costs),
        data=_script_json({"figures": figures}),
        plotly_js=_PLOTLY_SLOT,
        generated_at=generated_at or now(),
    )
    # The slot stands once, in the template's script element; anything the sweep put in the
    # page (names, values) is escaped JSON or HTML and so cannot end that element early.
    head, slot, tail = page.partition(f"<script>{_PLOTLY_SLOT}</script>")
    if not slot:
        raise RuntimeError(f"templates/{TEMPLATE} must hold plotly_js alone in a <script>")
    return head + "<script>", "</script>" + tail


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``</script>``, no ``<!--``."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def preload() -> None:
    """Read what every report inlines, ahead of the first report this process writes."""
    _plotly_js_bytes()


@functools.cache
def _plotly_js_bytes() -> bytes:
    """plotly.js from the installed ``plotly`` package, read as it lies there (importing
    ``plotly.offline`` to ask for it costs more than reading it)."""
    spec = importlib.util.find_spec("plotly")
    folder = spec.submodule_search_locations if spec is not None else None
    script: bytes | None = None
    for base in folder or []:
        with contextlib.suppress(OSError):
            script = (Path(base) / "package_data" / "plotly.min.js").read_bytes()
            break
    if script is None:
        from plotly.offline import get_plotlyjs

        script = get_plotlyjs().encode("utf-8")
    # A script element ends at the first "</script" in it, whatever the JS means by it.
    return script.replace(b"</script", b"<\\/script")


def _text(value: str) -> str:
    """A string for Plotly, which reads a little HTML in most of its labels (axis titles,
    category ticks, hover text, legends; not parallel-coordinates ticks): shown as written."""
    return html.escape(value, quote=False)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@dataclass(frozen=True)
class Column:
    label: str
    numeric: bool = False


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str
    """What the column sorts by (a number as text for numeric columns, empty: missing)."""
    title: str = ""


def _columns(ranking: Ranking, params: list[str], free: bool, costs: Costs | None) -> list[Column]:
    return [
        Column("rank", numeric=True),
        Column("trial"),
        Column("state"),
        Column(ranking.metric, numeric=True),
        *(Column(name, numeric=_numeric_param(ranking, name)) for name in params),
        *((Column("cost (USD)", numeric=True),) if free or costs is not None else ()),
        Column("finished"),
        Column("duration (s)", numeric=True),
        Column("note"),
    ]


def _numeric_param(ranking: Ranking, name: str) -> bool:
    return all(
        isinstance(v, int | float) and not isinstance(v, bool)
        for v in (t.result.params.get(name) for t in ranking.trials)
    )


def _row(trial: RankedTrial, params: list[str], free: bool, costs: Costs | None) -> dict[str, Any]:
    r = trial.result
    cells = [
        Cell(str(trial.rank or "—"), str(trial.rank or "")),
        Cell(r.trial_id, r.trial_id),
        Cell(str(r.state), str(r.state)),
        Cell(_number(trial.value), _sort_number(trial.value)),
    ]
    for name in params:
        value = r.params.get(name)
        text = "" if value is None else parameter_text(value)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        cells.append(Cell(text, _sort_number(float(value)) if numeric else text))  # type: ignore[arg-type]
    if free:
        cells.append(Cell("free", "0", "the local backend costs nothing"))
    elif costs is not None:
        cost = costs.per_trial.get(r.trial_id)
        cells.append(Cell("—" if cost is None else f"{cost:.4f}", _sort_number(cost), costs.note))
    duration = _duration(r.started_at, r.finished_at)
    cells += [
        Cell(r.finished_at or "", r.finished_at or ""),
        Cell(_number(duration), _sort_number(duration)),
        Cell(trial.reason or "", trial.reason or ""),
    ]
    return {"trial": trial, "state": str(r.state), "best": trial.rank == 1, "cells": cells}


def table_body(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    """The table's rows as HTML, every text escaped."""
    escape = html.escape
    classes = [
        ' class="mono"'
        if i == 1
        else ' class="num"'
        if column.numeric
        else ' class="note"'
        if i == len(columns) - 1
        else ""
        for i, column in enumerate(columns)
    ]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row["cells"]):
            text = escape(cell.text)
            title = f' title="{escape(cell.title)}"' if cell.title else ""
            if i == 2:
                text = f'<span class="state state-{text}">{text}</span>'
            cells.append(f'<td{classes[i]} data-v="{escape(cell.sort)}"{title}>{text}</td>')
        best = " best-row" if row["best"] else ""
        lines.append(
            f'<tr data-trial="{escape(row["trial"].result.trial_id)}" '
            f'class="state-row-{escape(row["state"])}{best}">{"".join(cells)}</tr>'
        )
    return "\n".join(lines)


def _sort_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _duration(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    try:
        return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None


def _provenance(
    header: SweepHeader, ranking: Ranking, free: bool, costs: Costs | None
) -> list[tuple[str, str]]:
    items = [
        ("sweep", header.sweep_id),
        ("name", header.name),
        ("task file", header.task_file),
        (
            "git commit",
            header.git_commit or "not recorded (the task file was not in a git work tree)",
        ),
        ("created", header.created_at),
        ("backend", header.backend),
        ("store", f"{header.store_url.rstrip('/')}/{header.sweep_id}"),
        (
            "metric",
            f"{ranking.metric} ({'lower' if ranking.lower_is_better else 'higher'} is better)",
        ),
        ("skysweep (sweep)", header.skysweep_version),
        ("SkyPilot (sweep)", header.skypilot_version or "not recorded"),
        ("skysweep (report)", __version__),
    ]
    if free:
        items.append(("cost", "free: the local backend costs nothing"))
    elif costs is not None:
        total = "—" if costs.total is None else f"${costs.total:.4f}"
        items.append(("cost", f"{total} in total, {costs.note}"))
    return items


# ----------------------------------------------------------------------------------------------
# The figures: plain Plotly JSON


def _marker(state: str) -> tuple[str, str]:
    return STATE_MARKERS.get(state, ("circle-open", "#7f7f7f"))


def _values(ranking: Ranking) -> list[float]:
    return [t.value for t in ranking.trials if t.value is not None]


def _missing_at(values: list[float], lower_is_better: bool) -> float:
    """Where trials without a value are drawn: a band beyond the worst value, so a failed
    trial never looks like the best one."""
    if not values:
        return 0.0
    low, high = min(values), max(values)
    span = (high - low) or abs(high) or 1.0
    return high + 0.15 * span if lower_is_better else low - 0.15 * span


def _hover(trial: RankedTrial, metric: str, params: bool = True) -> str:
    r = trial.result
    lines = [f"trial {r.trial_id}", f"{r.state}" + (f", rank {trial.rank}" if trial.rank else "")]
    lines.append(f"{metric} = {_number(trial.value)}" if trial.value is not None else "no value")
    if params:  # the plots of one parameter show it on the x axis: a third of the file's data
        lines += [f"{k} = {parameter_text(v)}" for k, v in r.params.items()]
    if trial.reason:
        lines.append(trial.reason)
    return "<br>".join(_text(line) for line in lines)


def _parallel(ranking: Ranking, axes: list[Axis]) -> Figure:
    # Lines are drawn in order: the best last, on top; trials without a value first, under.
    trials = ranking.trials[::-1]
    values = _values(ranking)
    missing = _missing_at(values, ranking.lower_is_better)
    dimensions: list[dict[str, Any]] = []
    for axis in axes:
        positions = [axis.position(t.result.params.get(axis.name)) for t in trials]
        dimension: dict[str, Any] = {"label": _text(axis.name), "values": positions}
        if axis.kind == "categorical":
            dimension["tickvals"] = list(range(len(axis.categories)))
            dimension["ticktext"] = axis.categories  # drawn as plain text, unlike the label
        elif axis.kind == "log":
            dimension["tickvals"], dimension["ticktext"] = _log_ticks(positions)
        dimensions.append(dimension)
    metric_values = [missing if t.value is None else t.value for t in trials]
    metric_dimension: dict[str, Any] = {
        "label": _text(ranking.metric),
        "values": metric_values,
    }
    if len(values) < len(ranking.trials):
        ticks = _linear_ticks(values)
        metric_dimension["tickvals"] = [missing, *ticks]
        metric_dimension["ticktext"] = ["no value", *(_number(v) for v in ticks)]
    if values:
        low, high = min(metric_values), max(metric_values)
        # The best end at the top, as people read these plots.
        metric_dimension["range"] = [high, low] if ranking.lower_is_better else [low, high]
    dimensions.append(metric_dimension)
    states = sorted({str(t.result.state) for t in trials})
    if len(states) > 1:
        dimensions.append(
            {
                "label": "state",
                "values": [states.index(str(t.result.state)) for t in trials],
                "tickvals": list(range(len(states))),
                "ticktext": states,
            }
        )
    low = min(metric_values) if metric_values else 0.0
    high = max(metric_values) if metric_values else 1.0
    return {
        "id": "parallel",
        "data": [
            {
                "type": "parcoords",
                "dimensions": dimensions,
                "line": {
                    "color": metric_values,
                    "cmin": low,
                    "cmax": high,
                    "colorscale": _colorscale(values, low, high, ranking.lower_is_better),
                    "showscale": bool(values),
                    "colorbar": {"title": {"text": _text(ranking.metric)}},
                },
                "meta": [t.result.trial_id for t in trials],
            }
        ],
        "layout": {"margin": {"l": 80, "r": 80, "t": 60, "b": 30}, "height": 420},
    }


VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]


NO_VALUE = "#bbbbbb"


def _colorscale(values: list[float], low: float, high: float, reverse: bool) -> list[list[Any]]:
    """Viridis over the trials' values (yellow the best), grey for the "no value" band beyond
    the worst."""
    colours = VIRIDIS[::-1] if reverse else VIRIDIS
    if not values or high <= low:
        return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]
    first = (min(values) - low) / (high - low) / 2  # halfway to the band, if it is below
    last = 1 - (1 - (max(values) - low) / (high - low)) / 2  # or above
    step = (last - first) / (len(colours) - 1)
    scale = [[first + step * i, colour] for i, colour in enumerate(colours)]
    if first > 0:
        scale = [[0.0, NO_VALUE], [first, NO_VALUE], *scale]
    if last < 1:
        scale = [*scale, [last, NO_VALUE], [1.0, NO_VALUE]]
    return scale


def _log_ticks(positions: list[float]) -> tuple[list[float], list[str]]:
    distinct = sorted(set(positions))
    if len(distinct) > 8:
        distinct = [float(p) for p in range(math.floor(distinct[0]), math.ceil(distinct[-1]) + 1)]
    return distinct, [f"{10**p:.3g}" for p in distinct]


def _linear_ticks(values: list[float]) -> list[float]:
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [low]
    return [low + (high - low) * i / 4 for i in range(5)]


def _by_state(ranking: Ranking) -> dict[str, list[RankedTrial]]:
    groups: dict[str, list[RankedTrial]] = {}
    for trial in ranking.trials:
        groups.setdefault(str(trial.result.state), []).append(trial)
    return groups


def _against(ranking: Ranking, axis: Axis, index: int) -> Figure:
    missing = _missing_at(_values(ranking), ranking.lower_is_better)
    traces = []
    for state, trials in _by_state(ranking).items():
        symbol, colour = _marker(state)
        traces.append(
            {
                "type": "scattergl" if len(ranking.trials) > 2000 else "scatter",
                "mode": "markers",
                "name": state,
                "x": [axis.scatter_x(t.result.params.get(axis.name)) for t in trials],
                "y": [missing if t.value is None else t.value for t in trials],
                "customdata": [t.result.trial_id for t in trials],
                "text": [_hover(t, ranking.metric, params=False) for t in trials],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"symbol": symbol, "color": colour, "size": 9, "opacity": 0.8},
            }
        )
    x_axis: dict[str, Any] = {"title": {"text": _text(axis.name)}}
    if axis.kind == "categorical":
        x_axis.update(
            type="category",
            categoryorder="array",
            categoryarray=[_text(c) for c in axis.categories],
        )
    elif axis.kind == "log":
        x_axis.update(type="log", dtick=1)  # a tick a decade (log axes span two or more)
    y_axis: dict[str, Any] = {"title": {"text": _text(ranking.metric)}}
    return {
        "id": f"against-{index}",
        "data": traces,
        "layout": {
            "xaxis": x_axis,
            "yaxis": y_axis,
            "height": 340,
            "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
            "legend": {"orientation": "h", "y": -0.25},
            "annotations": _missing_note(ranking, missing),
        },
    }


def _missing_note(ranking: Ranking, missing: float) -> list[dict[str, Any]]:
    if all(t.value is not None for t in ranking.trials):
        return []
    return [
        {
            "text": "no value",
            "xref": "paper",
            "x": 0,
            "xanchor": "left",
            "y": missing,
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": 10, "color": "#777"},
        }
    ]


def _learning_curves(ranking: Ranking, histories: Mapping[str, list[Point]]) -> Figure | None:
    """One line per trial: the metric at each step of its history. Trials of one state share
    one trace (lines apart by a gap), which stays fast for 1,000 trials."""
    by_id = {t.result.trial_id: t for t in ranking.trials}
    groups: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    best = ranking.best
    best_line: tuple[list[Any], list[Any]] | None = None
    for trial_id, points in histories.items():
        trial = by_id.get(trial_id)
        if trial is None:
            continue
        xs, ys = [], []
        for n, point in enumerate(points):
            value, _ = metric_value(point, ranking.metric)
            if value is None:
                continue
            step = point.get("step")
            good_step = isinstance(step, int | float) and not isinstance(step, bool)
            xs.append(step if good_step else n)
            ys.append(value)
        if not xs:
            continue
        if best is not None and trial is best:
            best_line = (xs, ys)
        group = groups.setdefault(str(trial.result.state), ([], [], []))
        group[0].extend([*xs, None])
        group[1].extend([*ys, None])
        group[2].extend([_text(f"trial {trial_id}")] * (len(xs) + 1))
    if not groups:
        return None
    traces: list[dict[str, Any]] = []
    for state, (xs, ys, texts) in groups.items():
        _, colour = _marker(state)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(histories) <= 50 else "lines",
                "name": state,
                "x": xs,
                "y": ys,
                "text": texts,
                "hovertemplate": "%{text}<br>step %{x}: %{y}<extra></extra>",
                "line": {
                    "color": colour,
                    "width": 1,
                    "dash": "solid" if state == "succeeded" else "dot",
                },
                "marker": {"size": 4},
                "opacity": 0.6,
                "connectgaps": False,
            }
        )
    if best is not None and best_line is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _text(f"best: {best.result.trial_id}"),
                "x": best_line[0],
                "y": best_line[1],
                "line": {"color": "#2ca02c", "width": 3},
                "hovertemplate": "best trial<br>step %{x}: %{y}<extra></extra>",
            }
        )
    return {
        "id": "curves",
        "data": traces,
        "layout": {
            "xaxis": {"title": {"text": "step"}},
            "yaxis": {"title": {"text": _text(ranking.metric)}},
            "height": 380,
            "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        },
    }


def _best_so_far(ranking: Ranking) -> Figure:
    finished = sorted(
        (t for t in ranking.trials if t.result.finished),
        key=lambda t: (t.result.finished_at or "", t.result.index),
    )
    better: Callable[[float, float], bool] = (
        (lambda a, b: a < b) if ranking.lower_is_better else (lambda a, b: a > b)
    )
    best: float | None = None
    xs, best_ys, point_xs, point_ys, point_ids, point_text = [], [], [], [], [], []
    for n, trial in enumerate(finished, start=1):
        if trial.value is not None and trial.rank is not None:
            if best is None or better(trial.value, best):
                best = trial.value
            point_xs.append(n)
            point_ys.append(trial.value)
            point_ids.append(trial.result.trial_id)
            point_text.append(_hover(trial, ranking.metric))
        xs.append(n)
        best_ys.append(best)
    return {
        "id": "best-so-far",
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": "trial",
                "x": point_xs,
                "y": point_ys,
                "customdata": point_ids,
                "text": point_text,
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"color": "#9ecae1", "size": 7},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "best so far",
                "x": xs,
                "y": best_ys,
                "line": {"shape": "hv", "color": "#2ca02c", "width": 3},
            },
        ],
        "layout": {
            "xaxis": {"title": {"text": "trials finished"}},
            "yaxis": {"title": {"text": _text(ranking.metric)}},
            "height": 340,
            "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        },
    }


def _importance(ranking: Ranking, axes: list[Axis]) -> tuple[Figure | None, str]:
    """Optuna's PED-ANOVA importances of the varying parameters for the metric, over the ranked
    trials; or why there are none."""
    ranked = [t for t in ranking.trials if t.rank is not None and t.value is not None]
    if len(ranked) < 2:
        return None, "Parameter importance needs at least 2 trials with the metric."
    varying = [a for a in axes if len({a.label(t.result.params.get(a.name)) for t in ranked}) > 1]
    if len(varying) < 2:
        return None, (
            "Parameter importance needs at least 2 parameters that vary between the trials "
            "with the metric."
        )
    importances = param_importances(ranked, varying, ranking.lower_is_better)
    names = sorted(importances, key=lambda n: importances[n])
    return (
        {
            "id": "importance",
            "data": [
                {
                    "type": "bar",
                    "orientation": "h",
                    "x": [importances[n] for n in names],
                    "y": [_text(n) for n in names],
                    "hovertemplate": "%{y}: %{x:.3f}<extra></extra>",
                    "marker": {"color": "#1f77b4"},
                }
            ],
            "layout": {
                "xaxis": {"title": {"text": "importance (PED-ANOVA, sums to 1)"}, "range": [0, 1]},
                "yaxis": {"automargin": True},
                "height": 80 + 40 * len(names),
                "margin": {"l": 20, "r": 20, "t": 20, "b": 50},
            },
        },
        "",
    )


def param_importances(
    trials: Iterable[RankedTrial], axes: Sequence[Axis], lower_is_better: bool
) -> dict[str, float]:
    """``optuna.importance.get_param_importances`` over an in-memory study of ``trials``, with
    each parameter's distribution inferred from its values (categorical for categorical axes,
    an int or float range otherwise).

    The estimator is Optuna's PED-ANOVA: it needs only NumPy, where Optuna's default (fANOVA)
    needs scikit-learn, and it is deterministic and fast (1,000 trials in milliseconds)."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    trials = list(trials)
    distributions: dict[str, BaseDistribution] = {}
    for axis in axes:
        values = [t.result.params.get(axis.name) for t in trials]
        if axis.kind == "categorical":
            distributions[axis.name] = CategoricalDistribution(axis.categories)
            continue
        numbers = [v for v in values if isinstance(v, int | float)]
        low, high = min(numbers), max(numbers)
        log = axis.kind == "log"
        if all(isinstance(v, int) for v in numbers):
            distributions[axis.name] = IntDistribution(int(low), int(high), log=log and low >= 1)
        else:
            distributions[axis.name] = FloatDistribution(float(low), float(high), log=log)
    frozen = []
    for trial in trials:
        params: dict[str, Any] = {}
        for axis in axes:
            value = trial.result.params.get(axis.name)
            params[axis.name] = axis.label(value) if axis.kind == "categorical" else value
        frozen.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dict(distributions),
                # PED-ANOVA ranks lower values as better.
                value=trial.value if lower_is_better else -float(trial.value or 0.0),
                state=optuna.trial.TrialState.COMPLETE,
            )
        )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings
            study = optuna.create_study(direction="minimize")
            study.add_trials(frozen)
            quantile = min(0.5, max(0.1, IMPORTANCE_TOP / len(frozen)))
            found = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile)
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {name: float(value) for name, value in found.items()}
