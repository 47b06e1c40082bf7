"""`skysweep report`: one self-contained HTML page, checked in a real browser.

A real local grid sweep (two trials fail, every trial writes a history, parameter values hold
emoji and HTML) runs through the CLI; `skysweep report` writes the page; headless Chromium
(Debian's `/usr/bin/chromium`, driven by Playwright, which downloads no browser of its own)
opens it and the test fails on any console error or any request that is not to a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, run_cli

from skysweep.collect import TrialResult
from skysweep.cost import ESTIMATE_NOTE
from skysweep.html_report import Costs, build_html, infer_axis, param_importances, parse_history
from skysweep.ledger import SweepHeader
from skysweep.rank import rank
from skysweep.trial import TrialState

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium; "
    ".ci/run installs it)",
)

TRICKY = '<b>big</b> & "bold" </script>'
"""A parameter value that breaks a page which does not escape it."""
EMOJI = "tiny 🐭"

TASK = f"""\
name: html-report
resources:
  cpus: 1
run: python3 job.py
parameters:
  seed: 7
sweeps:
  sweep_config:
    lr: [0.001, 0.01, 0.1, 3.0]
    model: {json.dumps([EMOJI, TRICKY], ensure_ascii=False)}
  sweep_metric: loss
  lower_is_better: true
"""
JOB = """\
import json, math, os, sys
from pathlib import Path

out = Path(os.environ["SKYSWEEP_OUTPUT_DIR"])
lr = float(os.environ["lr"])
big = os.environ["model"].startswith("<b>")
with (out / "history.jsonl").open("w") as history:
    for step in (1, 2, 3):
        loss = abs(math.log10(lr) + 2) + (0.5 if big else 1.0) / step
        history.write(json.dumps({"step": step * 10, "loss": loss}) + "\\n")
    if lr > 1:
        history.write('{"step": 40, "lo')  # a partial line, as an upload in progress leaves
        sys.exit("diverged")
(out / "metrics.json").write_text(json.dumps({"loss": loss}))
"""
TRIALS = 8
FAILING = 2


def loss_of(lr: float, model: str) -> float:
    return abs(math.log10(lr) + 2) + (0.5 if model == TRICKY else 1.0) / 3


class Sweep:
    def __init__(self, root: Path, sweep_id: str, store: str, env: dict[str, str]) -> None:
        self.root, self.sweep_id, self.store, self.env = root, sweep_id, store, env
        self.report = root / "report.html"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """The sweep, run once through `skysweep up --local`, and its report."""
    root = tmp_path_factory.mktemp("html")
    (root / "home").mkdir()
    (root / "task.yaml").write_text(TASK, encoding="utf-8")
    (root / "job.py").write_text(JOB)
    env = {"HOME": str(root / "home"), "SKYSWEEP_STORE": "", "SKYSWEEP_CONFIG": ""}
    env = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
    env.pop("SKYSWEEP_STORE", None)
    store = f"file://{root / 'store'}"
    up = run_cli(
        "up", str(root / "task.yaml"), "--local", "--yes", "--store", store, "--output", "json",
        env=env,
    )  # fmt: skip
    assert up.code == 1, up  # two trials fail
    sweep_id = json.loads(up.stdout)["sweep_id"]
    result = Sweep(root, sweep_id, store, env)
    result.up_stderr = up.stderr  # type: ignore[attr-defined]
    made = run_cli(
        "report", sweep_id, "--store", store, "--out", str(result.report), env=env, cwd=root
    )
    assert made.code == 0, made
    assert made.stdout.strip() == str(result.report)
    return result


def test_up_prints_where_its_report_is(sweep: Sweep) -> None:
    expected = Path(sweep.env["HOME"]) / ".skysweep" / "reports" / f"{sweep.sweep_id}.html"
    assert f"report: {expected}" in sweep.up_stderr  # type: ignore[attr-defined]
    assert sweep.sweep_id in expected.read_text(encoding="utf-8")


def test_report_defaults_to_the_sweep_id_in_the_current_folder(
    sweep: Sweep, tmp_path: Path
) -> None:
    done = run_cli("report", f"{sweep.store}/{sweep.sweep_id}", env=sweep.env, cwd=tmp_path)
    assert done.code == 0, done
    assert done.stdout.strip() == f"{sweep.sweep_id}.html"
    assert (tmp_path / f"{sweep.sweep_id}.html").stat().st_size > 0


def test_report_bad_input_exits_2_with_one_message(sweep: Sweep, tmp_path: Path) -> None:
    unknown = run_cli("report", "no-such-sweep", "--store", sweep.store, env=sweep.env)
    assert unknown.code == 2, unknown
    assert "no-such-sweep" in unknown.stderr and "Traceback" not in unknown.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = run_cli(
        "report", sweep.sweep_id, "--store", sweep.store, "--out", str(blocker / "r.html"),
        env=sweep.env,
    )  # fmt: skip
    assert unwritable.code == 2, unwritable
    assert "--out" in unwritable.stderr and "Traceback" not in unwritable.stderr


def test_page_escapes_what_trials_hold_and_loads_nothing(sweep: Sweep) -> None:
    page = sweep.report.read_text(encoding="utf-8")
    assert "&lt;b&gt;big&lt;/b&gt; &amp; &#34;bold&#34; &lt;/script&gt;" in page
    assert TRICKY not in page
    assert EMOJI in page
    assert "<script src" not in page and "<link" not in page
    assert "default-src 'none'" in page


# ------------------------------------------------------------------------------------------
# In the browser


class Opened:
    def __init__(self, page: Any, errors: list[str], requests: list[str]) -> None:
        self.page, self.errors, self.requests = page, errors, requests


@pytest.fixture(scope="module")
def opened(browser: Any, sweep: Sweep) -> Iterator[Opened]:
    """The report open in one page for the tests below (parsing Plotly's 4.8 MB of JS takes
    seconds): they read it, and the one that sorts the table comes last."""
    opened = open_report(browser, sweep.report, plots=5)
    try:
        yield opened
    finally:
        opened.page.close()


def open_report(browser: Any, report: Path, plots: int) -> Opened:
    """The report in a new page, once its ``plots`` are drawn, with every console error and
    every request it makes recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {plots}")
    return Opened(page, errors, requests)


