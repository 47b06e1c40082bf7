"""What several commands share: the options they take, the consoles they print to, and how
they read a task file or open a sweep."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from skysweep.backends.sky import SkyBackend
    from skysweep.ledger import JobGroup, Ledger
    from skysweep.load import SearchOverrides
    from skysweep.settings import SweepRef
    from skysweep.task import TaskSpec


class Output(str, Enum):
    table = "table"
    json = "json"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL (file:///path, s3://bucket/prefix). Default: $SKYSWEEP_STORE, "
        "then the config file, then file://~/.skysweep/store.",
    ),
]
SweepArg = Annotated[
    str,
    typer.Argument(
        help="A sweep id, or the store URL of the sweep's prefix (s3://bucket/prefix/SWEEP_ID)."
    ),
]
TaskArg = Annotated[Path, typer.Argument(help="The task file (YAML or JSON).")]
SweepOverride = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        metavar="NAME=V1,V2",
        help="Sweep a parameter from the command line (repeatable), e.g. --sweep lr=1e-4,3e-4.",
    ),
]

MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        metavar="grid|random|sobol|bayes",
        help="Search method, over sweeps.method. Flags win over --search, which wins over "
        "the task file.",
    ),
]
MaxTrialsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-trials", metavar="N", help="Trials to run (random, sobol, bayes); sweeps.max_trials."
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", metavar="N", help="Seed of the sampler; sweeps.seed."),
]
EarlyTerminateOpt = Annotated[
    str | None,
    typer.Option(
        "--early-terminate",
        metavar="median|asha|hyperband",
        help="Stop losing trials early from their history.jsonl, over sweeps.early_terminate.type.",
    ),
]
SearchOpt = Annotated[
    Path | None,
    typer.Option(
        "--search",
        metavar="FILE",
        help="A YAML file of sweeps keys (method, max_trials, seed, metric, sweep_config "
        "distributions, ...) over the task file's, so the task file can stay as Transformer "
        "Lab accepts it.",
    ),
]
ParamOverride = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="NAME=VALUE",
        help="Set a parameter over the task file's value (repeatable), e.g. --param "
        "model_name=gpt2; a password field's value is kept in memory only.",
    ),
]


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    from rich.console import Console

    # Piped into a log or a file, tables keep whole ids rather than fit 80 columns.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=True, width=160 if wide else None)


def _parse_overrides(values: list[str] | None) -> dict[str, list[Any]]:
    from skysweep.load import parse_sweep_overrides

    return parse_sweep_overrides(values or [])


def confirm_or_exit(yes: bool, question: str) -> None:
    """Ask ``question`` on a terminal unless ``--yes``; a "no" exits 1, launching nothing.
    Without a terminal (CI, a pipe) there is nobody to ask: go on."""
    if not yes and sys.stdin.isatty() and not typer.confirm(question, default=True, err=True):
        raise typer.Exit(1)


def search_overrides(
    method: str | None,
    max_trials: int | None,
    seed: int | None,
    search: Path | None,
    early_terminate: str | None = None,
) -> SearchOverrides:
    from skysweep.load import SearchOverrides

    return SearchOverrides(
        method=method,
        max_trials=max_trials,
        seed=seed,
        search_file=search,
        early_terminate=early_terminate,
    )


def load_task(
    task_file: Path,
    sweep: list[str] | None,
    search: SearchOverrides | None = None,
    params: list[str] | None = None,
) -> TaskSpec:
    from skysweep.load import load, parse_param_overrides

    secret_values: dict[str, str] = {}
    task = load(
        task_file,
        sweep_overrides=_parse_overrides(sweep),
        search=search,
        param_overrides=parse_param_overrides(params or []),
        secret_values=secret_values,
    )
    # Password fields' values: in this process's environment only, where launching (and a
    # detached controller, which inherits it) reads secrets; never in a file.
    os.environ.update(secret_values)
    return task


def open_sweep(sweep: str, store: str | None) -> tuple[SweepRef, Ledger]:
    from skysweep.ledger import Ledger
    from skysweep.settings import sweep_ref

    ref = sweep_ref(sweep, store)
    return ref, Ledger.open(ref.store, ref.sweep_id)


def group_backend(group: JobGroup) -> SkyBackend:
    """The SkyPilot backend, pointed at the sweep's job group."""
    from skysweep.backends.sky import SkyBackend

    backend = SkyBackend()
    backend.group = group.job_id
    return backend
