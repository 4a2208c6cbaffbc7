"""What every command of the ``fusion`` CLI shares (the main app and each level's sub-app): the console, the
``--params`` option, loading the parameters with a readable error, and running a stage with its failures
turned into exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def apply_thread_policy() -> None:
    """OpenMP's passive wait for the torch threads of this process (``OMP_WAIT_POLICY=PASSIVE``, unless the
    environment sets it, or ``FUSION_OMP_POLICY=off``): a thread that waits sleeps instead of spinning, so another
    CPU-bound process on the machine slows the stage in proportion instead of tenfold (measured by
    ``benchmarks/contention.py``). OpenMP reads it when torch loads: every driver calls this before anything
    imports torch."""
    if os.environ.get("FUSION_OMP_POLICY", "").lower() != "off":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


apply_thread_policy()

import typer  # noqa: E402 - after the thread policy
from rich.console import Console  # noqa: E402

from fusion.config import ConfigError  # noqa: E402


def _console(stderr: bool = False) -> Console:
    """A console that prints whole tables: to a terminal at its width, to a pipe or a file without cutting them
    to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=1000)

console = _console()


PARAMS = typer.Option(Path("params.yaml"), "--params", "-p", help="parameters file")


def _params(path: Path):
    from fusion.backends import BackendOptionError
    from fusion.levels.query.base import RouterParamError
    from fusion.stages import load_params

    try:
        return load_params(path)
    except (ConfigError, RouterParamError, BackendOptionError) as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _stage(name: str, params_path: Path):
    from fusion.stages import runner

    return _run(runner(name), name, params_path)


def _run(fn, name: str, params_path: Path):
    from fusion.data.collect import BudgetExceeded
    from fusion.data.validate import ValidationFailed

    params = _params(params_path)
    try:
        return fn(params)
    except ValidationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except BudgetExceeded as exc:  # collection or judging: finished parts are kept
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(3) from None
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{name} failed: {exc}[/red]")
        raise typer.Exit(1) from None
