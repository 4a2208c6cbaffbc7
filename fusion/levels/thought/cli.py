"""The thought level's commands (``fusion thought ...``)."""

from __future__ import annotations

from pathlib import Path

import typer

from fusion.cli_base import PARAMS, _params, _stage, console

thought_app = typer.Typer(help='Thought-level fusion: the template bank and its evaluation.', no_args_is_help=True)


@thought_app.command("templates")


def thought_templates(params: Path = PARAMS) -> None:
    """Select the top responses of each training query, summarise them into templates (resumable), embed them:
    the template bank."""
    console.print(f"wrote {_stage('templates', params)}")


@thought_app.command("eval")


def thought_eval(params: Path = PARAMS) -> None:
    """The target model on held-out queries: zero-shot vs few-shot vs templates, with 95% intervals."""
    report = _stage("thought_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.thought_eval}   plot: {p.paths.thought_plot}")


def mount(root: typer.Typer) -> None:
    """Add this level's commands to the ``fusion`` app."""
    root.add_typer(thought_app, name="thought")
