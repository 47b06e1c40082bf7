"""`skysweep render`: each trial as a SkyPilot task YAML, checked by SkyPilot's schema."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skysweep.cli.common import (
    EarlyTerminateOpt,
    MaxTrialsOpt,
    MethodOpt,
    ParamOverride,
    SearchOpt,
    SeedOpt,
    StoreOpt,
    SweepOverride,
    TaskArg,
    err_console,
    load_task,
    search_overrides,
)
from skysweep.errors import UsageError

if TYPE_CHECKING:
    from skysweep.backends.sky import BackgroundValidation
    from skysweep.render import RenderedTrial
    from skysweep.task import TaskSpec


def render(
    task_file: TaskArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for one YAML per trial.")],
    store: StoreOpt = None,
    sweep: SweepOverride = None,
    spread: Annotated[
        bool, typer.Option(help="Assign trials round-robin over resources.infra.")
    ] = False,
    method: MethodOpt = None,
    max_trials: MaxTrialsOpt = None,
    seed: SeedOpt = None,
    search: SearchOpt = None,
    param: ParamOverride = None,
    early_terminate: EarlyTerminateOpt = None,
) -> None:
    """Write each trial as a SkyPilot task YAML that `sky jobs launch` accepts as is.

    Secrets stay references (`secrets: {NAME: null}`): pass them at launch with
    `sky jobs launch --secret NAME`.
    """
    from skysweep.backends import get_backend
    from skysweep.backends.sky import BackgroundValidation
    from skysweep.launch import new_sweep_id, render_sweep
    from skysweep.settings import store_for, store_url
    from skysweep.store import S3_SCHEMES

    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; render writes one YAML per trial into a folder",
            hint="pass a folder that does not exist yet or is one, e.g. --out specs/",
        )
    with BackgroundValidation() as validation:  # first: its `import sky` overlaps the rest
        task = load_task(
            task_file,
            sweep,
            search_overrides(method, max_trials, seed, search, early_terminate),
            param,
        )
        url = store_url(store)
        backend = "sky" if url.split("://", 1)[0] in S3_SCHEMES else "local"
        sweep_id = new_sweep_id(task.name)
        trials = _renderable(task, sweep_id)
        rendered = render_sweep(
            task,
            trials,
            sweep_id=sweep_id,
            backend=get_backend(backend),
            store=store_for(store),
            task_dir=task_file.resolve().parent,
            spread=spread,
        )
        validation.send(rendered)
        try:
            _write_specs(out, rendered, validation)
        except OSError as exc:
            raise UsageError(
                f"--out {out}: cannot write the specs there: {exc.strerror or exc}",
                hint="pass a folder you can write to (it is created if it does not exist)",
            ) from exc
    err = err_console()
    err.print(
        f"{len(rendered)} trial spec(s) written to {out} (sweep id {sweep_id}); "
        "SkyPilot's schema accepts every one."
    )
    if backend == "local":
        err.print(
            "[yellow]note:[/] no s3:// store was given, so the specs mount no bucket and "
            "trial outputs stay on the VM; pass --store s3://BUCKET/PREFIX to collect them."
        )


def _renderable(task: TaskSpec, sweep_id: str) -> list[Any]:
    """A grid's trials, or a random or Sobol sweep's suggestions (fixed by its seed, else
    its id); a Bayesian sweep's trials depend on results, so there is nothing to write."""
    from skysweep.expand import expand
    from skysweep.search import source_for

    method = task.sweeps.method if task.sweeps else "grid"
    if method == "grid":
        return expand(task)
    if method == "bayes":
        raise UsageError(
            "render writes a sweep's trials up front, but a bayes sweep's trials are suggested "
            "from the results of those before",
            hint="run it with 'skysweep up', or render a method: random or sobol sweep",
        )
    source = source_for(task, sweep_id)
    return source.next(source.expected or 0, {})


def _write_specs(
    out: Path, rendered: list[RenderedTrial], validation: BackgroundValidation
) -> None:
    """One YAML per trial, written while SkyPilot's check runs in the background.

    A file that is not there yet is written at once and removed again if SkyPilot rejects a
    trial, with the folders made for it: a rejected sweep leaves ``--out`` as it was. A file
    already there is replaced only once the check has passed.
    """
    from itertools import takewhile

    from skysweep.render import dump_specs

    made = list(takewhile(lambda p: not p.exists(), [out, *out.parents]))
    out.mkdir(parents=True, exist_ok=True)
    folder = os.fspath(out)
    created: list[str] = []
    existing: list[tuple[str, bytes]] = []
    texts = dump_specs(item.spec for item in rendered)
    for item, text in zip(rendered, texts, strict=True):
        path = os.path.join(folder, f"{item.trial.index:04d}-{item.trial.trial_id}.yaml")
        data = text.encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            existing.append((path, data))
            continue
        created.append(path)
        _write_all(fd, data)
    try:
        validation.check()
    except UsageError:
        for path in created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for folder_made in made:
            with contextlib.suppress(OSError):
                os.rmdir(folder_made)
        raise
    for path, data in existing:
        _write_all(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666), data)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