def _trial_ids(sweep: Sweep) -> set[str]:
    done = run_cli(
        "results", sweep.sweep_id, "--store", sweep.store, "--format", "json", env=sweep.env
    )
    return {t["trial_id"] for t in json.loads(done.stdout)["trials"]}


@needs_chromium
def test_every_trial_is_in_the_table_and_the_plots(opened: Opened, sweep: Sweep) -> None:
    page = opened.page
    ids = _trial_ids(sweep)
    assert len(ids) == TRIALS
    rows = page.eval_on_selector_all(
        "#trials tbody tr",
        "rows => rows.map(r => [r.dataset.trial, r.cells[2].textContent.trim()])",
    )
    assert {trial for trial, _ in rows} == ids
    assert sorted(state for _, state in rows).count("failed") == FAILING
    failed_marks = page.eval_on_selector_all(
        "#trials .state-failed", "els => els.map(e => getComputedStyle(e, '::before').content)"
    )
    assert failed_marks == ['"✕ "'] * FAILING
    parallel = page.evaluate("document.getElementById('parallel').data[0]")
    assert set(parallel["meta"]) == ids
    assert all(len(d["values"]) == TRIALS for d in parallel["dimensions"])
    for plot in ("against-0", "against-1"):
        plotted = page.evaluate(
            f"document.getElementById('{plot}').data.flatMap(t => t.customdata)"
        )
        assert sorted(plotted) == sorted(ids)
    curves = page.evaluate("document.getElementById('curves').data.flatMap(t => t.text || [])")
    assert {text.removeprefix("trial ") for text in curves} >= ids
    assert page.evaluate("document.getElementById('importance').data[0].y.length") == 2
    # Failed trials are drawn apart from the succeeded ones, with their own marker.
    symbols = page.evaluate(
        "Object.fromEntries(document.getElementById('against-0').data"
        ".map(t => [t.name, [t.marker.symbol, t.customdata.length]]))"
    )
    assert symbols["failed"] == ["x", FAILING]
    assert symbols["succeeded"] == ["circle", TRIALS - FAILING]
    assert opened.errors == []
    assert [url for url in opened.requests if not url.startswith(("file:", "data:", "blob:"))] == []


@needs_chromium
def test_text_from_trials_shows_as_written(opened: Opened) -> None:
    page = opened.page
    cells = page.eval_on_selector_all("#trials tbody td", "tds => tds.map(td => td.textContent)")
    assert TRICKY in cells and EMOJI in cells
    assert page.locator("#trials tbody b").count() == 0
    # Plotly reads a little HTML in most labels: the ticks show the text itself.
    for plot in ("#parallel", "#against-1"):
        shown = page.locator(plot).text_content()
        assert TRICKY in shown and EMOJI in shown, plot
    assert opened.errors == []


