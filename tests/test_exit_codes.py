"""Exit codes CI can trust, through the real CLI: `results` with and without `--best`, and
`--version`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

import skysweep

# x=1 reports a loss, x=2 crashes: a sweep with one good and one failed trial.
MIXED = """\
name: mixed
run: |
  if [ "$x" = 2 ]; then echo boom >&2; exit 3; fi
  echo "{\\"eval/loss\\": $x}" > "$SKYSWEEP_OUTPUT_DIR/metrics.json"
sweeps:
  sweep_config:
    x: [1, 2]
"""


def _up(tmp_path: Path, text: str, name: str) -> tuple[str, str]:
    task = tmp_path / f"{name}.yaml"
    task.write_text(text)
    store = f"file://{tmp_path / 'store'}"
    done = run_cli("up", str(task), "--local", "--yes", "--store", store, "--output", "json")
    assert done.code == 1, done  # it ran, and a trial failed
    return json.loads(done.stdout)["sweep_id"], store


def test_results_best_exits_0_when_it_prints_a_best_trial(
    tmp_path: Path, isolated_home: Path
) -> None:
    sweep_id, store = _up(tmp_path, MIXED, "mixed")

    whole = run_cli("results", sweep_id, "--store", store, "--format", "json")
    assert whole.code == 1, whole  # without --best: some trial failed
    assert len(json.loads(whole.stdout)["trials"]) == 2

    best = run_cli("results", sweep_id, "--store", store, "--best", "--format", "json")
    assert best.code == 0, best
    printed = json.loads(best.stdout)
    assert printed["params"]["x"] == 1 and printed["rank"] == 1

    table = run_cli("results", sweep_id, "--store", store, "--best")
    assert table.code == 0 and printed["trial_id"] in table.stdout, table


def test_results_best_exits_1_when_no_trial_has_the_metric(
    tmp_path: Path, isolated_home: Path
) -> None:
    sweep_id, store = _up(tmp_path, MIXED.replace("[1, 2]", "[2]"), "failing")
    best = run_cli("results", sweep_id, "--store", store, "--best", "--format", "json")
    assert best.code == 1, best
    assert json.loads(best.stdout)["rank"] is None  # printed: there is no best trial
    assert run_cli("results", sweep_id, "--store", store).code == 1


def test_results_help_states_the_exit_codes(isolated_home: Path) -> None:
    done = run_cli("results", "--help", env={"COLUMNS": "200"})
    assert done.code == 0, done
    text = " ".join(done.stdout.split())
    assert "With --best: 0 when a best trial was printed" in text, done


def test_version(isolated_home: Path) -> None:
    done = run_cli("--version")
    assert (done.code, done.stdout, done.stderr) == (0, f"skysweep {skysweep.__version__}\n", "")
    assert skysweep.__version__ and skysweep.__version__[0].isdigit()
    listed = run_cli("--help")
    assert listed.code == 0 and "--version" in listed.stdout, listed


def test_version_imports_nothing_heavy(isolated_home: Path) -> None:
    """`--version` (like `--help`) must not pay for boto3, SkyPilot, pydantic or rich."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "skysweep", "--version"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "skysweep.cli" in imported
    heavy = {"boto3", "botocore", "sky", "pydantic", "rich", "yaml", "jinja2"}
    assert not heavy & imported, heavy & imported
