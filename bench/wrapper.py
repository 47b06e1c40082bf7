"""Benchmark: what the job wrapper costs around a trial's own command.

    python bench/wrapper.py [--runs 200]

Renders the wrapper of ``templates/run_wrapper.sh.j2`` around a no-op command and, beside
it in the same run, the wrapper as it was before (BASELINE_WRAPPER below, a verbatim copy
of the old template), and prints for each:
- the processes it forks per trial (``strace -f -c -e trace=clone,fork,vfork,clone3``,
  when strace is installed), beside plain ``bash -c :``;
- the wall and CPU time of ``--runs`` trials run one after another, and the ratio.
Both wrappers write the same files; the bench checks that too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2

from skysweep.render import LAB_WORKSPACE, _template

BASELINE_WRAPPER = r"""# skysweep: record this trial's state around the task's own run command.
_skysweep_status() {
  [ "${SKYPILOT_NODE_RANK:-0}" = 0 ] || return 0
  mkdir -p "$SKYSWEEP_OUTPUT_DIR" "$SKYSWEEP_SWEEP_DIR/finished"
  printf '{"trial_id": "%s", "state": "%s", "exit_code": %s, "started_at": "%s", "finished_at": %s}\n' \
    "$SKYSWEEP_TRIAL_ID" "$1" "$2" "$_skysweep_started" "$3" > "$SKYSWEEP_OUTPUT_DIR/.status.json.tmp" \
    && mv -f "$SKYSWEEP_OUTPUT_DIR/.status.json.tmp" "$SKYSWEEP_OUTPUT_DIR/status.json"
  if [ "$1" != running ]; then
    cp "$SKYSWEEP_OUTPUT_DIR/status.json" "$SKYSWEEP_SWEEP_DIR/finished/.$SKYSWEEP_TRIAL_ID.tmp" \
      && mv -f "$SKYSWEEP_SWEEP_DIR/finished/.$SKYSWEEP_TRIAL_ID.tmp" "$SKYSWEEP_SWEEP_DIR/finished/$SKYSWEEP_TRIAL_ID.json"
  fi
}
_skysweep_started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
_skysweep_status running null null
(
{{ enter_start_dir }}{{ run }}
)
_skysweep_rc=$?
if [ "$_skysweep_rc" = 0 ]; then _skysweep_state=succeeded; else _skysweep_state=failed; fi
_skysweep_status "$_skysweep_state" "$_skysweep_rc" "\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
exit "$_skysweep_rc"
"""  # noqa: E501 (a verbatim copy)

NO_OP = ":"


def scripts() -> dict[str, str]:
    return {
        "bash -c : (floor)": NO_OP,
        "baseline wrapper (before)": jinja2.Template(
            BASELINE_WRAPPER, keep_trailing_newline=True
        ).render(enter_start_dir="", run=NO_OP),
        "wrapper (now)": _template("run_wrapper.sh.j2").render(
            enter_start_dir="", run=NO_OP, lab_workspace=LAB_WORKSPACE
        ),
    }


def without_lab_block() -> str:
    """The wrapper as it is, less its Transformer Lab workspace block: what that block costs."""
    from skysweep.render import templates_dir

    empty = {"lab_workspace_before.sh.j2": "", "lab_workspace_after.sh.j2": ""}
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.DictLoader(empty), jinja2.FileSystemLoader(templates_dir())]
        ),
        keep_trailing_newline=True,
    )
    return env.get_template("run_wrapper.sh.j2").render(enter_start_dir="", run=NO_OP)


def trial_env(sweep_dir: Path, trial: str, made: bool = False) -> dict[str, str]:
    """A trial's env; ``made``: its folders exist already, as the local backend makes them."""
    if made:
        (sweep_dir / "trials" / trial).mkdir(parents=True, exist_ok=True)
        (sweep_dir / "finished").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "SKYSWEEP_TRIAL_ID": trial,
        "SKYSWEEP_SWEEP_ID": sweep_dir.name,
        "SKYSWEEP_PARAMS": '{"lr": 0.001}',
        "SKYSWEEP_SWEEP_DIR": str(sweep_dir),
        "SKYSWEEP_OUTPUT_DIR": str(sweep_dir / "trials" / trial),
    }