@needs_chromium
def test_clicking_a_header_sorts_the_table(opened: Opened, sweep: Sweep) -> None:
    page = opened.page

    def column(index: int) -> list[str]:
        return page.eval_on_selector_all(
            "#trials tbody tr", f"rows => rows.map(r => r.cells[{index}].dataset.v)"
        )

    headers = page.eval_on_selector_all("#trials thead th", "ths => ths.map(t => t.textContent)")
    metric = headers.index("loss")
    page.click("#trials thead th:nth-child(2) button")  # trial id, ascending
    assert column(1) == sorted(column(1))
    page.click(f"#trials thead th:nth-child({metric + 1}) button")
    values = column(metric)
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers) and len(numbers) == TRIALS - FAILING
    assert values[-FAILING:] == [""] * FAILING  # no value: last
    page.click(f"#trials thead th:nth-child({metric + 1}) button")
    values = column(metric)
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers, reverse=True)
    assert values[-FAILING:] == [""] * FAILING
    assert page.get_attribute(f"#trials thead th:nth-child({metric + 1})", "aria-sort") == (
        "descending"
    )
    expected_best = min(loss_of(lr, m) for lr in (0.001, 0.01, 0.1) for m in (EMOJI, TRICKY))
    assert float(page.eval_on_selector("tr.best-row", f"r => r.cells[{metric}].dataset.v")) == (
        pytest.approx(expected_best)
    )
    assert opened.errors == []


# ------------------------------------------------------------------------------------------
# The page's parts, without a browser


def _header(backend: str = "sky") -> SweepHeader:
    return SweepHeader(
        sweep_id="s",
        name="s",
        created_at="2026-01-01T00:00:00+00:00",
        task_file="task.yaml",
        task={},
        metric="acc",
        lower_is_better=False,
        backend=backend,
        store_url="s3://b/p",
    )


def _result(index: int, params: dict[str, Any], acc: float | None, finished: str) -> TrialResult:
    return TrialResult(
        f"t{index}",
        index,
        params,
        TrialState.succeeded if acc is not None else TrialState.failed,
        metrics={"acc": acc} if acc is not None else None,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at=finished,
    )


def test_best_so_far_follows_finish_order_and_direction() -> None:
    results = [
        _result(0, {"a": 1}, 0.5, "2026-01-01T00:00:03+00:00"),
        _result(1, {"a": 2}, 0.9, "2026-01-01T00:00:01+00:00"),
        _result(2, {"a": 3}, None, "2026-01-01T00:00:02+00:00"),
        _result(3, {"a": 4}, 0.95, "2026-01-01T00:00:04+00:00"),
    ]
    page = build_html(rank("s", results, "acc", False), _header())
    figures = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    best = next(f for f in figures["figures"] if f["id"] == "best-so-far")
    line = best["data"][1]
    # Finished in the order t1 (0.9), t2 (failed), t0 (0.5), t3 (0.95); higher is better.
    assert line["x"] == [1, 2, 3, 4]
    assert line["y"] == [0.9, 0.9, 0.9, 0.95]
    assert best["data"][0]["customdata"] == ["t1", "t0", "t3"]
    assert "Parameter importance needs at least 2 parameters" in page


def test_cost_column_shows_known_costs_a_dash_and_free_locally() -> None:
    results = [_result(i, {"a": i}, 0.1 * i, f"2026-01-01T00:00:0{i}+00:00") for i in (1, 2)]
    ranking = rank("s", results, "acc", False)
    page = build_html(ranking, _header(), costs=Costs({"t1": 0.0123, "t2": None}, 0.0123))
    assert "cost (USD)" in page and ">0.0123<" in page and ">—<" in page
    assert f"$0.0123 in total, {ESTIMATE_NOTE}" in page
    local = build_html(ranking, _header("local"))
    assert ">free<" in local and "free: the local backend costs nothing" in local
    assert "cost (USD)" not in build_html(ranking, _header())


def test_axes_are_categorical_log_or_linear() -> None:
    assert infer_axis("lr", [1e-4, 1e-3, 1e-2]).kind == "log"
    assert infer_axis("bs", [8, 32, 128]).kind == "linear"
    assert infer_axis("opt", ["adam", "sgd", True]).categories == ["adam", "sgd", "true"]
    assert infer_axis("x", [1, None]).kind == "categorical"
    axis = infer_axis("lr", [1e-4, 1e-2])
    assert axis.position(1e-4) == pytest.approx(-4)


def test_history_skips_a_partial_last_line() -> None:
    data = b'{"step": 1, "loss": 0.5}\nnot json\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo'
    assert parse_history(data) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]


def test_importance_finds_the_parameter_that_matters() -> None:
    results = [
        _result(i, {"lr": lr, "noise": n}, 1.0 - abs(math.log10(lr) + 2), "2026")
        for i, (lr, n) in enumerate(
            (lr, n) for lr in (1e-4, 1e-3, 1e-2, 1e-1, 1.0) for n in ("a", "b", "c", "d")
        )
    ]
    ranking = rank("s", results, "acc", False)
    axes = [infer_axis(n, [t.result.params[n] for t in ranking.trials]) for n in ("lr", "noise")]
    found = param_importances(ranking.trials, axes, lower_is_better=False)
    assert found["lr"] > found["noise"]
    assert sum(found.values()) == pytest.approx(1.0)
