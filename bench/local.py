"""The local backend against ``xargs -P``: the same commands, the same parallelism.

    python bench/local.py

Two cases from the controller issue: 16 trials of ``sleep 1`` at ``--max-parallel 8``
(target: within 1.15x of ``xargs -P 8``) and 200 near-zero trials (target: within 3x). Each
skysweep run is the whole CLI process, ``skysweep up --local --yes``, in a fresh store; the
baseline runs the same command lines with ``xargs -P`` in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, input=stdin, text=True, capture_output=True, check=False)
    return time.perf_counter() - start


def case(name: str, run: str, trials: int, parallel: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        # The task's folder is each trial's working directory (copied per trial): keep it to
        # the task file, as a project folder with a .skyignore would be.
        task = root / "project" / "task.yaml"
        task.parent.mkdir()
        values = ", ".join(str(i) for i in range(trials))
        task.write_text(f"name: bench\nrun: '{run}'\nsweeps:\n  sweep_config:\n    i: [{values}]\n")
        env = {**os.environ, "HOME": str(root / "home")}
        # As after `pip install`, which byte-compiles: a process that may not write .pyc
        # files compiles every skysweep module again at each start (~60 ms).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        compile_all = [sys.executable, "-m", "compileall", "-q", skysweep_package()]
        subprocess.run(compile_all, env=env, check=False)
        ours, theirs = [], []
        for number in range(runs):
            command = [
                sys.executable, "-m", "skysweep", "up", str(task), "--local", "--yes",
                "--max-parallel", str(parallel), "--store", f"file://{root}/store-{number}",
            ]  # fmt: skip
            ours.append(timed(command, env))
            lines = "".join(f"{i}\n" for i in range(trials))
            theirs.append(
                timed(["xargs", "-P", str(parallel), "-I{}", "bash", "-c", run], env, lines)
            )
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{name}: skysweep up {a:.2f} s, xargs -P {parallel} {b:.2f} s: {a / b:.2f}x")


def skysweep_package() -> str:
    import skysweep

    return str(Path(skysweep.__file__).parent)


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    print(f"median of {runs} runs, on {os.cpu_count()} cores")
    case("16 trials of sleep 1 at 8 at once (target <= 1.15x)", "sleep 1", 16, 8, runs)
    case("200 near-zero trials at 8 at once (target <= 3x)", "true", 200, 8, runs)


if __name__ == "__main__":
    main()