def forks(script: str, sweep_dir: Path, made: bool) -> int | None:
    """Processes a trial forks, counted by strace (the calls that create a process)."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as report:
        subprocess.run(
            [
                *("strace", "-f", "-c", "-o", report.name),
                *("-e", "trace=clone,fork,vfork,clone3", "bash", "-c", script),
            ],
            env=trial_env(sweep_dir, "forks", made),
            cwd=sweep_dir.parent,  # the lab workspace is made in the job's working directory
            check=True,
        )
        total = re.search(r"^-+.*\n\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)", report.read(), re.M)
    return int(total.group(1)) if total else 0


def timed_runs(script: str, sweep_dir: Path, runs: int, made: bool) -> tuple[float, float]:
    """Wall and CPU seconds (children's user + system) of ``runs`` trials in a row."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for number in range(runs):
        env = trial_env(sweep_dir, f"t{number}", made)
        subprocess.run(["bash", "-c", script], env=env, cwd=sweep_dir.parent, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def records(sweep_dir: Path) -> set[tuple[str, str, int]]:
    out = set()
    for path in (sweep_dir / "finished").glob("*.json"):
        record = json.loads(path.read_text())
        status = json.loads((sweep_dir / "trials" / path.stem / "status.json").read_text())
        assert record == status, path
        assert set(record) == {"trial_id", "state", "exit_code", "started_at", "finished_at"}
        out.add((record["trial_id"], record["state"], record["exit_code"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    rows = []
    written = {}
    with tempfile.TemporaryDirectory() as folder:
        cases = [(name, script, False) for name, script in scripts().items()]
        cases.append(("  folders made (local)", cases[-1][1], True))
        cases.append(("  less the lab block (local)", without_lab_block(), True))
        for number, (name, script, made) in enumerate(cases):
            sweep_dir = Path(folder) / f"sweep{number}"
            count = forks(script, sweep_dir, made)
            wall, cpu = timed_runs(script, sweep_dir, args.runs, made)
            rows.append((name, count, wall, cpu))
            if script != NO_OP:
                written[name] = records(sweep_dir)

    same = len({frozenset(r) for r in written.values()}) == 1
    floor, base, now, made, no_lab = rows
    version = subprocess.run(
        ["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"{args.runs} no-op trials run one after another (bash {version})")
    print(f"{'':<28} {'forks/trial':>11} {'wall s':>8} {'cpu s':>8} {'ms/trial':>9}")
    for name, count, wall, cpu in rows:
        forks_text = "n/a" if count is None else str(count)
        print(f"{name:<28} {forks_text:>11} {wall:8.2f} {cpu:8.2f} {wall / args.runs * 1e3:9.2f}")
    if base[1] is not None and now[1] is not None:
        print(f"forks: {base[1]} -> {now[1]} per trial (bash -c : alone: {floor[1]})")
    print(
        f"wall over the floor: baseline {base[2] - floor[2]:.2f} s, now {now[2] - floor[2]:.2f} s"
        f" ({(base[2] - floor[2]) / max(now[2] - floor[2], 1e-9):.1f}x less);"
        f" total {base[2] / now[2]:.2f}x"
    )
    print(
        f"the Transformer Lab workspace block: {(made[2] - no_lab[2]) / args.runs * 1e3:+.2f} "
        f"ms/trial wall, {(made[3] - no_lab[3]) / args.runs * 1e3:+.2f} ms/trial cpu, "
        f"forks {no_lab[1]} -> {made[1]}"
    )
    print(f"both wrappers write the same records: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
