"""The ``skysweep`` command line. Heavy imports happen inside commands so ``--help`` is fast.

Exit codes: 0 done; 1 the sweep ran but something failed; 2 bad task file or arguments;
3 ``wait`` timed out; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skysweep.errors import SkysweepError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from skysweep.backends import Backend
    from skysweep.expand import Trial
    from skysweep.manifest import Manifest
    from skysweep.rank import Ranking
    from skysweep.settings import SweepRef
    from skysweep.store import Store
    from skysweep.task import TaskSpec

SWEEP_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")

app = typer.Typer(
    name="skysweep",
    help="Hyperparameter sweeps from one Transformer Lab task file: expand the sweep, launch "
    "every trial (locally or as SkyPilot managed jobs), collect metrics from object "
    "storage and rank the trials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    from rich.console import Console

    # Piped into a log or a file, tables keep whole ids rather than fit 80 columns.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=True, width=160 if wide else None)


def _parse_overrides(values: list[str] | None) -> dict[str, list[Any]]:
    import yaml

    from skysweep.load import _Yaml12Loader

    overrides: dict[str, list[Any]] = {}
    for item in values or []:
        name, sep, raw = item.partition("=")
        if not sep or not name or not raw:
            raise UsageError(
                f"--sweep {item!r} is not NAME=V1,V2", hint="e.g. --sweep learning_rate=1e-4,3e-4"
            )
        overrides[name.strip()] = [yaml.load(v, Loader=_Yaml12Loader) for v in raw.split(",")]
    return overrides


def _load(task_file: Path, sweep: list[str] | None) -> TaskSpec:
    from skysweep.load import load

    return load(task_file, sweep_overrides=_parse_overrides(sweep))


@app.command()
def render(
    task_file: TaskArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for one YAML per trial.")],
    store: StoreOpt = None,
    sweep: SweepOverride = None,
    spread: Annotated[
        bool, typer.Option(help="Assign trials round-robin over resources.infra.")
    ] = False,
) -> None:
    """Write each trial as a SkyPilot task YAML that `sky jobs launch` accepts as is.

    Secrets stay references (`secrets: {NAME: null}`): pass them at launch with
    `sky jobs launch --secret NAME`.
    """
    from skysweep.backends.sky import validate
    from skysweep.expand import expand
    from skysweep.launch import new_sweep_id, render_sweep
    from skysweep.settings import store_for, store_url
    from skysweep.store import S3_SCHEMES

    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; render writes one YAML per trial into a folder",
            hint="pass a folder that does not exist yet or is one, e.g. --out specs/",
        )
    task = _load(task_file, sweep)
    trials = expand(task)
    url = store_url(store)
    backend = "sky" if url.split("://", 1)[0] in S3_SCHEMES else "local"
    sweep_id = new_sweep_id(task.name)
    rendered = render_sweep(
        task,
        trials,
        sweep_id=sweep_id,
        backend_name=backend,
        store=store_for(store),
        task_file=task_file,
        spread=spread,
    )
    validate(rendered)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for item in rendered:
            path = out / f"{item.trial.index:04d}-{item.trial.trial_id}.yaml"
            path.write_text(item.to_yaml(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"--out {out}: cannot write the specs there: {exc.strerror or exc}",
            hint="pass a folder you can write to (it is created if it does not exist)",
        ) from exc
    err = _err()
    err.print(
        f"{len(rendered)} trial spec(s) written to {out} (sweep id {sweep_id}); "
        "SkyPilot's schema accepts every one."
    )
    if backend == "local":
        err.print(
            "[yellow]note:[/] no s3:// store was given, so the specs mount no bucket and "
            "trial outputs stay on the VM; pass --store s3://BUCKET/PREFIX to collect them."
        )


@app.command()
def up(
    task_file: TaskArg,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Run every trial as a subprocess on this machine (no cloud account)."
        ),
    ] = False,
    store: StoreOpt = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-parallel",
            min=1,
            help="At most N trials at once. Default: sweeps.max_parallel, "
            "else (local) cores / requested cpus.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; launch nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Submit and exit; follow later with `skysweep wait`.")
    ] = False,
    output: Annotated[
        Output, typer.Option("--output", help="table for people, json for scripts (on stdout).")
    ] = Output.table,
    sweep_id: Annotated[
        str | None,
        typer.Option(
            "--sweep-id", help="Resume this sweep: launch only its trials that were never launched."
        ),
    ] = None,
    spread: Annotated[
        bool,
        typer.Option(
            "--spread", help="Assign trials round-robin across resources.infra providers."
        ),
    ] = False,
    sweep: SweepOverride = None,
) -> None:
    """Expand the sweep, launch every trial, follow them and print the ranking."""
    from skysweep.backends import get_backend
    from skysweep.expand import expand
    from skysweep.launch import default_parallelism, launch, new_sweep_id, render_sweep
    from skysweep.render import missing_secrets
    from skysweep.settings import store_for

    err = _err()
    task = _load(task_file, sweep)
    trials = expand(task)
    backend_name = "local" if local else "sky"
    missing = missing_secrets(task, dict(os.environ))
    if missing:
        raise UsageError(
            f"{task_file}: envs refer to secret(s) not set in your environment: "
            + ", ".join(missing),
            hint="export "
            + " ".join(f"{m.lstrip('_')}=..." for m in missing)
            + " first; secrets are read at launch and never written to disk",
        )
    the_store = store_for(store)
    parallel = (
        max_parallel
        or (task.sweeps.max_parallel if task.sweeps else None)
        or (default_parallelism(task, len(trials)) if local else len(trials))
    )
    # The local runner enforces the cap itself; on SkyPilot a watching `up` submits in waves.
    in_waves = backend_name == "sky" and parallel < len(trials)
    if in_waves and detach:
        raise UsageError(
            f"--detach cannot hold {len(trials)} SkyPilot trials to --max-parallel {parallel}: "
            "nobody would be watching to launch the rest",
            hint="drop --detach so `up` launches in waves, or raise --max-parallel to "
            f"{len(trials)}",
        )
    if sweep_id is not None and not SWEEP_ID.match(sweep_id):
        raise UsageError(
            f"--sweep-id {sweep_id!r} is not a sweep id",
            hint="use lowercase letters, digits, '.', '_' and '-', starting with a "
            "letter or digit (at most 100), e.g. the id `up` printed",
        )
    the_id = sweep_id or new_sweep_id(task.name)
    manifest, resumed = _open_or_start(
        the_store, the_id, task, task_file, trials, backend_name, parallel
    )
    backend = get_backend(backend_name)
    rendered = render_sweep(
        task,
        trials,
        sweep_id=the_id,
        backend_name=backend_name,
        store=the_store,
        task_file=task_file,
        spread=spread,
    )

    _show_plan(err, task, len(trials), backend_name, the_store.url, the_id, parallel, rendered)
    if backend_name == "sky":
        from skysweep.backends.sky import preflight

        for line in preflight(rendered):
            err.print(line)
    if dry_run:
        if output is Output.json:
            print(
                json.dumps(
                    {
                        "sweep_id": the_id,
                        "store_url": f"{the_store.url}/{the_id}",
                        "trials": len(trials),
                        "launched": [],
                        "dry_run": True,
                    }
                )
            )
        err.print("dry run: nothing launched.")
        return
    if (
        not yes
        and sys.stdin.isatty()
        and not typer.confirm(f"Launch {len(trials)} trial(s)?", default=True, err=True)
    ):
        raise typer.Exit(1)

    only = None
    if resumed:
        from skysweep.collect import Collector
        from skysweep.launch import relaunchable

        views = backend.status(manifest, the_store)
        results = Collector(the_store, the_id).collect(manifest, views)
        only = relaunchable(manifest, {r.trial_id: r.state for r in results})
    if in_waves:
        order = {t.trial_id: t.index for t in trials}
        candidates = (
            only
            if only is not None
            else {t.trial_id for t in trials if t.trial_id not in manifest.jobs}
        )
        only = set(sorted(candidates, key=order.__getitem__)[:parallel])
    outcome = launch(
        manifest, rendered, store=the_store, backend=backend, max_parallel=parallel, only=only
    )
    if resumed:
        err.print(
            f"resumed: {len(outcome.launched)} trial(s) launched now; trials launched "
            "before were left alone."
        )
    elif in_waves:
        err.print(f"launched the first {len(outcome.launched)}; the rest follow as trials end.")

    def top_up(ranking: Ranking) -> None:
        from skysweep.launch import next_wave

        states = {t.result.trial_id: t.result.state for t in ranking.trials}
        wave = next_wave(outcome.manifest, states, parallel)
        if wave:
            launch(
                outcome.manifest,
                rendered,
                store=the_store,
                backend=backend,
                max_parallel=parallel,
                only=wave,
            )

    sweep_url = f"{the_store.url}/{the_id}"
    if detach:
        if output is Output.json:
            print(
                json.dumps(
                    {
                        "sweep_id": the_id,
                        "store_url": sweep_url,
                        "backend": backend_name,
                        "trials": len(trials),
                        "launched": outcome.launched,
                        "skipped": outcome.skipped,
                    }
                )
            )
        else:
            err.print(
                f"submitted sweep [bold]{the_id}[/]; follow it with: skysweep wait {sweep_url}"
            )
        return
    ranking = _follow_with_progress(
        err, the_store, outcome.manifest, backend, sweep_url, top_up if in_waves else None
    )
    _print_ranking(ranking, output)
    err.print(
        f"results kept in {sweep_url}; show them again with: skysweep results {the_id}"
        + ("" if store is None else f" --store {store}")
    )
    raise typer.Exit(0 if ranking.all_succeeded else 1)


def _open_or_start(
    store: Store,
    sweep_id: str,
    task: TaskSpec,
    task_file: Path,
    trials: list[Trial],
    backend_name: str,
    parallel: int,
) -> tuple[Manifest, bool]:
    """The manifest of the sweep being resumed, or a new one; and whether it is resumed."""
    from skysweep.manifest import MANIFEST, Manifest, read_manifest

    if store.get(f"{sweep_id}/{MANIFEST}") is None:
        manifest = Manifest.new(
            sweep_id=sweep_id,
            task=task,
            task_file=task_file.resolve(),
            trials=trials,
            backend=backend_name,
            store_url=store.url,
            max_parallel=parallel,
        )
        return manifest, False
    manifest = read_manifest(store, sweep_id)
    known = {t.trial_id for t in manifest.trials}
    new = [t for t in trials if t.trial_id not in known]
    if new:
        raise UsageError(
            f"{task_file}: the sweep section no longer matches sweep {sweep_id} "
            f"({len(new)} trial(s) are not in it)",
            hint="resume with the task file the sweep was started with, or start a new "
            "sweep without --sweep-id",
        )
    if manifest.backend != backend_name:
        raise UsageError(
            f"sweep {sweep_id} runs on the {manifest.backend} backend",
            hint="resume it with the same backend ("
            + ("--local" if manifest.backend == "local" else "no --local")
            + ")",
        )
    return manifest, True


def _show_plan(
    err: Console,
    task: TaskSpec,
    count: int,
    backend: str,
    store: str,
    sweep_id: str,
    parallel: int,
    rendered: list[Any],
) -> None:
    names = list(task.sweeps.sweep_config) if task.sweeps else []
    resources = {json.dumps(r.spec.get("resources", {}), sort_keys=True) for r in rendered}
    err.print(
        f"[bold]{task.name}[/]: {count} trial(s)"
        + (f" over {', '.join(names)}" if names else "")
        + f" on the {backend} backend, at most {parallel} at once"
    )
    for item in sorted(resources):
        err.print(f"  resources: {item if item != '{}' else '(SkyPilot defaults)'}")
    err.print(f"  sweep {sweep_id} in {store}")


def _follow_with_progress(
    err: Console,
    store: Any,
    manifest: Manifest,
    backend: Backend,
    sweep_url: str,
    each_look: Callable[[Ranking], None] | None = None,
) -> Ranking:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from skysweep.follow import follow
    from skysweep.report import state_counts

    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    bar = progress.add_task("", total=len(manifest.trials))

    def on_look(ranking: Ranking) -> None:
        done = sum(t.result.finished for t in ranking.trials)
        progress.update(bar, completed=done, description=state_counts(ranking, " "))
        if each_look is not None:
            each_look(ranking)

    try:
        with progress:
            return follow(store, manifest, backend, on_look=on_look, interval=0.5)
    except KeyboardInterrupt:
        err.print(
            f"\nstopped watching; the trials keep running.\n"
            f"  watch:  skysweep wait {sweep_url}\n"
            f"  cancel: skysweep down {sweep_url}\n"
            f"  resume: skysweep up TASK_FILE --sweep-id {manifest.sweep_id}"
            + (" --local" if manifest.backend == "local" else "")
        )
        raise typer.Exit(130) from None


def _print_ranking(ranking: Ranking, output: Output | Format, best_only: bool = False) -> None:
    from skysweep.report import render_ranking

    rendered = render_ranking(ranking, output.value, best_only=best_only)
    if isinstance(rendered, str):
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    else:
        _out().print(rendered)
        best = ranking.best
        if best is not None and not best_only:
            params = ", ".join(f"{k}={v}" for k, v in best.result.params.items())
            _out().print(
                f"best: trial {best.result.trial_id} with {ranking.metric} = "
                f"{best.value:.6g} ({params or 'no parameters'})"
            )


def _open(sweep: str, store: str | None) -> tuple[SweepRef, Manifest]:
    from skysweep.manifest import read_manifest
    from skysweep.settings import sweep_ref

    ref = sweep_ref(sweep, store)
    return ref, read_manifest(ref.store, ref.sweep_id)


def _backend_for(manifest: Manifest) -> Backend:
    from skysweep.backends import get_backend

    return get_backend(manifest.backend)


def _store_only_note(exc: SkysweepError) -> None:
    _err().print(f"note: {exc.message}; showing what the store says", markup=False)


@app.command()
def status(
    sweep: SweepArg,
    store: StoreOpt = None,
    output: Annotated[Output, typer.Option("--output")] = Output.table,
) -> None:
    """Show every trial's state, merging the backend's job states with the store."""
    from skysweep.follow import look
    from skysweep.report import ranking_json, ranking_table

    ref, manifest = _open(sweep, store)
    ranking = look(ref.store, manifest, _backend_for(manifest), on_unavailable=_store_only_note)
    if output is Output.json:
        print(json.dumps(ranking_json(ranking), indent=2))
    else:
        _out().print(
            ranking_table(
                ranking,
                title=f"{manifest.sweep_id} ({manifest.backend}): {len(ranking.trials)} trials",
                jobs=True,
            )
        )


@app.command()
def results(
    sweep: SweepArg,
    store: StoreOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    best: Annotated[bool, typer.Option("--best", help="Only the best trial.")] = False,
) -> None:
    """Print the ranked results (markdown suits $GITHUB_STEP_SUMMARY; json and csv scripts).

    Exit code 0 when every trial succeeded with the metric, 1 otherwise.
    """
    from skysweep.follow import look

    ref, manifest = _open(sweep, store)
    ranking = look(ref.store, manifest, _backend_for(manifest), on_unavailable=_store_only_note)
    _print_ranking(ranking, format, best_only=best)
    raise typer.Exit(0 if ranking.all_succeeded else 1)


@app.command()
def wait(
    sweep: SweepArg,
    store: StoreOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Give up after SECONDS (exit 3).")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1)] = 5.0,
) -> None:
    """Return when every trial has finished. Progress on stderr.

    Exit codes: 0 all trials succeeded and the best has the metric; 1 some trials failed or
    lack the metric; 3 timeout; 2 usage error.
    """
    from skysweep.follow import follow

    ref, manifest = _open(sweep, store)
    err = _err()
    last = [""]

    def on_look(ranking: Ranking) -> None:
        from skysweep.report import state_counts

        line = state_counts(ranking)
        if line != last[0]:
            err.print(f"{manifest.sweep_id}: {line}")
            last[0] = line

    told: list[bool] = []

    def note_once(exc: SkysweepError) -> None:
        if not told:
            _store_only_note(exc)
            told.append(True)

    ranking = follow(
        ref.store,
        manifest,
        _backend_for(manifest),
        timeout=timeout,
        interval=interval,
        on_look=on_look,
        reload_manifest=True,
        on_unavailable=note_once,
    )
    best = ranking.best
    err.print(
        f"finished: best trial {best.result.trial_id} ({ranking.metric} = {best.value:.6g})"
        if best
        else "finished: no trial has the metric"
    )
    raise typer.Exit(0 if ranking.all_succeeded else 1)


@app.command("list")
def list_sweeps(
    store: StoreOpt = None,
    output: Annotated[Output, typer.Option("--output")] = Output.table,
) -> None:
    """List the sweeps in a store, newest first."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from skysweep.errors import StoreError
    from skysweep.manifest import read_manifest
    from skysweep.settings import store_for

    the_store = store_for(store)

    def read(sweep_id: str) -> Manifest | None:
        try:
            return read_manifest(the_store, sweep_id)
        except StoreError:
            return None

    with ThreadPoolExecutor(16) as pool:
        found = [m for m in pool.map(read, the_store.children("")) if m is not None]
    found.sort(key=lambda m: m.created_at, reverse=True)
    if output is Output.json:
        print(
            json.dumps(
                [
                    {
                        "sweep_id": m.sweep_id,
                        "name": m.name,
                        "created_at": m.created_at,
                        "backend": m.backend,
                        "trials": len(m.trials),
                        "store_url": f"{the_store.url}/{m.sweep_id}",
                    }
                    for m in found
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"sweeps in {the_store.url}", title_justify="left")
    table.add_column("sweep", no_wrap=True)
    for column in ("name", "created", "backend", "trials"):
        table.add_column(column, no_wrap=column != "name")
    for m in found:
        created = m.created_at.replace("T", " ")[:16]
        table.add_row(m.sweep_id, m.name, created, m.backend, str(len(m.trials)))
    _out().print(table)


@app.command()
def logs(
    sweep: SweepArg,
    trial: Annotated[str, typer.Argument(help="The trial id (see `skysweep status`).")],
    store: StoreOpt = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow")] = True,
) -> None:
    """Stream one trial's logs."""
    from skysweep.backends import get_backend

    ref, manifest = _open(sweep, store)
    if trial not in {t.trial_id for t in manifest.trials}:
        raise UsageError(
            f"sweep {manifest.sweep_id} has no trial {trial!r}",
            hint="see the trial ids with 'skysweep status " + sweep + "'",
        )
    for chunk in get_backend(manifest.backend).logs(manifest, ref.store, trial, follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@app.command()
def down(sweep: SweepArg, store: StoreOpt = None) -> None:
    """Cancel every job of this sweep, and nothing else. Safe to run twice."""
    from skysweep.backends import get_backend

    ref, manifest = _open(sweep, store)
    cancelled = get_backend(manifest.backend).cancel(manifest, ref.store)
    _err().print(
        f"sweep {manifest.sweep_id}: cancelled {len(cancelled)} job(s)"
        + (f" ({', '.join(cancelled)})" if cancelled else "; nothing was running")
    )


@app.command()
def retry(
    sweep: SweepArg,
    task_file: Annotated[
        Path | None,
        typer.Option(
            "--task-file", help="Where the task file is now (default: where it was at `up`)."
        ),
    ] = None,
    store: StoreOpt = None,
    detach: Annotated[bool, typer.Option("--detach")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
) -> None:
    """Relaunch the failed trials of a sweep (never one that is running or done)."""
    from skysweep.backends import get_backend
    from skysweep.follow import look
    from skysweep.launch import archive_attempt, launch, render_sweep
    from skysweep.manifest import write_manifest

    err = _err()
    ref, manifest = _open(sweep, store)
    backend = get_backend(manifest.backend)
    ranking = look(ref.store, manifest, backend)
    failed = {
        t.result.trial_id
        for t in ranking.trials
        if t.result.state in ("failed", "submit_failed", "cancelled", "lost")
    }
    if not failed:
        err.print(f"sweep {manifest.sweep_id}: no failed trial to retry.")
        return
    task = manifest.task_spec()
    path = task_file or Path(manifest.task_file)
    if (
        not yes
        and sys.stdin.isatty()
        and not typer.confirm(f"Relaunch {len(failed)} failed trial(s)?", default=True, err=True)
    ):
        raise typer.Exit(1)
    for trial_id in sorted(failed):
        job = manifest.jobs.get(trial_id)
        archive_attempt(ref.store, manifest.sweep_id, trial_id, job.attempts if job else 0)
    rendered = render_sweep(
        task,
        manifest.trial_objects(),
        sweep_id=manifest.sweep_id,
        backend_name=manifest.backend,
        store=ref.store,
        task_file=path,
    )
    previous = {tid: manifest.jobs[tid].attempts for tid in failed if tid in manifest.jobs}
    outcome = launch(
        manifest,
        rendered,
        store=ref.store,
        backend=backend,
        max_parallel=manifest.max_parallel or 1,
        only=failed,
    )
    for tid, attempts in previous.items():
        outcome.manifest.jobs[tid].attempts = attempts + 1
    write_manifest(ref.store, outcome.manifest)
    err.print(f"relaunched {len(outcome.launched)} trial(s) of {manifest.sweep_id}")
    if detach:
        return
    ranking = _follow_with_progress(err, ref.store, outcome.manifest, backend, ref.url)
    _print_ranking(ranking, Output.table)
    raise typer.Exit(0 if ranking.all_succeeded else 1)


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    from typer._click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except SkysweepError as exc:
        from rich.text import Text

        _err().print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except click_errors.ClickException as exc:
        from rich.text import Text

        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "skysweep"
        _err().print(
            Text("error: ", style="bold red")
            + Text(f"{exc.format_message()}\n  hint: see '{command} --help'")
        )
        sys.exit(2 if isinstance(exc, click_errors.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
