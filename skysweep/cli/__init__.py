"""The ``skysweep`` command line. Heavy imports happen inside commands so ``--help`` is fast.

Exit codes: 0 done; 1 the sweep ran but something failed; 2 bad task file or arguments;
3 ``wait`` timed out; 130 interrupted.

Each command lives in the module of its concept and is registered here, in the order
``skysweep --help`` lists them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, NoReturn

import typer

from skysweep.cli import control, reading, render, up
from skysweep.cli.common import err_console
from skysweep.errors import SkysweepError

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


def _print_version(value: bool) -> None:
    if value:
        from skysweep import __version__

        print(f"skysweep {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print skysweep's version and exit.",
        ),
    ] = False,
) -> None:
    """Options that come before the command."""


app.command()(render.render)
app.command()(up.up)
app.command()(reading.status)
app.command()(reading.results)
app.command()(reading.report)
app.command()(reading.wait)
app.command("list")(reading.list_sweeps)
app.command()(reading.logs)
app.command()(control.down)
app.command()(control.controller)
app.command()(control.retry)


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    from typer._click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except SkysweepError as exc:
        from rich.text import Text

        err_console().print(Text("error: ", style="bold red") + Text(str(exc)))
        _leave(exc.exit_code)
    except typer.Exit as exc:
        _leave(exc.exit_code)
    except typer.Abort:
        _leave(130)
    except click_errors.NoArgsIsHelpError as exc:
        # Bare `skysweep`: the help is what was asked for, not an error to shout about.
        print(exc.format_message(), file=sys.stderr)
        _leave(2)
    except click_errors.ClickException as exc:
        from rich.text import Text

        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "skysweep"
        err_console().print(
            Text("error: ", style="bold red")
            + Text(f"{exc.format_message()}\n  hint: see '{command} --help'")
        )
        _leave(2 if isinstance(exc, click_errors.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        _leave(130)
    _leave(code if isinstance(code, int) else 0)


def _leave(code: int | None) -> NoReturn:
    """Exit without the interpreter's teardown: freeing the few hundred modules a command
    imports takes 40-60 ms, a sixth of what a short local sweep costs beyond its trials.
    Everything a command writes is closed by then; what is buffered is flushed here. Under a
    profiler or a coverage tracer, which write their data at exit, it exits as usual."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)
