"""``skysweep.log`` and ``skysweep.finish``: the files a Python job writes, read back by the
readers skysweep itself uses (collect's ``parse_metrics``/``metric_value``, the report's
``parse_history``), and once through the real ``skysweep up --local``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import warnings
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

import skysweep
from skysweep import job
from skysweep.collect import metric_value, parse_metrics
from skysweep.html_report import parse_history


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A job's output folder, not created yet (the helper creates it), and fresh module state."""
    folder = tmp_path / "out"
    monkeypatch.setenv("SKYSWEEP_OUTPUT_DIR", str(folder))
    monkeypatch.setattr(job, "_latest", {})
    monkeypatch.setattr(job, "_warned_outside", False)
    return folder


def history(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def test_log_appends_one_line_per_step_with_slash_names(out: Path) -> None:
    point = skysweep.log(1, {"eval/loss": 0.5}, lr=0.1)
    skysweep.log(2, **{"eval/loss": 0.25, "eval/accuracy": 0.75})
    skysweep.log(3, {"eval/loss": 0.125, "lr": 0.1}, lr=0.05)  # a keyword wins over the dict

    assert point == {"step": 1, "eval/loss": 0.5, "lr": 0.1}
    text = (out / "history.jsonl").read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    assert history(out) == [
        {"step": 1, "eval/loss": 0.5, "lr": 0.1},
        {"step": 2, "eval/loss": 0.25, "eval/accuracy": 0.75},
        {"step": 3, "eval/loss": 0.125, "lr": 0.05},
    ]
    assert parse_history((out / "history.jsonl").read_bytes()) == history(out)


def test_finish_writes_metrics_that_collect_ranks(out: Path) -> None:
    written = skysweep.finish({"eval/loss": 0.31}, **{"eval/accuracy": 0.9})
    assert written == {"eval/loss": 0.31, "eval/accuracy": 0.9}
    metrics, problem = parse_metrics((out / "metrics.json").read_bytes())
    assert problem is None and metrics == written
    assert metric_value(metrics, "eval/loss") == (0.31, None)
    assert [p.name for p in out.iterdir()] == ["metrics.json"]  # no temporary file left

    skysweep.finish(loss=0.2)  # called again: the file is replaced, not merged
    assert json.loads((out / "metrics.json").read_text()) == {"loss": 0.2}


def test_finish_without_arguments_writes_the_last_logged_values(out: Path) -> None:
    skysweep.log(1, {"eval/loss": 0.9, "eval/accuracy": 0.5})
    skysweep.log(2, {"eval/loss": 0.4})
    last = {"eval/loss": 0.4, "eval/accuracy": 0.5}
    assert skysweep.finish() == last
    assert json.loads((out / "metrics.json").read_text()) == last


def test_finish_with_nothing_to_write_says_what_to_pass(out: Path) -> None:
    with pytest.raises(ValueError, match=r"no metrics given and none logged"):
        skysweep.finish()
    assert not out.exists()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_written_as_null_with_a_warning(out: Path, bad: float) -> None:
    with pytest.warns(job.SkysweepJobWarning, match=r"'eval/loss' is .*written as null"):
        point = skysweep.log(4, {"eval/loss": bad, "eval/accuracy": 0.5})
    assert point == {"step": 4, "eval/loss": None, "eval/accuracy": 0.5}
    line = (out / "history.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line, parse_constant=pytest.fail) == point  # strict JSON

    with pytest.warns(job.SkysweepJobWarning, match=r"'eval/loss' is "):
        skysweep.finish({"eval": {"loss": bad}})
    metrics, _ = parse_metrics((out / "metrics.json").read_bytes())
    assert metrics == {"eval": {"loss": None}}
    value, problem = metric_value(metrics, "eval/loss")
    assert value is None and problem  # ranked as "no value", never as a number


def test_the_nan_warning_points_at_the_callers_line(out: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skysweep.log(1, loss=math.nan)
    assert [Path(w.filename).name for w in caught] == ["test_job_helper.py"]


def test_number_likes_become_plain_numbers(out: Path) -> None:
    numpy = pytest.importorskip("numpy")
    point = skysweep.log(
        numpy.int64(2),
        {"a": numpy.float32(0.5), "b": numpy.int64(3), "c": Decimal("0.25"), "d": Fraction(1, 4)},
        note="warmup",
        done=False,
        missing=None,
    )
    assert history(out) == [point]
    assert point == {
        "step": 2, "a": 0.5, "b": 3, "c": 0.25, "d": 0.25,
        "note": "warmup", "done": False, "missing": None,
    }  # fmt: skip
    assert type(point["step"]) is int and type(point["b"]) is int


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: skysweep.log(True, loss=1.0), TypeError, "step is a bool"),
        (lambda: skysweep.log("3", loss=1.0), TypeError, "step is '3'"),
        (lambda: skysweep.log(1.5, loss=1.0), TypeError, "step is 1.5"),
        (lambda: skysweep.log(-1, loss=1.0), ValueError, "steps start at 0"),
        (lambda: skysweep.log(1, {"step": 2}), ValueError, "'step' is the first argument"),
        (lambda: skysweep.log(1, {3: 0.5}), TypeError, "metric name 3"),
        (lambda: skysweep.log(1, [0.5]), TypeError, "metrics is a list"),
        (lambda: skysweep.log(1, loss=[0.5]), TypeError, "'loss' is a list"),
        (lambda: skysweep.finish(loss=object()), TypeError, "'loss' is a object"),
    ],
)
def test_bad_calls_fail_at_once_with_the_fix(
    out: Path, call: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call()  # type: ignore[operator]
    assert not out.exists()  # nothing half-written


def test_a_float_step_that_is_whole_is_accepted(out: Path) -> None:
    assert skysweep.log(3.0, loss=1.0) == {"step": 3, "loss": 1.0}


def test_outside_a_job_nothing_is_written_and_it_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKYSWEEP_OUTPUT_DIR", raising=False)
    monkeypatch.setattr(job, "_latest", {})
    monkeypatch.setattr(job, "_warned_outside", False)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert skysweep.log(1, loss=0.5) == {"step": 1, "loss": 0.5}
        skysweep.log(2, loss=0.25)
        assert skysweep.finish() == {"loss": 0.25}
    assert len(caught) == 1 and "SKYSWEEP_OUTPUT_DIR is not set" in str(caught[0].message)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_history_write_warns_and_a_failed_finish_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SKYSWEEP_OUTPUT_DIR", str(blocker / "out"))  # under a file: unwritable
    monkeypatch.setattr(job, "_latest", {})
    with pytest.warns(job.SkysweepJobWarning, match=r"could not append step 1"):
        skysweep.log(1, loss=0.5)  # the training goes on
    with pytest.raises(OSError):
        skysweep.finish(loss=0.5)  # the result would be lost: say so


def test_concurrent_writers_never_interleave_lines(out: Path) -> None:
    """Two processes (say two ranks) appending at once: every line stays whole."""
    script = textwrap.dedent(
        """
        import sys, skysweep
        for i in range(400):
            skysweep.log(i, {"writer": sys.argv[1], "pad": "x" * 300})
        """
    )
    env = {"SKYSWEEP_OUTPUT_DIR": str(out), "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, name], env=env) for name in ("a", "b")
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    points = history(out)  # json.loads of every line: one torn line fails here
    assert len(points) == 800
    for name in ("a", "b"):
        assert [p["step"] for p in points if p["writer"] == name] == list(range(400))


def test_import_skysweep_loads_nothing_else() -> None:
    """`import skysweep` runs at every CLI start: the helper loads on first use only."""
    probe = (
        "import sys; before = set(sys.modules); import skysweep; "
        "print(sorted(set(sys.modules) - before)); skysweep.log; "
        "print('skysweep.job' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert done.stdout.splitlines() == ["['skysweep']", "True"]


def test_a_sweep_ranks_what_the_helper_wrote(tmp_path: Path, isolated_home: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(
        textwrap.dedent(
            """
            import os
            import skysweep

            x = float(os.environ["x"])
            for step in range(1, 4):
                skysweep.log(step, {"eval/loss": (x - 2) ** 2 + 1 / step})
            skysweep.finish()
            """
        )
    )
    # The job runs with this test's interpreter and this checkout's skysweep, as a job of a
    # user who ran `pip install skysweep` runs with theirs.
    (project / "task.yaml").write_text(
        f"name: helper\nrun: '{sys.executable} job.py'\n"
        "sweeps:\n  sweep_config:\n    x: [0, 2, 3]\n  sweep_metric: eval/loss\n"
    )
    store = tmp_path / "store"
    done = run_cli(
        "up", str(project / "task.yaml"), "--local", "--yes",
        "--store", f"file://{store}", "--output", "json",
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert [t["params"]["x"] for t in result["trials"]] == [2, 3, 0]
    assert [t["value"] for t in result["trials"]] == pytest.approx([1 / 3, 1 + 1 / 3, 4 + 1 / 3])
    trials = store / result["sweep_id"] / "trials"
    best = trials / result["best"]["trial_id"]
    assert [p["step"] for p in history(best)] == [1, 2, 3]
    assert len(list(trials.glob("*/history.jsonl"))) == 3


def test_the_quickstart_reports_every_epoch_with_or_without_skysweep(tmp_path: Path) -> None:
    """The README's training logs an eval loss per epoch through the helper, and writes the
    same files by hand where skysweep is not importable (a VM that did not install it)."""
    hidden = tmp_path / "hidden" / "skysweep"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('skysweep is not installed here')\n")
    written = {}
    for name, path in (("helper", ROOT), ("by hand", hidden.parent)):
        out = tmp_path / name
        out.mkdir()
        env = {"SKYSWEEP_OUTPUT_DIR": str(out), "PYTHONPATH": str(path), "epochs": "2"}
        script = ROOT / "examples" / "quickstart" / "train.py"
        subprocess.run([sys.executable, str(script)], env=env, check=True, capture_output=True)
        written[name] = (history(out), json.loads((out / "metrics.json").read_text()))
    assert written["helper"] == written["by hand"]
    points, metrics = written["helper"]
    assert [p["step"] for p in points] == [1, 2]
    assert all(isinstance(p["eval/loss"], float) for p in points)
    assert metrics["eval/loss"] == points[-1]["eval/loss"]
